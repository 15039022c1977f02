"""Dispatcher-level tests: real routers and middlewares fed updates, with a recording session."""

import csv
import io
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import text as sql
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

import bot.telegram.delivery
from bot.app import build_dispatcher
from bot.storage.engine import session_factory
from bot.storage.people import grant_lead
from bot.storage.report_views import view_key
from reports.model import ReportFilter
from reports.periods import parse_period
from tests.datasets import VIP
from tests.support.dispatcher import Direct
from tests.support.settings import ADMIN, MSK, NOW, make_settings

STRANGER = 777
GROUP = -1001234500001


@pytest.fixture
async def harness(hand_counted: AsyncEngine) -> AsyncIterator[Direct]:
    settings = make_settings(hand_counted, token="123456:TEST", language="ru")
    dispatcher = build_dispatcher(settings, hand_counted, clock=lambda: NOW)
    yield Direct(dispatcher, token="123456:TEST")
    await dispatcher.emit_shutdown()


def csv_rows(document: Any) -> list[list[str]]:
    data = document.document.data
    assert data.startswith(b"\xef\xbb\xbf")
    text = data.decode("utf-8-sig")
    delimiter = ";" if text.startswith("period_start;") else ","
    return list(csv.reader(io.StringIO(text), delimiter=delimiter))


async def test_clients_sends_text_then_two_pies_then_the_csv(harness: Direct) -> None:
    await harness.send("/clients yesterday")
    assert harness.names() == ["sendMessage", "sendMediaGroup", "sendDocument"]
    text = harness.texts()[0]
    assert "10 Nov 2026 (Europe/Moscow)" in text
    assert "Clients who wrote: <b>4</b> · +3 (+300%)" in text
    assert "New: <b>2</b>" in text and "Repeat conversations: <b>5</b>" in text
    assert "Sales &amp; Partners &lt;VIP&gt;" in text and VIP not in text
    message = harness.session.sent("sendMessage")[0]
    buttons = [b.callback_data for row in message.reply_markup.inline_keyboard for b in row]
    assert buttons == [
        "rep:today::",
        "rep:yesterday::",
        "rep:week::",
        "rep:month::",
        "rep:last_month::",
        "hm:" + view_key(parse_period("yesterday", now=NOW, tz=MSK).current, ReportFilter()),
    ]
    media = harness.session.sent("sendMediaGroup")[0].media
    assert [item.media.filename for item in media] == ["channels.png", "apps.png", "trend.png"]
    # One caption for the album, on its first item, and one for the CSV.
    assert [item.caption for item in media] == ["Report charts · 10 Nov 2026 (Europe/Moscow)"] + [
        None
    ] * 2
    assert all(item.media.data.startswith(b"\x89PNG\r\n\x1a\n") for item in media)
    document = harness.session.sent("sendDocument")[0]
    assert document.document.filename == "clients_2026-11-10_2026-11-10.csv"
    assert document.caption == "Report data for spreadsheets · 10 Nov 2026 (Europe/Moscow)"
    rows = {(row[3], row[4], row[5]): (row[6], row[7]) for row in csv_rows(document)[1:]}
    assert rows[("contacted_clients", "", "")] == ("4", "1")
    assert rows[("new_clients", "", "")] == ("2", "1")
    assert rows[("repeat_appeals", "", "")] == ("5", "0")
    assert rows[("all_clients", "", "")] == ("5", "")
    assert rows[("app_clients", "telegram", VIP)] == ("2", "0")


async def test_russian_user_gets_russian_text_and_semicolon_csv(harness: Direct) -> None:
    await harness.send("/clients вчера channel=whatsapp", language="ru")
    text = harness.texts()[0]
    assert "10 ноября 2026" in text
    assert "Написавшие клиенты: <b>3</b>" in text
    assert "whatsapp" in text
    rows = csv_rows(harness.session.sent("sendDocument")[0])
    assert rows[0][0] == "period_start" and len(rows[0]) == 8


async def test_bad_period_gets_one_message_with_examples(harness: Direct) -> None:
    await harness.send("/clients 2026-02-30")
    assert harness.names() == ["sendMessage"]
    assert harness.texts() == [
        'Invalid date “2026-02-30”. Try: today, yesterday, week, month, last month, 7d, '
        "2026-11-05, 2026-11, 2026-11-01..2026-11-15"
    ]


async def test_bad_period_is_translated_for_russian_users(harness: Direct) -> None:
    await harness.send("/clients <b>&", language="ru")
    assert harness.names() == ["sendMessage"]
    (text,) = harness.texts()
    assert text.startswith("Неизвестный период")
    assert "&lt;b&gt;&amp;" in text


async def test_unknown_channel_lists_the_known_ones(harness: Direct) -> None:
    await harness.send("/clients week channel=fax")
    assert harness.texts() == [
        "Unknown channel “fax”. Known channels: email, telegram, vk, whatsapp"
    ]


async def test_empty_period_sends_text_and_csv_but_no_charts(harness: Direct) -> None:
    await harness.send("/clients 2026-11-05")
    assert harness.names() == ["sendMessage", "sendDocument"]
    assert "No conversations in this period." in harness.texts()[0]


async def test_stranger_gets_their_id_and_nothing_else(harness: Direct) -> None:
    await harness.send("/clients week", user_id=STRANGER)
    assert harness.names() == ["sendMessage"]
    assert "<code>777</code>" in harness.texts()[0]


async def test_button_press_answers_and_reruns_with_the_filter(harness: Direct) -> None:
    await harness.press("rep:yesterday:telegram:")
    assert harness.names() == [
        "answerCallbackQuery",
        "sendMessage",
        "sendMediaGroup",
        "sendDocument",
    ]
    assert "Clients who wrote: <b>2</b>" in harness.texts()[0]


async def test_forged_button_gets_an_alert(harness: Direct) -> None:
    await harness.press("rep:forever::")
    assert harness.names() == ["answerCallbackQuery"]
    assert harness.session.sent("answerCallbackQuery")[0].show_alert


async def test_stranger_button_press_is_refused(harness: Direct) -> None:
    await harness.press("rep:today::", user_id=STRANGER)
    assert harness.names() == ["answerCallbackQuery"]


async def test_lang_switches_replies_to_russian(harness: Direct) -> None:
    await harness.send("/lang ru")
    await harness.send("/help")
    assert harness.texts()[0] == "Язык: русский."
    assert "<b>Команды</b>" in harness.texts()[1]


async def test_help_in_english_defines_every_metric(harness: Direct) -> None:
    await harness.send("/help")
    (text,) = harness.texts()
    names = ("Clients who wrote", "New", "Returning", "Conversations", "Repeat conversations")
    for name in ("All clients", *names):
        assert f"\n{name}:" in text


async def test_channels_lists_apps_with_all_time_clients(harness: Direct) -> None:
    await harness.send("/channels")
    (text,) = harness.texts()
    assert "<b>whatsapp</b>: 3" in text
    assert "Sales &amp; Partners &lt;VIP&gt;: 2" in text
    assert "Группа ВК: 1" in text


async def test_unexpected_error_gets_an_incident_id_and_the_bot_goes_on(
    harness: Direct, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(bot.telegram.delivery, "build_report", broken)
    await harness.send("/clients week")
    (apology,) = harness.texts()
    assert apology.startswith("Sorry, something went wrong on our side. Incident id: <code>")
    monkeypatch.undo()
    await harness.send("/help")
    assert len(harness.texts()) == 2


async def test_a_statement_the_database_refuses_is_an_incident_not_a_retry(
    harness: Direct, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SQLite's driver raises its syntax errors as OperationalError, the class of a lock held
    # too long: once, a report query with a CASE without WHEN told users "retry in a minute"
    # every night for an hour, and was run twice each time.
    tries = 0

    async def wrong_sql(connection: AsyncConnection, *args: object) -> None:
        nonlocal tries
        tries += 1
        await connection.execute(sql("SELECT CASE ELSE 1 END"))

    monkeypatch.setattr(bot.telegram.delivery, "build_report", wrong_sql)
    await harness.send("/clients week")
    (apology,) = harness.texts()
    assert apology.startswith("Sorry, something went wrong on our side. Incident id: <code>")
    assert tries == 1


async def test_digest_is_added_listed_and_removed(harness: Direct) -> None:
    await harness.send("/digest daily 09:00")
    await harness.send('/digest weekly mon 08:30 app="Sales & Partners <VIP>"')
    await harness.send("/digest")
    await harness.send("/digest off 1")
    await harness.send("/digest")
    added, added_weekly, listing, removed, after = harness.texts()
    # Now is 2026-11-11 12:00 in Moscow: the next 09:00 is tomorrow.
    assert added == (
        "Digest added: yesterday's report, every day at 09:00 Europe/Moscow, first on 12 Nov."
    )
    assert added_weekly == (
        "Digest added: last week's report (app “Sales &amp; Partners &lt;VIP&gt;”), "
        "every Monday at 08:30 Europe/Moscow, first on 16 Nov."
    )
    assert listing == "\n".join(
        [
            "<b>Digests of this chat</b> (Europe/Moscow)",
            "1. every day at 09:00 — next: 12 Nov, 09:00",
            "2. every Monday at 08:30 (app “Sales &amp; Partners &lt;VIP&gt;”) — next: 16 Nov, "
            "08:30",
            "Remove one with /digest off N, or all with /digest off all.",
        ]
    )
    assert removed == "Digests removed: 1."
    assert after.splitlines()[1].startswith("1. every Monday at 08:30")


async def test_a_digest_confirmation_and_listing_are_in_russian_words(harness: Direct) -> None:
    await harness.send("/digest daily 09:00", language="ru")
    await harness.send("/digest weekly mon 09:00 channel=whatsapp", language="ru")
    await harness.send("/digest monthly 1 09:00", language="ru")
    await harness.send("/digest", language="ru")
    daily, weekly, monthly, listing = harness.texts()
    assert daily == (
        "Сводка добавлена: отчёт за вчера, ежедневно в 09:00 (Europe/Moscow), первая — 12 ноября."
    )
    assert weekly == (
        "Сводка добавлена: отчёт за прошлую неделю (канал whatsapp), еженедельно по "
        "понедельникам в 09:00 (Europe/Moscow), первая — 16 ноября."
    )
    assert monthly == (
        "Сводка добавлена: отчёт за прошлый месяц, ежемесячно 1-го числа в 09:00 "
        "(Europe/Moscow), первая — 1 декабря."
    )
    assert listing.splitlines()[1:4] == [
        "1. ежедневно в 09:00 — следующая: 12 ноября, 09:00",
        "2. еженедельно по понедельникам в 09:00 (канал whatsapp) — следующая: 16 ноября, 09:00",
        "3. ежемесячно 1-го числа в 09:00 — следующая: 1 декабря, 09:00",
    ]


async def test_the_same_digest_twice_is_refused_naming_the_one_there(harness: Direct) -> None:
    await harness.send("/digest daily 09:00")
    await harness.send("/digest weekly mon 09:00 channel=whatsapp")
    await harness.send("/digest weekly mon 09:00 channel=WhatsApp")
    await harness.send("/digest еженедельно пн 09:00 channel=whatsapp", language="ru")
    # Another filter or another time is another digest.
    await harness.send("/digest weekly mon 09:00")
    await harness.send("/digest")
    texts = harness.texts()
    assert texts[2] == (
        "This chat already has that digest: 2. every Monday at 09:00 (channel whatsapp). "
        "To change it, remove it first with /digest off 2."
    )
    assert texts[3] == (
        "В этом чате уже есть такая сводка: 2. еженедельно по понедельникам в 09:00 "
        "(канал whatsapp). Чтобы изменить её, сначала удалите её: /digest off 2."
    )
    assert texts[4].startswith("Digest added: last week's report, every Monday at 09:00")
    assert [line.split(" — ")[0] for line in texts[5].splitlines()[1:4]] == [
        "1. every day at 09:00",
        "2. every Monday at 09:00 (channel whatsapp)",
        "3. every Monday at 09:00",
    ]


async def test_bad_digests_are_explained_and_nothing_is_stored(harness: Direct) -> None:
    await harness.send("/digest hourly 09:00")
    await harness.send("/digest daily 25:00")
    await harness.send("/digest daily 09:00 channel=fax")
    await harness.send("/digest off 7")
    await harness.send("/digest")
    texts = harness.texts()
    assert texts[0].startswith("Unknown digest “hourly 09:00”. Try: /digest daily 09:00")
    assert texts[1] == "Hour 25 in “25:00” is out of range: use 00 to 23."
    assert texts[2].startswith("Unknown channel “fax”. Known channels:")
    assert texts[3] == "Usage: /digest off N (a number from /digest) or /digest off all."
    assert texts[4].startswith("No digests in this chat.")


async def test_timezone_changes_the_local_time_of_digests_and_reports(harness: Direct) -> None:
    await harness.send("/timezone Asia/Yekaterinburg")
    await harness.send("/timezone Mars/Base")
    await harness.send("/digest daily 09:00")
    await harness.send("/clients yesterday")
    zone_set, bad_zone, added, report = harness.texts()
    assert zone_set == "Timezone: Asia/Yekaterinburg. Local time: 11 Nov, 14:00."
    assert bad_zone == "Unknown timezone “Mars/Base”. Try Europe/Moscow or Asia/Yekaterinburg."
    assert added == (
        "Digest added: yesterday's report, every day at 09:00 Asia/Yekaterinburg, first on 12 Nov."
    )
    # Yekaterinburg is two hours ahead of Moscow: "yesterday" there starts at 22:00 Moscow
    # time, so the first hours of the hand-counted day fall outside it.
    assert "10 Nov 2026 (Asia/Yekaterinburg)" in report


async def test_leads_get_reports_but_cannot_manage_digests(
    harness: Direct, sqlite_engine: AsyncEngine
) -> None:
    lead = 555
    async with session_factory(sqlite_engine)() as session:
        await grant_lead(session, lead, granted_by=ADMIN, name="Lead")
        await session.commit()
    await harness.send("/digest daily 09:00", user_id=lead)
    await harness.send("/clients yesterday", user_id=lead)
    texts = harness.texts()
    assert texts[0] == "Only admins can do that."
    assert "Clients who wrote: <b>4</b>" in texts[1]


@pytest.mark.parametrize(
    ("command", "chat_id"),
    [
        ("/grant 555", None),
        ("/revoke 555", None),
        ("/lang ru", None),
        ("/timezone Asia/Yekaterinburg", None),
        ("/digest daily 09:00", None),
        ("/digest off all", None),
        ("/enable", GROUP),
        ("/disable", GROUP),
    ],
)
async def test_a_change_is_confirmed_only_after_its_commit_succeeded(
    harness: Direct, monkeypatch: pytest.MonkeyPatch, command: str, chat_id: int | None
) -> None:
    async def disk_full(self: AsyncSession) -> None:
        raise OperationalError("COMMIT", None, Exception("disk full"))

    monkeypatch.setattr(AsyncSession, "commit", disk_full)
    await harness.send(command, chat_id=chat_id)
    assert harness.texts() == ["Temporary problem with the database: please retry in a minute."]
    monkeypatch.undo()
    # Nothing of the change was kept either.
    await harness.send("/timezone")
    await harness.send("/digest")
    assert harness.texts()[1:] == [
        "Timezone: Europe/Moscow. Local time: 11 Nov, 12:00.",
        "No digests in this chat. Add one: /digest daily 09:00, /digest weekly mon 09:00 "
        "or /digest monthly 1 09:00.",
    ]


ADMIN_HELP = [
    "<b>Admin commands</b>",
    "/digest daily 09:00, /digest weekly mon 09:00, /digest monthly 1 09:00 "
    '[channel=NAME] [app="NAME"]: a scheduled report to this chat',
    "/digest: this chat's digests; /digest off N, /digest off all, /digest resume N",
    "/timezone [Europe/Moscow]: this chat's timezone",
    "/grant USER_ID, /revoke USER_ID (or as a reply to their message): the lead role",
    "/users: people and their roles",
    "/enable, /disable: let a group use the bot, or stop it there",
    "/sources: each desk source with its newest event, events today and refusals",
    "",
    "<b>Periods</b> (default: week)",
]


async def make_lead(engine: AsyncEngine, user_id: int) -> None:
    async with session_factory(engine)() as session:
        await grant_lead(session, user_id, granted_by=ADMIN, name=None)
        await session.commit()


async def test_help_lists_the_admin_commands_with_their_syntax_to_admins_only(
    harness: Direct, hand_counted: AsyncEngine
) -> None:
    await make_lead(hand_counted, 500)
    await harness.send("/help")
    await harness.send("/start")
    await harness.send("/help", user_id=500)
    await harness.send("/start", user_id=500)
    await harness.send("/help", user_id=STRANGER)
    admin_help, admin_start, lead_help, lead_start, stranger_help = harness.texts()
    lines = admin_help.split("\n")
    # After the commands everyone with a role has, before the period grammar.
    assert lines[0] == "<b>Commands</b>"
    assert lines[lines.index(ADMIN_HELP[0]) :][: len(ADMIN_HELP)] == ADMIN_HELP
    assert admin_start.split("\n\n", 1)[1] == admin_help
    for text in (lead_help, lead_start, stranger_help):
        assert "Admin commands" not in text and "/grant" not in text
    assert lead_help.startswith("<b>Commands</b>\n/clients [period]")
    assert lead_start.endswith(lead_help)
    assert "<b>Periods</b> (default: week)" in lead_help


async def test_help_for_an_admin_in_russian(harness: Direct) -> None:
    await harness.send("/help", language="ru")
    (text,) = harness.texts()
    lines = text.split("\n")
    assert lines[0] == "<b>Команды</b>"
    assert lines[lines.index("<b>Команды администратора</b>") :][:4] == [
        "<b>Команды администратора</b>",
        "/digest daily 09:00, /digest weekly mon 09:00, /digest monthly 1 09:00 "
        '[channel=КАНАЛ] [app="ПРИЛОЖЕНИЕ"]: отчёт в этот чат по расписанию',
        "/digest: сводки этого чата; /digest off N, /digest off all, /digest resume N",
        "/timezone [Europe/Moscow]: часовой пояс этого чата",
    ]


async def test_plain_text_gets_a_one_line_hint_in_private_chats_only(
    harness: Direct, hand_counted: AsyncEngine
) -> None:
    await make_lead(hand_counted, 500)
    await harness.send("how many clients this week?")
    await harness.send("сколько клиентов?", language="ru")
    await harness.send("hello", user_id=500)
    # Someone without a role, and chatter in a group, get no answer.
    await harness.send("hello", user_id=STRANGER)
    await harness.send("hello", chat_id=GROUP)
    assert harness.texts() == [
        "I answer commands: try /clients week, or /help for all of them.",
        "Я отвечаю на команды: попробуйте /clients неделя или /help — там все команды.",
        "I answer commands: try /clients week, or /help for all of them.",
    ]


async def test_a_strangers_start_gets_the_refusal_once_an_hour(harness: Direct) -> None:
    await harness.send("/start", user_id=STRANGER)
    await harness.send("/start", user_id=STRANGER)
    assert harness.texts() == [
        "Sorry, this bot shows client data only to people an admin allowed. Your Telegram id "
        f"is <code>{STRANGER}</code>: send it to an admin."
    ]


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        ("en", 'A name with spaces goes in quotes: app="R&amp;D &lt;beta&gt; &amp; тест"'),
        (
            "ru",
            'Имя с пробелами или знаками пишется в кавычках: app="R&amp;D &lt;beta&gt; '
            '&amp; тест"',
        ),
    ],
)
async def test_an_unquoted_app_name_is_told_to_be_quoted_not_blamed_on_the_period(
    harness: Direct, language: str, expected: str
) -> None:
    await harness.send("/clients week app=R&D <beta> & тест", language=language)
    assert harness.texts() == [expected]


async def test_a_report_whose_buttons_cannot_be_stored_goes_without_by_hour(
    harness: Direct, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def locked(*_args: Any, **_kwargs: Any) -> str:
        raise OperationalError("INSERT", {}, Exception("database is locked"))

    monkeypatch.setattr(bot.telegram.delivery, "remember_view", locked)
    await harness.send("/clients yesterday")
    assert harness.names() == ["sendMessage", "sendMediaGroup", "sendDocument"]
    message = harness.session.sent("sendMessage")[0]
    buttons = [b.callback_data for row in message.reply_markup.inline_keyboard for b in row]
    assert buttons == [f"rep:{code}::" for code in ("today", "yesterday", "week", "month")] + [
        "rep:last_month::"
    ]
