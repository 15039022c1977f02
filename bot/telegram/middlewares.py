"""Middlewares: a database session per update, who may do what, report flood control, and each
update handled once.

Access is decided by the sending user (`from`), never by the chat, and only for updates a
handler matched (inner middlewares), so chatter in a group and commands for other bots pass
unanswered. Handlers declare what they need with the flag `access`: "public", "lead" (the
default) or "admin"; `any_chat` lets a command work in a group that is not enabled yet.
The flood windows, the report in flight and the refusal notes live in a `SharedState`: this
process's memory, or Redis for all instances.
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from aiogram import BaseMiddleware
from aiogram.dispatcher.flags import get_flag
from aiogram.types import CallbackQuery, Chat, Message, TelegramObject, Update, User
from aiogram.utils.i18n import gettext as _
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.access import decide
from bot.shared_state import Admission, LocalState, SharedState
from bot.storage.engine import session_factory, session_read_retrying

logger = logging.getLogger(__name__)

Handler = Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]]
Clock = Callable[[], float]

# Telegram's stand-ins for messages sent on behalf of a chat: an anonymous group admin, and
# posts of a linked channel. Neither tells who the person is.
ANONYMOUS_ADMIN_ID = 1087968824
SERVICE_USER_ID = 777000
# @Channel_Bot: the sender of a message a user posts as one of their channels.
CHANNEL_BOT_ID = 136817688
# Accounts that stand in for a chat, never a person: no role can be given to them.
SERVICE_USER_IDS = frozenset({ANONYMOUS_ADMIN_ID, SERVICE_USER_ID, CHANNEL_BOT_ID})
GROUP_TYPES = ("group", "supergroup")


class AfterCommit:
    """What a handler does once its changes are committed: the reply that states the change,
    and anything that reads what was written (the digest schedule).

    A reply sent before the commit would tell the user "done" about a change that a failed
    commit then threw away.
    """

    def __init__(self) -> None:
        self._actions: list[Callable[[], Awaitable[object]]] = []

    def answer(self, message: Message, text: str) -> None:
        self._actions.append(partial(message.answer, text))

    def call(self, action: Callable[[], Awaitable[object]]) -> None:
        self._actions.append(action)

    async def run(self) -> None:
        for action in self._actions:
            await action()


class DbSessionMiddleware(BaseMiddleware):
    """The update's session and its one commit, after the handler; then the handler's
    after-commit replies. A handler that raises is rolled back and its replies are dropped.

    Handlers flagged `writes` get a transaction that takes SQLite's write lock at BEGIN: a
    deferred transaction that reads and then writes fails at once with "database is locked"
    when another writer got there first, where an immediate one waits out the busy timeout.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self.sessions = session_factory(engine)
        self.writing_sessions = session_factory(engine.execution_options(sqlite_begin="IMMEDIATE"))

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        sessions = self.writing_sessions if get_flag(data, "writes") else self.sessions
        after_commit = AfterCommit()
        async with sessions() as session:
            data["session"] = session
            data["after_commit"] = after_commit
            try:
                result = await handler(event, data)
                await session.commit()
            finally:
                # Error handlers see the same data after this session is closed.
                del data["session"], data["after_commit"]
        await after_commit.run()
        return result


class AccessMiddleware(BaseMiddleware):
    def __init__(
        self,
        admin_ids: frozenset[int],
        sessions: async_sessionmaker[AsyncSession],
        *,
        clock: Clock = time.monotonic,
        refusal_interval: float = 3600.0,
        state: SharedState | None = None,
    ) -> None:
        self.admin_ids = admin_ids
        # Its own short reads, ended before the handler runs: a long report or a write must
        # not run inside this read transaction (it would hold a pooled connection, and on
        # SQLite a write after a read cannot wait out the busy timeout).
        self.sessions = sessions
        self.refusal_interval = refusal_interval
        # Who was told "not allowed" this hour, over all instances.
        self.state = state or LocalState(clock)

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        user: User | None = data.get("event_from_user")
        needed = get_flag(data, "access", default="lead")
        chat: Chat | None = data.get("event_chat")
        group_id = (
            chat.id
            if chat is not None and chat.type in GROUP_TYPES and not get_flag(data, "any_chat")
            else None
        )
        access = await session_read_retrying(
            self.sessions,
            lambda session: decide(
                session,
                self.admin_ids,
                user_id=None if user is None else user.id,
                group_id=group_id,
            ),
        )
        if access.group_enabled is False:
            await self._group_not_enabled(
                event, isinstance(event, Message) and access.role == "admin"
            )
            return None
        if needed == "public":
            return await handler(event, data)
        if isinstance(event, Message) and _on_behalf_of_chat(event, user):
            await event.answer(
                _(
                    "I can't tell who you are: this message was sent on behalf of a chat. "
                    "Turn off “Remain anonymous” in your admin rights (or write as yourself) "
                    "and send the command again."
                )
            )
            return None
        if user is None:
            return None
        if access.refusal(needed) is not None:
            await self._refuse(event, user, access.role)
            return None
        data["role"] = access.role
        return await handler(event, data)

    async def _group_not_enabled(self, event: TelegramObject, tell_admin: bool) -> None:
        """Silence in a group nobody enabled; only an admin is told how to enable it."""
        if isinstance(event, CallbackQuery):
            await event.answer(_("Not allowed."), show_alert=True)
        elif isinstance(event, Message) and tell_admin:
            await event.answer(_("This group is not enabled yet: an admin can send /enable."))

    async def _refuse(self, event: TelegramObject, user: User, role: str | None) -> None:
        logger.info("refused user %s (role %s)", user.id, role)
        if isinstance(event, CallbackQuery):
            # A button press must be answered either way, or the client keeps spinning.
            await event.answer(_("Not allowed."), show_alert=True)
            return
        if not await self.state.claim(f"refused:{user.id}", self.refusal_interval):
            return
        if not isinstance(event, Message):
            return
        if role is None:
            await event.answer(
                _(
                    "Sorry, this bot shows client data only to people an admin allowed. "
                    "Your Telegram id is <code>{user_id}</code>: send it to an admin."
                ).format(user_id=user.id)
            )
        else:
            await event.answer(_("Only admins can do that."))


def _on_behalf_of_chat(message: Message, user: User | None) -> bool:
    return (
        message.sender_chat is not None
        or user is None
        or user.id in (ANONYMOUS_ADMIN_ID, SERVICE_USER_ID)
    )


class ReportFloodMiddleware(BaseMiddleware):
    """One report in flight per user; past `limit` reports a minute, one warning, then silence."""

    def __init__(
        self,
        *,
        limit: int = 10,
        window: float = 60.0,
        clock: Clock = time.monotonic,
        state: SharedState | None = None,
    ) -> None:
        self.limit, self.window = limit, window
        self.state = state or LocalState(clock)

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        user: User | None = data.get("event_from_user")
        if not get_flag(data, "report") or user is None:
            return await handler(event, data)
        admission = await self.state.admit(f"reports:{user.id}", self.limit, self.window)
        if admission is not Admission.ACCEPTED:
            if admission is Admission.REFUSED_FIRST:
                await _notify(event, _("Too many reports at once: please slow down a little."))
            elif isinstance(event, CallbackQuery):
                await event.answer()
            logger.info("report flood from user %s: dropped", user.id)
            return None
        async with self.state.hold(f"report:{user.id}"):
            return await handler(event, data)


class UpdateOnceMiddleware(BaseMiddleware):
    """An update Telegram delivers again (to this instance or another) is not handled again.

    Telegram repeats a webhook delivery it thinks failed, a slow answer included; the first
    instance to claim the update_id handles it.
    """

    # Telegram keeps an undelivered update for 24 hours.
    TTL = 24 * 3600.0

    def __init__(self, state: SharedState | None = None) -> None:
        self.state = state or LocalState()

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        if isinstance(event, Update) and not await self.state.claim(
            f"update:{event.update_id}", self.TTL
        ):
            logger.info("update %s delivered again: skipped", event.update_id)
            return None
        return await handler(event, data)


async def _notify(event: TelegramObject, text: str) -> None:
    if isinstance(event, Message):
        await event.answer(text)
    elif isinstance(event, CallbackQuery):
        await event.answer(text, show_alert=True)


class InFlightMiddleware(BaseMiddleware):
    """Counts updates being handled, so a shutdown can let them finish their sends.

    aiogram cancels polling on SIGTERM but does not wait for handler tasks already running.
    """

    def __init__(self) -> None:
        self.count = 0
        self._idle = asyncio.Event()
        self._idle.set()

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        self.count += 1
        self._idle.clear()
        try:
            return await handler(event, data)
        finally:
            self.count -= 1
            if self.count == 0:
                self._idle.set()

    async def wait_idle(self, grace: float) -> bool:
        """True when every update finished within `grace` seconds."""
        try:
            await asyncio.wait_for(self._idle.wait(), grace)
        except TimeoutError:
            logger.warning("%s updates still running at shutdown", self.count)
            return False
        return True
