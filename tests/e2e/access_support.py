"""Constants, database probes and the polling set-up shared by tests/e2e/test_access.py and
tests/e2e/test_hostile_input.py; the harnesses themselves are in tests/support/.

`running(...)` is the Application that `python -m bot` runs (`build_application`), polling
`tests.fake_telegram.FakeTelegram` on 127.0.0.1 over the real aiohttp session. The only deviation
from production is a generous `OutboundLimiter` (passed through the documented `limiter=`
parameter), so that tests sending many messages to one chat do not wait 1.1 s per message;
pacing is tested elsewhere. `direct(...)` (tests/support/dispatcher.py) is the dispatcher fed
hand-built updates.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.app import Application, build_application
from bot.storage.engine import session_factory
from bot.storage.people import grant_lead
from bot.storage.tables import chats, digest_deliveries, people, subscriptions
from bot.telegram.outbound import Limits, OutboundLimiter
from reports.schema import appeals, apps, clients
from tests.fake_telegram import FakeTelegram
from tests.support.dispatcher import Direct, chat, direct, message, user
from tests.support.polling import BACKGROUND, SENDS, Live, methods, polling, texts
from tests.support.settings import ADMIN, MSK, NOW, make_settings

__all__ = [
    "BACKGROUND",
    "MSK",
    "SENDS",
    "Direct",
    "chat",
    "direct",
    "message",
    "methods",
    "texts",
    "user",
]

TOKEN = "123456:ACCESS-test-token"
LEAD = 500
STRANGER = 777
# Telegram's stand-ins for "sent on behalf of a chat".
ANONYMOUS_ADMIN = 1087968824  # @GroupAnonymousBot, is_bot=true
SERVICE_USER = 777000  # "Telegram": automatic forwards from a linked channel
CHANNEL_BOT = 136817688  # @Channel_Bot: a user writing as one of their channels
GROUP = -1001234500001  # a supergroup
OTHER_GROUP = -1001234500002
REPORT = ["sendMessage", "sendMediaGroup", "sendDocument"]
NOT_ENABLED = "This group is not enabled yet: an admin can send /enable."
ON_BEHALF_HINT = "I can't tell who you are: this message was sent on behalf of a chat."
ONLY_ADMINS = "Only admins can do that."
SLOW_DOWN = "Too many reports at once: please slow down a little."
HELP_START = "<b>Commands</b>"
INVALID_BUTTON = "This button is no longer valid."
NOT_ALLOWED = "Not allowed."


def refusal(user_id: int) -> str:
    return (
        "Sorry, this bot shows client data only to people an admin allowed. "
        f"Your Telegram id is <code>{user_id}</code>: send it to an admin."
    )


def fast_limiter() -> OutboundLimiter:
    return OutboundLimiter(Limits(per_second=10_000.0, chat_interval=0.0, group_per_minute=10**6))


# -- database ----------------------------------------------------------------------------------

COUNTED_TABLES = {
    "appeals": appeals,
    "clients": clients,
    "apps": apps,
    "subscriptions": subscriptions,
    "people": people,
    "chats": chats,
    "digest_deliveries": digest_deliveries,
}


async def table_counts(engine: AsyncEngine) -> dict[str, int]:
    async with engine.connect() as connection:
        return {
            name: int(await connection.scalar(select(func.count()).select_from(table)) or 0)
            for name, table in COUNTED_TABLES.items()
        }


async def grant_leads(engine: AsyncEngine, user_ids: Iterable[int]) -> None:
    """Leads as /grant would store them (granted by ADMIN)."""
    async with session_factory(engine)() as session:
        for user_id in user_ids:
            await grant_lead(session, user_id, granted_by=ADMIN, name=None)
        await session.commit()


async def role_in_db(engine: AsyncEngine, user_id: int) -> tuple[str | None, str | None] | None:
    """(role, name) of the people row, or None without a row."""
    async with engine.connect() as connection:
        row = (
            await connection.execute(
                select(people.c.role, people.c.name).where(people.c.user_id == user_id)
            )
        ).first()
    return None if row is None else (row.role, row.name)


async def subscription_states(engine: AsyncEngine) -> dict[int, list[tuple[bool, str | None]]]:
    """chat_id -> [(active, deactivated_reason)] in id order."""
    async with engine.connect() as connection:
        rows = await connection.execute(
            select(
                subscriptions.c.chat_id,
                subscriptions.c.active,
                subscriptions.c.deactivated_reason,
            ).order_by(subscriptions.c.id)
        )
        states: dict[int, list[tuple[bool, str | None]]] = {}
        for row in rows:
            states.setdefault(row.chat_id, []).append((bool(row.active), row.deactivated_reason))
    return states


async def is_enabled_in_db(engine: AsyncEngine, chat_id: int) -> bool:
    async with engine.connect() as connection:
        return bool(
            await connection.scalar(select(chats.c.enabled).where(chats.c.chat_id == chat_id))
        )


# -- end to end --------------------------------------------------------------------------------


@asynccontextmanager
async def running(
    engine: AsyncEngine,
    *,
    admin_ids: Iterable[int] = (ADMIN,),
    token: str = TOKEN,
    **fake: Any,
) -> AsyncIterator[Live]:
    """build_application polling a fresh fake, clock frozen at NOW."""
    async with running_application(
        engine, clock=lambda: NOW, admin_ids=admin_ids, token=token, **fake
    ) as (live, _app):
        yield live


@asynccontextmanager
async def running_application(
    engine: AsyncEngine,
    *,
    clock: Callable[[], datetime],
    admin_ids: Iterable[int] = (ADMIN,),
    token: str = TOKEN,
    **fake: Any,
) -> AsyncIterator[tuple[Live, Application]]:
    """As `running`, on the given clock, with the Application (its digest runner and clock)."""
    async with FakeTelegram(token=token, **fake) as tg:
        settings = make_settings(engine, token=token, api_url=tg.base_url, admin_ids=admin_ids)
        app = build_application(settings, engine, clock=clock, limiter=fast_limiter())
        async with polling(tg, app.bot, app.dispatcher) as live:
            yield live, app
