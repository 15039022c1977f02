"""APScheduler as the digest clock only: one job per subscription at its next slot.

Subscriptions in the database are the truth; the in-memory job store is rebuilt from them at
start and after every change. Jobs never expire for lateness (misfire_grace_time=None: the
default of one second silently drops a digest whose loop was busy), and at start one catch-up
run settles slots missed while the bot was down.
"""

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.date import DateTrigger
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bot.config import SHUTDOWN_GRACE
from bot.digests.rules import next_owed_slot
from bot.digests.runner import CLAIM_TTL, DigestRunner, latest_recorded_slots
from bot.digests.subscriptions import Subscription, active_subscriptions

logger = logging.getLogger(__name__)


class DigestClock:
    def __init__(
        self,
        runner: DigestRunner,
        engine: AsyncEngine,
        default_timezone: str,
        clock: Callable[[], datetime],
    ) -> None:
        self.runner, self.engine = runner, engine
        self.default_timezone, self.clock = default_timezone, clock
        self.scheduler = AsyncIOScheduler(timezone="UTC")
        # The slot each job stands for, in the application's clock.
        self._slots: dict[int, datetime] = {}
        self._running: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self.scheduler.start()
        summary = await self.runner.run()
        logger.info(
            "digest catch-up at start: %s sent, %s skipped, %s failed",
            summary.sent,
            summary.skipped,
            summary.failed,
        )
        await self.rebuild()

    async def rebuild(self) -> None:
        """Replace every job with one per active, unpaused subscription, at its next owed slot."""
        now = self.clock()
        async with self.engine.connect() as connection:
            subscriptions = await active_subscriptions(connection)
            upcoming = await self._next_slots(connection, subscriptions, now)
        self.scheduler.remove_all_jobs()
        self._slots.clear()
        for subscription_id, when in upcoming.items():
            self._schedule(subscription_id, when)
        logger.info("digest clock: %s jobs", len(subscriptions))

    async def _next_slots(
        self, connection: AsyncConnection, subscriptions: list[Subscription], now: datetime
    ) -> dict[int, datetime]:
        recorded = await latest_recorded_slots(connection, [s.id for s in subscriptions])
        return {
            subscription.id: next_owed_slot(
                subscription.rule,
                subscription.zone(self.default_timezone),
                now,
                since=subscription.since,
                recorded=recorded.get(subscription.id),
            )
            for subscription in subscriptions
        }

    def next_runs(self) -> dict[int, datetime]:
        """The slot each scheduled job will deliver."""
        return dict(self._slots)

    def _schedule(self, subscription_id: int, when: datetime) -> None:
        # APScheduler waits on the system clock; the application's clock may be another one
        # (tests freeze it), so the job is set that far ahead of the system's now.
        delay = max(0.0, (when - self.clock()).total_seconds())
        self._slots[subscription_id] = when
        self.scheduler.add_job(
            self._fire,
            DateTrigger(run_date=datetime.now(UTC) + timedelta(seconds=delay)),
            args=[subscription_id],
            id=f"digest:{subscription_id}",
            replace_existing=True,
            misfire_grace_time=None,
            coalesce=True,
        )

    async def _fire(self, subscription_id: int) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._running.add(task)
            task.add_done_callback(self._running.discard)
        self._slots.pop(subscription_id, None)
        unsettled = True
        try:
            summary = await self.runner.run(only={subscription_id})
            unsettled = bool(summary.failed or summary.busy)
        finally:
            # Reschedule from the table: the subscription may have changed or gone meanwhile.
            now = self.clock()
            async with self.engine.connect() as connection:
                found = await active_subscriptions(connection, {subscription_id})
                upcoming = await self._next_slots(connection, found, now)
            for found_id, when in upcoming.items():
                if unsettled:
                    # Come back once the claim it could not finish (or could not get) expires.
                    when = min(when, now + CLAIM_TTL + timedelta(seconds=5))
                self._schedule(found_id, when)

    async def shutdown(self) -> None:
        """Stop the clock; a digest being sent is allowed to finish."""
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        if self._running:
            await asyncio.wait(self._running, timeout=SHUTDOWN_GRACE)
