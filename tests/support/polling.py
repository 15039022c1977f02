"""The end-to-end harness: a real polling loop and aiohttp session against the fake Bot API.

`settle()` waits on the fake (the update was consumed) and on an outer middleware that counts
the updates being handled, outermost so that error handlers are counted too; it reads nothing
private of aiogram's.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager, suppress
from typing import Any

from aiogram import Bot, Dispatcher

from bot.telegram.middlewares import InFlightMiddleware
from tests.fake_telegram import Call, FakeTelegram
from tests.support.settings import ADMIN

# Requests that put something into a chat (answerCallbackQuery is shown as a toast, not a message).
SENDS = frozenset({"sendMessage", "sendPhoto", "sendMediaGroup", "sendDocument"})
# Requests a bot makes on its own: start-up and polling.
BACKGROUND = frozenset(
    {"setMyCommands", "deleteMyCommands", "getMe", "getUpdates", "deleteWebhook"}
)
HELP_FIRST_LINE = {"en": "Commands", "ru": "Команды"}


def count_updates(dispatcher: Dispatcher) -> InFlightMiddleware:
    """One more of the bot's in-flight counters, outside every outer middleware, so that the
    error handlers are counted too.

    The polling loop starts a handler task before it asks for (and so confirms) more updates,
    and that task enters the counter in its first step, before the next request is written.
    """
    counter = InFlightMiddleware()
    manager = dispatcher.update.outer_middleware
    existing = list(manager)
    for middleware in existing:
        manager.unregister(middleware)
    manager(counter)
    for middleware in existing:
        manager(middleware)
    return counter


class Live:
    """The application polling the fake, with helpers to talk to it as Telegram users."""

    def __init__(
        self,
        tg: FakeTelegram,
        bot: Bot,
        dispatcher: Dispatcher,
        handled: InFlightMiddleware,
        *,
        timeout: float | None = None,
    ) -> None:
        self.tg, self.bot, self.dispatcher, self.handled = tg, bot, dispatcher, handled
        # How long settle() waits before failing; None: the fake's own wait for the update.
        self.timeout = timeout

    # -- what a user does ------------------------------------------------------------------

    def say(self, text: str, *, user_id: int, chat_id: int | None = None, **extra: Any) -> int:
        """A message from user_id (in their private chat unless chat_id); returns update_id."""
        return self.tg.send_message(
            text, chat_id=user_id if chat_id is None else chat_id, user_id=user_id, **extra
        )

    def command(self, text: str, *, user_id: int = ADMIN, language_code: str = "en") -> int:
        """A private-chat message from user_id; returns its update_id."""
        return self.say(text, user_id=user_id, language_code=language_code)

    async def idle(self, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """Wait until every update the polling loop took has been handled."""
        if not await self.handled.wait_idle(timeout or self.timeout):
            raise TimeoutError("updates still being handled")

    async def settle(self, update_id: int, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """Wait until the bot took the update and every handler it started has finished."""
        timeout = timeout or self.timeout
        if timeout is None:
            await self.tg.wait_confirmed(update_id)
        else:
            await self.tg.wait_confirmed(update_id, timeout=timeout)
        await self.idle(timeout)

    async def round_trip(
        self, text: str, *, user_id: int, chat_id: int | None = None, **extra: Any
    ) -> list[Call]:
        """Send one message, wait until it is fully handled; the calls it caused."""
        mark = len(self.tg.calls())
        await self.settle(self.say(text, user_id=user_id, chat_id=chat_id, **extra))
        return self.since(mark)

    async def press(
        self, data: str, *, user_id: int, chat_id: int, message_id: int, check: bool = True
    ) -> list[Call]:
        mark = len(self.tg.calls())
        update = self.tg.press_button(
            data, chat_id=chat_id, user_id=user_id, message_id=message_id, check_button=check
        )
        await self.settle(update)
        return self.since(mark)

    # -- what the bot did ------------------------------------------------------------------

    def since(self, mark: int) -> list[Call]:
        """Calls after `mark` that the update caused (polling and start-up left out)."""
        return [call for call in self.tg.calls()[mark:] if call.method not in BACKGROUND]

    def sends(self) -> list[Call]:
        return [call for call in self.tg.calls() if call.method in SENDS]

    def sent_methods(self, *, ok_only: bool = True) -> list[str]:
        return [call.method for call in self.sends() if call.ok or not ok_only]

    def ok_counts(self) -> Counter[str]:
        return Counter(call.method for call in self.tg.calls() if call.ok)

    def delivered(self, chat_id: int = ADMIN) -> list[Call]:
        """Send requests Telegram accepted for this chat, in order."""
        return [
            call
            for call in self.tg.calls()
            if call.method in SENDS and call.ok and call.params.get("chat_id") == str(chat_id)
        ]

    def delivered_methods(self, chat_id: int = ADMIN) -> list[str]:
        return [call.method for call in self.delivered(chat_id)]

    async def assert_serves_help(self, *, user_id: int = ADMIN, lang: str = "en") -> None:
        """A /help now is answered exactly once."""
        before = len(self.delivered(user_id))
        update = self.command("/help", user_id=user_id)
        await self.settle(update)
        new = self.delivered(user_id)[before:]
        assert [call.method for call in new] == ["sendMessage"]
        assert new[0].result["text"].split("\n")[0] == HELP_FIRST_LINE[lang]


def methods(calls: Iterable[Call]) -> list[str]:
    return [call.method for call in calls if call.method != "sendChatAction"]


def texts(calls: Iterable[Call]) -> list[str]:
    return [call.params["text"] for call in calls if call.method == "sendMessage"]


@asynccontextmanager
async def polling(
    tg: FakeTelegram,
    bot: Bot,
    dispatcher: Dispatcher,
    *,
    timeout: float | None = None,  # noqa: ASYNC109 - how long settle() waits
) -> AsyncIterator[Live]:
    """Run the real polling loop against the fake until the block ends, then stop it."""
    live = Live(tg, bot, dispatcher, count_updates(dispatcher), timeout=timeout)
    task = asyncio.create_task(
        dispatcher.start_polling(bot, handle_signals=False, polling_timeout=1)
    )
    try:
        waiter = asyncio.create_task(
            tg.wait_polling() if timeout is None else tg.wait_polling(timeout=timeout)
        )
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if not waiter.done():  # polling ended before it ever polled: show why
            waiter.cancel()
            with suppress(asyncio.CancelledError):
                await waiter
            task.result()
            raise AssertionError("polling stopped before its first getUpdates")
        waiter.result()
        yield live
        await live.idle()
    finally:
        if not task.done():
            await dispatcher.stop_polling()
        await task
    session = bot.session._session  # type: ignore[attr-defined]
    assert session is None or session.closed, "polling must close the bot's HTTP session"
