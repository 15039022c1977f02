"""APScheduler as the digest clock only: one job per subscription at its next slot.

Subscriptions in the database are the truth; the in-memory job store is rebuilt from them at
start and after every change. Jobs never expire for lateness (misfire_grace_time=None: the
default of one second silently drops a digest whose loop was busy), and at start one catch-up
run settles slots missed while the bot was down; a slot it could not settle (its claim still
held by a process that died, or Telegram failing) comes back when that claim's lease ends.

A job only starts its delivery in a task of this clock's own: stopping APScheduler cancels the
jobs it runs, and a digest between its parts must get the grace period to finish instead. The
jobs that fire together (every digest of 09:00, every one resumed after a lease) are one run of
the runner, which renders a report shared by many chats once and re-sends its files by file_id;
a run per job would draw and upload the same report for each chat.
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
from bot.digests.runner import DigestRunner, latest_recorded_slots
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
        # The subscriptions whose jobs fired in this turn of the loop, and the run they join.
        self._firing: set[int] = set()
        self._batch: asyncio.Task[None] | None = None

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
        run_date = self._run_dates()
        for subscription_id, when in upcoming.items():
            self._schedule(subscription_id, when, run_date(when))
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

    def _run_dates(self) -> Callable[[datetime], datetime]:
        """When APScheduler, which waits on the system clock, is to run a slot of the
        application's clock (tests freeze that one). One reading of both clocks serves all the
        jobs scheduled together, so the digests of one slot, or every overdue one, get the same
        run date: they fire together and are delivered in one run."""
        system_now, app_now = datetime.now(UTC), self.clock()
        return lambda when: system_now + max(when - app_now, timedelta(0))

    def _schedule(
        self, subscription_id: int, when: datetime, run_date: datetime | None = None
    ) -> None:
        self._slots[subscription_id] = when
        self.scheduler.add_job(
            self._fire,
            DateTrigger(run_date=run_date or self._run_dates()(when)),
            args=[subscription_id],
            id=f"digest:{subscription_id}",
            replace_existing=True,
            misfire_grace_time=None,
            coalesce=True,
        )

    async def _fire(self, subscription_id: int) -> asyncio.Task[None]:
        """The job: join the run of the jobs firing with it, in a task of this clock's own, and
        return that task."""
        self._slots.pop(subscription_id, None)
        self._firing.add(subscription_id)
        if self._batch is None:
            self._batch = asyncio.create_task(self._deliver_batch(), name="digests")
            self._running.add(self._batch)
            self._batch.add_done_callback(self._running.discard)
        return self._batch

    async def _deliver_batch(self) -> None:
        # APScheduler starts every job due at this moment in the same turn of the loop, ahead of
        # this task: one yield lets them all join.
        await asyncio.sleep(0)
        batch, self._firing, self._batch = self._firing, set(), None
        unsettled = batch
        try:
            summary = await self.runner.run(only=batch)
            unsettled = batch & summary.unsettled
        finally:
            await self._reschedule(batch - unsettled, unsettled=False)
            await self._reschedule(unsettled, unsettled=True)

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
        run_date = self._run_dates()
        for found_id, when in upcoming.items():
            if unsettled:
                when = min(when, now + self.runner.claim_ttl + timedelta(seconds=5))
            self._schedule(found_id, when, run_date(when))

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
