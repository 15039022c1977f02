"""End-to-end: the "By hour" button and a filter too long for callback_data, through the fake
Bot API with the real polling loop (clock frozen at 2026-11-11 12:00 Moscow, the hand-counted
data of tests/datasets.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from bot.app import build_application, build_bot, build_dispatcher
from bot.rendering import Renderer
from bot.telegram import outbound
from bot.telegram.outbound import OutboundLimiter
from tests.datasets import load
from tests.e2e.fault_support import failing_heatmap
from tests.fake_telegram import Call, FakeTelegram, image_size
from tests.support.polling import SENDS, Live, polling
from tests.support.settings import ADMIN, NOW, make_settings

TOKEN = "123456:TEST-token"
STRANGER = 777
# 30 Cyrillic letters and more: "rep:today::<app>" would be over 64 bytes.
LONG_APP = "Отдел продаж и партнёров «Северо-Запад» <VIP>"
LONG_ROWS = [
    ("l1", "L", "telegram", LONG_APP, "2026-11-10T09:15:00+03:00"),
    ("l2", "L", "telegram", LONG_APP, "2026-11-10T09:45:00+03:00"),
    ("l3", "K", "telegram", LONG_APP, "2026-11-04T18:00:00+03:00"),
]
HEATMAP_CAPTION = "Conversations by weekday and hour · 10 Nov 2026 (Europe/Moscow)"


@asynccontextmanager
async def running(engine: AsyncEngine) -> AsyncIterator[Live]:
    async with FakeTelegram(token=TOKEN) as tg:
        settings = make_settings(engine, token=TOKEN, api_url=tg.base_url)
        app = build_application(settings, engine, clock=lambda: NOW)
        async with polling(tg, app.bot, app.dispatcher) as live:
            yield live


def buttons(message: dict[str, Any]) -> dict[str, str]:
    rows = message["reply_markup"]["inline_keyboard"]
    return {button["text"]: button["callback_data"] for row in rows for button in row}


async def report_message(live: Live, command: str, *, language_code: str = "en") -> dict[str, Any]:
    update = live.command(command, language_code=language_code)
    await live.settle(update)
    (text_call,) = [c for c in live.since(0) if c.method == "sendMessage" and c.ok][-1:]
    return text_call.result


def sent(calls: list[Call]) -> list[str]:
    return [c.method for c in calls if c.method in SENDS | {"answerCallbackQuery"}]


async def test_by_hour_sends_the_heatmap_of_exactly_that_report(hand_counted: AsyncEngine) -> None:
    async with running(hand_counted) as live:
        message = await report_message(live, "/clients yesterday")
        keyboard = buttons(message)
        assert list(keyboard) == ["Today", "Yesterday", "Week", "Month", "Last month", "By hour"]
        assert keyboard["By hour"].startswith("hm:") and len(keyboard["By hour"]) == 15
        # The chat's zone changes before the press: the heatmap stays the report's.
        await live.settle(live.command("/timezone Asia/Kathmandu"))

        calls = await live.press(
            keyboard["By hour"], user_id=ADMIN, chat_id=ADMIN, message_id=message["message_id"]
        )

        assert sent(calls) == ["answerCallbackQuery", "sendPhoto"]
        assert all(c.ok for c in calls)
        photo = calls[-1]
        assert photo.params["caption"] == HEATMAP_CAPTION
        upload = photo.file("photo")
        assert upload is not None and upload.filename == "heatmap.png"
        assert image_size(upload.data) == (1200, 620)
        assert len(upload.data) < 100 * 1024
        assert live.tg.errors() == []


async def test_by_hour_in_russian_and_after_a_restart(hand_counted: AsyncEngine) -> None:
    async with running(hand_counted) as live:
        message = await report_message(live, "/clients yesterday", language_code="ru")
        data = buttons(message)["По часам"]
    # A new process: the key lives in the database, so the button under an old report works.
    async with running(hand_counted) as live:
        live.tg.add_user(ADMIN, first_name="Admin", language_code="ru")
        calls = await live.press(data, user_id=ADMIN, chat_id=ADMIN, message_id=1, check=False)
        assert sent(calls) == ["answerCallbackQuery", "sendPhoto"]
        assert calls[-1].params["caption"] == (
            "Обращения по дням недели и часам · 10 ноября 2026 (Europe/Moscow)"
        )


async def test_an_unknown_key_says_the_button_expired_and_sends_nothing(
    hand_counted: AsyncEngine,
) -> None:
    async with running(hand_counted) as live:
        for data in ("hm:AAAAAAAAAAAA", "rv:week:AAAAAAAAAAAA"):
            calls = await live.press(data, user_id=ADMIN, chat_id=ADMIN, message_id=1, check=False)
            (answer,) = [c for c in calls if c.method == "answerCallbackQuery"]
            assert answer.params["text"] == "This button has expired: please send /clients again."
            assert answer.params["show_alert"] == "true"
            assert [c.method for c in calls if c.method in SENDS] == []


async def test_a_stranger_pressing_by_hour_gets_no_data(hand_counted: AsyncEngine) -> None:
    async with running(hand_counted) as live:
        message = await report_message(live, "/clients yesterday")
        data = buttons(message)["By hour"]
        calls = await live.press(
            data, user_id=STRANGER, chat_id=ADMIN, message_id=message["message_id"]
        )
        assert "sendPhoto" not in [c.method for c in calls]


async def test_a_long_app_filter_keeps_its_buttons_behind_a_short_key(
    hand_counted: AsyncEngine, tmp_path: Path
) -> None:
    await load(hand_counted, tmp_path, LONG_ROWS, "long")
    assert len(f"rep:today::{LONG_APP}".encode()) > 64
    async with running(hand_counted) as live:
        message = await report_message(live, f'/clients yesterday app="{LONG_APP}"')
        keyboard = buttons(message)
        assert list(keyboard) == ["Today", "Yesterday", "Week", "Month", "Last month", "By hour"]
        assert all(len(data.encode()) <= 64 for data in keyboard.values())
        key = keyboard["By hour"].removeprefix("hm:")
        assert keyboard["Week"] == f"rv:week:{key}"
        # An app filter: no pies, the trend alone (one photo) with the album's caption.
        first = [c.method for c in live.since(0) if c.method in SENDS]
        assert first == ["sendMessage", "sendPhoto", "sendDocument"]

        calls = await live.press(
            keyboard["Week"], user_id=ADMIN, chat_id=ADMIN, message_id=message["message_id"]
        )
        assert sent(calls) == ["answerCallbackQuery", "sendMessage", "sendPhoto", "sendDocument"]
        text, photo, document = [c for c in calls if c.method in SENDS]
        week = text.result
        assert week["text"].startswith("Clients report\nPeriod: 9 Nov, 00:00 → 11 Nov 2026, 12:00")
        # The same filter, the new period's key.
        assert "\nClients who wrote: 1 · " in week["text"] and LONG_APP in week["text"]
        assert list(buttons(week)) == list(keyboard) and buttons(week) != keyboard
        filter_line = "Filter: app Отдел продаж и…о-Запад» <VIP>"
        period = "9 Nov, 00:00 → 11 Nov 2026, 12:00 (Europe/Moscow)"
        assert photo.result["caption"] == f"Report charts · {period} · {filter_line}"
        assert document.result["caption"] == (
            f"Report data for spreadsheets · {period} · {filter_line}"
        )

        heat = await live.press(
            buttons(week)["By hour"], user_id=ADMIN, chat_id=ADMIN, message_id=week["message_id"]
        )
        assert sent(heat) == ["answerCallbackQuery", "sendPhoto"]
        caption = f"Conversations by weekday and hour · {period} · {filter_line}"
        assert heat[-1].result["caption"] == caption
        assert live.tg.errors() == []


async def test_a_heatmap_that_cannot_be_drawn_is_said_in_one_message(
    hand_counted: AsyncEngine,
) -> None:
    renderer = Renderer(workers=1, heatmap_function=failing_heatmap)
    async with FakeTelegram(token=TOKEN) as tg:
        settings = make_settings(hand_counted, token=TOKEN, api_url=tg.base_url)
        bot = build_bot(settings)
        outbound.install(bot, OutboundLimiter())
        dispatcher = build_dispatcher(settings, hand_counted, clock=lambda: NOW, renderer=renderer)
        async with polling(tg, bot, dispatcher) as live:
            message = await report_message(live, "/clients yesterday")
            calls = await live.press(
                buttons(message)["By hour"],
                user_id=ADMIN,
                chat_id=ADMIN,
                message_id=message["message_id"],
            )
            assert sent(calls) == ["answerCallbackQuery", "sendMessage"]
            assert calls[-1].params["text"] == (
                "The heatmap is unavailable right now; please try again later."
            )
