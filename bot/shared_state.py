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

from bot.telegram.outbound import Limits, OutboundLimiter, Sleep, is_group

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

# KEYS: the chat's next turn and next free time, then (once a request is answered) its
# "request in flight" flag to clear. ARGV: µs from now before which the chat gets nothing more.
_KEEP_DISTANCE = (
    _NOW
    + """
local floor = now + tonumber(ARGV[1])
for i = 1, 2 do
  if floor > tonumber(redis.call('GET', KEYS[i]) or '0') then
    redis.call('SET', KEYS[i], fmt(floor), 'PX', math.ceil((floor - now) / 1000) + 60000)
  end
end
if KEYS[3] then redis.call('DEL', KEYS[3]) end
return 0
"""
)

# KEYS: the overall next free time, the chat's next free time by what was let through, the
# group's send times (unused for a private chat), the chat's "request in flight" flag. ARGV:
# weight, the overall spacing of that weight (µs), the chat's spacing of it (µs), the group
# limit (0: not a group), a unique member prefix. Returns {booked, µs to wait}. A slot of the
# overall spacing is booked only when the chat and its group allow a send by then: a chat
# waiting out its pace or its group's minute does not hold the other chats back. One request
# per chat is in flight at a time (the next keeps its distance from the answer), so two
# messages to one chat cannot bunch when the first is sent late.
_BOOK_WINDOWS = (
    _NOW
    + """
if redis.call('EXISTS', KEYS[4]) == 1 then return {0, 50000} end
local at = math.max(now, tonumber(redis.call('GET', KEYS[1]) or '0'))
local weight, limit = tonumber(ARGV[1]), tonumber(ARGV[4])
local chat_free = tonumber(redis.call('GET', KEYS[2]) or '0')
if chat_free > at then return {0, chat_free - now} end
if limit > 0 then
  local minute = 60000000
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', fmt(now - minute))
  local sent = redis.call('ZRANGEBYSCORE', KEYS[3], '(' .. fmt(at - minute), '+inf', 'WITHSCORES')
  local count = #sent / 2
  local excess = count + weight - limit
  if excess > 0 then
    local free = tonumber(sent[2 * math.min(excess, count)]) + minute
    if free > at then return {0, free - now} end
  end
  for i = 1, weight do redis.call('ZADD', KEYS[3], fmt(at), ARGV[5] .. ':' .. i) end
  redis.call('PEXPIRE', KEYS[3], math.ceil((at - now) / 1000) + 120000)
end
local after = at + tonumber(ARGV[2])
redis.call('SET', KEYS[1], fmt(after), 'PX', math.ceil((after - now) / 1000) + 60000)
local chat_after = at + tonumber(ARGV[3])
redis.call('SET', KEYS[2], fmt(chat_after), 'PX', math.ceil((chat_after - now) / 1000) + 60000)
redis.call('SET', KEYS[4], '1', 'PX', math.ceil((at - now) / 1000) + 15000)
return {1, at - now}
"""
)

# KEYS: the times of the messages let through in the last second, over all chats. ARGV:
# weight, the most a second, a unique member prefix. Returns 0 and records the messages, or the
# µs to wait. Judged at the moment of sending: an instance that wakes late from its booked
# slot cannot bunch messages past the limit.
_LET_THROUGH = (
    _NOW
    + """
local window, weight = 1000000, tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', fmt(now - window))
local excess = redis.call('ZCARD', KEYS[1]) + weight - tonumber(ARGV[2])
if excess > 0 then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, excess - 1, 'WITHSCORES')
  return math.max(1, tonumber(oldest[#oldest]) + window - now)
end
for i = 1, weight do redis.call('ZADD', KEYS[1], fmt(now), ARGV[3] .. ':' .. i) end
redis.call('PEXPIRE', KEYS[1], 2000)
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
    order in which its messages go), then a slot of the overall spacing that the chat's pace and
    its group's minute allow; during an outage, an `OutboundLimiter` of this process paces
    alone."""

    def __init__(self, state: RedisState, limits: Limits, *, sleep: Sleep = asyncio.sleep):
        self.state, self.limits, self._sleep = state, limits, sleep
        self.local = OutboundLimiter(limits, sleep=sleep)
        self._book_chat = state.redis.register_script(_BOOK_CHAT)
        self._keep_distance = state.redis.register_script(_KEEP_DISTANCE)
        self._book_windows = state.redis.register_script(_BOOK_WINDOWS)
        self._let_through = state.redis.register_script(_LET_THROUGH)

    async def wait(self, chat_id: int | str, weight: int = 1) -> None:
        async def shared() -> None:
            chat = self.state.key("pace", "chat", chat_id)
            delay = await self._book_chat(
                keys=[chat], args=[_us(weight * self.limits.chat_interval)]
            )
            if delay > 0:
                await self._sleep(delay / 1_000_000)
            member = uuid.uuid4().hex
            keys = [
                self.state.key("pace", "overall"),
                self.state.key("pace", "sent", chat_id),
                self.state.key("pace", "group", chat_id),
                self.state.key("pace", "busy", chat_id),
            ]
            args: list[Any] = [
                weight,
                _us(weight / self.limits.per_second),
                _us(weight * self.limits.chat_interval),
                self.limits.group_per_minute if is_group(chat_id) else 0,
                member,
            ]
            while True:
                booked, delay = await self._book_windows(keys=keys, args=args)
                if delay > 0:
                    await self._sleep(delay / 1_000_000)
                if booked:
                    break
            let_through: list[Any] = [weight, math.floor(self.limits.per_second), member]
            log = [self.state.key("pace", "let-through")]
            while (delay := await self._let_through(keys=log, args=let_through)) > 0:
                await self._sleep(delay / 1_000_000)

        await self.state.health.call(shared, lambda: self.local.wait(chat_id, weight))

    async def answered(self, chat_id: int | str) -> None:
        await self._hold_chat(chat_id, self.limits.chat_interval, done=True)

    async def pause(self, chat_id: int | str, seconds: float) -> None:
        await self._hold_chat(chat_id, seconds, done=False)

    async def _hold_chat(self, chat_id: int | str, seconds: float, *, done: bool) -> None:
        async def shared() -> None:
            kinds = ("chat", "sent", "busy") if done else ("chat", "sent")
            keys = [self.state.key("pace", kind, chat_id) for kind in kinds]
            await self._keep_distance(keys=keys, args=[_us(seconds)])

        await self.state.health.call(shared, lambda: self.local.pause(chat_id, seconds))
