"""Digest subscriptions in the database (the only source of truth for the digest clock)."""

from dataclasses import dataclass
from datetime import datetime, time
from typing import Any, cast
from zoneinfo import ZoneInfo

from sqlalchemy import CursorResult, Row, Select, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from bot.digests.rules import DigestRule, Kind
from bot.storage.engine import Executor
from bot.storage.tables import chats, subscriptions


@dataclass(frozen=True, slots=True, kw_only=True)
class Subscription:
    id: int
    chat_id: int
    rule: DigestRule
    created_at: datetime
    timezone: str | None
    language: str | None
    # Why the digest is paused (bot.access); None while it is sent.
    paused_reason: str | None = None
    resumed_at: datetime | None = None

    def zone(self, default: str) -> ZoneInfo:
        return ZoneInfo(self.timezone or default)

    @property
    def since(self) -> datetime:
        """Slots before this are not owed: the digest did not exist, or was paused."""
        return max(self.created_at, self.resumed_at or self.created_at)


async def add_subscription(
    session: AsyncSession, chat_id: int, rule: DigestRule, *, now: datetime
) -> None:
    await session.execute(
        subscriptions.insert().values(
            chat_id=chat_id,
            kind=rule.kind,
            at_time=f"{rule.at:%H:%M}",
            weekday=rule.weekday,
            day_of_month=rule.day_of_month,
            channel=rule.channel,
            app=rule.app,
            created_at=now,
        )
    )


def _subscription_query() -> Select[Any]:
    return (
        select(subscriptions, chats.c.timezone, chats.c.language)
        .select_from(subscriptions.outerjoin(chats, chats.c.chat_id == subscriptions.c.chat_id))
        .where(subscriptions.c.active)
        .order_by(subscriptions.c.id)
    )


def _from_row(row: Row[Any]) -> Subscription:
    hour, minute = (int(part) for part in row.at_time.split(":"))
    kind: Kind = row.kind
    return Subscription(
        id=row.id,
        chat_id=row.chat_id,
        rule=DigestRule(
            kind=kind,
            at=time(hour, minute),
            weekday=row.weekday,
            day_of_month=row.day_of_month,
            channel=row.channel,
            app=row.app,
        ),
        created_at=row.created_at,
        timezone=row.timezone,
        language=row.language,
        paused_reason=row.paused_reason,
        resumed_at=row.resumed_at,
    )


async def chat_subscriptions(session: AsyncSession, chat_id: int) -> list[Subscription]:
    """The chat's digests as /digest numbers them, paused ones included."""
    rows = await session.execute(_subscription_query().where(subscriptions.c.chat_id == chat_id))
    return [_from_row(row) for row in rows]


async def active_subscriptions(
    connection: AsyncConnection, only: set[int] | None = None
) -> list[Subscription]:
    """The digests to schedule and send: active and not paused."""
    query = _subscription_query().where(subscriptions.c.paused_reason.is_(None))
    if only is not None:
        query = query.where(subscriptions.c.id.in_(only))
    return [_from_row(row) for row in await connection.execute(query)]


async def remove_subscriptions(session: AsyncSession, ids: list[int], *, reason: str) -> int:
    result = await session.execute(
        update(subscriptions)
        .where(subscriptions.c.id.in_(ids), subscriptions.c.active)
        .values(active=False, deactivated_reason=reason)
    )
    # An UPDATE's result is a CursorResult, which counts the rows it changed.
    return cast(CursorResult[Any], result).rowcount or 0


async def deactivate_chat(connection: Executor, chat_id: int, *, reason: str) -> None:
    """Stop a chat's digests (the bot was blocked or removed), keeping why."""
    await connection.execute(
        update(subscriptions)
        .where(subscriptions.c.chat_id == chat_id, subscriptions.c.active)
        .values(active=False, deactivated_reason=reason[:200])
    )


async def pause_subscriptions(
    executor: Executor, *, reason: str, chat_id: int | None = None, ids: list[int] | None = None
) -> int:
    """Pause the chat's digests (or the given ones) that are being sent; how many were paused."""
    query = update(subscriptions).where(
        subscriptions.c.active, subscriptions.c.paused_reason.is_(None)
    )
    if chat_id is not None:
        query = query.where(subscriptions.c.chat_id == chat_id)
    if ids is not None:
        query = query.where(subscriptions.c.id.in_(ids))
    result = await executor.execute(query.values(paused_reason=reason[:200]))
    return cast(CursorResult[Any], result).rowcount or 0


async def resume_subscriptions(session: AsyncSession, ids: list[int], *, now: datetime) -> int:
    """Send these paused digests again, from their first slot after now."""
    result = await session.execute(
        update(subscriptions)
        .where(
            subscriptions.c.id.in_(ids),
            subscriptions.c.active,
            subscriptions.c.paused_reason.is_not(None),
        )
        .values(paused_reason=None, resumed_at=now)
    )
    return cast(CursorResult[Any], result).rowcount or 0
