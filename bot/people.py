"""Stored facts about Telegram users: the language chosen with /lang."""

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from bot.models import people


async def stored_language(session: AsyncSession, user_id: int) -> str | None:
    return await session.scalar(select(people.c.language).where(people.c.user_id == user_id))


async def store_language(session: AsyncSession, user_id: int, language: str) -> None:
    insert = pg_insert if session.bind.dialect.name == "postgresql" else sqlite_insert
    statement = insert(people).values(user_id=user_id, language=language)
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=[people.c.user_id], set_={"language": language}
        )
    )
