"""Hostile input, end to end: the real polling loop and aiohttp session against the fake Bot API.

One running bot serves a whole table (start-up is paid once). Every input is sent by its own
user (leads granted in the database for /clients and /lang, admins from ADMIN_IDS for /digest,
/timezone and /grant), so the report flood limit of 10 a minute never interferes. For each input:

- exactly one reply: the reply is awaited as an event (the fake's sendMessage count), the
  update is settled (its handler task finished), then a follow-up /help is sent and ITS reply
  awaited; between the command and the help text there must be exactly one message. The help
  reply also proves that the next command still works;
- the reply is short (at most 400 characters as shown) and echoes at most 50 consecutive
  characters of the input; it holds no Python error text ("Traceback", "...Error:") and is not
  one of the bot's failure replies (the "something went wrong" apology for an exception nobody
  expected, the temporary database problem, an undeliverable part);
- the fake accepted every request (no 400 for bad HTML or an empty text);
- the database is unchanged (row counts of every table).

Failures are collected per input and reported together, so one run names every offending input.
A few valid requests ride along (an empty argument means the default period): they must give one
report, not an error.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.datasets import load
from tests.e2e.access_support import (
    ADMIN,
    SENDS,
    Live,
    grant_leads,
    running,
    table_counts,
)
from tests.fake_telegram import utf16_len

MAX_REPLY = 400
MAX_ECHO = 50
LONG = "x" * 4000
LEADS_FROM = 10_000
ADMINS_FROM = 20_000
HELP_TEXTS = ("Commands\n", "Команды\n")
PYTHON_ERRORS = ("Traceback", "Error:", "Exception:", 'File "')
# Replies of the error paths (handlers/errors.py, bot/delivery.py) that mean something failed
# inside: an exception nobody expected, the database, or a part Telegram would not take.
FAILURE_REPLIES = (
    "something went wrong",
    "что-то пошло не так",
    "Temporary problem with the database",
    "Временная проблема с базой данных",
    "could not be delivered",
    "Не удалось доставить",
)

Kind = Literal["error", "report", "answer"]

CLIENTS: list[str] = [
    # markup and HTML entities
    "<b>&",
    "</b>",
    "<i>week</i>",
    "<script>alert(1)</script>",
    '<a href="tg://user?id=42">me</a>',
    "<tg-spoiler>week",
    "<<<<>>>>",
    "&",
    "&&&&",
    "&amp;",
    "&lt;b&gt;",
    "&#0;",
    "&#x110000;",
    "&#55296;",
    "&nbsp;week",
    # unknown words
    "forever",
    "tomorrow",
    "next week",
    "last",
    "last year",
    "this week",
    "week week",
    "weekly",
    "неизвестно",
    "неделя неделя",
    "прошлая неделя extra",
    "null",
    "None",
    "NaN",
    "-",
    "—",
    "..",
    "...",
    # impossible dates, out-of-bounds and reversed ranges
    "1900-01-01..2100-01-01",
    "2026-02-30",
    "31.02.2026",
    "2026-13-01",
    "2026-00-10",
    "2026-11-00",
    "0000-01-01",
    "0001-01-01",
    "0001-01-01..0001-01-02",
    "9999-12-31",
    "9999-12-31..9999-12-31",
    "2100-01-01",
    "2026-11-12",
    "2027-01",
    "2026-13",
    "2026-00",
    "2026-11-15..2026-11-01",
    "15.11.2026-01.11.2026",
    "2026-11-11..2026-11-10",
    "2020-01-01..2026-11-11",
    "1970-01-01..2026-11-11",
    "2026-11-01..",
    "..2026-11-01",
    "2026-11-01...2026-11-05",
    "2026/11/05",
    "11/05/2026",
    "2026-11-05T00:00",
    "2026-W45",
    "0d",
    "-1d",
    "1831d",
    "99999999999999999999d",
    "1" * 3999 + "d",
    "1" * 4000,
    "1.5d",
    "7 days",
    "7dd",
    # SQL fragments
    "'; DROP TABLE appeals; --",
    "week'; DROP TABLE clients; --",
    "1; SELECT * FROM people",
    '" OR 1=1 --',
    "week channel=whatsapp' OR '1'='1",
    'week app="x\'); DELETE FROM apps; --"',
    "week channel=%",
    "week channel=_",
    "week app=%%",
    "week channel=*",
    "UNION SELECT token FROM secrets",
    # right-to-left, zero-width and combining characters
    "\u202eweek",
    "week\u200b",
    "\u200b",
    "\u2066week\u2069",
    "week channel=\u202efax",
    "\ufeffweek",
    "w\u200dee\u200dk",
    "week\u3000channel=fax",
    "\u0301\u0301\u0301",
    # emoji
    "📅",
    "week 📈",
    "week channel=📱",
    "👨‍👩‍👧‍👦" * 40,
    "🏳️‍🌈 month",
    # NUL and other control characters
    "\x00",
    "week\x00",
    "week channel=\x00",
    "\x00" * 100,
    "\x07\x08\x1b[31m",
    "week\nchannel=fax",
    # very long values
    LONG,
    "week channel=" + "a" * 3000,
    "week app=" + "b" * 3000,
    "week channel=" + "c" * 201,
    "week channel=" + "d" * 200,
    'week app="' + "long name " * 300 + '"',
    "week " + "channel=x " * 300,
    "a " * 1500,
    # repeated and empty flags
    "week channel=whatsapp channel=vk",
    "week app=Sales app=Sales",
    "channel=whatsapp канал=vk",
    "week channel=",
    "week app=",
    "week channel= app=",
    "week =whatsapp",
    "week channel==whatsapp",
    "channel",
    "week channel",
    "week channel=whatsapp app=",
    "week приложение=",
    # unbalanced quotes
    'week app="Sales',
    "week app='Sales",
    '"',
    "'",
    'week "',
    '"""',
    'week app="Sales & Partners <VIP>',
    "week app=\\",
    # braces, format strings
    "{}",
    "{0}",
    "{value}",
    "{examples}",
    "{0!r:>{1}}",
    "{{}}",
    "week channel={0}",
    "week app={known}",
    "week channel={value}",
    "%s",
    "%d%n",
    "%(value)s",
    "week channel=%s",
    "%x" * 20,
    # shell-ish and other junk
    "\\",
    "\\n",
    "$(rm -rf /)",
    "`id`",
    "../../etc/passwd",
    "http://example.com/?a=<b>&c=d",
    "@fake_analytics_bot",
    "/clients",
    "/start week",
    "#hashtag",
    # unknown names in otherwise valid requests
    "week app=Sales extra",
    "week channel=fax",
    "week app=Nonexistent",
    "week channel=telegram app=Sales",
    'week channel=vk app="Группа ВК" extra',
]
# Valid requests among the junk: one report each (an empty argument is the default period).
CLIENT_REPORTS = ["", 'yesterday app="Sales & Partners <VIP>"', "LAST   WEEK", "вчера канал=vk"]

DIGEST = [
    "",  # the listing
    "hourly 09:00",
    "daily 25:00",
    "daily 9",
    "daily 09:60",
    "daily 09:00 channel=fax",
    "daily 09:00 app=Nope",
    "weekly xyz 09:00",
    "weekly 09:00",
    "monthly 32 09:00",
    "monthly 0 09:00",
    "monthly -1 09:00",
    "monthly 99999999999999999999 09:00",
    "off",
    "off 0",
    "off 999",
    "off -1",
    "off x",
    "off all extra",
    "'; DROP TABLE subscriptions; --",
    LONG,
    "<b>&",
    "{0}",
    "%s",
    "daily 09:00 channel=",
    'daily 09:00 app="unbalanced',
    "daily 09:00 channel=a channel=b",
    "daily\x00 09:00",
    "ежедневно 25:00",
    "daily 09:00 channel=" + "z" * 300,
    "\u202edaily 09:00",
    "📅 09:00",
]
TIMEZONE = [
    "",  # shows the current zone
    "Mars/Olympus",
    "Europe/Moscow;DROP TABLE chats",
    "../../etc/passwd",
    "/etc/localtime",
    "Europe//Moscow",
    "Europe/Moscow/",
    "<b>&",
    "{0}",
    "%s",
    "\x00",
    "Europe/Moscow\x00",
    "UTC+3",
    "GMT+25",
    "📅",
    "europe/moscow",
    "Europe/Moscow\u200b",
    ".",
    "..",
    "__init__.py",
    "zone.tab",
    "Europe/" + "x" * 200,
]
GRANT = [
    "",  # no reply-to: the usage
    "abc",
    "-1",
    "+1",
    "1.5",
    "1e9",
    "0x1F",
    "9" * 16,
    "'; DROP TABLE people; --",
    "<b>&",
    "{0}",
    "%s",
    "@username",
    "\x00",
    "42\x00",
    "📅",
    LONG,
    "1 2",
]
LANG = [
    "",
    "xx",
    "ru ru",
    "рус",
    "en-US",
    "english",
    "'; DROP TABLE people; --",
    "<b>&",
    "{0}",
    "%s",
    "\x00",
    "ru\x00",
    "📅",
    LONG,
]


@dataclass(frozen=True)
class Case:
    command: str
    argument: str
    kind: Kind
    user_id: int
    language: str

    @property
    def text(self) -> str:
        return f"{self.command} {self.argument}" if self.argument else self.command

    def __str__(self) -> str:
        shown = repr(self.argument)
        if len(shown) > 70:
            shown = f"{shown[:60]}...({len(self.argument)} chars)"
        return f"{self.command} {shown} [{self.language}]"


def lead_cases() -> list[Case]:
    rows: list[tuple[str, str, Kind]] = [
        *(("/clients", argument, "error") for argument in CLIENTS),
        *(("/clients", argument, "report") for argument in CLIENT_REPORTS),
        *(("/lang", argument, "answer") for argument in LANG),
    ]
    # Every third input in Russian: the translated templates get the same junk.
    return [
        Case(command, argument, kind, LEADS_FROM + i, "ru" if i % 3 == 2 else "en")
        for i, (command, argument, kind) in enumerate(rows)
    ]


def admin_cases() -> list[Case]:
    rows = [
        *(("/digest", argument) for argument in DIGEST),
        *(("/timezone", argument) for argument in TIMEZONE),
        *(("/grant", argument) for argument in GRANT),
    ]
    return [
        Case(command, argument, "answer", ADMINS_FROM + i, "ru" if i % 3 == 2 else "en")
        for i, (command, argument) in enumerate(rows)
    ]


def longest_echo_over(argument: str, reply: str, limit: int = MAX_ECHO) -> str | None:
    """A run of more than `limit` consecutive characters of argument found in reply."""
    window = limit + 1
    for start in range(len(argument) - window + 1):
        if argument[start : start + window] in reply:
            return argument[start : start + window]
    return None


async def check(live: Live, engine: AsyncEngine, case: Case) -> list[str]:
    """Send one input and its /help follow-up; what is wrong with the bot's answer."""
    tg = live.tg
    problems: list[str] = []
    before = await table_counts(engine)
    mark = len(tg.calls())
    messages_before = len(tg.calls("sendMessage"))
    update = live.say(case.text, user_id=case.user_id, language_code=case.language)
    try:
        await tg.wait_for("sendMessage", messages_before + 1, timeout=15)
    except TimeoutError:
        problems.append("no reply")
    await live.settle(update)
    follow_up = live.say("/help", user_id=case.user_id, language_code=case.language)
    await tg.wait_for("sendMessage", len(tg.calls("sendMessage")) + 1, timeout=15)
    await live.settle(follow_up)

    calls = live.since(mark)
    refused = [f"{c.method} {c.status} {c.description}" for c in calls if not c.ok]
    if refused:
        problems.append(f"Telegram refused: {refused}")
    elsewhere = [
        c for c in calls if c.method in SENDS and c.params.get("chat_id") != str(case.user_id)
    ]
    if elsewhere:
        problems.append(f"sent to other chats: {[c.method for c in elsewhere]}")
    sends = [c for c in calls if c.method in SENDS]
    messages = [c for c in sends if c.method == "sendMessage"]
    if (
        not messages
        or not messages[-1].ok
        or not messages[-1].result["text"].startswith(HELP_TEXTS)
    ):
        problems.append("the follow-up /help was not answered last")
        return problems
    replies = messages[:-1]
    if len(replies) != 1:
        problems.append(f"{len(replies)} replies: {[c.params['text'][:80] for c in replies]}")
    if not replies:
        return problems
    reply = replies[0]
    raw = reply.params["text"]
    shown = reply.result["text"] if reply.ok else raw
    other_parts = [c.method for c in sends[:-1] if c is not reply]
    if case.kind == "report":
        if not shown.startswith(("Clients report\n", "Отчёт по клиентам\n")):
            problems.append(f"expected a report, got {shown[:120]!r}")
        # An app filter leaves the trend alone: one photo instead of an album.
        allowed = (
            ["sendMediaGroup", "sendDocument"],
            ["sendPhoto", "sendDocument"],
            ["sendDocument"],
        )
        if other_parts not in allowed:
            problems.append(f"report parts {other_parts}")
    else:
        if other_parts:
            problems.append(f"more than a reply: {other_parts}")
        if utf16_len(shown) > MAX_REPLY:
            problems.append(f"reply of {utf16_len(shown)} characters: {shown[:120]!r}...")
        if shown.startswith(("Clients report\n", "Отчёт по клиентам\n")):
            problems.append("a report instead of an explanation")
    echo = longest_echo_over(case.argument, shown) or longest_echo_over(case.argument, raw)
    if echo is not None:
        problems.append(f"echoes more than {MAX_ECHO} characters: {echo!r}")
    python_text = [marker for marker in PYTHON_ERRORS if marker in raw]
    if python_text:
        problems.append(f"Python error text {python_text} in {raw[:200]!r}")
    if any(marker in shown for marker in FAILURE_REPLIES):
        problems.append(f"a failure inside the bot: {shown!r}")
    after = await table_counts(engine)
    if after != before:
        changed = {
            name: (before[name], after[name]) for name in before if before[name] != after[name]
        }
        problems.append(f"database changed: {changed}")
    return problems


async def run_table(live: Live, engine: AsyncEngine, cases: list[Case]) -> list[str]:
    failures = []
    for case in cases:
        failures += [f"{case}: {problem}" for problem in await check(live, engine, case)]
    return failures


@pytest.fixture
def data(hand_counted: AsyncEngine) -> AsyncEngine:
    return hand_counted


async def test_hostile_report_and_language_arguments_get_one_short_safe_reply(
    data: AsyncEngine,
) -> None:
    cases = lead_cases()
    assert sum(case.command == "/clients" for case in cases) >= 100
    await grant_leads(data, [case.user_id for case in cases])
    async with running(data) as live:
        failures = await run_table(live, data, cases)
        assert live.tg.errors() == []
    assert failures == [], "\n".join(failures)


async def test_hostile_admin_command_arguments_get_one_short_safe_reply(
    data: AsyncEngine,
) -> None:
    cases = admin_cases()
    admins = [ADMIN, *(case.user_id for case in cases)]
    async with running(data, admin_ids=admins) as live:
        failures = await run_table(live, data, cases)
        assert live.tg.errors() == []
    assert failures == [], "\n".join(failures)


# Inputs that once broke a rule, kept as regressions; each names the defect it caught.
FIXED_DEFECTS = [
    pytest.param(
        "/grant",
        "²",
        # "²".isdigit() is True but int("²") raised: the apology
        id="grant-superscript-digit",
    ),
    pytest.param(
        "/grant",
        "0",
        # 0 was taken as a user id and a people row stored
        id="grant-zero",
    ),
    pytest.param(
        "/digest",
        "off ²",
        # isdigit() then int() raised for "²"
        id="digest-off-superscript-digit",
    ),
    pytest.param(
        "/digest",
        "monthly ² 09:00",
        # isdigit() then int() raised for "²"
        id="digest-monthly-superscript-digit",
    ),
    pytest.param(
        "/timezone",
        "Europe",
        # ZoneInfo("Europe") raised IsADirectoryError, uncaught
        id="timezone-directory",
    ),
    pytest.param(
        "/timezone",
        "a" * 300,
        # ZoneInfo of 300 characters raised "File name too long"
        id="timezone-too-long",
    ),
]


@pytest.mark.parametrize(("command", "argument"), FIXED_DEFECTS)
async def test_inputs_that_once_broke_a_rule(
    data: AsyncEngine, command: str, argument: str
) -> None:
    case = Case(command, argument, "answer", ADMINS_FROM, "en")
    async with running(data, admin_ids=[ADMIN, ADMINS_FROM]) as live:
        problems = await check(live, data, case)
    assert problems == []


# -- long listings -----------------------------------------------------------------------------


async def load_apps(engine: AsyncEngine, tmp_path: Path, names: list[tuple[str, str]]) -> None:
    rows = [
        (f"x{i}", f"client-{i}", channel, name, "2026-11-02T10:00:00+03:00")
        for i, (channel, name) in enumerate(names)
    ]
    await load(engine, tmp_path, rows, "many-apps")


def channels_messages(live: Live, mark: int) -> list[str]:
    calls = live.since(mark)
    assert [c.method for c in calls if c.method in SENDS] == ["sendMessage"] * len(calls)
    assert all(c.ok for c in calls), [c.description for c in calls if not c.ok]
    return [c.result["text"] for c in calls]


async def test_channels_with_300_apps_is_split_into_valid_messages(
    sqlite_engine: AsyncEngine, tmp_path: Path
) -> None:
    channels = ["whatsapp", "telegram", "e-mail & <web>"]
    names = [
        (channels[i % 3], f"Partner desk {i:03d} — Sales & Partners <VIP> {'·' * (i % 17 + 1)}")
        for i in range(300)
    ]
    await load_apps(sqlite_engine, tmp_path, names)
    async with running(sqlite_engine) as live:
        mark = len(live.tg.calls())
        await live.settle(live.say("/channels", user_id=ADMIN))
        shown = channels_messages(live, mark)
        assert live.tg.errors() == []
    assert len(shown) >= 3
    assert all(utf16_len(text) <= 4096 for text in shown)
    lines = "\n".join(shown).splitlines()
    assert lines[0] == "Channels and apps (clients, all time)"
    for channel in channels:
        assert f"{channel}: 100" in lines
    # Telegram trims a message, so a part that starts with an app loses that line's indent.
    apps = [line.strip() for line in lines if line.strip().startswith("• ")]
    assert sorted(apps) == sorted(f"• {name}: 1" for _, name in names)


async def test_channels_with_300_emoji_app_names_is_split_into_valid_messages(
    sqlite_engine: AsyncEngine, tmp_path: Path
) -> None:
    names = [("whatsapp", f"📱📞 Sales desk {i:03d}") for i in range(300)]
    await load_apps(sqlite_engine, tmp_path, names)
    async with running(sqlite_engine) as live:
        mark = len(live.tg.calls())
        await live.settle(live.say("/channels", user_id=ADMIN))
        shown = channels_messages(live, mark)
        assert live.tg.errors() == []
    apps = [line for text in shown for line in text.splitlines() if line.strip().startswith("• ")]
    assert len(apps) == 300


async def test_users_with_many_leads_is_split_into_valid_messages(
    sqlite_engine: AsyncEngine,
) -> None:
    async with running(sqlite_engine) as live:
        for i in range(60):
            lead = 30_000 + i
            live.say(
                "hi",
                user_id=lead,
                chat_id=-1001234500009,
                first_name="Lead " + "x" * 50,
                last_name=f"№{i} & <team>",
            )
        # Granted by reply in an enabled group, so the names are stored.
        await live.round_trip("/enable", user_id=ADMIN, chat_id=-1001234500009)
        for i in range(60):
            message_id = i + 1
            await live.round_trip(
                "/grant", user_id=ADMIN, chat_id=-1001234500009, reply_to=message_id
            )
        mark = len(live.tg.calls())
        await live.settle(live.say("/users", user_id=ADMIN))
        shown = channels_messages(live, mark)
        assert live.tg.errors() == []
    leads = [line for text in shown for line in text.splitlines() if ": lead — " in line]
    assert len(leads) == 60
