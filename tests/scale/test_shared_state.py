"""The state two instances share, against a real Redis: each side has its own client, as two
processes would, and they see one flood window, one claim, one holder and one pace."""

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from bot.shared_state import Admission, LocalState, RedisHealth, RedisState, connect
from bot.telegram import outbound
from bot.telegram.outbound import Limits
from tests.fake_telegram import FakeTelegram
from tests.support.redis import ThrowawayRedis


@pytest.fixture
async def two(redis_url: str, prefix: str, redis_client: Redis) -> AsyncIterator[list[RedisState]]:
    """Two instances' states on one Redis under the test's prefix."""
    states = [RedisState(connect(redis_url), prefix=prefix) for _ in range(2)]
    try:
        yield states
    finally:
        for state in states:
            await state.close()


async def test_the_flood_window_is_one_over_both_instances(two: list[RedisState]) -> None:
    answers = [await two[i % 2].admit("reports:7", 10, 60.0) for i in range(13)]
    assert answers == [Admission.ACCEPTED] * 10 + [
        Admission.REFUSED_FIRST,
        Admission.REFUSED_AGAIN,
        Admission.REFUSED_AGAIN,
    ]
    # Another user's window is their own.
    assert await two[1].admit("reports:8", 10, 60.0) is Admission.ACCEPTED


async def test_a_window_forgets_events_older_than_itself(
    two: list[RedisState], redis_client: Redis, prefix: str
) -> None:
    seconds, micros = await redis_client.time()
    now = seconds * 1_000_000 + micros
    # Events as the script stores them, by Redis's clock in µs: 61 s and 59 s ago.
    await redis_client.zadd(f"{prefix}window:k", {"old": now - 61_000_000})
    assert await two[0].admit("k", 2, 60.0) is Admission.ACCEPTED
    assert await redis_client.zscore(f"{prefix}window:k", "old") is None
    await redis_client.zadd(f"{prefix}window:k", {"recent": now - 59_000_000})
    assert await two[1].admit("k", 2, 60.0) is Admission.REFUSED_FIRST


async def test_a_claim_is_taken_once_over_both_instances(
    two: list[RedisState], redis_client: Redis, prefix: str
) -> None:
    assert await two[0].claim("update:5", 3600) is True
    assert await two[1].claim("update:5", 3600) is False
    assert await two[0].claim("update:5", 3600) is False
    assert await two[1].claim("update:6", 3600) is True
    assert 3590_000 < await redis_client.pttl(f"{prefix}claim:update:5") <= 3600_000


async def test_one_holder_at_a_time_over_both_instances(two: list[RedisState]) -> None:
    order: list[str] = []
    inside = asyncio.Event()
    release = asyncio.Event()

    async def first() -> None:
        async with two[0].hold("report:7"):
            order.append("A in")
            inside.set()
            await release.wait()
            order.append("A out")

    async def second() -> None:
        async with two[1].hold("report:7"):
            order.append("B in")

    a = asyncio.create_task(first())
    await inside.wait()
    b = asyncio.create_task(second())
    # B keeps asking Redis (every 200 ms) while A holds: it must not get in.
    done, _ = await asyncio.wait({b}, timeout=0.7)
    assert not done
    async with two[1].hold("report:8"):  # another key is free meanwhile
        order.append("other key")
    release.set()
    await asyncio.gather(a, b)
    assert order == ["A in", "other key", "A out", "B in"]


async def test_a_chat_is_paced_over_both_instances(two: list[RedisState]) -> None:
    limits = Limits(per_second=1000, chat_interval=0.2, group_per_minute=20)
    pacers = [state.pacer(limits) for state in two]
    sent: list[float] = []
    for i in range(5):
        # As the session's middleware does: wait, send, then say it was answered.
        sending = await pacers[i % 2].wait(7)
        sent.append(time.monotonic())
        await pacers[i % 2].answered(sending)
    gaps = [later - earlier for earlier, later in zip(sent, sent[1:], strict=False)]
    assert all(gap >= 0.19 for gap in gaps), gaps


async def test_the_overall_rate_holds_over_both_instances_by_the_receivers_clock(
    two: list[RedisState],
) -> None:
    """Requests arrive up to half a second after they were let through, as from a loaded
    machine: no second of arrivals holds more than the limit over both instances together."""
    limits = Limits(per_second=20, chat_interval=0, group_per_minute=20)
    pacers = [state.pacer(limits) for state in two]
    rng = random.Random(7)
    arrived: list[float] = []

    async def send(chat: int) -> None:
        sending = await pacers[chat % 2].wait(chat)
        await asyncio.sleep(rng.uniform(0, 0.5))
        arrived.append(time.monotonic())
        await asyncio.sleep(rng.uniform(0, 0.05))
        await pacers[chat % 2].answered(sending)

    await asyncio.gather(*(send(chat) for chat in range(1, 61)))
    arrived.sort()
    in_any_second = max(sum(1 for other in arrived if at <= other < at + 1.0) for at in arrived)
    assert in_any_second <= 20
    # 60 messages, 20 at a time, each counted for a second after its answer: 2 s at least.
    assert arrived[-1] - arrived[0] >= 2.0


class Asked(Exception):
    """Raised by a sleep that records how long the pacer wanted to wait instead of waiting."""


def recording_sleep(asked: list[float]):  # type: ignore[no-untyped-def]
    async def sleep(seconds: float) -> None:
        asked.append(seconds)
        raise Asked

    return sleep


async def test_a_group_gets_twenty_a_minute_over_both_instances(two: list[RedisState]) -> None:
    limits = Limits(per_second=1000, chat_interval=0, group_per_minute=3)
    for i in range(3):
        pacer = two[i % 2].pacer(limits)
        await pacer.answered(await pacer.wait(-100))
    asked: list[float] = []
    with pytest.raises(Asked):
        await two[1].pacer(limits, sleep=recording_sleep(asked)).wait(-100)
    assert 59.0 < asked[0] <= 60.0
    # A private chat is not held back by the group's minute.
    await two[1].pacer(limits).wait(100)


async def test_a_retry_after_seen_by_one_instance_holds_the_other(two: list[RedisState]) -> None:
    limits = Limits(per_second=1000, chat_interval=0.5, group_per_minute=20)
    await two[0].pacer(limits).pause(7, 12.0)
    asked: list[float] = []
    with pytest.raises(Asked):
        await two[1].pacer(limits, sleep=recording_sleep(asked)).wait(7)
    assert 11.5 < asked[0] <= 12.0
    await two[1].pacer(limits).wait(8)  # other chats go on


class VirtualClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


async def test_while_redis_is_down_limits_are_local_with_one_warning_a_minute(
    throwaway: ThrowawayRedis, caplog: pytest.LogCaptureFixture
) -> None:
    clock = VirtualClock()
    local = LocalState(clock)
    state = RedisState(
        connect(throwaway.url), prefix="outage:", health=RedisHealth(clock), local=local
    )
    probe = Redis.from_url(throwaway.url, decode_responses=True)
    try:
        assert await state.admit("reports:1", 2, 60.0) is Admission.ACCEPTED
        assert await probe.zcard("outage:window:reports:1") == 1

        await throwaway.stop()
        caplog.set_level(logging.INFO, logger="bot.shared_state")
        answers = []
        for _ in range(20):
            clock.now += 1.5  # each request past the retry interval: Redis is asked each time
            answers.append(await state.admit("reports:1", 2, 600.0))
        assert (
            answers
            == [Admission.ACCEPTED, Admission.ACCEPTED, Admission.REFUSED_FIRST]
            + [Admission.REFUSED_AGAIN] * 17
        )
        assert await state.claim("update:1", 60) is True
        assert await state.claim("update:1", 60) is False
        async with state.hold("report:1"):
            pass
        await state.pacer(Limits(chat_interval=0)).wait(5)
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert [r.getMessage() for r in warnings] == [
            "Redis is unreachable (ConnectionError): limits are kept in this process until "
            "it answers"
        ]

        clock.now += 60.0
        await state.claim("update:2", 60)
        assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 2

        await throwaway.start()  # back, empty
        await probe.aclose()
        probe = Redis.from_url(throwaway.url, decode_responses=True)
        clock.now += 1.5
        assert await state.admit("reports:1", 2, 60.0) is Admission.ACCEPTED
        assert await probe.zcard("outage:window:reports:1") == 1
        assert await state.claim("update:1", 60) is True  # Redis's claims, not the local ones
        assert caplog.records[-1].getMessage() == "Redis answers again: limits are shared again"
        assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 2
    finally:
        await probe.aclose()
        await state.close()


async def test_a_429_one_instance_gets_holds_the_chat_for_the_other(two: list[RedisState]) -> None:
    """Through the real session middlewares: instance A's send is answered 429 retry_after=2;
    instance B's send to that chat waits the same two seconds, and A's retry keeps its pace."""
    async with FakeTelegram(enforce_rate_limits=True) as tg:
        bots = [tg.create_bot() for _ in two]
        for bot, state in zip(bots, two, strict=True):
            outbound.install(bot, state.pacer())
        try:
            tg.fail_next("sendMessage", 429, retry_after=2)
            first = asyncio.create_task(bots[0].send_message(7, "from A"))
            (refused,) = await tg.wait_for("sendMessage")
            await bots[1].send_message(7, "from B")
            await first
        finally:
            for bot in bots:
                await bot.session.close()
    sent = [call for call in tg.calls("sendMessage") if call.ok]
    assert sorted(call.params["text"] for call in sent) == ["from A", "from B"]
    assert refused.status == 429
    assert min(call.at for call in sent) - refused.at >= 1.9
    assert abs(sent[1].at - sent[0].at) >= 1.0
    assert tg.too_many_requests() == 1
