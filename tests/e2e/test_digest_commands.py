"""/digest, /timezone, /disable and /revoke through the running application, with digests run
on a virtual clock: what the commands say must be what the digest runner then does."""

from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from bot.digests.rules import parse_rule
from bot.digests.subscriptions import add_subscription
from bot.storage.chats import save_chat
from bot.storage.engine import session_factory
from bot.telegram.delivery import MESSAGE_LIMIT, telegram_length
from tests.e2e.access_support import (
    GROUP,
    LEAD,
    grant_leads,
    running_application,
    texts,
)
from tests.fake_telegram import Call
from tests.support.polling import Live
from tests.support.settings import ADMIN, MSK, NOW

ENABLED = "This group is enabled: leads and admins can get reports here."
DISABLED_ONE_PAUSED = (
    "This group is disabled: the bot will not answer here. 1 digest of this group is paused; "
    "after /enable, /digest resume N restarts it."
)
RESUME_USAGE = "Usage: /digest resume N, where N is the number of a paused digest in /digest."


class VirtualClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def report_sent(calls: list[Call]) -> bool:
    """One digest: its text, the album when the period had appeals, the CSV."""
    return [c.method for c in calls if c.method != "sendMediaGroup"] == [
        "sendMessage",
        "sendDocument",
    ] and calls[0].params["text"].startswith("<b>Daily digest</b>")


async def one_reply(live: Live, text: str, *, chat_id: int | None = None) -> str:
    calls = await live.round_trip(text, user_id=ADMIN, chat_id=chat_id)
    (reply,) = texts(calls)
    return reply


async def subscribe(engine: AsyncEngine, chat_id: int, rule: str = "daily 09:00") -> None:
    async with session_factory(engine)() as session:
        await save_chat(session, chat_id, language="en")
        await add_subscription(session, chat_id, parse_rule(rule), now=NOW)
        await session.commit()


async def test_disable_pauses_the_group_s_digests_and_resume_restarts_them(
    hand_counted: AsyncEngine,
) -> None:
    clock = VirtualClock(NOW)
    async with running_application(hand_counted, clock=clock) as (live, app):
        assert await one_reply(live, "/enable", chat_id=GROUP) == ENABLED
        added = await one_reply(live, "/digest daily 09:00", chat_id=GROUP)
        assert added == (
            "Digest added: yesterday's report, every day at 09:00 Europe/Moscow, first on 12 Nov."
        )

        assert await one_reply(live, "/disable", chat_id=GROUP) == DISABLED_ONE_PAUSED

        # The slot comes while the group is disabled: nothing reaches it.
        before = len(live.delivered(GROUP))
        clock.now = datetime(2026, 11, 12, 9, 0, 30, tzinfo=MSK)
        summary = await app.digests.run()
        assert summary.sent == 0
        assert len(live.delivered(GROUP)) == before
        assert app.digest_clock.next_runs() == {}

        assert await one_reply(live, "/enable", chat_id=GROUP) == ENABLED
        listing = await one_reply(live, "/digest", chat_id=GROUP)
        assert (
            "1. every day at 09:00 — paused: the group was disabled. Resume with /digest resume 1."
            in listing
        )
        assert await one_reply(live, "/digest resume 99", chat_id=GROUP) == RESUME_USAGE
        assert await one_reply(live, "/digest resume", chat_id=GROUP) == RESUME_USAGE
        assert await one_reply(live, "/digest resume 1", chat_id=GROUP) == (
            "Digest 1 resumed: every day at 09:00. Next: 13 Nov, 09:00 (Europe/Moscow)."
        )
        assert await one_reply(live, "/digest resume 1", chat_id=GROUP) == (
            "Digest 1 is not paused."
        )
        listing = await one_reply(live, "/digest", chat_id=GROUP)
        assert "1. every day at 09:00 — next: 13 Nov, 09:00" in listing

        # Resumed: the next slot is delivered (a slot missed while paused is not owed).
        before = len(live.delivered(GROUP))
        clock.now = datetime(2026, 11, 13, 9, 0, 30, tzinfo=MSK)
        summary = await app.digests.run()
        assert summary.sent == 1
        assert report_sent(live.delivered(GROUP)[before:])
        assert live.tg.errors() == []


async def test_revoke_pauses_the_lead_s_private_digests_and_says_how_many(
    hand_counted: AsyncEngine,
) -> None:
    await grant_leads(hand_counted, [LEAD])
    # Digests in the lead's private chat (set up while they were an admin) and the admin's.
    await subscribe(hand_counted, LEAD)
    await subscribe(hand_counted, LEAD, "weekly thu 09:00")
    await subscribe(hand_counted, ADMIN)
    clock = VirtualClock(NOW)
    async with running_application(hand_counted, clock=clock) as (live, app):
        assert await one_reply(live, f"/revoke {LEAD}") == (
            f"{LEAD} is no longer a lead. 2 digests in their private chat are paused."
        )
        assert await one_reply(live, f"/revoke {LEAD}") == f"{LEAD} had no role."

        clock.now = datetime(2026, 11, 12, 9, 0, 30, tzinfo=MSK)
        summary = await app.digests.run()
        assert summary.sent == 1
        assert live.delivered(LEAD) == []
        assert report_sent(live.delivered(ADMIN)[-3:])
        assert live.tg.errors() == []


async def test_after_a_westward_timezone_change_the_listing_and_the_runner_agree(
    hand_counted: AsyncEngine,
) -> None:
    clock = VirtualClock(NOW)  # 09:00 UTC
    async with running_application(hand_counted, clock=clock) as (live, app):
        await one_reply(live, "/timezone Asia/Kathmandu")  # UTC+05:45
        added = await one_reply(live, "/digest daily 15:24")
        assert added == (
            "Digest added: yesterday's report, every day at 15:24 Asia/Kathmandu, first on 11 Nov."
        )

        clock.now = datetime(2026, 11, 11, 9, 39, 30, tzinfo=UTC)  # 15:24 in Kathmandu
        assert (await app.digests.run()).sent == 1
        delivered = len(live.delivered(ADMIN))

        # Westward by 15 minutes: 15:24 in Kolkata (UTC+05:30) is still ahead today, but
        # today's period (yesterday's report) was already delivered.
        clock.now = datetime(2026, 11, 11, 9, 45, tzinfo=UTC)
        zone = await one_reply(live, "/timezone Asia/Kolkata")
        assert zone == "Timezone: Asia/Kolkata. Local time: 11 Nov, 15:15."
        listing = await one_reply(live, "/digest")
        assert "1. every day at 15:24 — next: 12 Nov, 15:24" in listing
        tomorrow = datetime(2026, 11, 12, 9, 54, tzinfo=UTC)
        assert list(app.digest_clock.next_runs().values()) == [tomorrow]

        # And the runner agrees: nothing at 15:24 today, the digest tomorrow.
        clock.now = datetime(2026, 11, 11, 9, 54, 30, tzinfo=UTC)
        today = await app.digests.run()
        assert (today.sent, today.busy, today.failed) == (0, 0, 0)
        clock.now = tomorrow + timedelta(seconds=30)
        assert (await app.digests.run()).sent == 1
        after = live.delivered(ADMIN)[delivered:]
        assert [c.method for c in after[:2]] == ["sendMessage", "sendMessage"]  # the commands
        assert report_sent(after[2:])
        assert live.tg.errors() == []


async def test_a_digest_listing_longer_than_a_message_is_split_at_line_boundaries(
    hand_counted: AsyncEngine,
) -> None:
    # Twelve digests with the longest filters the table stores (set up when such names existed).
    for number in range(12):
        rule = f'daily 09:{number:02d} channel={"c" * 200} app="{"a" * 199}{number % 10}"'
        await subscribe(hand_counted, ADMIN, rule)
    async with running_application(hand_counted, clock=lambda: NOW) as (live, _app):
        calls = await live.round_trip("/digest", user_id=ADMIN)
        parts = texts(calls)
        assert len(parts) >= 2
        assert all(call.ok for call in calls if call.method == "sendMessage")
        assert all(telegram_length(part) <= MESSAGE_LIMIT for part in parts)
        lines = "\n".join(parts).split("\n")
        assert lines[0] == "<b>Digests of this chat</b> (Europe/Moscow)"
        assert [line.split(".")[0] for line in lines[1:13]] == [str(n) for n in range(1, 13)]
        assert lines[-1] == "Remove one with /digest off N, or all with /digest off all."
        assert live.tg.errors() == []
