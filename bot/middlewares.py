"""Middlewares: one database session per update, and the admin-only access check."""

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.types import CallbackQuery, Message, TelegramObject, User
from aiogram.utils.i18n import gettext as _
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

logger = logging.getLogger(__name__)

Handler = Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]]


class DbSessionMiddleware(BaseMiddleware):
    """Opens a session for the update, commits when the handler succeeds, else rolls back."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self.sessions = sessions

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        async with self.sessions() as session:
            data["session"] = session
            try:
                result = await handler(event, data)
                await session.commit()
                return result
            finally:
                # Error handlers see the same data after this session is closed.
                del data["session"]


class AdminOnlyMiddleware(BaseMiddleware):
    """Lets through only users listed in ADMIN_IDS, judged by the sender, never the chat."""

    def __init__(self, admin_ids: frozenset[int]) -> None:
        self.admin_ids = admin_ids

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        user: User | None = data.get("event_from_user")
        if user is not None and user.id in self.admin_ids:
            return await handler(event, data)
        user_id = user.id if user else "?"
        logger.info("refused user %s", user_id)
        refusal = _(
            "Sorry, this bot shows client data to its admins only. "
            "Your Telegram id is <code>{user_id}</code>: an admin can add it to ADMIN_IDS."
        ).format(user_id=user_id)
        if isinstance(event, Message):
            await event.answer(refusal)
        elif isinstance(event, CallbackQuery):
            await event.answer(_("Not allowed."), show_alert=True)
        return None
