"""The digest clock: one APScheduler job per subscription at its next slot, from the table."""

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from aiogram import Bot
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.config import Settings
from bot.digests.clock import DigestClock
from bot.digests.rules import parse_rule
from bot.digests.runner import DigestRunner, RunSummary
from bot.digests.subscriptions import active_subscriptions, add_subscription, remove_subscriptions
from bot.rendering import Renderer
from bot.storage.chats import save_chat
from bot.storage.engine import session_factory
from bot.storage.people import grant_lead
from tests.support.recording import RecordingSession

MSK = ZoneInfo("Europe/Moscow")
BERLIN = ZoneInfo("Europe/Berlin")


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def digest_clock(sqlite_engine: AsyncEngine) -> AsyncIterator[DigestClock]:
    settings = Settings(_env_file=None, timezone="Europe/Moscow", language="en")
    bot = Bot("123456:TEST", session=RecordingSession())
    renderer = Renderer()
    clock = Clock(datetime(2026, 11, 11, 12, 0, tzinfo=MSK))
    runner = DigestRunner(bot, sqlite_engine, renderer, settings, clock=clock)
    made = DigestClock(runner, sqlite_engine, settings.timezone, clock)
    yield made
    await made.shutdown()
    renderer.close()


async def subscribe(engine: AsyncEngine, chat_id: int, rule: str, zone: str | None = None) -> int:
    async with session_factory(engine)() as session:
        await save_chat(session, chat_id, language="en", timezone=zone)
        await add_subscription(
            session, chat_id, parse_rule(rule), now=datetime(2026, 11, 11, 11, 0, tzinfo=MSK)
        )
        await session.commit()
    async with engine.connect() as connection:
        return max(s.id for s in await active_subscriptions(connection))


async def test_start_schedules_one_job_per_subscription_at_its_next_local_slot(
    digest_clock: DigestClock, sqlite_engine: AsyncEngine
) -> None:
    daily = await subscribe(sqlite_engine, 1, "daily 09:00")
    weekly = await subscribe(sqlite_engine, 2, "weekly mon 09:00", zone="Europe/Berlin")
    monthly = await subscribe(sqlite_engine, 3, "monthly 31 18:00")
    await digest_clock.start()
    assert digest_clock.next_runs() == {
        daily: datetime(2026, 11, 12, 9, 0, tzinfo=MSK),
        weekly: datetime(2026, 11, 16, 9, 0, tzinfo=BERLIN),
        monthly: datetime(2026, 11, 30, 18, 0, tzinfo=MSK),
    }
    for job in digest_clock.scheduler.get_jobs():
        # APScheduler's default grace of 1 s would silently drop a digest on a busy loop.
        assert job.misfire_grace_time is None
        assert job.coalesce is True


async def test_rebuild_follows_the_table(
    digest_clock: DigestClock, sqlite_engine: AsyncEngine
) -> None:
    first = await subscribe(sqlite_engine, 1, "daily 09:00")
    await digest_clock.start()
    second = await subscribe(sqlite_engine, 2, "daily 10:00")
    async with session_factory(sqlite_engine)() as session:
        await remove_subscriptions(session, [first], reason="test")
        await session.commit()
    await digest_clock.rebuild()
    assert digest_clock.next_runs() == {second: datetime(2026, 11, 12, 10, 0, tzinfo=MSK)}


async def test_a_fired_job_runs_the_digest_and_moves_to_the_next_slot(
    digest_clock: DigestClock, sqlite_engine: AsyncEngine
) -> None:
    job_id = await subscribe(sqlite_engine, 1, "daily 09:00")
    async with session_factory(sqlite_engine)() as session:
        # A digest is sent only to a chat that may see data (bot.access).
        await grant_lead(session, 1, granted_by=42, name=None)
        await session.commit()
    await digest_clock.start()
    digest_clock.clock.now = datetime(2026, 11, 12, 9, 0, 1, tzinfo=MSK)  # type: ignore[attr-defined]
    await (await digest_clock._fire(job_id))
    session = digest_clock.runner.bot.session
    assert isinstance(session, RecordingSession)
    # An empty database still gets its (empty) report: text and CSV, no pies.
    assert [r.__api_method__ for r in session.requests] == ["sendMessage", "sendDocument"]
    assert digest_clock.next_runs() == {job_id: datetime(2026, 11, 13, 9, 0, tzinfo=MSK)}


async def test_jobs_firing_together_are_delivered_in_one_run(
    digest_clock: DigestClock, sqlite_engine: AsyncEngine
) -> None:
    """Fifty chats at 09:00 are one run: one render of their shared report, not fifty."""
    chats = [await subscribe(sqlite_engine, chat, "daily 12:01") for chat in (1, 2, 3)]
    async with session_factory(sqlite_engine)() as session:
        for chat in chats:  # private chats of leads: each subscription id is its chat id here
            await grant_lead(session, chat, granted_by=42, name=None)
        await session.commit()
    await digest_clock.start()
    runs: list[set[int] | None] = []
    ran = asyncio.Event()
    run = digest_clock.runner.run

    async def recorded_run(only: set[int] | None = None) -> RunSummary:
        runs.append(only)
        clock.now = datetime(2026, 11, 11, 12, 1, 1, tzinfo=MSK)  # the slot has come
        summary = await run(only)
        ran.set()
        return summary

    digest_clock.runner.run = recorded_run  # type: ignore[method-assign]
    clock = digest_clock.clock
    clock.now = datetime(2026, 11, 11, 12, 0, 59, 800_000, tzinfo=MSK)  # type: ignore[attr-defined]
    await digest_clock.rebuild()  # all three jobs 0.2 s ahead
    await asyncio.wait_for(ran.wait(), 10)
    await asyncio.gather(*digest_clock._running)  # the run's rescheduling
    assert runs == [set(chats)]
    tomorrow = datetime(2026, 11, 12, 12, 1, tzinfo=MSK)
    assert digest_clock.next_runs() == dict.fromkeys(chats, tomorrow)
