"""Freshness in reports, the silent-source warning of digests, and /sources for admins."""

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from itertools import count
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from aiogram import Bot, Dispatcher
from aiogram.client.default import DefaultBotProperties
from aiogram.types import Chat, Message, MessageEntity, Update, User
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.app import build_dispatcher
from bot.config import Settings
from bot.ingest.desk import DeskEvent, store_desk_events
from bot.ingest.status import newest_data, silent_sources, source_statuses
from bot.storage.engine import write_transaction
from bot.storage.tables import ingest_refusals
from reports.metrics import build_report
from reports.model import ReportFilter
from reports.periods import parse_period
from reports.text import render_text
from tests.datasets import ROWS_IN_AND_AROUND_P, load
from tests.support.recording import RecordingSession

MOSCOW = ZoneInfo("Europe/Moscow")
NOW = datetime(2026, 11, 11, 12, 0, tzinfo=MOSCOW)
ADMIN = 42
update_ids = count(1000)


def event(key: str, *, at: datetime, label: str = "main", kind: str = "client") -> DeskEvent:
    return DeskEvent(
        source="chatwoot",
        label=label,
        key=key,
        conversation_id=key,
        contact_id="c-" + key,
        kind=kind,  # type: ignore[arg-type]
        occurred_at=at,
        channel="whatsapp",
        app_key="3",
        app_name="Sales & Partners <VIP>",
    )


async def store(engine: AsyncEngine, events: list[DeskEvent], received_at: datetime) -> None:
    async with write_transaction(engine) as connection:
        await store_desk_events(connection, events, received_at=received_at)


async def test_report_text_says_how_fresh_the_data_is_in_both_languages(
    sqlite_engine: AsyncEngine, tmp_path: Path
) -> None:
    await load(sqlite_engine, tmp_path, ROWS_IN_AND_AROUND_P, "recent")
    periods = parse_period("yesterday", now=NOW, tz=MOSCOW)
    async with sqlite_engine.connect() as connection:
        report = await build_report(connection, periods, ReportFilter())
        until = await newest_data(connection)
    # The newest hand-counted appeal is at local midnight of 11 Nov (tests/datasets.py).
    assert until == datetime(2026, 11, 10, 21, 0, tzinfo=UTC)
    fresh = replace(report, data_until=until, as_of=NOW)
    assert "\nData up to 00:00 (12 hours ago)\n" in render_text(fresh, lang="en", html=False)
    assert "\nДанные до 00:00 (12 часов назад)\n" in render_text(fresh, lang="ru", html=False)
    later = replace(fresh, as_of=NOW + timedelta(days=3))
    assert "\nData up to 11 Nov, 00:00 (3 days ago)\n" in render_text(later, lang="en", html=False)
    minute = replace(fresh, as_of=until + timedelta(seconds=61))
    assert "(1 minute ago)" in render_text(minute, lang="en", html=False)
    assert "(1 минуту назад)" in render_text(minute, lang="ru", html=False)
    assert "(just now)" in render_text(replace(fresh, as_of=until), lang="en", html=False)
    empty = replace(report, data_until=None, as_of=NOW)
    assert "No data has been received yet." in render_text(empty, lang="en", html=False)
    # Without as_of (a printer test, the CSV) no line is added.
    assert "Data up to" not in render_text(report, lang="en", html=False)


async def test_a_desk_event_newer_than_every_appeal_sets_the_freshness(
    sqlite_engine: AsyncEngine, tmp_path: Path
) -> None:
    await load(sqlite_engine, tmp_path, ROWS_IN_AND_AROUND_P, "recent")
    closed_at = datetime(2026, 11, 11, 8, 30, tzinfo=UTC)
    opened_at = closed_at - timedelta(hours=1)
    await store(
        sqlite_engine,
        [event("7", at=opened_at, kind="open"), event("7b", at=closed_at, kind="close")],
        NOW,
    )
    async with sqlite_engine.connect() as connection:
        assert await newest_data(connection) == closed_at


async def test_silent_sources_are_those_quiet_longer_than_the_limit(
    sqlite_engine: AsyncEngine,
) -> None:
    await store(sqlite_engine, [event("1", at=NOW - timedelta(days=3))], NOW - timedelta(days=3))
    await store(sqlite_engine, [event("2", at=NOW, label="sales")], NOW - timedelta(hours=2))
    async with sqlite_engine.connect() as connection:
        silent = await silent_sources(connection, now=NOW, silent_after=timedelta(hours=24))
        none_silent = await silent_sources(connection, now=NOW, silent_after=timedelta(days=4))
    assert [(source, label) for source, label, _at in silent] == [("chatwoot", "main")]
    assert none_silent == []


async def test_a_silent_source_warning_is_rendered_in_the_digest_text(
    sqlite_engine: AsyncEngine, tmp_path: Path
) -> None:
    await load(sqlite_engine, tmp_path, ROWS_IN_AND_AROUND_P, "recent")
    periods = parse_period("yesterday", now=NOW, tz=MOSCOW)
    async with sqlite_engine.connect() as connection:
        report = await build_report(connection, periods, ReportFilter())
    since = datetime(2026, 11, 9, 7, 15, tzinfo=UTC)
    warned = replace(report, as_of=NOW, silent_sources=(("chatwoot:main", since),))
    text = render_text(warned, lang="en", html=True)
    assert "⚠ No data from <b>chatwoot:main</b> since 9 Nov, 10:15: check its webhook." in text
    ru = render_text(warned, lang="ru", html=True)
    assert "⚠ От <b>chatwoot:main</b> нет данных с 9 ноября, 10:15: проверьте его вебхук." in ru


async def test_source_statuses_count_todays_events_and_refusals_per_source(
    sqlite_engine: AsyncEngine,
) -> None:
    day_start = NOW.replace(hour=0)
    await store(sqlite_engine, [event("1", at=NOW)], day_start - timedelta(minutes=1))
    await store(sqlite_engine, [event("2", at=NOW), event("3", at=NOW)], NOW)
    async with write_transaction(sqlite_engine) as connection:
        for at, source in [
            (NOW - timedelta(hours=1), "chatwoot"),
            (NOW - timedelta(hours=25), "chatwoot"),
            (NOW, "blinger"),
        ]:
            await connection.execute(
                ingest_refusals.insert().values(source=source, reason="bad token", at=at)
            )
    async with sqlite_engine.connect() as connection:
        statuses = await source_statuses(connection, now=NOW, day_start=day_start)
    assert [(s.source, s.label, s.events_today, s.refused_24h) for s in statuses] == [
        ("chatwoot", "main", 2, 1),
        ("blinger", "", 0, 1),
    ]
    assert statuses[0].newest == NOW.astimezone(UTC)


@pytest.fixture
async def dispatcher(sqlite_engine: AsyncEngine) -> AsyncIterator[tuple[Dispatcher, Bot]]:
    settings = Settings(
        _env_file=None,
        bot_token="123456:TEST",
        database_url=str(sqlite_engine.url),
        admin_ids=str(ADMIN),
        timezone="Europe/Moscow",
        language="ru",
    )
    built = build_dispatcher(settings, sqlite_engine, clock=lambda: NOW)
    session = RecordingSession()
    bot = Bot("123456:TEST", session=session, default=DefaultBotProperties(parse_mode="HTML"))
    yield built, bot
    await built.emit_shutdown()


async def send(dispatcher: Dispatcher, bot: Bot, text: str, user_id: int, lang: str) -> list[str]:
    session = bot.session
    assert isinstance(session, RecordingSession)
    before = len(session.requests)
    message = Message(
        message_id=next(update_ids),
        date=datetime.now(UTC),
        chat=Chat(id=user_id, type="private"),
        from_user=User(id=user_id, is_bot=False, first_name="Lead", language_code=lang),
        text=text,
        entities=[MessageEntity(type="bot_command", offset=0, length=len(text.split()[0]))],
    )
    await dispatcher.feed_update(bot, Update(update_id=next(update_ids), message=message))
    return [r.text for r in session.requests[before:] if r.__api_method__ == "sendMessage"]


async def test_sources_lists_each_source_for_admins_only(
    sqlite_engine: AsyncEngine, dispatcher: tuple[Dispatcher, Bot]
) -> None:
    built, bot = dispatcher
    assert await send(built, bot, "/sources", ADMIN, "en") == [
        "<b>Desk sources</b>\n"
        "Nothing has arrived from a desk yet. See “Connecting your desk” in README."
    ]
    await store(sqlite_engine, [event("1", at=NOW), event("2", at=NOW)], NOW)
    assert await send(built, bot, "/sources", ADMIN, "en") == [
        "<b>Desk sources</b>\n"
        "<b>chatwoot · main</b>: newest event 11 Nov, 12:00 · 2 events today · "
        "0 requests refused in 24 h"
    ]
    assert await send(built, bot, "/sources", ADMIN, "ru") == [
        "<b>Источники данных</b>\n"
        "<b>chatwoot · main</b>: последнее событие 11 ноября, 12:00 · 2 события сегодня · "
        "0 запросов отклонено за 24 ч"
    ]
    refused = await send(built, bot, "/sources", 777, "en")
    assert len(refused) == 1 and "Your Telegram id is" in refused[0]


def test_a_rest_conversation_names_its_channel_under_meta() -> None:
    from bot.ingest.chatwoot import conversation_event

    rest = {
        "id": 5,
        "inbox_id": 2,
        "status": "resolved",
        "created_at": 1764580000,
        "timestamp": 1764590000,
        "meta": {"sender": {"id": 9}, "channel": "Channel::Telegram"},
    }
    start = conversation_event(rest, "conversation_created", "main")
    status = conversation_event(rest, "sync", "main")
    assert start is not None and status is not None
    assert (start.channel, start.kind, status.channel, status.kind) == (
        "telegram",
        "open",
        "telegram",
        "close",
    )
