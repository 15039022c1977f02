"""The outbound limiter with a virtual clock: each chat's pace, the overall and group windows."""

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
        await limiter.wait(7, weight)
        sent_at.append(time.now)
        limiter.sent(7)
    assert [round(t - 100.0, 3) for t in sent_at] == [0.0, 1.1, 3.3]


async def test_a_waiting_chat_does_not_hold_back_other_chats() -> None:
    time = VirtualTime()
    limiter = OutboundLimiter(clock=time.clock, sleep=time.sleep)
    await limiter.wait(1)
    limiter.sent(1)
    assert limiter.reserve(1, weight=2) == 101.1  # chat 1 waits for its own pace...
    await limiter.wait(2)  # ...while chat 2 goes after the overall spacing only
    assert time.now == 100.05


async def test_no_more_than_the_overall_rate_in_any_second() -> None:
    time = VirtualTime()
    limiter = OutboundLimiter(Limits(per_second=25), clock=time.clock, sleep=time.sleep)
    sent_at = []
    for chat in range(60):
        await limiter.wait(chat)
        sent_at.append(time.now)
    for index, moment in enumerate(sent_at):
        in_window = [t for t in sent_at[index:] if t < moment + 1.0]
        assert len(in_window) <= 25
    # Evenly spaced, never in bursts: 60 sends take 59 gaps of 1/25 s.
    assert round(sent_at[-1] - sent_at[0], 3) == 2.36


async def test_a_group_gets_at_most_twenty_messages_a_minute() -> None:
    time = VirtualTime()
    limiter = OutboundLimiter(
        Limits(per_second=1000, chat_interval=0.0, group_per_minute=20),
        clock=time.clock,
        sleep=time.sleep,
    )
    sent_at = []
    for _ in range(41):
        await limiter.wait(-100)
        sent_at.append(time.now)
    # Twenty go at the overall spacing, the 21st when the first leaves the minute window.
    assert sent_at[19] < 100.1
    assert 160.0 <= sent_at[20] < 160.1
    assert 220.0 <= sent_at[40] < 220.1
    # A private chat is not held by the group's window.
    before = time.now
    await limiter.wait(5)
    assert time.now - before <= 0.001 + 1e-9
