"""Stored facts about Telegram users: the language chosen with /lang."""

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.db import dialect_insert
from bot.models import people


async def stored_language(session: AsyncSession, user_id: int) -> str | None:
    return await session.scalar(select(people.c.language).where(people.c.user_id == user_id))


async def store_language(session: AsyncSession, user_id: int, language: str) -> None:
    statement = dialect_insert(session.bind.dialect.name)(people).values(
        user_id=user_id, language=language
    )
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=[people.c.user_id], set_={"language": language}
        )
    )
