"""The outbound limiter with a virtual clock: each chat's pace, the overall and group windows, and
the limits held by the receiver's clock when requests arrive late."""

import asyncio
import random

import pytest

from bot.telegram.outbound import Limits, OutboundLimiter


class VirtualTime:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


async def test_a_chat_keeps_its_own_pace_and_counts_album_photos() -> None:
    time = VirtualTime()
    limiter = OutboundLimiter(clock=time.clock, sleep=time.sleep)
    sent_at = []
    for weight in (1, 2, 1):  # a report: text, a two-photo album, the CSV
        sending = await limiter.wait(7, weight)
        sent_at.append(time.now)
        await limiter.answered(sending)
    assert [round(t - 100.0, 3) for t in sent_at] == [0.0, 1.1, 3.3]


async def test_a_chat_waits_for_its_answer_then_keeps_its_distance_from_it() -> None:
    time = VirtualTime()
    limiter = OutboundLimiter(clock=time.clock, sleep=time.sleep)
    first = await limiter.wait(7)
    second = asyncio.create_task(limiter.wait(7))
    await asyncio.sleep(0)
    time.now += 3.0  # the first request is slow: the second must not go meanwhile
    await asyncio.sleep(0)
    assert not second.done()
    await limiter.answered(first)  # answered at 103.0
    await second
    assert round(time.now, 3) == 104.1


async def test_a_waiting_chat_does_not_hold_back_other_chats() -> None:
    time = VirtualTime()
    limiter = OutboundLimiter(clock=time.clock, sleep=time.sleep)
    await limiter.answered(await limiter.wait(1))
    assert limiter.delay(1, weight=2) == pytest.approx(1.1)  # chat 1 waits for its own pace...
    await limiter.wait(2)  # ...while chat 2 goes at once
    assert time.now == 100.0


async def test_the_overall_limit_counts_sends_in_flight_and_answered_within_a_second() -> None:
    time = VirtualTime()
    limiter = OutboundLimiter(Limits(per_second=25), clock=time.clock, sleep=time.sleep)
    in_flight = [await limiter.wait(chat) for chat in range(25)]
    assert time.now == 100.0
    assert limiter.delay(99) is None  # 25 in flight: only an answer makes room
    time.now = 100.4
    for sending in in_flight[:10]:
        await limiter.answered(sending)
    # Ten answered at 100.4 still count until 101.4, whoever asks.
    assert limiter.delay(99) == pytest.approx(1.0)
    await limiter.wait(99)
    assert time.now == pytest.approx(101.4)
    # 15 still in flight and one more: nine more fit, the tenth waits for an answer.
    for chat in range(100, 109):
        await limiter.wait(chat)
    assert time.now == pytest.approx(101.4)
    assert limiter.delay(109) is None


async def test_a_group_gets_at_most_twenty_messages_a_minute() -> None:
    time = VirtualTime()
    limiter = OutboundLimiter(
        Limits(per_second=1000, chat_interval=0.0, group_per_minute=20),
        clock=time.clock,
        sleep=time.sleep,
    )
    sent_at = []
    for _ in range(41):
        sending = await limiter.wait(-100)
        sent_at.append(time.now)
        time.now += 0.01  # each answered 10 ms later
        await limiter.answered(sending)
    # Twenty go at once, the 21st when the first answer leaves the minute window.
    assert sent_at[19] < 100.3
    assert 160.0 <= sent_at[20] < 160.1
    assert 220.0 <= sent_at[40] < 220.5
    # A private chat is not held by the group's window.
    before = time.now
    await limiter.wait(5)
    assert time.now == before


@pytest.mark.parametrize("seed", range(3))
async def test_late_arrivals_never_break_a_limit_by_the_receivers_clock(seed: int) -> None:
    """Each request arrives at a random moment between being let through and its answer, up to
    2 s late, as on a loaded machine: no second of arrivals holds more than the limit, and no
    chat gets two within a second."""
    rng = random.Random(seed)
    loop = asyncio.get_running_loop()
    limiter = OutboundLimiter(Limits(per_second=20, chat_interval=1.0, group_per_minute=20))
    arrivals: list[tuple[float, int]] = []

    async def send(chat: int) -> None:
        for _ in range(2):
            sending = await limiter.wait(chat)
            late = rng.uniform(0, 0.2) if rng.random() < 0.7 else rng.uniform(0.2, 0.6)
            await asyncio.sleep(late)  # real time: the network and a busy loop
            arrivals.append((loop.time(), chat))
            await asyncio.sleep(rng.uniform(0, 0.1))
            await limiter.answered(sending)

    await asyncio.gather(*(send(chat) for chat in range(40)))
    times = sorted(at for at, _ in arrivals)
    assert len(times) == 80
    busiest = max(sum(1 for t in times[i:] if t < start + 1.0) for i, start in enumerate(times))
    assert busiest <= 20
    for chat in range(40):
        mine = sorted(at for at, c in arrivals if c == chat)
        assert all(b - a >= 1.0 for a, b in zip(mine, mine[1:], strict=False)), mine
