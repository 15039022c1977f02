"""Per-chat settings in the database: timezone, language, whether a group is enabled."""

from zoneinfo import ZoneInfo

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.storage.engine import Executor, upsert
from bot.storage.tables import chats, subscriptions


async def chat_timezone(executor: Executor, chat_id: int) -> str | None:
    return await executor.scalar(select(chats.c.timezone).where(chats.c.chat_id == chat_id))


async def save_chat(
    session: AsyncSession, chat_id: int, *, language: str, timezone: str | None = None
) -> None:
    """Remember the chat's language (and timezone, when given) for its digests."""
    values: dict[str, object] = {"language": language}
    if timezone is not None:
        values["timezone"] = timezone
    await upsert(session, chats, {"chat_id": chat_id}, values)


async def move_chat(connection: Executor, old_chat_id: int, new_chat_id: int) -> None:
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


async def chat_zone(executor: Executor, chat_id: int, default: str) -> ZoneInfo:
    """The chat's timezone, set with /timezone, else the TIMEZONE setting."""
    return ZoneInfo(await chat_timezone(executor, chat_id) or default)


async def is_enabled(executor: Executor, chat_id: int) -> bool:
    return bool(await executor.scalar(select(chats.c.enabled).where(chats.c.chat_id == chat_id)))


async def set_enabled(
    session: AsyncSession, chat_id: int, enabled: bool, *, language: str
) -> None:
    values: dict[str, object] = {"enabled": enabled, "language": language}
    await upsert(session, chats, {"chat_id": chat_id}, values)
