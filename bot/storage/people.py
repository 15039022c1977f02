"""Stored facts about Telegram users: the language chosen with /lang and the granted role."""

from dataclasses import dataclass
from typing import Any, Literal, cast

from sqlalchemy import CursorResult, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bot.storage.engine import Executor, upsert
from bot.storage.tables import people

Role = Literal["admin", "lead"]


@dataclass(frozen=True, slots=True)
class Person:
    user_id: int
    role: Role
    name: str | None


async def stored_language(session: AsyncSession, user_id: int) -> str | None:
    return await session.scalar(select(people.c.language).where(people.c.user_id == user_id))


async def store_language(session: AsyncSession, user_id: int, language: str) -> None:
    await upsert(session, people, {"user_id": user_id}, {"language": language})


async def role_of(executor: Executor, user_id: int, admin_ids: frozenset[int]) -> Role | None:
    """Admins come from ADMIN_IDS (and cannot be revoked); leads are granted in the database."""
    if user_id in admin_ids:
        return "admin"
    role = await executor.scalar(select(people.c.role).where(people.c.user_id == user_id))
    return "lead" if role == "lead" else None


async def grant_lead(
    session: AsyncSession, user_id: int, *, granted_by: int, name: str | None
) -> None:
    values: dict[str, object] = {"role": "lead", "granted_by": granted_by}
    if name:
        values["name"] = name[:200]
    await upsert(session, people, {"user_id": user_id}, values)


async def revoke_lead(session: AsyncSession, user_id: int) -> bool:
    result = await session.execute(
        update(people)
        .where(people.c.user_id == user_id, people.c.role == "lead")
        .values(role=None)
    )
    # An UPDATE's result is a CursorResult, which counts the rows it changed.
    return bool(cast(CursorResult[Any], result).rowcount)


async def list_people(session: AsyncSession, admin_ids: frozenset[int]) -> list[Person]:
    """Admins first, then leads, each by id."""
    rows = await session.execute(
        select(people.c.user_id, people.c.role, people.c.name).where(
            (people.c.role == "lead") | people.c.user_id.in_(admin_ids)
        )
    )
    known = {row.user_id: row for row in rows}
    admins = [
        Person(user_id, "admin", known[user_id].name if user_id in known else None)
        for user_id in sorted(admin_ids)
    ]
    leads = [
        Person(row.user_id, "lead", row.name)
        for user_id, row in sorted(known.items())
        if user_id not in admin_ids and row.role == "lead"
    ]
    return admins + leads
