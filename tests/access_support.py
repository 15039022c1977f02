"""Harnesses shared by tests/test_access.py and tests/test_hostile_input.py.

Two layers, as DESIGN.md §8 describes:

- `Live` / `running(...)`: the Application that `python -m bot` runs (`build_application`),
  polling `tests.fake_telegram.FakeTelegram` on 127.0.0.1 over the real aiohttp session. The
  only deviation from production is a generous `OutboundLimiter` (passed through the documented
  `limiter=` parameter), so that tests sending many messages to one chat do not wait 1.1 s per
  message; pacing is tested elsewhere.
- `Direct`: the real Dispatcher of `build_dispatcher` fed hand-built updates, with a recording
  bot session (tests/recording_session.py). Used where a frozen clock or an update kind the fake
  does not model (edited messages, channel posts) is needed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime
from itertools import count
from typing import Any
from zoneinfo import ZoneInfo

from aiogram import Bot, Dispatcher
from aiogram.client.default import DefaultBotProperties
from aiogram.types import (
    CallbackQuery,
    Chat,
    Message,
    MessageEntity,
    MessageOriginUser,
    Update,
    User,
)
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.app import Application, build_application, build_dispatcher
from bot.config import Settings
from bot.storage.engine import session_factory
from bot.storage.people import grant_lead
from bot.storage.tables import chats, digest_deliveries, people, subscriptions
from bot.telegram.outbound import Limits, OutboundLimiter
from reports.schema import appeals, apps, clients
from tests.fake_telegram import BOT_USERNAME, Call, FakeTelegram
from tests.recording_session import RecordingSession

TOKEN = "123456:ACCESS-test-token"
ADMIN = 42
LEAD = 500
STRANGER = 777
# Telegram's stand-ins for "sent on behalf of a chat".
ANONYMOUS_ADMIN = 1087968824  # @GroupAnonymousBot, is_bot=true
SERVICE_USER = 777000  # "Telegram": automatic forwards from a linked channel
CHANNEL_BOT = 136817688  # @Channel_Bot: a user writing as one of their channels
GROUP = -1001234500001  # a supergroup
OTHER_GROUP = -1001234500002
MSK = ZoneInfo("Europe/Moscow")
# "yesterday" is then the hand-counted local day 2026-11-10 of tests/datasets.py.
NOW = datetime(2026, 11, 11, 12, 0, tzinfo=MSK)
SENDS = frozenset({"sendMessage", "sendPhoto", "sendMediaGroup", "sendDocument"})
REPORT = ["sendMessage", "sendMediaGroup", "sendDocument"]
# Requests a bot makes on its own: start-up and polling.
BACKGROUND = frozenset({"setMyCommands", "getMe", "getUpdates", "deleteWebhook"})
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


def make_settings(
    engine: AsyncEngine,
    *,
    token: str = TOKEN,
    api_url: str | None = None,
    admin_ids: Iterable[int] = (ADMIN,),
) -> Settings:
    return Settings(
        _env_file=None,
        bot_token=token,
        telegram_api_url=api_url,
        database_url=engine.url.render_as_string(hide_password=False),
        admin_ids=",".join(str(user_id) for user_id in admin_ids),
        timezone="Europe/Moscow",
        language="en",
    )


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


class Live:
    """The application polling the fake, with helpers to talk to it as Telegram users."""

    def __init__(self, tg: FakeTelegram, app: Application) -> None:
        self.tg, self.app = tg, app

    def say(self, text: str, *, user_id: int, chat_id: int | None = None, **extra: Any) -> int:
        """A message from user_id (in their private chat unless chat_id); returns update_id."""
        return self.tg.send_message(
            text, chat_id=user_id if chat_id is None else chat_id, user_id=user_id, **extra
        )

    async def settle(self, update_id: int) -> None:
        """Wait until the bot took the update and every handler it started has finished."""
        await self.tg.wait_confirmed(update_id)
        # The polling loop starts a handler task before it asks for (and so confirms) more.
        while tasks := set(self.app.dispatcher._handle_update_tasks):
            await asyncio.gather(*tasks)

    async def round_trip(
        self, text: str, *, user_id: int, chat_id: int | None = None, **extra: Any
    ) -> list[Call]:
        """Send one message, wait until it is fully handled; the calls it caused."""
        mark = len(self.tg.calls())
        await self.settle(self.say(text, user_id=user_id, chat_id=chat_id, **extra))
        return self.since(mark)

    def since(self, mark: int) -> list[Call]:
        """Calls after `mark` that the update caused (polling and start-up left out)."""
        return [call for call in self.tg.calls()[mark:] if call.method not in BACKGROUND]

    async def press(
        self, data: str, *, user_id: int, chat_id: int, message_id: int, check: bool = True
    ) -> list[Call]:
        mark = len(self.tg.calls())
        update = self.tg.press_button(
            data, chat_id=chat_id, user_id=user_id, message_id=message_id, check_button=check
        )
        await self.settle(update)
        return self.since(mark)


def methods(calls: Iterable[Call]) -> list[str]:
    return [call.method for call in calls if call.method != "sendChatAction"]


def texts(calls: Iterable[Call]) -> list[str]:
    return [call.params["text"] for call in calls if call.method == "sendMessage"]


@asynccontextmanager
async def running(
    engine: AsyncEngine,
    *,
    admin_ids: Iterable[int] = (ADMIN,),
    token: str = TOKEN,
    **fake: Any,
) -> AsyncIterator[Live]:
    """build_application polling a fresh fake, clock frozen at NOW."""
    async with FakeTelegram(token=token, **fake) as tg:
        settings = make_settings(engine, token=token, api_url=tg.base_url, admin_ids=admin_ids)
        app = build_application(settings, engine, clock=lambda: NOW, limiter=fast_limiter())
        polling = asyncio.create_task(
            app.dispatcher.start_polling(app.bot, handle_signals=False, polling_timeout=1)
        )
        live = Live(tg, app)
        try:
            waiter = asyncio.create_task(tg.wait_polling())
            await asyncio.wait([polling, waiter], return_when=asyncio.FIRST_COMPLETED)
            if not waiter.done():  # polling ended before it ever polled: show why
                waiter.cancel()
                with suppress(asyncio.CancelledError):
                    await waiter
                polling.result()
            waiter.result()
            yield live
            while tasks := set(app.dispatcher._handle_update_tasks):
                await asyncio.gather(*tasks)
        finally:
            if not polling.done():
                await app.dispatcher.stop_polling()
            await polling


# -- dispatcher level --------------------------------------------------------------------------

_ids = count(1000)


def user(user_id: int, *, is_bot: bool = False, first_name: str = "Test") -> User:
    return User(id=user_id, is_bot=is_bot, first_name=first_name, language_code="en")


def chat(chat_id: int) -> Chat:
    if chat_id > 0:
        return Chat(id=chat_id, type="private", first_name="Test")
    kind = "supergroup" if str(chat_id).startswith("-100") else "group"
    return Chat(id=chat_id, type=kind, title=f"Team {chat_id}")


def message(
    text: str,
    *,
    user_id: int | None,
    chat_id: int | None = None,
    from_bot: bool = False,
    sender_chat: Chat | None = None,
    forwarded_from: int | None = None,
    reply_to: Message | None = None,
) -> Message:
    where = chat(user_id if chat_id is None and user_id is not None else chat_id or 0)
    entities = None
    if text.startswith("/"):
        entities = [MessageEntity(type="bot_command", offset=0, length=len(text.split()[0]))]
    return Message(
        message_id=next(_ids),
        date=datetime.now(UTC),
        chat=where,
        from_user=None if user_id is None else user(user_id, is_bot=from_bot),
        sender_chat=sender_chat,
        forward_origin=(
            None
            if forwarded_from is None
            else MessageOriginUser(date=datetime.now(UTC), sender_user=user(forwarded_from))
        ),
        reply_to_message=reply_to,
        text=text,
        entities=entities,
    )


class Direct:
    """build_dispatcher fed updates directly; the bot's requests are recorded, not sent."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher
        self.session = RecordingSession()
        self.bot = Bot(
            TOKEN, session=self.session, default=DefaultBotProperties(parse_mode="HTML")
        )

    async def feed(self, **update: Any) -> None:
        await self.dispatcher.feed_update(self.bot, Update(update_id=next(_ids), **update))

    async def send(
        self, text: str, *, user_id: int, chat_id: int | None = None, **kw: Any
    ) -> None:
        await self.feed(message=message(text, user_id=user_id, chat_id=chat_id, **kw))

    async def press(self, data: str, *, user_id: int, chat_id: int | None = None) -> None:
        where = chat(user_id if chat_id is None else chat_id)
        query = CallbackQuery(
            id=str(next(_ids)),
            from_user=user(user_id),
            chat_instance="1",
            data=data,
            message=Message(
                message_id=1,
                date=datetime.now(UTC),
                chat=where,
                from_user=User(id=123456, is_bot=True, first_name="Bot", username=BOT_USERNAME),
                text="report",
            ),
        )
        await self.feed(callback_query=query)

    def names(self) -> list[str]:
        return [
            r.__api_method__ for r in self.session.requests if r.__api_method__ != "sendChatAction"
        ]

    def texts(self) -> list[str]:
        return [request.text for request in self.session.sent("sendMessage")]

    def alerts(self) -> list[tuple[str | None, bool | None]]:
        return [(r.text, r.show_alert) for r in self.session.sent("answerCallbackQuery")]

    def clear(self) -> None:
        self.session.requests.clear()


@asynccontextmanager
async def direct(
    engine: AsyncEngine, *, admin_ids: Iterable[int] = (ADMIN,)
) -> AsyncIterator[Direct]:
    dispatcher = build_dispatcher(
        make_settings(engine, admin_ids=admin_ids), engine, clock=lambda: NOW
    )
    harness = Direct(dispatcher)
    try:
        yield harness
    finally:
        await dispatcher.emit_shutdown()
