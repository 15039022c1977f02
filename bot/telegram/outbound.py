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
    # Telegram allows about 30. The pacing below holds by Telegram's own clock however late a
    # request arrives, so the margin only covers Telegram's own looseness about its limit.
    per_second: float = 25.0
    # A little over a second between a chat's answer and its next message.
    chat_interval: float = 1.1
    group_per_minute: int = 20


@dataclass(frozen=True, slots=True)
class Sending:
    """A request let through by a pacer: handed back to it with `answered` once answered."""

    chat_id: int | str
    weight: int
    # Names its messages in the shared pacer's records; None when this process paced it.
    shared_key: str | None = None


class Pacer(Protocol):
    """Paces the messages into chats: this process's `OutboundLimiter`, or one shared by all
    instances (bot.shared_state)."""

    async def wait(self, chat_id: int | str, weight: int = 1) -> Sending:
        """Return when `weight` more messages to the chat keep every limit."""
        ...

    async def answered(self, sending: Sending) -> None:
        """The request was answered (or failed): its messages stop being in flight."""
        ...

    async def pause(self, chat_id: int | str, seconds: float) -> None:
        """Telegram asked (429 retry_after) that the chat get nothing for `seconds`."""
        ...


class Window:
    """The messages of one limit (overall, or one group's) that Telegram may count now: those
    in flight and those answered less than `length` seconds ago."""

    def __init__(self, length: float, limit: int) -> None:
        self.length, self.limit = length, max(1, limit)
        self.in_flight = 0
        self._answered: deque[tuple[float, int]] = deque()
        self._answered_weight = 0

    def delay(self, now: float, weight: int) -> float | None:
        """0 when `weight` more fit now; else the seconds until enough answers age out, or None
        when only an answer can make room. An album larger than the limit goes alone."""
        while self._answered and self._answered[0][0] <= now - self.length:
            self._answered_weight -= self._answered.popleft()[1]
        excess = self.in_flight + self._answered_weight + min(weight, self.limit) - self.limit
        if excess <= 0:
            return 0.0
        if excess > self._answered_weight:
            return None
        aged = 0
        for answered_at, answered_weight in self._answered:
            aged += answered_weight
            if aged >= excess:
                return answered_at + self.length - now
        raise AssertionError("unreachable: the answered weight covers the excess")

    def let_through(self, weight: int) -> None:
        self.in_flight += weight

    def answer(self, now: float, weight: int) -> None:
        self.in_flight = max(0, self.in_flight - weight)
        self._answered.append((now, weight))
        self._answered_weight += weight


class OutboundLimiter:
    """Paces messages so that they keep Telegram's limits by Telegram's own clock.

    Telegram counts a message when it arrives: some time after we let it through and before its
    answer comes back, and on a busy machine up to seconds after we let it through. So a message
    counts against a limit from the moment it is let through until a window's length after its
    answer, and a send goes only while (answered within the window) + (in flight) + its weight
    keep the limit. Then no window of Telegram's clock holds more than the limit, however late
    each request arrives: of the messages Telegram counts in one of its windows, take the one
    let through last; when it was, each of the others was in flight or had been answered
    after that window began, less than a window's length earlier, so all were counted.

    A chat gets one request at a time, and its next message goes `chat_interval` after the
    answer (and after the let-through, per message of an album), so two can never arrive within
    a second of each other either.
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
        # When a chat may get its next message: its pace, or a 429's retry_after.
        self._chat_free: dict[int | str, float] = {}
        self._chat_busy: set[int | str] = set()
        self._overall = Window(1.0, math.floor(self.limits.per_second))
        self._groups: dict[int | str, Window] = {}
        # Set (and replaced) on every answer: what a send waiting for room in flight waits on.
        self._answer = asyncio.Event()

    def delay(self, chat_id: int | str, weight: int = 1) -> float | None:
        """0 when `weight` more messages to the chat keep every limit now; else the seconds to
        wait, or None when only an answer to a request in flight can make room."""
        if chat_id in self._chat_busy:
            return None
        now = self._clock()
        delays = [self._chat_free.get(chat_id, 0.0) - now, self._overall.delay(now, weight)]
        if is_group(chat_id):
            delays.append(self._group(chat_id).delay(now, weight))
        if None in delays:
            return None
        return max(0.0, *(d for d in delays if d is not None))

    async def wait(self, chat_id: int | str, weight: int = 1) -> Sending:
        while (delay := self.delay(chat_id, weight)) != 0:
            if delay is None:
                await self._answer.wait()
            else:
                await self._sleep(delay)
        now = self._clock()
        self._chat_busy.add(chat_id)
        self._chat_free[chat_id] = now + weight * self.limits.chat_interval
        self._overall.let_through(weight)
        if is_group(chat_id):
            self._group(chat_id).let_through(weight)
        return Sending(chat_id, weight)

    async def answered(self, sending: Sending) -> None:
        self.answer(sending)

    def answer(self, sending: Sending) -> None:
        now, chat_id = self._clock(), sending.chat_id
        self._chat_busy.discard(chat_id)
        self.keep_distance(chat_id, self.limits.chat_interval)
        self._overall.answer(now, sending.weight)
        if is_group(chat_id):
            self._group(chat_id).answer(now, sending.weight)
        self._answer.set()
        self._answer = asyncio.Event()

    async def pause(self, chat_id: int | str, seconds: float) -> None:
        self.keep_distance(chat_id, seconds)

    def keep_distance(self, chat_id: int | str, seconds: float) -> None:
        """The chat gets nothing more for `seconds` from now."""
        floor = self._clock() + seconds
        self._chat_free[chat_id] = max(self._chat_free.get(chat_id, 0.0), floor)

    def _group(self, chat_id: int | str) -> Window:
        window = self._groups.get(chat_id)
        if window is None:
            window = self._groups[chat_id] = Window(60.0, self.limits.group_per_minute)
        return window


def is_group(chat_id: int | str) -> bool:
    # Groups and channels have negative ids (or an @username for public channels).
    return isinstance(chat_id, str) or chat_id < 0


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
                sending = await self.limiter.wait(chat_id, weight)
                try:
                    return await make_request(bot, method)
                except TelegramRetryAfter as exc:
                    # Every sender to the chat holds off, in this instance and the others.
                    await self.limiter.pause(chat_id, exc.retry_after)
                    raise
                finally:
                    await self.limiter.answered(sending)
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
