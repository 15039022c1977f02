"""Everything the bot sends passes here: one rate limiter and one retry policy for all requests.

Telegram allows about 30 messages a second overall, one a second per chat and 20 a minute per
group; aiogram neither paces nor retries (a 429 raises TelegramRetryAfter, a 5xx
TelegramServerError). Both middlewares are installed on the bot's session, so commands and digests
share them.
"""

import asyncio
import logging
import math
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from aiogram import Bot
from aiogram.client.session.middlewares.base import (
    BaseRequestMiddleware,
    NextRequestMiddlewareType,
)
from aiogram.exceptions import (
    ClientDecodeError,
    TelegramBadRequest,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)
from aiogram.methods import (
    CopyMessage,
    EditMessageText,
    ForwardMessage,
    Response,
    SendDocument,
    SendMediaGroup,
    SendMessage,
    SendPhoto,
    TelegramMethod,
)

logger = logging.getLogger(__name__)

# Methods that put a message into a chat and so count against Telegram's limits.
COUNTED = (
    SendMessage,
    SendPhoto,
    SendDocument,
    SendMediaGroup,
    EditMessageText,
    CopyMessage,
    ForwardMessage,
)

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]
T = TypeVar("T")

# What Telegram or the network answers when it cannot take a request right now.
TELEGRAM_UNAVAILABLE = (TelegramServerError, TelegramNetworkError, ClientDecodeError)
# What is left after the retries gave up: Telegram or the network kept failing, or asked for a
# wait longer than MAX_RETRY_AFTER.
UNDELIVERABLE = (*TELEGRAM_UNAVAILABLE, TelegramRetryAfter)
# What Telegram refuses for good (400: the chat forbids photos, a text too long): sending the
# same request again gets the same answer, so it is never retried.
REJECTED = (TelegramBadRequest,)
# A flood-control wait longer than this is not waited out: the request fails instead.
MAX_RETRY_AFTER = 300.0


@dataclass(frozen=True, slots=True)
class Limits:
    # Telegram allows about 30: sends are paced when let through, and a loop busy drawing or
    # writing can release several late at once, so the margin is wide enough to absorb that.
    per_second: float = 20.0
    # A little over a second: requests reach Telegram with jitter, and its window is 1 s.
    chat_interval: float = 1.1
    group_per_minute: int = 20


class Pacer(Protocol):
    """Paces the messages into chats: this process's `OutboundLimiter`, or one shared by all
    instances (bot.shared_state)."""

    async def wait(self, chat_id: int | str, weight: int = 1) -> None:
        """Return when `weight` more messages to the chat keep every limit."""
        ...

    async def answered(self, chat_id: int | str) -> None:
        """The request was answered: the chat's next message keeps its distance from it."""
        ...

    async def pause(self, chat_id: int | str, seconds: float) -> None:
        """Telegram asked (429 retry_after) that the chat get nothing for `seconds`."""
        ...


class OutboundLimiter:
    """Paces messages: each chat at its own interval, all chats within the overall and group
    windows.

    A chat's pace is booked ahead (only that chat waits for it). The overall rate spaces sends
    evenly after the last one actually let through, and a group's limit counts its sends of the
    last minute; both are judged at the moment of sending, so a late wake-up after a busy loop
    cannot bunch messages past a limit.
    """

    def __init__(
        self,
        limits: Limits | None = None,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.limits = limits or Limits()
        self._clock, self._sleep = clock, sleep
        self._next_in_chat: dict[int | str, float] = {}
        # When the overall spacing lets the next message go.
        self._next_overall = 0.0
        self._group_sent: dict[int | str, deque[float]] = {}

    def reserve(self, chat_id: int | str, weight: int = 1) -> float:
        """Book the chat's next `weight` messages; returns when its own pace lets them go."""
        at = max(self._clock(), self._next_in_chat.get(chat_id, 0.0))
        self._next_in_chat[chat_id] = at + weight * self.limits.chat_interval
        return at

    def window_delay(self, chat_id: int | str, weight: int = 1) -> float:
        """Seconds until `weight` more messages fit the overall spacing and the group window."""
        now = self._clock()
        delay = max(0.0, self._next_overall - now)
        if is_group(chat_id):
            group = self._group_sent.setdefault(chat_id, deque())
            group_wait = _window_wait(group, now, 60.0, self.limits.group_per_minute, weight)
            delay = max(delay, group_wait)
        return delay

    async def wait(self, chat_id: int | str, weight: int = 1) -> None:
        delay = self.reserve(chat_id, weight) - self._clock()
        if delay > 0:
            await self._sleep(delay)
        while (delay := self.window_delay(chat_id, weight)) > 0:
            await self._sleep(delay)
        now = self._clock()
        self._next_overall = now + weight / self.limits.per_second
        if is_group(chat_id):
            self._group_sent[chat_id].extend([now] * weight)

    def sent(self, chat_id: int | str) -> None:
        """The request was answered: the chat's next message keeps its distance from this one."""
        self._keep_distance(chat_id, self.limits.chat_interval)

    async def answered(self, chat_id: int | str) -> None:
        self.sent(chat_id)

    async def pause(self, chat_id: int | str, seconds: float) -> None:
        self._keep_distance(chat_id, seconds)

    def _keep_distance(self, chat_id: int | str, seconds: float) -> None:
        floor = self._clock() + seconds
        self._next_in_chat[chat_id] = max(self._next_in_chat.get(chat_id, 0.0), floor)


def is_group(chat_id: int | str) -> bool:
    # Groups and channels have negative ids (or an @username for public channels).
    return isinstance(chat_id, str) or chat_id < 0


def _window_wait(sent: deque[float], now: float, window: float, limit: int, weight: int) -> float:
    while sent and sent[0] <= now - window:
        sent.popleft()
    excess = len(sent) + weight - limit
    if excess <= 0:
        return 0.0
    # The oldest `excess` sends have to leave the window first (all of them, for an album
    # larger than the limit itself).
    return sent[min(excess, len(sent)) - 1] + window - now


class RateLimitMiddleware(BaseRequestMiddleware):
    def __init__(self, limiter: Pacer) -> None:
        self.limiter = limiter

    async def __call__(
        self, make_request: NextRequestMiddlewareType[Any], bot: Bot, method: TelegramMethod[Any]
    ) -> Response[Any]:
        if isinstance(method, COUNTED):
            chat_id = getattr(method, "chat_id", None)
            if chat_id is not None:
                weight = len(method.media) if isinstance(method, SendMediaGroup) else 1
                await self.limiter.wait(chat_id, weight)
                try:
                    return await make_request(bot, method)
                except TelegramRetryAfter as exc:
                    # Every sender to the chat holds off, in this instance and the others.
                    await self.limiter.pause(chat_id, exc.retry_after)
                    raise
                finally:
                    await self.limiter.answered(chat_id)
        return await make_request(bot, method)


def backoff_delays(first: float, *, limit: float, jitter: float = 0.0) -> Iterator[float]:
    """first, twice that, and so on up to limit; each stretched by up to `jitter` of itself, so
    the retries of many requests that failed together do not come back together."""
    delay = first
    while True:
        yield delay * (1 + random.random() * jitter) if jitter else delay
        delay = min(delay * 2, limit)


# Set by a caller that may lose the right to send while a request waits (a digest's claim):
# awaited before every attempt, retries included; raising stops the request unsent.
attempt_guard: ContextVar[Callable[[], Awaitable[None]] | None] = ContextVar(
    "attempt_guard", default=None
)


async def retry(
    call: Callable[[], Awaitable[T]],
    *,
    delays: Iterator[float],
    on_retry: Callable[[Exception, int, float], None],
    attempts: int | None = None,
    max_retry_after: float = MAX_RETRY_AFTER,
    sleep: Sleep = asyncio.sleep,
) -> T:
    """The one retry policy: a 429 waits what Telegram asked (not a failure of the request, it
    only says when to come back); a failure in TELEGRAM_UNAVAILABLE waits the next delay, until
    `attempts` failures (None: for ever). Anything else (REJECTED above all) is raised at once.
    `on_retry(error, failures, delay)` logs each wait."""
    failures = 0
    while True:
        if (guard := attempt_guard.get()) is not None:
            await guard()
        try:
            return await call()
        except TelegramRetryAfter as exc:
            if exc.retry_after > max_retry_after:
                raise
            on_retry(exc, failures, exc.retry_after)
            await sleep(exc.retry_after)
        except TELEGRAM_UNAVAILABLE as exc:
            failures += 1
            if attempts is not None and failures >= attempts:
                raise
            delay = next(delays)
            on_retry(exc, failures, delay)
            await sleep(delay)


class RetryMiddleware(BaseRequestMiddleware):
    """429: wait retry_after and try again; 5xx, garbled answers and network errors: back off."""

    def __init__(
        self,
        *,
        attempts: int = 3,
        base_delay: float = 0.5,
        max_retry_after: float = MAX_RETRY_AFTER,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.attempts, self.base_delay = attempts, base_delay
        self.max_retry_after = max_retry_after
        self._sleep = sleep

    async def __call__(
        self, make_request: NextRequestMiddlewareType[Any], bot: Bot, method: TelegramMethod[Any]
    ) -> Response[Any]:
        name = method.__api_method__

        def log(exc: Exception, failures: int, delay: float) -> None:
            if isinstance(exc, TelegramRetryAfter):
                logger.warning("%s: 429, retrying after %s s", name, exc.retry_after)
            else:
                logger.warning(
                    "%s: %s, retry %s in %.2f s", name, type(exc).__name__, failures, delay
                )

        try:
            return await retry(
                lambda: make_request(bot, method),
                delays=backoff_delays(self.base_delay, limit=math.inf, jitter=0.1),
                on_retry=log,
                attempts=self.attempts,
                max_retry_after=self.max_retry_after,
                sleep=self._sleep,
            )
        except TELEGRAM_UNAVAILABLE as exc:
            logger.error("%s failed %s times: %s", name, self.attempts, type(exc).__name__)
            raise


def install(bot: Bot, limiter: Pacer) -> None:
    """Retry outside, pacing inside: every attempt takes its own place in the queue."""
    bot.session.middleware(RetryMiddleware())
    bot.session.middleware(RateLimitMiddleware(limiter))
