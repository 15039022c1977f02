"""End-to-end: the application `python -m bot` runs, polling a fake Bot API server on 127.0.0.1.

Each test builds the real Application (outbound retry and pacing middlewares, i18n, DB session,
admin-only access, routers, start-up hook) with `build_application`, runs the real polling loop
over the real aiohttp session against `tests.fake_telegram.FakeTelegram`, injects updates and
waits on the fake's events (never on sleeps). The clock is frozen at 2026-11-11 12:00 Moscow, so
"yesterday" is the hand-counted day 2026-11-10 of `tests/datasets.py`.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import date, timedelta
from itertools import pairwise
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

import bot.telegram.delivery
from bot.app import build_application
from bot.ingest.demo import load_demo
from bot.storage.people import Role
from bot.telegram.commands import command_menu
from reports.csv_export import HEADER
from reports.i18n import format_number
from reports.metrics import build_report
from reports.model import AppKey, Report, ReportFilter
from reports.periods import parse_period
from reports.trend import build_trend
from tests.datasets import VIP, VK_GROUP
from tests.fake_telegram import FakeTelegram, image_size
from tests.support.polling import SENDS, Live, polling
from tests.support.settings import ADMIN, MSK, NOW, make_settings

TOKEN = "123456:TEST-token"
STRANGER = 777
BOM = b"\xef\xbb\xbf"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
REPORT = ["sendMessage", "sendMediaGroup", "sendDocument"]
STARTUP_AND_POLLING = frozenset({"setMyCommands", "getMe", "getUpdates"})
INCIDENT = re.compile(
    r"Sorry, something went wrong on our side\. Incident id: <code>([0-9a-f]{8})</code>\."
)

# The hand-counted day 2026-11-10 (Moscow) and the day before it, as the CSV must list them.
YESTERDAY_BOUNDS = ["2026-11-10T00:00:00+03:00", "2026-11-11T00:00:00+03:00", "Europe/Moscow"]
YESTERDAY_ROWS = [
    ["all_clients", "", "", "5", ""],
    ["contacted_clients", "", "", "4", "1"],
    ["new_clients", "", "", "2", "1"],
    ["returning_clients", "", "", "2", "0"],
    ["appeals", "", "", "7", "1"],
    ["repeat_appeals", "", "", "5", "0"],
    ["channel_clients", "telegram", "", "2", "0"],
    ["channel_clients", "vk", "", "1", "0"],
    ["channel_clients", "whatsapp", "", "3", "1"],
    ["app_clients", "telegram", VIP, "2", "0"],
    ["app_clients", "vk", VK_GROUP, "1", "0"],
    ["app_clients", "whatsapp", "Sales", "2", "0"],
    ["app_clients", "whatsapp", "Support", "1", "1"],
]
# The same day hour by hour (appeals, contacted, new), counted by hand; 2026-11-09 had only C's
# first appeal, at 23:59:59.
YESTERDAY_HOURS = {
    0: (1, 1, 1),
    10: (1, 1, 0),
    11: (1, 1, 0),
    12: (1, 1, 1),
    13: (1, 1, 0),
    15: (1, 1, 0),
    23: (1, 1, 0),
}
DAY_BEFORE_HOURS = {23: (1, 1, 1)}
DAILY_METRICS = ("daily_appeals", "daily_contacted_clients", "daily_new_clients")


def hour_rows(
    day: str, hours: dict[int, tuple[int, int, int]], before: dict[int, tuple[int, int, int]]
) -> list[list[str]]:
    """The trend rows of a single Moscow day (24 hours, each with the hour before's values)."""
    next_day = (date.fromisoformat(day) + timedelta(days=1)).isoformat()
    ends = [f"{day}T{hour:02d}:00:00+03:00" for hour in range(1, 24)]
    ends.append(f"{next_day}T00:00:00+03:00")
    starts = [f"{day}T00:00:00+03:00", *ends[:-1]]
    return [
        [
            starts[hour],
            ends[hour],
            "Europe/Moscow",
            metric,
            "",
            "",
            str(hours.get(hour, (0, 0, 0))[index]),
            str(before.get(hour, (0, 0, 0))[index]),
        ]
        for index, metric in enumerate(DAILY_METRICS)
        for hour in range(24)
    ]


YESTERDAY_CSV = [
    *(YESTERDAY_BOUNDS + row for row in YESTERDAY_ROWS),
    *hour_rows("2026-11-10", YESTERDAY_HOURS, DAY_BEFORE_HOURS),
]


# -- harness -----------------------------------------------------------------------------------


@asynccontextmanager
async def running(engine: AsyncEngine, **fake: Any) -> AsyncIterator[Live]:
    """The application with a clock frozen at NOW, polling a fresh fake built with `fake`."""
    async with FakeTelegram(token=TOKEN, **fake) as tg:
        settings = make_settings(engine, token=TOKEN, api_url=tg.base_url)
        app = build_application(settings, engine, clock=lambda: NOW)
        async with polling(tg, app.bot, app.dispatcher) as live:
            yield live


def parse_csv(data: bytes, delimiter: str = ",") -> list[list[str]]:
    assert data.startswith(BOM), data[:16]
    text = data.removeprefix(BOM).decode("utf-8")
    assert text.endswith("\r\n")
    return list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))


def expected_rows(report: Report) -> list[list[str]]:
    """The CSV rows (after the header) a report must produce, straight from the model."""
    start = report.period.start.isoformat(timespec="seconds")
    end = report.period.end.isoformat(timespec="seconds")
    bounds = [start, end, report.period.tz_name]
    now, before = report.current, report.previous
    rows = [[*bounds, "all_clients", "", "", str(report.all_clients), ""]]
    for metric in (
        "contacted_clients",
        "new_clients",
        "returning_clients",
        "appeals",
        "repeat_appeals",
    ):
        rows.append(
            [*bounds, metric, "", "", str(getattr(now, metric)), str(getattr(before, metric))]
        )
    for channel in sorted(now.channel_clients.keys() | before.channel_clients.keys()):
        rows.append(
            [
                *bounds,
                "channel_clients",
                channel,
                "",
                str(now.channel_clients.get(channel, 0)),
                str(before.channel_clients.get(channel, 0)),
            ]
        )
    for app in sorted(
        now.app_clients.keys() | before.app_clients.keys(), key=lambda k: (k.channel, k.name)
    ):
        rows.append(
            [
                *bounds,
                "app_clients",
                app.channel,
                app.name,
                str(now.app_clients.get(app, 0)),
                str(before.app_clients.get(app, 0)),
            ]
        )
    trend = report.trend
    for metric, attribute in zip(
        DAILY_METRICS, ("appeals", "contacted_clients", "new_clients"), strict=True
    ):
        for index, bucket in enumerate(trend.current):
            prior = trend.previous[index] if index < len(trend.previous) else None
            rows.append(
                [
                    bucket.start.isoformat(timespec="seconds"),
                    bucket.end.isoformat(timespec="seconds"),
                    report.period.tz_name,
                    metric,
                    "",
                    "",
                    str(getattr(bucket, attribute)),
                    "" if prior is None else str(getattr(prior, attribute)),
                ]
            )
    return rows


# -- tests -------------------------------------------------------------------------------------


async def test_week_on_demo_data_sends_text_pies_and_a_csv_equal_to_the_metrics(
    engine: AsyncEngine,
) -> None:
    await load_demo(engine, now=NOW)
    periods = parse_period("week", now=NOW, tz=MSK)
    async with engine.connect() as connection:
        report = await build_report(connection, periods, ReportFilter())
        report = replace(report, trend=await build_trend(connection, periods, ReportFilter()))
    assert report.current.appeals > 0 and report.previous.appeals > 0  # a meaningful check
    # Monday to Wednesday noon against the week before: three days each.
    assert [bucket.start.day for bucket in report.trend.current] == [9, 10, 11]
    assert [bucket.start.day for bucket in report.trend.previous] == [2, 3, 4]

    async with running(engine) as live:
        update = live.command("/clients week")
        await live.tg.wait_for("sendDocument")
        await live.settle(update)

        assert live.sent_methods(ok_only=False) == REPORT
        assert live.tg.errors() == []
        text_call, album_call, document_call = live.sends()

        # The text: HTML the fake parsed, with the numbers of build_report.
        assert text_call.params["chat_id"] == str(ADMIN)
        assert text_call.params["parse_mode"] == "HTML"
        raw = text_call.params["text"]
        assert "Period: 9 Nov, 00:00 → 11 Nov 2026, 12:00 (Europe/Moscow)" in raw
        assert f"All clients: <b>{format_number(report.all_clients, 'en')}</b>\n" in raw
        now = report.current
        for label, value in (
            ("Clients who wrote", now.contacted_clients),
            ("New", now.new_clients),
            ("Returning", now.returning_clients),
            ("Conversations", now.appeals),
            ("Repeat conversations", now.repeat_appeals),
        ):
            assert f"\n{label}: <b>{format_number(value, 'en')}</b> · " in raw
        assert text_call.result["text"].startswith("Clients report\n")

        # Two valid PNG pies and the trend in one album, pies first.
        media = album_call.json("media")
        assert [item["type"] for item in media] == ["photo", "photo", "photo"]
        pies = album_call.media_files()
        assert [pie.filename for pie in pies if pie] == ["channels.png", "apps.png", "trend.png"]
        for pie in pies:
            assert pie is not None and pie.data.startswith(PNG_SIGNATURE)
            assert image_size(pie.data) == (1200, 900)
        assert [message["photo"][0]["width"] for message in album_call.result] == [
            1200,
            1200,
            1200,
        ]

        # The CSV: named by the period's days, equal row by row to build_report.
        document = document_call.file("document")
        assert document is not None
        assert document.filename == "clients_2026-11-09_2026-11-11.csv"
        rows = parse_csv(document.data, ",")
        assert rows[0] == list(HEADER)
        assert rows[1:] == expected_rows(report)
        metrics = Counter(row[3] for row in rows[1:])
        assert metrics["channel_clients"] == 7 and metrics["app_clients"] == 9
        vip = AppKey(channel="telegram", name=VIP)
        assert now.app_clients[vip] > 0
        assert [row[6:] for row in rows[1:] if row[3:6] == ["app_clients", "telegram", VIP]] == [
            [str(now.app_clients[vip]), str(report.previous.app_clients.get(vip, 0))]
        ]


async def test_yesterday_on_the_hand_counted_day_gives_exact_numbers(
    hand_counted: AsyncEngine,
) -> None:
    async with running(hand_counted) as live:
        update = live.command("/clients yesterday")
        await live.tg.wait_for("sendDocument")
        await live.settle(update)

        assert live.sent_methods(ok_only=False) == REPORT
        assert live.tg.errors() == []
        text_call, _, document_call = live.sends()
        assert text_call.params["text"] == "\n".join(
            [
                "<b>Clients report</b>",
                "Period: 10 Nov 2026 (Europe/Moscow)",
                "Data up to 00:00 (12 hours ago)",
                "Compared with <i>9 Nov</i>",
                "",
                "All clients: <b>5</b>",
                "Clients who wrote: <b>4</b> · +3 (+300%)",
                "New: <b>2</b> · +1 (+100%)",
                "Returning: <b>2</b> · +2 (—)",
                "Conversations: <b>7</b> · +6 (+600%)",
                "Repeat conversations: <b>5</b> · +5 (—)",
                "",
                "Clients by channel:",
                "whatsapp: <b>3</b> · +200%",
                "telegram: <b>2</b> · —",
                "vk: <b>1</b> · —",
                "Top apps by clients:",
                "telegram · Sales &amp; Partners &lt;VIP&gt;: <b>2</b> · —",
                "whatsapp · Sales: <b>2</b> · —",
                "vk · Группа ВК: <b>1</b> · —",
                "<i>A client who wrote through several channels is counted in each of them, so "
                "channel figures add up to more than the clients who wrote.</i>",
            ]
        )
        # What the chat shows after Telegram parsed the HTML: the name as it is, its count bold.
        shown = text_call.result
        assert "\ntelegram · Sales & Partners <VIP>: 2 · —\n" in shown["text"]
        bold = [e for e in shown["entities"] if e["type"] == "bold"]
        offset = shown["text"].index("telegram · Sales & Partners <VIP>: ") + len(
            "telegram · Sales & Partners <VIP>: "
        )
        assert any(e["offset"] == offset and e["length"] == 1 for e in bold)

        document = document_call.file("document")
        assert document is not None
        assert document.filename == "clients_2026-11-10_2026-11-10.csv"
        rows = parse_csv(document.data, ",")
        assert rows == [list(HEADER), *YESTERDAY_CSV]
        assert f",{VIP},".encode() in document.data


async def test_an_empty_period_sends_the_text_and_the_csv_but_no_pies(
    hand_counted: AsyncEngine,
) -> None:
    async with running(hand_counted) as live:
        update = live.command("/clients 2026-11-05")
        await live.tg.wait_for("sendDocument")
        await live.settle(update)

        assert live.sent_methods(ok_only=False) == ["sendMessage", "sendDocument"]
        assert live.tg.errors() == []
        text_call, document_call = live.sends()
        assert text_call.result["text"] == "\n".join(
            [
                "Clients report",
                "Period: 5 Nov 2026 (Europe/Moscow)",
                "Data up to 00:00 (12 hours ago)",
                "",
                "All clients: 5",
                "No conversations in this period.",
            ]
        )
        document = document_call.file("document")
        assert document is not None
        assert document.filename == "clients_2026-11-05_2026-11-05.csv"
        bounds = ["2026-11-05T00:00:00+03:00", "2026-11-06T00:00:00+03:00", "Europe/Moscow"]
        assert parse_csv(document.data, ",") == [
            list(HEADER),
            [*bounds, "all_clients", "", "", "5", ""],
            *(
                [*bounds, metric, "", "", "0", "0"]
                for metric in (
                    "contacted_clients",
                    "new_clients",
                    "returning_clients",
                    "appeals",
                    "repeat_appeals",
                )
            ),
            # No appeals on 5 or 4 November: every hour is there, with zeros.
            *hour_rows("2026-11-05", {}, {}),
        ]


@pytest.mark.parametrize(
    ("command", "reply"),
    [
        (
            "/clients 2026-02-30",
            'Invalid date “2026-02-30”. Try: today, yesterday, week, month, last month, 7d, '
            "2026-11-05, 2026-11, 2026-11-01..2026-11-15",
        ),
        (
            "/clients week channel=fax",
            "Unknown channel “fax”. Known channels: email, telegram, vk, whatsapp",
        ),
    ],
    ids=["bad-period", "bad-filter"],
)
async def test_a_bad_request_gets_one_explanation_and_nothing_else(
    hand_counted: AsyncEngine, command: str, reply: str
) -> None:
    async with running(hand_counted) as live:
        update = live.command(command)
        await live.settle(update)

        assert live.sent_methods(ok_only=False) == ["sendMessage"]
        assert live.tg.errors() == []
        (message,) = live.tg.sent_messages()
        assert message["chat"]["id"] == ADMIN
        assert message["text"] == reply
        assert "reply_markup" not in message


async def test_pressing_yesterday_under_a_report_answers_and_sends_a_new_report(
    hand_counted: AsyncEngine,
) -> None:
    async with running(hand_counted) as live:
        first = live.command("/clients week")
        await live.tg.wait_for("sendDocument")
        await live.settle(first)
        report_message = live.tg.sent_messages()[0]
        assert report_message["text"].startswith("Clients report\nPeriod: 9 Nov, 00:00 → 11 Nov")
        buttons = {
            button["text"]: button["callback_data"]
            for row in report_message["reply_markup"]["inline_keyboard"]
            for button in row
        }
        assert list(buttons) == ["Today", "Yesterday", "Week", "Month", "Last month", "By hour"]
        before = len(live.tg.calls())

        press = live.tg.press_button(
            buttons["Yesterday"],
            chat_id=ADMIN,
            user_id=ADMIN,
            message_id=report_message["message_id"],
        )
        await live.tg.wait_for("sendDocument", 2)
        await live.settle(press)

        after = [
            c for c in live.tg.calls()[before:] if c.method in SENDS | {"answerCallbackQuery"}
        ]
        assert [c.method for c in after] == ["answerCallbackQuery", *REPORT]
        assert all(c.ok for c in after)
        assert after[0].params["callback_query_id"] == "cbq-1"
        assert live.tg.errors() == []
        assert live.sent_methods() == REPORT * 2
        second = after[1].result
        assert second["text"].startswith(
            "Clients report\nPeriod: 10 Nov 2026 (Europe/Moscow)\n"
            "Data up to 00:00 (12 hours ago)\n"
        )
        assert "\nClients who wrote: 4 · +3 (+300%)\n" in second["text"]
        # The same re-run buttons; "By hour" stands for the new report's period.
        rows = report_message["reply_markup"]["inline_keyboard"]
        assert second["reply_markup"]["inline_keyboard"][:2] == rows[:2]
        assert second["reply_markup"]["inline_keyboard"][2] != rows[2]
        document = after[3].file("document")
        assert document is not None
        assert document.filename == "clients_2026-11-10_2026-11-10.csv"


async def test_a_stranger_is_refused_with_their_id_and_sees_no_data(
    hand_counted: AsyncEngine,
) -> None:
    async with running(hand_counted) as live:
        update = live.command("/clients yesterday", user_id=STRANGER)
        await live.settle(update)
        # Asking again at once is not answered a second time.
        again = live.command("/clients week", user_id=STRANGER)
        await live.settle(again)

        # Nothing but the refusal: no "sending photo" action, no report part, no answer else.
        assert [c.method for c in live.tg.calls() if c.method not in STARTUP_AND_POLLING] == [
            "sendMessage"
        ]
        (refusal,) = live.tg.calls("sendMessage")
        assert refusal.params["chat_id"] == str(STRANGER)
        assert refusal.params["text"] == (
            "Sorry, this bot shows client data only to people an admin allowed. "
            "Your Telegram id is <code>777</code>: send it to an admin."
        )
        assert live.tg.errors() == []


async def test_an_unexpected_error_gets_an_incident_id_and_the_bot_goes_on(
    hand_counted: AsyncEngine, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(bot.telegram.delivery, "build_report", broken)
    async with running(hand_counted) as live:
        failing = live.command("/clients week")
        await live.settle(failing)
        (apology,) = live.tg.calls("sendMessage")
        match = INCIDENT.fullmatch(apology.params["text"])
        assert match is not None, apology.params["text"]
        assert apology.ok and apology.params["chat_id"] == str(ADMIN)
        logged = [r for r in caplog.records if r.name == "handlers.errors"]
        assert [r.getMessage() for r in logged] == [
            f"incident {match[1]} while handling update {failing}"
        ]
        assert logged[0].exc_info is not None and logged[0].exc_info[0] is RuntimeError

        following = live.command("/help")
        await live.tg.wait_for("sendMessage", 2)
        await live.settle(following)
        assert live.sent_methods(ok_only=False) == ["sendMessage", "sendMessage"]
        assert live.tg.sent_messages()[1]["text"].startswith("Commands\n/clients [period]")
        assert live.tg.errors() == []


async def test_startup_sets_the_commands_in_every_language_and_calls_get_me_first(
    sqlite_engine: AsyncEngine,
) -> None:
    async with running(sqlite_engine) as live:
        # A long poll is now waiting (calls are listed once answered): all that came before it.
        # The default menu, group chats' menu, and the admin's own chat, each in ru, en and
        # the LANGUAGE setting's menu for everyone else.
        assert [c.method for c in live.tg.calls()] == ["setMyCommands"] * 9 + ["getMe"]
        assert [
            (
                json.loads(c.params.get("scope", '{"type": "default"}')),
                c.params.get("language_code", ""),
            )
            for c in live.tg.calls("setMyCommands")
        ] == [
            (scope, language)
            for scope in (
                {"type": "default"},
                {"type": "all_group_chats"},
                {"type": "chat", "chat_id": ADMIN},
            )
            for language in ("ru", "en", "")
        ]
        assert live.tg.errors() == []

        def listed(language: str, role: Role | None = None) -> list[dict[str, str]]:
            return [
                {"command": command.command, "description": command.description}
                for command in command_menu(language, role)
            ]

        admin_chat = {"type": "chat", "chat_id": ADMIN}
        assert live.tg.commands(language_code="ru") == listed("ru")
        assert live.tg.commands(language_code="en") == listed("en")
        assert live.tg.commands() == listed("en")  # the LANGUAGE setting of make_settings
        assert [c["command"] for c in live.tg.commands()] == ["help", "lang"]
        groups = live.tg.commands({"type": "all_group_chats"})
        assert [c["command"] for c in groups] == ["clients", "channels", "help", "lang"]
        assert live.tg.commands(admin_chat, "ru") == listed("ru", "admin")
        assert [c["command"] for c in live.tg.commands(admin_chat)] == [
            "clients",
            "channels",
            "digest",
            "timezone",
            "grant",
            "revoke",
            "users",
            "enable",
            "disable",
            "sources",
            "help",
            "lang",
        ]
        # The Russian menu really is translated.
        assert live.tg.commands(admin_chat, "ru")[0]["description"].startswith("Отчёт")
        assert live.sends() == []


async def test_a_russian_user_gets_russian_text_and_a_semicolon_csv_with_bom(
    hand_counted: AsyncEngine,
) -> None:
    async with running(hand_counted) as live:
        update = live.command("/clients вчера", language_code="ru")
        await live.tg.wait_for("sendDocument")
        await live.settle(update)

        assert live.sent_methods(ok_only=False) == REPORT
        assert live.tg.errors() == []
        text_call, _, document_call = live.sends()
        assert text_call.params["text"] == "\n".join(
            [
                "<b>Отчёт по клиентам</b>",
                "Период: 10 ноября 2026 (Europe/Moscow)",
                "Данные до 00:00 (12 часов назад)",
                "Сравнение с <i>9 ноября</i>",
                "",
                "Клиенты всего: <b>5</b>",
                "Написавшие клиенты: <b>4</b> · +3 (+300\u00a0%)",
                "Новые: <b>2</b> · +1 (+100\u00a0%)",
                "Вернувшиеся: <b>2</b> · +2 (—)",
                "Обращения: <b>7</b> · +6 (+600\u00a0%)",
                "Повторные обращения: <b>5</b> · +5 (—)",
                "",
                "Клиенты по каналам:",
                "whatsapp: <b>3</b> · +200\u00a0%",
                "telegram: <b>2</b> · —",
                "vk: <b>1</b> · —",
                "Самые популярные приложения:",
                "telegram · Sales &amp; Partners &lt;VIP&gt;: <b>2</b> · —",
                "whatsapp · Sales: <b>2</b> · —",
                "vk · Группа ВК: <b>1</b> · —",
                "<i>Клиент, писавший в несколько каналов, учтён в каждом из них, поэтому сумма по "
                "каналам больше числа написавших.</i>",
            ]
        )
        buttons = json.loads(text_call.params["reply_markup"])["inline_keyboard"]
        assert [b["text"] for row in buttons for b in row] == [
            "Сегодня",
            "Вчера",
            "Неделя",
            "Месяц",
            "Прошлый месяц",
            "По часам",
        ]
        document = document_call.file("document")
        assert document is not None
        assert document.data.startswith(BOM + b"period_start;period_end;timezone;metric;")
        assert parse_csv(document.data, ";") == [list(HEADER), *YESTERDAY_CSV]
        assert b"," not in document.data


async def test_a_429_on_a_reply_is_retried_and_the_reply_arrives_once(
    hand_counted: AsyncEngine,
) -> None:
    async with running(hand_counted) as live:
        live.tg.fail_next("sendMessage", status=429, retry_after=1)
        update = live.command("/help")
        await live.tg.wait_for("sendMessage", 2)
        await live.settle(update)

        attempts = live.tg.calls("sendMessage")
        assert [c.status for c in attempts] == [429, 200]
        assert attempts[0].response == {
            "ok": False,
            "error_code": 429,
            "description": "Too Many Requests: retry after 1",
            "parameters": {"retry_after": 1},
        }
        assert attempts[1].at - attempts[0].at >= 1.0  # it waited retry_after
        assert attempts[0].params == attempts[1].params
        assert live.ok_counts()["sendMessage"] == 1
        (reply,) = live.tg.sent_messages(ADMIN)
        assert reply["text"].startswith("Commands\n")
        assert live.tg.errors() == [attempts[0]]


async def test_two_500s_on_the_csv_are_retried_and_the_csv_arrives_once(
    hand_counted: AsyncEngine,
) -> None:
    async with running(hand_counted) as live:
        live.tg.fail_next("sendDocument", status=500, times=2)
        update = live.command("/clients yesterday")
        await live.tg.wait_for("sendDocument", 3)
        await live.settle(update)

        attempts = live.tg.calls("sendDocument")
        assert [c.status for c in attempts] == [500, 500, 200]
        assert live.tg.errors() == attempts[:2]
        counts = live.ok_counts()
        assert (counts["sendMessage"], counts["sendMediaGroup"], counts["sendDocument"]) == (
            1,
            1,
            1,
        )
        assert live.sent_methods() == REPORT
        documents = [m for m in live.tg.sent_messages(ADMIN) if "document" in m]
        assert [d["document"]["file_name"] for d in documents] == [
            "clients_2026-11-10_2026-11-10.csv"
        ]
        document = attempts[-1].file("document")
        assert document is not None
        assert parse_csv(document.data, ",")[1:] == YESTERDAY_CSV


async def test_channels_lists_apps_with_their_names_escaped(hand_counted: AsyncEngine) -> None:
    async with running(hand_counted) as live:
        update = live.command("/channels")
        await live.settle(update)

        assert live.sent_methods(ok_only=False) == ["sendMessage"]
        assert live.tg.errors() == []
        (call,) = live.tg.calls("sendMessage")
        assert (
            "\u00a0\u00a0• Sales &amp; Partners &lt;VIP&gt;: 2" in call.params["text"].splitlines()
        )
        assert call.result["text"] == "\n".join(
            [
                "Channels and apps (clients, all time)",
                "email: 1",
                "\u00a0\u00a0• Inbox: 1",
                "telegram: 2",
                f"\u00a0\u00a0• {VIP}: 2",
                "vk: 1",
                f"\u00a0\u00a0• {VK_GROUP}: 1",
                "whatsapp: 3",
                "\u00a0\u00a0• Sales: 2",
                "\u00a0\u00a0• Support: 1",
            ]
        )


async def test_one_full_report_to_a_chat_keeps_telegram_s_per_chat_pace(
    hand_counted: AsyncEngine,
) -> None:
    # The fake answers 429 to any send that breaks a limit, as Telegram would.
    async with running(hand_counted, enforce_rate_limits=True) as live:
        update = live.command("/clients yesterday")
        await live.tg.wait_for("sendDocument")
        await live.settle(update)

        assert live.sent_methods(ok_only=False) == REPORT
        assert live.tg.errors() == []
        assert live.tg.rate_violations() == []
        times = [c.at for c in live.sends()]
        assert all(later - earlier >= 1.0 for earlier, later in pairwise(times))


async def test_an_unexpected_error_after_a_button_press_still_gets_the_apology(
    hand_counted: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    async with running(hand_counted) as live:
        first = live.command("/clients 2026-11-05")
        await live.tg.wait_for("sendDocument")
        await live.settle(first)
        report_message = live.tg.sent_messages()[0]
        before = len(live.tg.calls())

        monkeypatch.setattr(bot.telegram.delivery, "build_report", broken)
        press = live.tg.press_button(
            "rep:yesterday::",
            chat_id=ADMIN,
            user_id=ADMIN,
            message_id=report_message["message_id"],
        )
        await live.settle(press)

        after = [
            c for c in live.tg.calls()[before:] if c.method in SENDS | {"answerCallbackQuery"}
        ]
        # The button stops spinning once, then the chat learns what happened.
        assert [(c.method, c.status) for c in after] == [
            ("answerCallbackQuery", 200),
            ("sendMessage", 200),
        ]
        assert INCIDENT.fullmatch(after[1].params["text"]) is not None
        assert live.tg.errors() == []
