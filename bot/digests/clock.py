"""APScheduler as the digest clock only: one job per subscription at its next slot.

Subscriptions in the database are the truth; the in-memory job store is rebuilt from them at
start and after every change. Jobs never expire for lateness (misfire_grace_time=None: the
default of one second silently drops a digest whose loop was busy), and at start one catch-up
run settles slots missed while the bot was down; a slot it could not settle (its claim still
held by a process that died, or Telegram failing) comes back when that claim's lease ends.

A job only starts its delivery in a task of this clock's own: stopping APScheduler cancels the
jobs it runs, and a digest between its parts must get the grace period to finish instead.
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
        *,
        grace: float = SHUTDOWN_GRACE,
    ) -> None:
        self.runner, self.engine = runner, engine
        self.default_timezone, self.clock = default_timezone, clock
        self.grace = grace
        self.scheduler = AsyncIOScheduler(timezone="UTC")
        # The slot each job stands for, in the application's clock.
        self._slots: dict[int, datetime] = {}
        self._running: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self.scheduler.start()
        summary = await self.runner.run()
        logger.info(
            "digest catch-up at start: %s sent, %s skipped, %s failed, %s held by another",
            summary.sent,
            summary.skipped,
            summary.failed,
            summary.busy,
        )
        await self.rebuild()
        await self._reschedule(summary.unsettled, unsettled=True)

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

    async def _fire(self, subscription_id: int) -> asyncio.Task[None]:
        """The job: start the delivery in a task of this clock's own, and return that task."""
        self._slots.pop(subscription_id, None)
        task = asyncio.create_task(
            self._deliver(subscription_id), name=f"digest:{subscription_id}"
        )
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        return task

    async def _deliver(self, subscription_id: int) -> None:
        unsettled = True
        try:
            summary = await self.runner.run(only={subscription_id})
            unsettled = subscription_id in summary.unsettled
        finally:
            await self._reschedule({subscription_id}, unsettled=unsettled)

    async def _reschedule(self, subscription_ids: set[int], *, unsettled: bool) -> None:
        """Schedule each at its next owed slot; an unsettled one comes back once its claim's
        lease (held by another runner, or released by this one) has surely ended."""
        if not subscription_ids:
            return
        # From the table: the subscription may have changed or gone meanwhile.
        now = self.clock()
        async with self.engine.connect() as connection:
            found = await active_subscriptions(connection, subscription_ids)
            upcoming = await self._next_slots(connection, found, now)
        for found_id, when in upcoming.items():
            if unsettled:
                when = min(when, now + CLAIM_TTL + timedelta(seconds=5))
            self._schedule(found_id, when)

    async def shutdown(self) -> None:
        """Stop the clock; a digest being sent gets the grace period, then releases its claim."""
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        if not self._running:
            return
        running = set(self._running)
        _, unfinished = await asyncio.wait(running, timeout=self.grace)
        for task in unfinished:
            # The runner releases the claim as it is cancelled: the next start resumes it.
            task.cancel()
        if unfinished:
            await asyncio.wait(unfinished)
            logger.warning(
                "%s digests stopped unfinished; their claims were released", len(unfinished)
            )
