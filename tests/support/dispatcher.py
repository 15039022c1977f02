"""The dispatcher-level harness: the real Dispatcher fed hand-built updates, requests recorded.

Used where a frozen clock or an update kind the fake Bot API does not model (edited messages,
channel posts) is needed; nothing goes over the network.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from itertools import count
from typing import Any

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
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.app import build_dispatcher
from tests.fake_telegram import BOT_USERNAME
from tests.support.recording import RecordingSession
from tests.support.settings import ADMIN, NOW, make_settings

TOKEN = "123456:ACCESS-test-token"

_ids = count(1000)


def user(
    user_id: int, *, is_bot: bool = False, first_name: str = "Test", language: str = "en"
) -> User:
    return User(id=user_id, is_bot=is_bot, first_name=first_name, language_code=language)


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
    language: str = "en",
) -> Message:
    where = chat(user_id if chat_id is None and user_id is not None else chat_id or 0)
    entities = None
    if text.startswith("/"):
        entities = [MessageEntity(type="bot_command", offset=0, length=len(text.split()[0]))]
    return Message(
        message_id=next(_ids),
        date=datetime.now(UTC),
        chat=where,
        from_user=None if user_id is None else user(user_id, is_bot=from_bot, language=language),
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

    def __init__(self, dispatcher: Dispatcher, *, token: str = TOKEN) -> None:
        self.dispatcher = dispatcher
        self.session = RecordingSession()
        self.bot = Bot(
            token, session=self.session, default=DefaultBotProperties(parse_mode="HTML")
        )

    async def feed(self, **update: Any) -> None:
        await self.dispatcher.feed_update(self.bot, Update(update_id=next(_ids), **update))

    async def send(
        self, text: str, *, user_id: int = ADMIN, chat_id: int | None = None, **kw: Any
    ) -> None:
        await self.feed(message=message(text, user_id=user_id, chat_id=chat_id, **kw))

    async def press(
        self, data: str, *, user_id: int = ADMIN, chat_id: int | None = None, language: str = "en"
    ) -> None:
        where = chat(user_id if chat_id is None else chat_id)
        query = CallbackQuery(
            id=str(next(_ids)),
            from_user=user(user_id, language=language),
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
