"""A bot session double for dispatcher-level tests: records every method and answers plausibly."""

from collections.abc import AsyncGenerator
from datetime import UTC, datetime
from typing import Any, get_origin

from aiogram import Bot
from aiogram.client.session.base import BaseSession
from aiogram.methods import TelegramMethod
from aiogram.types import Chat, Message


class RecordingSession(BaseSession):
    def __init__(self) -> None:
        super().__init__()
        self.requests: list[TelegramMethod[Any]] = []
        self._message_id = 0

    def _message(self, method: TelegramMethod[Any]) -> Message:
        self._message_id += 1
        chat_id = getattr(method, "chat_id", 0)
        return Message(
            message_id=self._message_id,
            date=datetime.now(UTC),
            chat=Chat(id=chat_id if isinstance(chat_id, int) else 0, type="private"),
            text=getattr(method, "text", None),
        )

    async def make_request(
        self,
        bot: Bot,
        method: TelegramMethod[Any],
        timeout: int | None = None,  # noqa: ASYNC109 - aiogram API
    ) -> Any:
        self.requests.append(method)
        returning = method.__returning__
        if returning is Message:
            return self._message(method)
        if get_origin(returning) is list:
            return [self._message(method) for _ in getattr(method, "media", [])]
        return True

    async def stream_content(self, *args: Any, **kwargs: Any) -> AsyncGenerator[bytes, None]:
        raise NotImplementedError
        yield b""  # pragma: no cover

    async def close(self) -> None:
        pass

    def sent(self, name: str) -> list[TelegramMethod[Any]]:
        """Requests of one method, by its API name (e.g. "sendMessage")."""
        return [request for request in self.requests if request.__api_method__ == name]
