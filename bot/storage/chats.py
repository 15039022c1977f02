"""Per-chat settings in the database: timezone, language, whether a group is enabled."""

from zoneinfo import ZoneInfo

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from bot.storage.engine import dialect_insert
from bot.storage.tables import chats, subscriptions


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
