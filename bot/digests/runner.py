"""The digest run: find due slots, claim them in the ledger, render each report once, deliver.

Exactly once, across restarts and instances: a (subscription, period) row is claimed with a
conflict-free insert (or a compare-and-set takeover of an expired claim) before anything is sent,
and each part is recorded when Telegram accepts it, so a run after a crash sends only what is
missing. A slot found more than MAX_LATENESS late is recorded as skipped instead of sent.

A digest is a report: its chat passes the access decision of commands (bot.access) when it is
sent. A chat that may no longer see data gets nothing; the slot is recorded as skipped with the
reason and the subscription is paused until an admin resumes it (`/digest resume N`).

The ledger's invariant: a part is sent only by the runner holding the slot's claim, and a claim
changes hands only once its lease ran out. A claim is a lease of CLAIM_TTL: its owner renews it
every RENEW_EVERY while it delivers (also while it waits out a 429), and before every attempt at
a part, retries included, makes sure at least ATTEMPT_LEASE of it is left, renewing it with a
compare-and-set on its own name; if another runner took the slot over meanwhile, it stops
without sending. A runner that gives up, or is stopped, releases its claims at once (the lease
ends now), so the next run or the next process resumes the missing parts without waiting; the
claim of a process that died unannounced (SIGKILL) is taken over when its lease runs out.
"""

import asyncio
import html
import logging
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiogram import Bot
from aiogram.exceptions import TelegramForbiddenError, TelegramMigrateToChat
from sqlalchemy import and_, func, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bot.access import chat_access
from bot.config import Settings
from bot.digests.rules import MAX_LATENESS, Recorded, owed, past_slots
from bot.digests.subscriptions import (
    Subscription,
    active_subscriptions,
    deactivate_chat,
    pause_subscriptions,
)
from bot.rendering import Renderer
from bot.storage.chats import move_chat
from bot.storage.engine import Executor, dialect_insert, write_transaction
from bot.storage.tables import digest_deliveries
from bot.telegram.delivery import PARTS, Uploads, bundle_keyboard, deliver_bundle, produce_bundle
from bot.telegram.outbound import attempt_guard
from reports.bundle import ReportBundle
from reports.errors import N_, ReportError
from reports.i18n import translator
from reports.model import PeriodPair, ReportFilter
from reports.periods import last_complete_period

logger = logging.getLogger(__name__)

TITLES = {
    "daily": N_("Daily digest"),
    "weekly": N_("Weekly digest"),
    "monthly": N_("Monthly digest"),
}
# A slot sent later than this after its time says so in its title.
DELAY_NOTE_AFTER = timedelta(minutes=5)
CLAIM_TTL = timedelta(minutes=3)
RENEW_EVERY = timedelta(seconds=30)
# An attempt starts only with this much of its lease left: more than one request can take.
ATTEMPT_LEASE = timedelta(minutes=2)
# Why a slot found later than MAX_LATENESS was skipped, as recorded and logged.
TOO_LATE = f"more than {MAX_LATENESS // timedelta(hours=1)} hours late"


@dataclass(frozen=True, slots=True)
class DueDigest:
    subscription: Subscription
    slot: datetime
    periods: PeriodPair
    lang: str
    delayed: bool

    @property
    def period_key(self) -> str:
        return self.periods.current.start.date().isoformat()

    @property
    def report_identity(self) -> tuple[object, ...]:
        """Digests with the same identity get the same numbers, so they are rendered once."""
        rule = self.subscription.rule
        current = self.periods.current
        return (
            current.start,
            current.end,
            current.tz_name,
            rule.channel,
            rule.app,
            self.lang,
            rule.kind,
            self.delayed,
        )


@dataclass(slots=True)
class RunSummary:
    sent: int = 0
    skipped: int = 0
    failed: int = 0
    busy: int = 0
    paused: int = 0
    rendered: int = 0
    chats: list[int] = field(default_factory=list)
    # Subscriptions with a slot this run could not settle (failed, or claimed by another).
    unsettled: set[int] = field(default_factory=set)


class ClaimLost(Exception):
    """Another runner took over the slot: this one must not send any more of it."""


class DigestRunner:
    def __init__(
        self,
        bot: Bot,
        engine: AsyncEngine,
        renderer: Renderer,
        settings: Settings,
        *,
        clock: Callable[[], datetime],
        instance_id: str | None = None,
    ) -> None:
        self.bot, self.engine, self.renderer, self.settings = bot, engine, renderer, settings
        self.clock = clock
        self.instance_id = instance_id or uuid.uuid4().hex[:16]
        # The lease end of each claim this runner holds, by (subscription, period key).
        self._leases: dict[tuple[int, str], datetime] = {}

    async def run(self, only: set[int] | None = None) -> RunSummary:
        """Deliver every due digest (or those of the given subscriptions) not yet delivered."""
        now = self.clock()
        summary = RunSummary()
        async with self.engine.connect() as connection:
            subscriptions = await active_subscriptions(connection, only)
            recorded = await latest_recorded_slots(connection)
            refusals = {
                chat_id: (
                    await chat_access(connection, self.settings.admin_ids, chat_id)
                ).refusal()
                for chat_id in {subscription.chat_id for subscription in subscriptions}
            }
        claimed: list[tuple[DueDigest, set[str]]] = []
        for subscription in subscriptions:
            refusal = refusals[subscription.chat_id]
            for due in self._due(subscription, now, recorded.get(subscription.id)):
                if now - due.slot > MAX_LATENESS:
                    summary.skipped += await self._record_skipped(due, now)
                    continue
                if refusal is not None:
                    summary.skipped += await self._record_skipped(
                        due, now, detail=f"no access: {refusal}"
                    )
                    summary.paused += await self._pause(subscription, refusal)
                    break
                parts = await self._claim(due, now)
                if parts is None:
                    summary.busy += 1
                    summary.unsettled.add(subscription.id)
                    continue
                self._leases[_key(due)] = now + CLAIM_TTL
                claimed.append((due, parts))

        bundles: dict[tuple[object, ...], tuple[ReportBundle | ReportError, Uploads]] = {}
        for due, _parts in claimed:
            if due.report_identity not in bundles:
                bundles[due.report_identity] = (await self._render(due), Uploads())
                summary.rendered += 1
        # Each chat is its own task: a 429 or a slow chat holds up only itself.
        heartbeat = asyncio.create_task(self._renew_while_delivering(), name="digest-leases")
        try:
            results = await asyncio.gather(
                *(
                    self._deliver(due, parts, *bundles[due.report_identity])
                    for due, parts in claimed
                ),
                return_exceptions=True,
            )
        finally:
            heartbeat.cancel()
        for (due, _parts), result in zip(claimed, results, strict=True):
            self._leases.pop(_key(due), None)
            if result is True:
                summary.sent += 1
                summary.chats.append(due.subscription.chat_id)
            elif isinstance(result, ClaimLost):
                summary.busy += 1
                summary.unsettled.add(due.subscription.id)
                logger.warning(
                    "digest %s for %s was taken over by another runner: this one stopped",
                    due.subscription.id,
                    due.period_key,
                )
            else:
                summary.failed += 1
                summary.unsettled.add(due.subscription.id)
                if isinstance(result, BaseException):
                    logger.error(
                        "digest %s to chat %s failed",
                        due.subscription.id,
                        due.subscription.chat_id,
                        exc_info=result,
                    )
        return summary

    def _due(
        self, subscription: Subscription, now: datetime, recorded: Recorded | None
    ) -> list[DueDigest]:
        """Slots owed (rules.owed): from the newest one in the ledger (it may be unfinished) on.

        A digest created or resumed after a slot starts with the next one.
        """
        zone = subscription.zone(self.settings.timezone)
        return [
            DueDigest(
                subscription=subscription,
                slot=slot,
                periods=last_complete_period(subscription.rule.kind, now=slot, tz=zone),
                lang=subscription.language or self.settings.language,
                delayed=now - slot > DELAY_NOTE_AFTER,
            )
            for slot in past_slots(subscription.rule, zone, now)
            if owed(subscription.rule, zone, slot, since=subscription.since, recorded=recorded)
        ]

    async def _record_skipped(self, due: DueDigest, now: datetime, detail: str = TOO_LATE) -> int:
        """Mark a slot not sent (found too late, or its chat may not see data); an unfinished
        claim of it is closed as skipped too."""
        async with write_transaction(self.engine) as connection:
            insert = _ledger_row(connection, due, status="skipped", detail=detail, updated_at=now)
            inserted = await connection.execute(insert.on_conflict_do_nothing())
            if inserted.rowcount:
                logger.warning(
                    "digest %s for %s skipped: %s",
                    due.subscription.id,
                    due.period_key,
                    detail,
                )
                return 1
            closed = await connection.execute(
                update(digest_deliveries)
                .where(
                    digest_deliveries.c.subscription_id == due.subscription.id,
                    digest_deliveries.c.period_key == due.period_key,
                    digest_deliveries.c.status == "claimed",
                    digest_deliveries.c.claim_expires_at <= now,
                )
                .values(status="skipped", detail=detail, updated_at=now)
            )
            return int(closed.rowcount or 0)

    async def _pause(self, subscription: Subscription, reason: str) -> int:
        logger.warning(
            "chat %s may no longer see data (%s): digest %s paused",
            subscription.chat_id,
            reason,
            subscription.id,
        )
        async with write_transaction(self.engine) as connection:
            return await pause_subscriptions(connection, reason=reason, ids=[subscription.id])

    async def _claim(self, due: DueDigest, now: datetime) -> set[str] | None:
        """Parts already delivered when this runner now owns the slot; None when it does not."""
        expires = now + CLAIM_TTL
        async with write_transaction(self.engine) as connection:
            insert = _ledger_row(
                connection,
                due,
                status="claimed",
                claimed_by=self.instance_id,
                claim_expires_at=expires,
                parts="",
                updated_at=now,
            )
            if (await connection.execute(insert.on_conflict_do_nothing())).rowcount:
                return set()
            row = (
                await connection.execute(
                    select(digest_deliveries).where(
                        digest_deliveries.c.subscription_id == due.subscription.id,
                        digest_deliveries.c.period_key == due.period_key,
                    )
                )
            ).one()
            if row.status != "claimed" or row.claim_expires_at > now:
                return None
            # Compare-and-set: only one runner can take over the expired claim it read.
            taken = await connection.execute(
                update(digest_deliveries)
                .where(
                    and_(
                        digest_deliveries.c.id == row.id,
                        digest_deliveries.c.status == "claimed",
                        digest_deliveries.c.claimed_by == row.claimed_by,
                        digest_deliveries.c.claim_expires_at == row.claim_expires_at,
                    )
                )
                .values(claimed_by=self.instance_id, claim_expires_at=expires, updated_at=now)
            )
            if not taken.rowcount:
                return None
            logger.info(
                "digest %s for %s taken over from %s with parts %r",
                due.subscription.id,
                due.period_key,
                row.claimed_by,
                row.parts,
            )
            return {part for part in row.parts.split(",") if part}

    async def _render(self, due: DueDigest) -> ReportBundle | ReportError:
        gettext = translator(due.lang).gettext
        title = gettext(TITLES[due.subscription.rule.kind])
        if due.delayed:
            local = due.slot.astimezone(due.periods.current.tz)
            title += " " + gettext("(delayed: due at {time})").format(time=f"{local:%H:%M}")
        rule = due.subscription.rule
        try:
            return await produce_bundle(
                self.engine,
                self.renderer,
                periods=due.periods,
                report_filter=ReportFilter(channel=rule.channel, app=rule.app),
                lang=due.lang,
                delimiter=self.settings.delimiter_for(due.lang),
                title=title,
                now=self.clock(),
                silent_after=timedelta(hours=self.settings.source_silent_hours),
            )
        except ReportError as error:
            # The data changed since the digest was set up (a channel is gone): say so instead.
            return error

    async def _deliver(
        self, due: DueDigest, done: set[str], bundle: ReportBundle | ReportError, uploads: Uploads
    ) -> bool:
        """Send the slot's missing parts; on giving up or being stopped, release the claim."""

        async def still_owner() -> None:
            await self._ensure_lease(due)

        guard = attempt_guard.set(still_owner)
        try:
            delivered = await self._deliver_parts(due, done, bundle, uploads)
        except ClaimLost:
            raise
        except BaseException:
            # Shielded: a stop that cancels this delivery still hands its claim on.
            await asyncio.shield(self._release(due))
            raise
        finally:
            attempt_guard.reset(guard)
        if not delivered:
            await self._release(due)
        return delivered

    async def _deliver_parts(
        self, due: DueDigest, done: set[str], bundle: ReportBundle | ReportError, uploads: Uploads
    ) -> bool:
        chat_id = due.subscription.chat_id

        async def record(part: str) -> None:
            done.add(part)
            await self._update(due, parts=",".join(p for p in PARTS if p in done), chat_id=chat_id)

        for _attempt in range(2):
            try:
                if isinstance(bundle, ReportError):
                    gettext = translator(due.lang).gettext
                    await self.bot.send_message(chat_id, _escape(bundle.localized(gettext)))
                else:
                    keyboard = bundle_keyboard(
                        bundle,
                        ReportFilter(
                            channel=due.subscription.rule.channel, app=due.subscription.rule.app
                        ),
                        translator(due.lang).gettext,
                    )
                    await deliver_bundle(
                        self.bot,
                        chat_id,
                        bundle,
                        keyboard=keyboard,
                        done=done,
                        on_sent=record,
                        uploads=uploads,
                    )
                await self._update(due, status="sent", chat_id=chat_id)
                return True
            except TelegramMigrateToChat as moved:
                logger.info(
                    "chat %s became %s: moving its digests", chat_id, moved.migrate_to_chat_id
                )
                async with write_transaction(self.engine) as connection:
                    await move_chat(connection, chat_id, moved.migrate_to_chat_id)
                chat_id = moved.migrate_to_chat_id
            except TelegramForbiddenError as forbidden:
                logger.warning(
                    "chat %s refuses messages (%s): its digests are deactivated",
                    chat_id,
                    forbidden.message,
                )
                async with write_transaction(self.engine) as connection:
                    await deactivate_chat(connection, chat_id, reason=forbidden.message)
                await self._update(due, status="failed", detail=forbidden.message[:200])
                return False
        return False

    async def renew_claims(self) -> None:
        """Extend the lease of every claim this runner holds; forget those taken over."""
        if not self._leases:
            return
        now = self.clock()
        # Only the leases still held: a claim this runner released (it gave up, or was stopped)
        # must stay free for the next run even while other deliveries of this runner go on.
        held_keys = list(self._leases)
        async with write_transaction(self.engine) as connection:
            renewed = await connection.execute(
                update(digest_deliveries)
                .where(
                    digest_deliveries.c.claimed_by == self.instance_id,
                    digest_deliveries.c.status == "claimed",
                    tuple_(
                        digest_deliveries.c.subscription_id, digest_deliveries.c.period_key
                    ).in_(held_keys),
                )
                .values(claim_expires_at=now + CLAIM_TTL)
                .returning(digest_deliveries.c.subscription_id, digest_deliveries.c.period_key)
            )
            held = {(row.subscription_id, row.period_key) for row in renewed}
        for key in held_keys:
            if key not in self._leases:
                continue  # released while the renewal ran
            if key in held:
                self._leases[key] = now + CLAIM_TTL
            else:
                self._leases[key] = now  # taken over: the next attempt finds out and stops

    async def _renew_while_delivering(self) -> None:
        while True:
            await asyncio.sleep(RENEW_EVERY.total_seconds())
            try:
                await self.renew_claims()
            except Exception:  # noqa: BLE001 - the next beat or the attempt guard tries again
                logger.warning("could not renew the digest claims", exc_info=True)

    async def _ensure_lease(self, due: DueDigest) -> None:
        """Before an attempt at a part: keep ATTEMPT_LEASE of the claim, or stop if it is gone."""
        now = self.clock()
        if self._leases.get(_key(due), now) - now >= ATTEMPT_LEASE:
            return
        async with write_transaction(self.engine) as connection:
            renewed = await connection.execute(
                update(digest_deliveries)
                .where(self._holding(due))
                .values(claim_expires_at=now + CLAIM_TTL)
            )
        if not renewed.rowcount:
            raise ClaimLost(f"digest {due.subscription.id} for {due.period_key}")
        self._leases[_key(due)] = now + CLAIM_TTL

    async def _release(self, due: DueDigest) -> None:
        """End this runner's lease now, parts kept, so the next run resumes it at once."""
        self._leases.pop(_key(due), None)
        try:
            async with write_transaction(self.engine) as connection:
                await connection.execute(
                    update(digest_deliveries)
                    .where(self._holding(due))
                    .values(claim_expires_at=self.clock())
                )
        except Exception:  # noqa: BLE001 - the lease then simply runs out
            logger.warning("could not release the claim of digest %s", due.subscription.id)

    def _holding(self, due: DueDigest) -> Any:
        """The slot's ledger row while this runner holds its claim."""
        return and_(
            digest_deliveries.c.subscription_id == due.subscription.id,
            digest_deliveries.c.period_key == due.period_key,
            digest_deliveries.c.claimed_by == self.instance_id,
            digest_deliveries.c.status == "claimed",
        )

    async def _update(self, due: DueDigest, **values: object) -> None:
        async with write_transaction(self.engine) as connection:
            await connection.execute(
                update(digest_deliveries)
                .where(
                    digest_deliveries.c.subscription_id == due.subscription.id,
                    digest_deliveries.c.period_key == due.period_key,
                    digest_deliveries.c.claimed_by == self.instance_id,
                )
                .values(updated_at=self.clock(), **values)
            )


def _key(due: DueDigest) -> tuple[int, str]:
    return (due.subscription.id, due.period_key)


def _ledger_row(connection: AsyncConnection, due: DueDigest, **values: object) -> Any:
    """The INSERT of the slot's ledger row; the caller says what a row already there means."""
    return dialect_insert(connection.dialect.name)(digest_deliveries).values(
        subscription_id=due.subscription.id,
        period_key=due.period_key,
        slot_at=due.slot,
        **values,
    )


async def latest_recorded_slots(
    executor: Executor, only: Iterable[int] | None = None
) -> dict[int, Recorded]:
    """Per subscription, its newest slot in the ledger: what rules.owed compares slots with."""
    newest = select(
        digest_deliveries.c.subscription_id, func.max(digest_deliveries.c.slot_at).label("slot")
    ).group_by(digest_deliveries.c.subscription_id)
    if only is not None:
        newest = newest.where(digest_deliveries.c.subscription_id.in_(list(only)))
    latest = newest.subquery()
    rows = await executor.execute(
        select(
            digest_deliveries.c.subscription_id,
            latest.c.slot,
            digest_deliveries.c.period_key,
            digest_deliveries.c.status,
        ).join(
            latest,
            and_(
                digest_deliveries.c.subscription_id == latest.c.subscription_id,
                digest_deliveries.c.slot_at == latest.c.slot,
            ),
        )
    )
    return {
        row.subscription_id: Recorded(
            slot=_utc(row.slot), period_key=row.period_key, settled=row.status != "claimed"
        )
        for row in rows
    }


def _utc(value: datetime) -> datetime:
    # max() over a typed column comes back untyped on SQLite: plain text or a naive datetime.
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _escape(text: str) -> str:
    return html.escape(text, quote=False)
