"""What instances of the bot share (DESIGN §9): rate windows, one-time claims, one holder per key
and the outbound pacing, kept in this process or, with REDIS_URL, in Redis for all instances.

`LocalState` is the single-process behaviour. `RedisState` keeps the same things in Redis with
atomic scripts that read Redis's own clock, so instances on different hosts agree on time; while
Redis cannot be reached it answers from a `LocalState` of its own (logging one warning a minute)
and goes back to Redis as soon as it answers again.
"""

import asyncio
import contextlib
import enum
import logging
import math
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Protocol, TypeVar

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.lock import Lock
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import LockError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bot.telegram.outbound import Limits, OutboundLimiter, Sending, Sleep, is_group

logger = logging.getLogger(__name__)

Clock = Callable[[], float]
T = TypeVar("T")

# What "Redis is unreachable" looks like to redis-py: refused, reset, timed out, still loading.
REDIS_DOWN = (RedisConnectionError, RedisTimeoutError, OSError)
# While Redis is down, it is asked again at most this often (a blackholed host costs a timeout).
RETRY_REDIS_EVERY = 1.0
WARN_EVERY = 60.0
# Claims kept in memory when there is no Redis (update ids, refusal notes): the oldest go first.
MAX_LOCAL_CLAIMS = 100_000
# A held key's lease in Redis, renewed while held: an instance that dies frees it this late.
HOLD_LEASE = 30.0
# How often a waiting holder asks again: a user's next report may start this much late, and a
# flood of queued reports costs Redis (and the pool) this many requests a second each.
HOLD_POLL = 0.2
REDIS_CONNECTIONS = 100
# A message let through counts as in flight at most this long: the records of an instance that
# died with requests in flight lapse then. Telegram answers a send well within it.
IN_FLIGHT_LEASE = 15.0
# How often a send waiting for an answer to make room asks Redis again.
POLL_FOR_ANSWER = 0.02


class Admission(enum.Enum):
    ACCEPTED = "accepted"
    # Over the limit: the first refusal of a run is told to the user, the rest are silent.
    REFUSED_FIRST = "refused first"
    REFUSED_AGAIN = "refused again"


class SharedState(Protocol):
    async def admit(self, key: str, limit: int, window: float) -> Admission:
        """Count one event under `key` unless `limit` happened in the last `window` seconds."""
        ...

    async def claim(self, key: str, ttl: float) -> bool:
        """True for the first claim of `key` within `ttl` seconds, False for the others."""
        ...

    def hold(self, key: str) -> AbstractAsyncContextManager[None]:
        """One holder of `key` at a time; the others wait their turn."""
        ...


class LocalState:
    """This process's memory: what one instance needs, and Redis's stand-in during an outage."""

    def __init__(self, clock: Clock = time.monotonic, *, max_claims: int = MAX_LOCAL_CLAIMS):
        self.clock = clock
        self.max_claims = max_claims
        self._recent: dict[str, deque[float]] = {}
        self._warned: set[str] = set()
        self._claims: OrderedDict[str, float] = OrderedDict()
        # A lock per key with the number of tasks holding or awaiting it.
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    async def admit(self, key: str, limit: int, window: float) -> Admission:
        now = self.clock()
        recent = self._recent.setdefault(key, deque())
        while recent and now - recent[0] >= window:
            recent.popleft()
        if len(recent) >= limit:
            if key in self._warned:
                return Admission.REFUSED_AGAIN
            self._warned.add(key)
            return Admission.REFUSED_FIRST
        self._warned.discard(key)
        recent.append(now)
        return Admission.ACCEPTED

    async def claim(self, key: str, ttl: float) -> bool:
        now = self.clock()
        expires = self._claims.get(key)
        if expires is not None and expires > now:
            return False
        self._claims[key] = now + ttl
        self._claims.move_to_end(key)
        while len(self._claims) > self.max_claims:
            self._claims.popitem(last=False)
        return True

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, waiting = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, waiting + 1)
        try:
            async with lock:
                yield
        finally:
            lock, waiting = self._locks[key]
            if waiting == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, waiting - 1)


class RedisHealth:
    """Whether Redis is worth asking now, and one warning a minute while it is not."""

    def __init__(
        self,
        clock: Clock = time.monotonic,
        *,
        retry_every: float = RETRY_REDIS_EVERY,
        warn_every: float = WARN_EVERY,
    ) -> None:
        self.clock, self.retry_every, self.warn_every = clock, retry_every, warn_every
        self._failed_at: float | None = None
        self._warned_at: float | None = None

    @property
    def down(self) -> bool:
        return self._failed_at is not None

    def usable(self) -> bool:
        return self._failed_at is None or self.clock() - self._failed_at >= self.retry_every

    def failed(self, exc: BaseException) -> None:
        now = self._failed_at = self.clock()
        if self._warned_at is None or now - self._warned_at >= self.warn_every:
            self._warned_at = now
            logger.warning(
                "Redis is unreachable (%s): limits are kept in this process until it answers",
                type(exc).__name__,
            )

    def succeeded(self) -> None:
        if self._failed_at is not None:
            self._failed_at = None
            logger.info("Redis answers again: limits are shared again")

    async def call(
        self, shared: Callable[[], Awaitable[T]], local: Callable[[], Awaitable[T]]
    ) -> T:
        """`shared()` in Redis, or `local()` when Redis is down or fails now."""
        if self.usable():
            try:
                result = await shared()
            except REDIS_DOWN as exc:
                self.failed(exc)
            else:
                self.succeeded()
                return result
        return await local()


def connect(url: str) -> Redis:
    """A client that fails fast: redis-py's own retries would hold every request for seconds
    while Redis is down, and the local fallback is the answer to that. A burst of updates
    waits for one of the pool's connections rather than failing as if Redis were down."""
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=REDIS_CONNECTIONS,
        timeout=2.0,
        socket_connect_timeout=2.0,
        socket_timeout=2.0,
        retry=Retry(NoBackoff(), 0),
        decode_responses=True,
    )
    return Redis.from_pool(pool)


# Redis's clock in microseconds: every instance judges windows by the same time.
_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local function fmt(x) return string.format('%.0f', x) end
"""

# KEYS: the event times, the "told" flag. ARGV: limit, window (µs), a unique member.
_ADMIT = (
    _NOW
    + """
local window = tonumber(ARGV[2])
local ttl = math.ceil(window / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', fmt(now - window))
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  if redis.call('SET', KEYS[2], '1', 'NX', 'PX', ttl) then return 1 end
  return 2
end
redis.call('DEL', KEYS[2])
redis.call('ZADD', KEYS[1], fmt(now), ARGV[3])
redis.call('PEXPIRE', KEYS[1], ttl)
return 0
"""
)

# KEYS: the chat's next free time. ARGV: how long the booked messages take (µs).
# Returns the µs to wait before the chat's turn.
_BOOK_CHAT = (
    _NOW
    + """
local at = math.max(now, tonumber(redis.call('GET', KEYS[1]) or '0'))
local after = at + tonumber(ARGV[1])
redis.call('SET', KEYS[1], fmt(after), 'PX', math.ceil((after - now) / 1000) + 60000)
return at - now
"""
)

# KEYS[1..2]: the chat's next turn and next free time. ARGV[1]: µs from now before which the
# chat gets nothing more.
_CHAT_DISTANCE = """
local floor = now + tonumber(ARGV[1])
for i = 1, 2 do
  if floor > tonumber(redis.call('GET', KEYS[i]) or '0') then
    redis.call('SET', KEYS[i], fmt(floor), 'PX', math.ceil((floor - now) / 1000) + 60000)
  end
end
"""

_KEEP_DISTANCE = _NOW + _CHAT_DISTANCE + "return 0\n"

# The windows of `OutboundLimiter` in Redis: per limit, a set of the messages in flight (scored
# by when they were let through, so that those of a dead instance lapse after the lease) and a
# set of those answered (scored by the answer).
_WINDOWS = """
local lease = tonumber(ARGV[5])
local function room(in_flight, answered, window, limit, weight)
  redis.call('ZREMRANGEBYSCORE', in_flight, '-inf', fmt(now - lease))
  redis.call('ZREMRANGEBYSCORE', answered, '-inf', fmt(now - window))
  local done = redis.call('ZCARD', answered)
  local excess = redis.call('ZCARD', in_flight) + done + math.min(weight, limit) - limit
  if excess <= 0 then return 0 end
  if excess > done then return -1 end
  local oldest = redis.call('ZRANGE', answered, excess - 1, excess - 1, 'WITHSCORES')
  return math.max(1, tonumber(oldest[2]) + window - now)
end
"""

# KEYS: the chat's "request in flight" flag, the chat's next free time, the overall in-flight
# and answered sets, the group's (unused for a private chat). ARGV: weight, the overall limit a
# second, the group limit a minute (0: not a group), the chat's spacing of that weight (µs),
# the in-flight lease (µs), a unique member prefix. Returns {1, 0} with the messages recorded
# in flight; {0, µs} when the overall limit has no room (-1: until an answer); {2, µs} when the
# chat or its group has none.
_LET_THROUGH = (
    _NOW
    + _WINDOWS
    + """
local weight, group_limit = tonumber(ARGV[1]), tonumber(ARGV[3])
if redis.call('EXISTS', KEYS[1]) == 1 then return {2, -1} end
local chat_free = tonumber(redis.call('GET', KEYS[2]) or '0')
if chat_free > now then return {2, chat_free - now} end
if group_limit > 0 then
  local wait = room(KEYS[5], KEYS[6], 60000000, group_limit, weight)
  if wait ~= 0 then return {2, wait} end
end
local wait = room(KEYS[3], KEYS[4], 1000000, tonumber(ARGV[2]), weight)
if wait ~= 0 then return {0, wait} end
local ttl = math.ceil(lease / 1000)
for i = 1, weight do
  local member = ARGV[6] .. ':' .. i
  redis.call('ZADD', KEYS[3], fmt(now), member)
  if group_limit > 0 then redis.call('ZADD', KEYS[5], fmt(now), member) end
end
redis.call('PEXPIRE', KEYS[3], ttl)
if group_limit > 0 then redis.call('PEXPIRE', KEYS[5], ttl) end
local after = now + tonumber(ARGV[4])
redis.call('SET', KEYS[2], fmt(after), 'PX', math.ceil((after - now) / 1000) + 60000)
redis.call('SET', KEYS[1], '1', 'PX', ttl)
return {1, 0}
"""
)

# KEYS: the chat's next turn, its next free time, its "request in flight" flag, the overall
# in-flight and answered sets, the group's (unused for a private chat). ARGV: the chat's
# spacing after an answer (µs), weight, whether a group (1/0), the member prefix.
_ANSWERED = (
    _NOW
    + _CHAT_DISTANCE
    + """
redis.call('DEL', KEYS[3])
local sets = {{KEYS[4], KEYS[5], 2000}}
if ARGV[3] == '1' then sets[2] = {KEYS[6], KEYS[7], 61000} end
for _, set in ipairs(sets) do
  for i = 1, tonumber(ARGV[2]) do
    local member = ARGV[4] .. ':' .. i
    redis.call('ZREM', set[1], member)
    redis.call('ZADD', set[2], fmt(now), member)
  end
  redis.call('PEXPIRE', set[2], set[3])
end
return 0
"""
)


def _us(seconds: float) -> int:
    return round(seconds * 1_000_000)


class RedisState:
    """The shared state in Redis under `prefix`, with a `LocalState` for Redis's outages."""

    def __init__(
        self,
        redis: Redis,
        *,
        prefix: str,
        health: RedisHealth | None = None,
        local: LocalState | None = None,
    ) -> None:
        self.redis, self.prefix = redis, prefix
        self.health = health or RedisHealth()
        self.local = local or LocalState()
        self._admit = redis.register_script(_ADMIT)

    def key(self, *parts: object) -> str:
        return self.prefix + ":".join(str(part) for part in parts)

    async def admit(self, key: str, limit: int, window: float) -> Admission:
        async def shared() -> Admission:
            keys = [self.key("window", key), self.key("told", key)]
            code = await self._admit(keys=keys, args=[limit, _us(window), uuid.uuid4().hex])
            return [Admission.ACCEPTED, Admission.REFUSED_FIRST, Admission.REFUSED_AGAIN][code]

        return await self.health.call(shared, lambda: self.local.admit(key, limit, window))

    async def claim(self, key: str, ttl: float) -> bool:
        async def shared() -> bool:
            taken = await self.redis.set(self.key("claim", key), "1", nx=True, px=_us(ttl) // 1000)
            return bool(taken)

        return await self.health.call(shared, lambda: self.local.claim(key, ttl))

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock: Lock | None = None
        if self.health.usable():
            lock = self.redis.lock(
                self.key("hold", key), timeout=HOLD_LEASE, sleep=HOLD_POLL, thread_local=False
            )
            try:
                await lock.acquire()
            except REDIS_DOWN as exc:
                self.health.failed(exc)
                lock = None
            else:
                self.health.succeeded()
        if lock is None:
            async with self.local.hold(key):
                yield
            return
        renewal = asyncio.create_task(_renew(lock), name=f"renew-{key}")
        try:
            yield
        finally:
            renewal.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewal
            # Redis gone, or the lease lost during an outage: it expires by itself.
            with contextlib.suppress(*REDIS_DOWN, LockError):
                await lock.release()

    def pacer(
        self,
        limits: Limits | None = None,
        *,
        sleep: Sleep = asyncio.sleep,
    ) -> "RedisPacer":
        return RedisPacer(self, limits or Limits(), sleep=sleep)

    async def close(self) -> None:
        await self.redis.aclose()


async def _renew(lock: Lock) -> None:
    while True:
        await asyncio.sleep(HOLD_LEASE / 3)
        with contextlib.suppress(*REDIS_DOWN, LockError):
            await lock.reacquire()


class RedisPacer:
    """`OutboundLimiter`'s pacing over all instances: each chat's turn is booked in Redis (the
    order in which its messages go), then the request is let through when the chat, its group
    and the overall limit have room, all judged in one script by Redis's clock; during an
    outage, an `OutboundLimiter` of this process paces alone."""

    def __init__(self, state: RedisState, limits: Limits, *, sleep: Sleep = asyncio.sleep):
        self.state, self.limits, self._sleep = state, limits, sleep
        self.local = OutboundLimiter(limits, sleep=sleep)
        self._book_chat = state.redis.register_script(_BOOK_CHAT)
        self._keep_distance = state.redis.register_script(_KEEP_DISTANCE)
        self._let_through = state.redis.register_script(_LET_THROUGH)
        self._answered = state.redis.register_script(_ANSWERED)
        # Only one send of this instance at a time asks Redis for room in the overall limit:
        # a hundred waiting chats polling Redis would cost more than the sends themselves.
        self._overall_turn = asyncio.Lock()

    def _keys(self, chat_id: int | str) -> list[str]:
        return [
            self.state.key("pace", "busy", chat_id),
            self.state.key("pace", "sent", chat_id),
            self.state.key("pace", "overall", "in-flight"),
            self.state.key("pace", "overall", "answered"),
            self.state.key("pace", "group", chat_id, "in-flight"),
            self.state.key("pace", "group", chat_id, "answered"),
        ]

    async def wait(self, chat_id: int | str, weight: int = 1) -> Sending:
        async def shared() -> Sending:
            chat = self.state.key("pace", "chat", chat_id)
            delay = await self._book_chat(
                keys=[chat], args=[_us(weight * self.limits.chat_interval)]
            )
            if delay > 0:
                await self._sleep(delay / 1_000_000)
            member = uuid.uuid4().hex
            args: list[Any] = [
                weight,
                math.floor(self.limits.per_second),
                self.limits.group_per_minute if is_group(chat_id) else 0,
                _us(weight * self.limits.chat_interval),
                _us(IN_FLIGHT_LEASE),
                member,
            ]
            keys = self._keys(chat_id)
            while True:
                async with self._overall_turn:
                    while True:
                        status, delay = await self._let_through(keys=keys, args=args)
                        if status == 1:
                            return Sending(chat_id, weight, member)
                        if status == 2:
                            break
                        await self._sleep(_poll(delay))
                # The chat or its group has no room: wait for it without holding up the others.
                await self._sleep(_poll(delay))

        return await self.state.health.call(shared, lambda: self.local.wait(chat_id, weight))

    async def answered(self, sending: Sending) -> None:
        # Both this process and Redis learn the chat's distance from every answer, so the
        # chat's next message keeps it whichever of them paces it (Redis may go or come back
        # in between).
        chat_id = sending.chat_id
        if sending.shared_key is None:
            self.local.answer(sending)
            await self._keep_shared_distance(chat_id, self.limits.chat_interval)
            return
        self.local.keep_distance(chat_id, self.limits.chat_interval)
        busy, free, *windows = self._keys(chat_id)
        keys = [self.state.key("pace", "chat", chat_id), free, busy, *windows]
        args: list[Any] = [
            _us(self.limits.chat_interval),
            sending.weight,
            int(is_group(chat_id)),
            sending.shared_key,
        ]

        async def shared() -> None:
            await self._answered(keys=keys, args=args)

        # Redis gone since the request was let through: its records there lapse by themselves.
        await self.state.health.call(shared, _nothing)

    async def pause(self, chat_id: int | str, seconds: float) -> None:
        self.local.keep_distance(chat_id, seconds)
        await self._keep_shared_distance(chat_id, seconds)

    async def _keep_shared_distance(self, chat_id: int | str, seconds: float) -> None:
        async def shared() -> None:
            keys = [self.state.key("pace", kind, chat_id) for kind in ("chat", "sent")]
            await self._keep_distance(keys=keys, args=[_us(seconds)])

        await self.state.health.call(shared, _nothing)


async def _nothing() -> None:
    """What is left to do in this process when Redis cannot be told."""


def _poll(delay_us: int) -> float:
    """The seconds to wait for room Redis reported: until an answer (-1) means asking again
    shortly, since another instance's answer cannot wake this one."""
    return POLL_FOR_ANSWER if delay_us < 0 else delay_us / 1_000_000
