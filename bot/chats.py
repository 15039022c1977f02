"""Per-chat settings and digest subscriptions in the database (the only source of truth)."""

from dataclasses import dataclass
from datetime import datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Row, Select, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from bot.db import dialect_insert
from bot.digest_rules import DigestRule, Kind
from bot.models import chats, subscriptions


@dataclass(frozen=True, slots=True, kw_only=True)
class Subscription:
    id: int
    chat_id: int
    rule: DigestRule
    created_at: datetime
    timezone: str | None
    language: str | None

    def zone(self, default: str) -> ZoneInfo:
        return ZoneInfo(self.timezone or default)


async def chat_timezone(session: AsyncSession, chat_id: int) -> str | None:
    return await session.scalar(select(chats.c.timezone).where(chats.c.chat_id == chat_id))


async def save_chat(
    session: AsyncSession, chat_id: int, *, language: str, timezone: str | None = None
) -> None:
    """Remember the chat's language (and timezone, when given) for its digests."""
    values: dict[str, object] = {"language": language}
    if timezone is not None:
        values["timezone"] = timezone
    statement = dialect_insert(session.bind.dialect.name)(chats).values(chat_id=chat_id, **values)
    await session.execute(
        statement.on_conflict_do_update(index_elements=[chats.c.chat_id], set_=values)
    )


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
    )


async def chat_subscriptions(session: AsyncSession, chat_id: int) -> list[Subscription]:
    rows = await session.execute(_subscription_query().where(subscriptions.c.chat_id == chat_id))
    return [_from_row(row) for row in rows]


async def active_subscriptions(
    connection: AsyncConnection, only: set[int] | None = None
) -> list[Subscription]:
    query = _subscription_query()
    if only is not None:
        query = query.where(subscriptions.c.id.in_(only))
    return [_from_row(row) for row in await connection.execute(query)]


async def remove_subscriptions(session: AsyncSession, ids: list[int], *, reason: str) -> int:
    result = await session.execute(
        update(subscriptions)
        .where(subscriptions.c.id.in_(ids), subscriptions.c.active)
        .values(active=False, deactivated_reason=reason)
    )
    return result.rowcount or 0


async def deactivate_chat(connection: AsyncConnection, chat_id: int, *, reason: str) -> None:
    """Stop a chat's digests (the bot was blocked or removed), keeping why."""
    await connection.execute(
        update(subscriptions)
        .where(subscriptions.c.chat_id == chat_id, subscriptions.c.active)
        .values(active=False, deactivated_reason=reason[:200])
    )


async def move_chat(connection: AsyncConnection, old_chat_id: int, new_chat_id: int) -> None:
    """A group became a supergroup: its settings and digests follow it to the new id."""
    await connection.execute(
        update(subscriptions)
        .where(subscriptions.c.chat_id == old_chat_id)
        .values(chat_id=new_chat_id)
    )
    existing = await connection.scalar(
        select(chats.c.chat_id).where(chats.c.chat_id == new_chat_id)
    )
    if existing is None:
        await connection.execute(
            update(chats).where(chats.c.chat_id == old_chat_id).values(chat_id=new_chat_id)
        )


async def chat_zone(session: AsyncSession, chat_id: int, default: str) -> ZoneInfo:
    """The chat's timezone, set with /timezone, else the TIMEZONE setting.

    Ends the session's transaction: callers go on to long reports or to writes, and neither
    should start inside a read transaction (see AccessMiddleware).
    """
    name = await chat_timezone(session, chat_id)
    await session.commit()
    return ZoneInfo(name or default)


async def is_enabled(session: AsyncSession, chat_id: int) -> bool:
    return bool(await session.scalar(select(chats.c.enabled).where(chats.c.chat_id == chat_id)))


async def set_enabled(
    session: AsyncSession, chat_id: int, enabled: bool, *, language: str
) -> None:
    values: dict[str, object] = {"enabled": enabled, "language": language}
    statement = dialect_insert(session.bind.dialect.name)(chats).values(chat_id=chat_id, **values)
    await session.execute(
        statement.on_conflict_do_update(index_elements=[chats.c.chat_id], set_=values)
    )
