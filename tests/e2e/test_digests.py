"""Digest runs invoked directly with a frozen clock, against the fake Bot API server."""

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.app import build_bot
from bot.digests import runner as runner_module
from bot.digests.clock import DigestClock
from bot.digests.rules import parse_rule
from bot.digests.runner import CLAIM_TTL, DigestRunner, RunSummary
from bot.digests.subscriptions import add_subscription
from bot.rendering import Renderer
from bot.storage.chats import save_chat, set_enabled
from bot.storage.engine import create_engine, migrate, session_factory
from bot.storage.people import grant_lead, revoke_lead
from bot.storage.report_views import load_view
from bot.storage.tables import digest_deliveries, subscriptions
from bot.telegram import outbound
from bot.telegram.outbound import Limits, OutboundLimiter
from tests.datasets import OLD_ROWS, ROWS_IN_AND_AROUND_P, load
from tests.fake_telegram import FakeTelegram
from tests.support.settings import ADMIN, make_settings

MSK = ZoneInfo("Europe/Moscow")
# Subscriptions are made the day before; the daily 09:00 digest of 2026-11-11 then covers the
# hand-counted day 2026-11-10 (tests/datasets.py).
CREATED = datetime(2026, 11, 10, 10, 0, tzinfo=MSK)
SLOT = datetime(2026, 11, 11, 9, 0, tzinfo=MSK)
FAST = Limits(per_second=1000, chat_interval=0, group_per_minute=1000)


class FrozenClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as fake:
        yield fake


class Runners:
    """Builds digest runners that share one fake server; closes their sessions at the end."""

    def __init__(self, tg: FakeTelegram) -> None:
        self.tg = tg
        self.bots: list[object] = []
        self.renderers: list[Renderer] = []

    def make(
        self,
        engine: AsyncEngine,
        clock: FrozenClock,
        limits: Limits = FAST,
        name: str = "a",
        admin_ids: tuple[int, ...] = (ADMIN,),
    ) -> DigestRunner:
        settings = make_settings(
            engine, token=self.tg.token, api_url=self.tg.base_url, admin_ids=admin_ids
        )
        bot = build_bot(settings)
        outbound.install(bot, OutboundLimiter(limits))
        renderer = Renderer()
        self.bots.append(bot)
        self.renderers.append(renderer)
        return DigestRunner(bot, engine, renderer, settings, clock=clock, instance_id=name)

    async def close(self) -> None:
        for bot in self.bots:
            await bot.session.close()  # type: ignore[attr-defined]
        for renderer in self.renderers:
            renderer.close()


@pytest.fixture
async def runners(tg: FakeTelegram) -> AsyncIterator[Runners]:
    made = Runners(tg)
    yield made
    await made.close()


async def seed(engine: AsyncEngine, tmp_path: Path) -> None:
    await load(engine, tmp_path, ROWS_IN_AND_AROUND_P, "recent")
    await load(engine, tmp_path, OLD_ROWS, "old")


async def subscribe(
    engine: AsyncEngine,
    chat_id: int,
    rule: str = "daily 09:00",
    created: datetime = CREATED,
    language: str = "en",
    allowed: bool = True,
) -> None:
    """A digest in a chat that may see data (unless `allowed` is False): a group enabled, a
    private chat's user a lead."""
    async with session_factory(engine)() as session:
        await save_chat(session, chat_id, language=language)
        if allowed and chat_id < 0:
            await set_enabled(session, chat_id, True, language=language)
        elif allowed and chat_id != ADMIN:
            await grant_lead(session, chat_id, granted_by=ADMIN, name=None)
        await add_subscription(session, chat_id, parse_rule(rule), now=created)
        await session.commit()


async def ledger(engine: AsyncEngine) -> list[tuple[str, str, str]]:
    async with engine.connect() as connection:
        rows = await connection.execute(
            select(
                digest_deliveries.c.period_key,
                digest_deliveries.c.status,
                digest_deliveries.c.parts,
            ).order_by(digest_deliveries.c.id)
        )
        return [tuple(row) for row in rows]


def ok_calls(tg: FakeTelegram, method: str, chat_id: int | None = None) -> list[object]:
    return [
        call
        for call in tg.calls(method)
        if call.ok and (chat_id is None or call.params.get("chat_id") == str(chat_id))
    ]


async def test_due_digest_is_sent_once_with_title_numbers_pies_and_csv(
    tg: FakeTelegram, runners: Runners, sqlite_engine: AsyncEngine, tmp_path: Path
) -> None:
    await seed(sqlite_engine, tmp_path)
    await subscribe(sqlite_engine, 1001)
    clock = FrozenClock(SLOT + timedelta(seconds=30))
    runner = runners.make(sqlite_engine, clock)

    summary = await runner.run()

    assert (summary.sent, summary.skipped, summary.failed) == (1, 0, 0)
    (text,) = ok_calls(tg, "sendMessage", 1001)
    assert text.params["text"].startswith("<b>Daily digest</b>")
    assert "10 Nov 2026 (Europe/Moscow)" in text.params["text"]
    assert "Clients who wrote: <b>4</b>" in text.params["text"]
    assert "delayed" not in text.params["text"]
    # The same buttons as under a command, "By hour" naming the digest's own period.
    keyboard = json.loads(text.params["reply_markup"])["inline_keyboard"]
    assert [b["text"] for row in keyboard for b in row][-2:] == ["Last month", "By hour"]
    by_hour = keyboard[-1][0]["callback_data"]
    async with sqlite_engine.connect() as connection:
        view = await load_view(connection, by_hour.removeprefix("hm:"))
    assert view is not None
    assert (view[0].start.isoformat(), view[0].end.isoformat()) == (
        "2026-11-10T00:00:00+03:00",
        "2026-11-11T00:00:00+03:00",
    )
    (album,) = ok_calls(tg, "sendMediaGroup", 1001)
    assert [f.filename for f in album.media_files()] == ["channels.png", "apps.png", "trend.png"]
    assert album.json("media")[0]["caption"] == "Report charts · 10 Nov 2026 (Europe/Moscow)"
    (document,) = ok_calls(tg, "sendDocument", 1001)
    assert document.file("document").filename == "clients_2026-11-10_2026-11-10.csv"
    assert await ledger(sqlite_engine) == [("2026-11-10", "sent", "text,charts,csv")]

    # The same slot again, later: nothing more is sent.
    clock.now += timedelta(minutes=30)
    again = await runner.run()
    assert (again.sent, again.failed) == (0, 0)
    assert len(ok_calls(tg, "sendMessage")) == 1
    assert tg.errors() == []


async def test_a_digest_created_after_todays_slot_waits_for_the_next(
    tg: FakeTelegram, runners: Runners, sqlite_engine: AsyncEngine, tmp_path: Path
) -> None:
    await seed(sqlite_engine, tmp_path)
    await subscribe(sqlite_engine, 1001, created=SLOT + timedelta(minutes=1))
    summary = await runners.make(sqlite_engine, FrozenClock(SLOT + timedelta(hours=1))).run()
    assert (summary.sent, summary.skipped) == (0, 0)
    assert tg.calls("sendMessage") == []


async def test_restart_between_parts_sends_only_the_missing_parts(
    tg: FakeTelegram, runners: Runners, sqlite_engine: AsyncEngine, tmp_path: Path
) -> None:
    await seed(sqlite_engine, tmp_path)
    await subscribe(sqlite_engine, 1001)
    clock = FrozenClock(SLOT + timedelta(seconds=5))
    # The album fails three times: the first runner gives up after the text went out, and
    # releases its claim instead of holding it for the rest of its lease.
    tg.fail_next("sendMediaGroup", status=500, times=3)
    first = await runners.make(sqlite_engine, clock, name="first").run()
    assert first.failed == 1 and first.unsettled == {1}
    assert await ledger(sqlite_engine) == [("2026-11-10", "claimed", "text")]
    assert await lease_end(sqlite_engine) == clock.now

    # The next run (here another process, a minute later) resumes the missing parts at once.
    clock.now += timedelta(minutes=1)
    resumed = await runners.make(sqlite_engine, clock, name="second").run()
    assert resumed.sent == 1
    assert len(ok_calls(tg, "sendMessage", 1001)) == 1
    assert len(ok_calls(tg, "sendMediaGroup", 1001)) == 1
    assert len(ok_calls(tg, "sendDocument", 1001)) == 1
    assert await ledger(sqlite_engine) == [("2026-11-10", "sent", "text,charts,csv")]


async def lease_end(engine: AsyncEngine) -> datetime:
    async with engine.connect() as connection:
        return (
            await connection.execute(select(digest_deliveries.c.claim_expires_at))
        ).scalar_one()


async def hold_claim(
    engine: AsyncEngine, owner: str, until: datetime, parts: str, subscription_id: int = 1
) -> None:
    """The ledger as a process left it that died (SIGKILL) between the parts of the slot."""
    async with engine.begin() as connection:
        await connection.execute(
            insert(digest_deliveries).values(
                subscription_id=subscription_id,
                period_key="2026-11-10",
                slot_at=SLOT,
                status="claimed",
                claimed_by=owner,
                claim_expires_at=until,
                parts=parts,
                updated_at=until - CLAIM_TTL,
            )
        )


async def test_a_dead_owners_claim_is_resumed_when_its_lease_ends_not_tomorrow(
    tg: FakeTelegram, runners: Runners, sqlite_engine: AsyncEngine, tmp_path: Path
) -> None:
    await seed(sqlite_engine, tmp_path)
    await subscribe(sqlite_engine, 1001)
    clock = FrozenClock(SLOT + timedelta(seconds=30))
    await hold_claim(sqlite_engine, "killed", clock.now + timedelta(seconds=90), "text")
    digest_clock = DigestClock(runners.make(sqlite_engine, clock), sqlite_engine, "UTC", clock)
    await digest_clock.start()
    try:
        # The catch-up at start found the slot held: it comes back once that lease ended.
        assert digest_clock.next_runs()[1] <= clock.now + CLAIM_TTL + timedelta(seconds=5)
        clock.now += CLAIM_TTL
        resumed = await digest_clock.runner.run()
    finally:
        await digest_clock.shutdown()
    assert resumed.sent == 1
    assert ok_calls(tg, "sendMessage", 1001) == []
    assert len(ok_calls(tg, "sendDocument", 1001)) == 1
    assert await ledger(sqlite_engine) == [("2026-11-10", "sent", "text,charts,csv")]


async def test_a_stop_lets_a_digest_between_parts_finish(
    tg: FakeTelegram, runners: Runners, sqlite_engine: AsyncEngine, tmp_path: Path
) -> None:
    await seed(sqlite_engine, tmp_path)
    await subscribe(sqlite_engine, 1001)
    clock = FrozenClock(SLOT + timedelta(seconds=5))
    digest_clock = DigestClock(runners.make(sqlite_engine, clock), sqlite_engine, "UTC", clock)
    digest_clock.scheduler.start()
    # The album waits out a 429 when the stop comes (SIGTERM stops the clock this way).
    tg.fail_next("sendMediaGroup", status=429, retry_after=1)
    digest_clock._schedule(1, clock.now)
    await tg.wait_for("sendMediaGroup")
    await digest_clock.shutdown()
    assert await ledger(sqlite_engine) == [("2026-11-10", "sent", "text,charts,csv")]
    assert len(ok_calls(tg, "sendDocument", 1001)) == 1


async def test_a_stop_past_the_grace_releases_the_claim_for_the_next_start(
    tg: FakeTelegram, runners: Runners, sqlite_engine: AsyncEngine, tmp_path: Path
) -> None:
    await seed(sqlite_engine, tmp_path)
    await subscribe(sqlite_engine, 1001)
    clock = FrozenClock(SLOT + timedelta(seconds=5))
    runner = runners.make(sqlite_engine, clock, name="stopped")
    digest_clock = DigestClock(runner, sqlite_engine, "UTC", clock, grace=0)
    digest_clock.scheduler.start()
    tg.fail_next("sendMediaGroup", status=429, retry_after=30)
    digest_clock._schedule(1, clock.now)
    await tg.wait_for("sendMediaGroup")
    await digest_clock.shutdown()
    assert await ledger(sqlite_engine) == [("2026-11-10", "claimed", "text")]
    assert await lease_end(sqlite_engine) == clock.now
    # The next start takes it over at once and sends only what is missing.
    resumed = await runners.make(sqlite_engine, clock, name="restarted").run()
    assert resumed.sent == 1
    assert len(ok_calls(tg, "sendMessage", 1001)) == 1
    assert len(ok_calls(tg, "sendDocument", 1001)) == 1


async def waiting_out_a_429_on_the_csv(
    tg: FakeTelegram, runners: Runners, engine: AsyncEngine, tmp_path: Path
) -> tuple[FrozenClock, DigestRunner, asyncio.Task[RunSummary]]:
    """A runner "first" whose digest sent text and charts and now waits out a 429 on the CSV."""
    await seed(engine, tmp_path)
    await subscribe(engine, 1001)
    clock = FrozenClock(SLOT + timedelta(seconds=5))
    first = runners.make(engine, clock, name="first")
    tg.fail_next("sendDocument", status=429, retry_after=1)
    delivery = asyncio.create_task(first.run())
    await tg.wait_for("sendDocument")
    return clock, first, delivery


async def test_a_released_claim_stays_free_while_the_runner_renews_its_others(
    runners: Runners, sqlite_engine: AsyncEngine
) -> None:
    await subscribe(sqlite_engine, 1001)
    await subscribe(sqlite_engine, 1002)
    clock = FrozenClock(SLOT + timedelta(seconds=5))
    runner = runners.make(sqlite_engine, clock, name="owner")
    for subscription_id in (1, 2):
        await hold_claim(sqlite_engine, "owner", clock.now + CLAIM_TTL, "text", subscription_id)
        runner._leases[(subscription_id, "2026-11-10")] = clock.now + CLAIM_TTL
    # The first digest gave up and released its claim; the second still waits out a 429.
    gave_up = SimpleNamespace(subscription=SimpleNamespace(id=1), period_key="2026-11-10")
    await runner._release(gave_up)  # type: ignore[arg-type]
    clock.now += timedelta(seconds=30)
    await runner.renew_claims()
    async with sqlite_engine.connect() as connection:
        ends = dict(
            (
                await connection.execute(
                    select(
                        digest_deliveries.c.subscription_id, digest_deliveries.c.claim_expires_at
                    )
                )
            ).all()
        )
    assert ends == {1: clock.now - timedelta(seconds=30), 2: clock.now + CLAIM_TTL}


async def test_a_live_owner_keeps_its_claim_while_it_waits_out_a_429(
    tg: FakeTelegram, runners: Runners, sqlite_engine: AsyncEngine, tmp_path: Path
) -> None:
    clock, first, delivery = await waiting_out_a_429_on_the_csv(
        tg, runners, sqlite_engine, tmp_path
    )
    # Longer than a lease passes while it waits; its heartbeat renews the claim meanwhile.
    clock.now += CLAIM_TTL + timedelta(minutes=1)
    await first.renew_claims()
    second = await runners.make(sqlite_engine, clock, name="second").run()
    assert (second.sent, second.busy) == (0, 1)
    assert (await delivery).sent == 1
    assert len(ok_calls(tg, "sendDocument", 1001)) == 1
    assert await ledger(sqlite_engine) == [("2026-11-10", "sent", "text,charts,csv")]


async def test_an_owner_whose_claim_was_taken_over_sends_nothing_more(
    tg: FakeTelegram, runners: Runners, sqlite_engine: AsyncEngine, tmp_path: Path
) -> None:
    clock, _, delivery = await waiting_out_a_429_on_the_csv(tg, runners, sqlite_engine, tmp_path)
    # The owner's lease ran out unrenewed (its loop stalled): another runner takes over.
    clock.now += CLAIM_TTL + timedelta(minutes=1)
    second = await runners.make(sqlite_engine, clock, name="second").run()
    assert second.sent == 1
    # The first one's retry finds the claim gone before its attempt and stops.
    stopped = await delivery
    assert (stopped.sent, stopped.busy) == (0, 1)
    assert len(ok_calls(tg, "sendDocument", 1001)) == 1
    assert await ledger(sqlite_engine) == [("2026-11-10", "sent", "text,charts,csv")]


async def test_slot_missed_by_one_hour_is_sent_with_a_delayed_note(
    tg: FakeTelegram, runners: Runners, sqlite_engine: AsyncEngine, tmp_path: Path
) -> None:
    await seed(sqlite_engine, tmp_path)
    await subscribe(sqlite_engine, 1001)
    summary = await runners.make(sqlite_engine, FrozenClock(SLOT + timedelta(hours=1))).run()
    assert summary.sent == 1
    (text,) = ok_calls(tg, "sendMessage", 1001)
    assert text.params["text"].startswith("<b>Daily digest (delayed: due at 09:00)</b>")
    assert "Clients who wrote: <b>4</b>" in text.params["text"]


async def test_slot_missed_by_a_day_is_skipped_and_todays_is_sent(
    tg: FakeTelegram, runners: Runners, sqlite_engine: AsyncEngine, tmp_path: Path
) -> None:
    await seed(sqlite_engine, tmp_path)
    await subscribe(sqlite_engine, 1001, created=CREATED - timedelta(days=1))
    # Down from before the 2026-11-10 09:00 slot until 10:00 the day after.
    summary = await runners.make(sqlite_engine, FrozenClock(SLOT + timedelta(hours=1))).run()
    assert (summary.sent, summary.skipped) == (1, 1)
    assert await ledger(sqlite_engine) == [
        ("2026-11-09", "skipped", ""),
        ("2026-11-10", "sent", "text,charts,csv"),
    ]
    assert len(ok_calls(tg, "sendMessage")) == 1


async def test_slot_missed_by_seven_hours_is_only_recorded(
    tg: FakeTelegram, runners: Runners, sqlite_engine: AsyncEngine, tmp_path: Path
) -> None:
    await seed(sqlite_engine, tmp_path)
    await subscribe(sqlite_engine, 1001)
    summary = await runners.make(sqlite_engine, FrozenClock(SLOT + timedelta(hours=7))).run()
    assert (summary.sent, summary.skipped) == (0, 1)
    assert tg.calls("sendMessage") == []
    assert await ledger(sqlite_engine) == [("2026-11-10", "skipped", "")]


async def concurrent_runners_send_each_digest_once(
    tg: FakeTelegram, runners: Runners, url: str, tmp_path: Path
) -> None:
    engines = [create_engine(url), create_engine(url)]
    try:
        await migrate(engines[0])
        await seed(engines[0], tmp_path)
        chats = [2001, 2002, 2003, 2004, 2005]
        for chat in chats:
            await subscribe(engines[0], chat)
        clock = FrozenClock(SLOT + timedelta(seconds=10))
        first = runners.make(engines[0], clock, name="one")
        second = runners.make(engines[1], clock, name="two")
        results = await asyncio.gather(first.run(), second.run())
        assert sum(result.sent for result in results) == len(chats)
        for chat in chats:
            assert len(ok_calls(tg, "sendMessage", chat)) == 1
            assert len(ok_calls(tg, "sendDocument", chat)) == 1
        assert [status for _, status, _ in await ledger(engines[0])] == ["sent"] * len(chats)
    finally:
        for engine in engines:
            await engine.dispose()


async def test_two_runners_on_one_sqlite_file_send_each_digest_once(
    tg: FakeTelegram, runners: Runners, sqlite_url: str, tmp_path: Path
) -> None:
    await concurrent_runners_send_each_digest_once(tg, runners, sqlite_url, tmp_path)


async def test_two_runners_on_one_postgresql_database_send_each_digest_once(
    tg: FakeTelegram, runners: Runners, postgres_url: str, tmp_path: Path
) -> None:
    await concurrent_runners_send_each_digest_once(tg, runners, postgres_url, tmp_path)


async def test_429_on_one_chat_waits_while_the_other_chat_goes_on(
    tg: FakeTelegram, runners: Runners, sqlite_engine: AsyncEngine, tmp_path: Path
) -> None:
    await seed(sqlite_engine, tmp_path)
    await subscribe(sqlite_engine, 3001)
    await subscribe(sqlite_engine, 3002)
    tg.fail_next("sendMessage", status=429, retry_after=1)
    summary = await runners.make(sqlite_engine, FrozenClock(SLOT)).run()
    assert summary.sent == 2
    refused = [call for call in tg.calls("sendMessage") if call.status == 429]
    assert len(refused) == 1
    throttled = int(refused[0].params["chat_id"])
    other = 3001 if throttled == 3002 else 3002
    (throttled_text,) = ok_calls(tg, "sendMessage", throttled)
    (other_text,) = ok_calls(tg, "sendMessage", other)
    # The other chat was served while the throttled one waited out its retry_after.
    assert other_text.at < throttled_text.at
    assert throttled_text.at - refused[0].at >= 1.0


async def test_blocked_chat_deactivates_its_digests_with_the_reason(
    tg: FakeTelegram, runners: Runners, sqlite_engine: AsyncEngine, tmp_path: Path
) -> None:
    await seed(sqlite_engine, tmp_path)
    await subscribe(sqlite_engine, 4001)
    await subscribe(sqlite_engine, 4002)
    tg.block_chat(4001)
    summary = await runners.make(sqlite_engine, FrozenClock(SLOT)).run()
    assert (summary.sent, summary.failed) == (1, 1)
    async with sqlite_engine.connect() as connection:
        rows = (
            await connection.execute(
                select(
                    subscriptions.c.chat_id,
                    subscriptions.c.active,
                    subscriptions.c.deactivated_reason,
                ).order_by(subscriptions.c.chat_id)
            )
        ).all()
    assert [tuple(row) for row in rows] == [
        (4001, False, "Forbidden: bot was blocked by the user"),
        (4002, True, None),
    ]
    assert len(ok_calls(tg, "sendDocument", 4002)) == 1


async def test_group_upgraded_to_supergroup_gets_the_digest_at_its_new_id(
    tg: FakeTelegram, runners: Runners, sqlite_engine: AsyncEngine, tmp_path: Path
) -> None:
    await seed(sqlite_engine, tmp_path)
    await subscribe(sqlite_engine, -5001)
    tg.migrate_chat(-5001, -1005001)
    summary = await runners.make(sqlite_engine, FrozenClock(SLOT)).run()
    assert summary.sent == 1
    assert len(ok_calls(tg, "sendMessage", -1005001)) == 1
    assert len(ok_calls(tg, "sendDocument", -1005001)) == 1
    async with sqlite_engine.connect() as connection:
        moved = (await connection.execute(select(subscriptions.c.chat_id))).scalars().all()
    assert moved == [-1005001]


async def test_fan_out_of_300_chats_renders_once_and_keeps_every_rate_limit(
    runners: Runners, sqlite_engine: AsyncEngine, tmp_path: Path
) -> None:
    async with FakeTelegram(enforce_rate_limits=True) as strict:
        runners.tg = strict
        await seed(sqlite_engine, tmp_path)
        chats = list(range(6000, 6300))
        for chat in chats:
            await subscribe(sqlite_engine, chat)
        runner = runners.make(sqlite_engine, FrozenClock(SLOT), limits=Limits())
        summary = await runner.run()
        assert (summary.sent, summary.failed, summary.rendered) == (300, 0, 1)
        assert [call for call in strict.calls() if call.status == 429] == []
        assert strict.rate_violations() == []
        for method in ("sendMessage", "sendMediaGroup", "sendDocument"):
            assert len(ok_calls(strict, method)) == 300
        # The pies and the CSV are uploaded once, then re-sent by file_id.
        uploads = [c for c in strict.calls("sendMediaGroup") if any(c.media_files())]
        assert len(uploads) == 1
        assert len([c for c in strict.calls("sendDocument") if c.file("document")]) == 1


async def paused_states(engine: AsyncEngine) -> dict[int, list[str | None]]:
    """chat_id -> the paused reason of each of its active subscriptions (None: not paused)."""
    async with engine.connect() as connection:
        rows = await connection.execute(
            select(subscriptions.c.chat_id, subscriptions.c.paused_reason)
            .where(subscriptions.c.active)
            .order_by(subscriptions.c.id)
        )
        states: dict[int, list[str | None]] = {}
        for chat_id, reason in rows:
            states.setdefault(chat_id, []).append(reason)
    return states


async def ledger_details(engine: AsyncEngine) -> list[tuple[str, str, str | None]]:
    async with engine.connect() as connection:
        rows = await connection.execute(
            select(
                digest_deliveries.c.period_key,
                digest_deliveries.c.status,
                digest_deliveries.c.detail,
            ).order_by(digest_deliveries.c.id)
        )
        return [tuple(row) for row in rows]


async def test_a_disabled_group_gets_no_digest_the_ledger_says_why_and_it_is_paused(
    tg: FakeTelegram, runners: Runners, sqlite_engine: AsyncEngine, tmp_path: Path
) -> None:
    await seed(sqlite_engine, tmp_path)
    await subscribe(sqlite_engine, -7001)
    await subscribe(sqlite_engine, -7002)
    # An admin sent /disable in the first group after its digest was set up.
    async with session_factory(sqlite_engine)() as session:
        await set_enabled(session, -7001, False, language="en")
        await session.commit()
    clock = FrozenClock(SLOT + timedelta(seconds=30))
    runner = runners.make(sqlite_engine, clock)

    summary = await runner.run()

    assert (summary.sent, summary.skipped, summary.failed) == (1, 1, 0)
    assert ok_calls(tg, "sendMessage", -7001) == []
    assert ok_calls(tg, "sendMediaGroup", -7001) == []
    assert ok_calls(tg, "sendDocument", -7001) == []
    assert len(ok_calls(tg, "sendDocument", -7002)) == 1
    assert sorted(await ledger_details(sqlite_engine)) == [
        ("2026-11-10", "sent", None),
        ("2026-11-10", "skipped", "no access: group disabled"),
    ]
    assert await paused_states(sqlite_engine) == {-7001: ["group disabled"], -7002: [None]}

    # Paused: the next days bring nothing to that group, not even a ledger row.
    clock.now += timedelta(days=1)
    later = await runner.run()
    assert (later.sent, later.skipped) == (1, 0)
    assert ok_calls(tg, "sendMessage", -7001) == []
    assert tg.errors() == []


@pytest.mark.parametrize("lost", ["admin-removed-from-ADMIN_IDS", "lead-revoked"])
async def test_a_private_chat_whose_user_lost_the_role_gets_no_digest_and_it_is_paused(
    tg: FakeTelegram, runners: Runners, sqlite_engine: AsyncEngine, tmp_path: Path, lost: str
) -> None:
    await seed(sqlite_engine, tmp_path)
    former = ADMIN if lost == "admin-removed-from-ADMIN_IDS" else 8001
    await subscribe(sqlite_engine, former)
    await subscribe(sqlite_engine, 8002)  # a lead who keeps the role
    if lost == "lead-revoked":
        async with session_factory(sqlite_engine)() as session:
            assert await revoke_lead(session, former)
            await session.commit()
    # The bot restarted with ADMIN_IDS without the former admin.
    admins = (9999,) if lost == "admin-removed-from-ADMIN_IDS" else (ADMIN,)
    runner = runners.make(
        sqlite_engine, FrozenClock(SLOT + timedelta(seconds=30)), admin_ids=admins
    )

    summary = await runner.run()

    assert (summary.sent, summary.skipped) == (1, 1)
    assert ok_calls(tg, "sendMessage", former) == []
    assert ok_calls(tg, "sendDocument", former) == []
    assert len(ok_calls(tg, "sendDocument", 8002)) == 1
    assert ("2026-11-10", "skipped", "no access: no role") in await ledger_details(sqlite_engine)
    assert await paused_states(sqlite_engine) == {former: ["no role"], 8002: [None]}


async def test_the_heartbeat_renews_the_claims_while_a_delivery_waits(
    tg: FakeTelegram,
    runners: Runners,
    sqlite_engine: AsyncEngine,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await seed(sqlite_engine, tmp_path)
    await subscribe(sqlite_engine, 1001)
    monkeypatch.setattr(runner_module, "RENEW_EVERY", timedelta(milliseconds=10))
    renewed = asyncio.Event()
    renew = DigestRunner.renew_claims

    async def noted(self: DigestRunner) -> None:
        await renew(self)
        renewed.set()

    monkeypatch.setattr(DigestRunner, "renew_claims", noted)
    clock = FrozenClock(SLOT + timedelta(seconds=5))
    tg.fail_next("sendDocument", status=429, retry_after=1)
    delivery = asyncio.create_task(runners.make(sqlite_engine, clock).run())
    await tg.wait_for("sendDocument")
    clock.now += timedelta(minutes=1)
    # A beat that began before the clock moved may still land first: wait for a later one.
    async with asyncio.timeout(10):
        while await lease_end(sqlite_engine) != clock.now + CLAIM_TTL:
            renewed.clear()
            await renewed.wait()
    assert (await delivery).sent == 1


async def test_a_group_that_forbids_photos_gets_the_text_one_note_and_the_csv_once(
    tg: FakeTelegram, runners: Runners, sqlite_engine: AsyncEngine, tmp_path: Path
) -> None:
    group = -1001234500009
    await seed(sqlite_engine, tmp_path)
    await subscribe(sqlite_engine, group)
    tg.restrict_chat(group, photos=False)
    clock = FrozenClock(SLOT + timedelta(seconds=30))
    runner = runners.make(sqlite_engine, clock)

    summary = await runner.run()

    assert (summary.sent, summary.failed) == (1, 0)
    (album,) = tg.calls("sendMediaGroup")
    assert album.status == 400
    text, note = ok_calls(tg, "sendMessage", group)
    assert text.params["text"].startswith("<b>Daily digest</b>")
    assert note.params["text"] == (
        "Sorry, the charts could not be posted here: "
        "this chat does not allow the bot to send photos."
    )
    assert len(ok_calls(tg, "sendDocument", group)) == 1
    assert await ledger(sqlite_engine) == [("2026-11-10", "sent", "text,charts,csv")]

    # The next run (10 minutes later) neither retries the album nor repeats the note.
    clock.now += timedelta(minutes=10)
    again = await runner.run()
    assert (again.sent, again.failed) == (0, 0)
    assert len(tg.calls("sendMediaGroup")) == 1
    assert len(ok_calls(tg, "sendMessage", group)) == 2
