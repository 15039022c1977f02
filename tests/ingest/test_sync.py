"""Chatwoot history sync and reconciliation against a fake Chatwoot API on 127.0.0.1.

What a sync can see: each conversation's start and its current status at its last activity. So a
conversation resolved then reopened before the first sync counts one appeal; a sync that sees it
resolved and a later one that sees it open again count two.
"""

import asyncio
import logging
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.config import Settings
from bot.ingest.chatwoot_sync import (
    OVERLAP,
    SyncError,
    TextProgress,
    reconcile_forever,
    sync_chatwoot,
)
from bot.storage.tables import desk_events, sync_state
from reports.schema import appeals, clients
from tests.ingest.fake_chatwoot import (
    ACCOUNT_ID,
    TOKEN,
    FakeChatwoot,
    FakeConversation,
    generate,
)

SINCE = datetime(2026, 1, 1, tzinfo=UTC)
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def settings_for(fake: FakeChatwoot, *, token: str = TOKEN, account: int = ACCOUNT_ID) -> Settings:
    return Settings(
        _env_file=None,
        chatwoot_api_url=fake.base_url,
        chatwoot_api_token=token,
        chatwoot_account_id=account,
    )


class VirtualTime:
    """A clock that only moves when the code sleeps; every delay is recorded."""

    def __init__(self, now: datetime = NOW) -> None:
        self.now = now
        self.delays: list[float] = []

    def clock(self) -> datetime:
        return self.now

    async def sleep(self, delay: float) -> None:
        self.delays.append(delay)
        self.now += timedelta(seconds=delay)


async def appeal_ids(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as connection:
        rows = await connection.execute(select(appeals.c.external_id).order_by(appeals.c.id))
        return sorted(row[0] for row in rows)


async def count(engine: AsyncEngine, table) -> int:
    async with engine.connect() as connection:
        return int(await connection.scalar(select(func.count()).select_from(table)))


def conversation(
    number: int, status: str, created: datetime, active: datetime, contact: int = 500
) -> FakeConversation:
    return FakeConversation(
        id=number,
        contact_id=contact,
        inbox_id=3,
        status=status,
        created_at=created,
        last_activity_at=active,
        channel="Channel::Whatsapp",
    )


async def test_full_sync_stores_the_appeals_counted_by_hand(engine: AsyncEngine) -> None:
    t = datetime(2026, 2, 1, 10, 0, tzinfo=UTC)
    fake = FakeChatwoot(
        conversations=[
            # Resolved: its start opens appeal 1, the resolve closes it.
            conversation(1, "resolved", t, t + timedelta(hours=1), contact=501),
            # Open: one appeal, still going.
            conversation(2, "open", t + timedelta(hours=2), t + timedelta(hours=3), contact=502),
            # Pending (the desk's own move): one appeal from its start.
            conversation(
                3, "pending", t + timedelta(hours=4), t + timedelta(hours=5), contact=501
            ),
            # Last active before --since: not read.
            conversation(4, "resolved", SINCE - timedelta(days=9), SINCE - timedelta(days=8)),
        ]
    )
    time = VirtualTime()
    async with fake:
        result = await sync_chatwoot(
            settings_for(fake), engine, since=SINCE, sleep=time.sleep, clock=time.clock
        )
    assert (result.conversations, result.new_events, result.pages) == (3, 5, 1)
    assert await appeal_ids(engine) == [
        "chatwoot:main:1:1",
        "chatwoot:main:2:1",
        "chatwoot:main:3:1",
    ]
    assert await count(engine, clients) == 2
    # The channel comes from `meta.channel` of the REST conversation, the app from its inbox.
    async with engine.connect() as connection:
        channels = set(await connection.scalars(select(desk_events.c.channel)))
        assert channels == {"whatsapp"}
        state = (
            await connection.execute(select(sync_state.c.label, sync_state.c.synced_until))
        ).all()
    assert state == [("main", NOW - OVERLAP)]


async def test_a_reopened_conversation_counts_two_appeals_once_a_sync_saw_it_closed(
    sqlite_engine: AsyncEngine,
) -> None:
    t = datetime(2026, 2, 1, 10, 0, tzinfo=UTC)
    reopened = conversation(1, "resolved", t, t + timedelta(hours=1))
    fake = FakeChatwoot(conversations=[reopened])
    time = VirtualTime()
    async with fake:
        settings = settings_for(fake)
        await sync_chatwoot(settings, sqlite_engine, since=SINCE, clock=time.clock)
        assert await appeal_ids(sqlite_engine) == ["chatwoot:main:1:1"]
        # The client writes again: Chatwoot reopens the conversation.
        reopened.status = "open"
        reopened.last_activity_at = t + timedelta(days=2)
        time.now += timedelta(minutes=10)
        await sync_chatwoot(settings, sqlite_engine, since=SINCE, clock=time.clock)
    assert await appeal_ids(sqlite_engine) == ["chatwoot:main:1:1", "chatwoot:main:1:2"]


async def test_many_pages_then_a_rerun_adds_nothing(engine: AsyncEngine) -> None:
    fake = FakeChatwoot(conversations=generate(130))
    time = VirtualTime()
    seen: list[tuple[int, int | None]] = []
    async with fake:
        settings = settings_for(fake)
        first = await sync_chatwoot(
            settings,
            engine,
            since=SINCE,
            progress=lambda done, total: seen.append((done, total)),
            clock=time.clock,
        )
        stored = await count(engine, desk_events)
        second = await sync_chatwoot(settings, engine, since=SINCE, clock=time.clock)
    # 130 conversations: 6 pages, the last one short, then an empty page ends the list.
    assert (first.conversations, first.pages) == (130, 7)
    # Starts of all 130 plus a status event for the 87 resolved or open (pending has none).
    assert first.new_events == stored == 130 + 87
    assert len(await appeal_ids(engine)) == 130
    assert seen[0] == (25, 130) and seen[-1] == (130, 130)
    assert (second.conversations, second.new_events) == (130, 0)
    assert await count(engine, desk_events) == stored
    assert all(r.params["status"] == "all" for r in fake.requests)
    assert all(r.params["sort_by"] == "last_activity_at_desc" for r in fake.requests)


async def test_an_interrupted_sync_resumes_below_where_it_stopped(engine: AsyncEngine) -> None:
    fake = FakeChatwoot(conversations=generate(250), fail_after_page=6)
    time = VirtualTime()
    async with fake:
        settings = settings_for(fake)
        with pytest.raises(SyncError, match="HTTP 500"):
            await sync_chatwoot(settings, engine, since=SINCE, sleep=time.sleep, clock=time.clock)
        assert len(await appeal_ids(engine)) == 150
        # Chatwoot is back; the next run reads what was left, not the six pages again.
        fake.fail_after_page = None
        fake.requests.clear()
        time.now += timedelta(hours=1)
        result = await sync_chatwoot(
            settings, engine, since=SINCE, sleep=time.sleep, clock=time.clock
        )
    assert len(await appeal_ids(engine)) == 250
    # Pages 6 (from its oldest conversation, read again) to 10, the empty 11th, and page 1 for
    # what became active meanwhile.
    assert result.pages == 7
    assert result.conversations == 101
    stored_pages = fake.pages_requested()
    assert stored_pages[-7:] == [6, 7, 8, 9, 10, 11, 1]
    async with engine.connect() as connection:
        labels = (await connection.execute(select(sync_state.c.label))).scalars().all()
    assert labels == ["main"]


async def test_activity_while_a_sweep_was_interrupted_is_caught_up(
    engine: AsyncEngine,
) -> None:
    conversations = generate(250)
    fake = FakeChatwoot(conversations=conversations, fail_after_page=6)
    time = VirtualTime()
    async with fake:
        settings = settings_for(fake)
        with pytest.raises(SyncError):
            await sync_chatwoot(settings, engine, since=SINCE, sleep=time.sleep, clock=time.clock)
        fake.fail_after_page = None
        time.now += timedelta(hours=1)
        # Meanwhile one conversation not read yet is resolved and one read already is reopened:
        # both jump to the top of the list, above where the sweep continues.
        unread, read = conversations[19], conversations[239]
        assert (unread.status, read.status) == ("pending", "resolved")
        unread.status, unread.last_activity_at = "resolved", time.now - timedelta(minutes=2)
        read.status, read.last_activity_at = "open", time.now - timedelta(minutes=1)
        await sync_chatwoot(settings, engine, since=SINCE, sleep=time.sleep, clock=time.clock)
    ids = await appeal_ids(engine)
    assert len(ids) == 251
    assert "chatwoot:main:240:2" in ids
    async with engine.connect() as connection:
        kinds = await connection.scalars(
            select(desk_events.c.kind).where(desk_events.c.conversation_id == "20")
        )
        assert sorted(kinds) == ["close", "open"]


async def test_rate_limits_are_waited_out_and_failures_retried(engine: AsyncEngine) -> None:
    # Requests 2 and 4 are rate-limited (Retry-After: 7), 5 fails, 7 is cut off mid-body.
    fake = FakeChatwoot(conversations=generate(80), rate_limit_on={2, 4}, fail_on={5}, drop_on={7})
    time = VirtualTime()
    async with fake:
        settings = settings_for(fake)
        result = await sync_chatwoot(
            settings, engine, since=SINCE, sleep=time.sleep, clock=time.clock
        )
    assert (result.conversations, result.pages) == (80, 5)
    assert len(await appeal_ids(engine)) == 80
    # Retry-After is obeyed; a failure waits the first step of the backoff (each page retries
    # on its own count).
    assert time.delays == [7.0, 7.0, 1.0, 1.0]
    assert len(fake.requests) == 5 + 4


async def test_retry_after_missing_backs_off_exponentially(sqlite_engine: AsyncEngine) -> None:
    fake = FakeChatwoot(conversations=generate(3), rate_limit_on={1, 2, 3}, retry_after=None)
    time = VirtualTime()
    async with fake:
        await sync_chatwoot(
            settings_for(fake), sqlite_engine, since=SINCE, sleep=time.sleep, clock=time.clock
        )
    assert time.delays == [1.0, 2.0, 4.0]


async def test_a_server_that_keeps_failing_gives_a_clear_error(sqlite_engine: AsyncEngine) -> None:
    fake = FakeChatwoot(conversations=generate(3), fail_after_page=0)
    time = VirtualTime()
    async with fake:
        with pytest.raises(SyncError) as caught:
            await sync_chatwoot(
                settings_for(fake), sqlite_engine, since=SINCE, sleep=time.sleep, clock=time.clock
            )
    assert str(caught.value) == (
        f"cannot read conversations from Chatwoot at {fake.base_url}: HTTP 500 "
        "(6 attempts, page 1)"
    )
    assert time.delays == [1.0, 2.0, 4.0, 8.0, 16.0]


async def test_a_bad_token_gives_a_clear_error_stores_nothing_and_never_logs_it(
    engine: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "wrong-token-that-must-stay-secret-42"
    fake = FakeChatwoot(conversations=generate(30))
    async with fake:
        with pytest.raises(SyncError) as caught:
            await sync_chatwoot(settings_for(fake, token=wrong), engine, since=SINCE)
    message = str(caught.value)
    assert "(401)" in message and "CHATWOOT_API_TOKEN" in message and "\n" not in message
    assert wrong not in message
    assert await count(engine, desk_events) == 0
    assert await count(engine, sync_state) == 0
    assert wrong not in caplog.text


async def test_an_unknown_account_and_an_unreachable_host(sqlite_engine: AsyncEngine) -> None:
    time = VirtualTime()
    async with FakeChatwoot(conversations=generate(3)) as fake:
        with pytest.raises(SyncError, match=r"no account 99 \(404\).*CHATWOOT_ACCOUNT_ID"):
            await sync_chatwoot(settings_for(fake, account=99), sqlite_engine, since=SINCE)
        settings = settings_for(fake)
    # The fake is gone: nothing listens on its port any more.
    with pytest.raises(SyncError, match="host unreachable") as caught:
        await sync_chatwoot(settings, sqlite_engine, since=SINCE, sleep=time.sleep)
    assert TOKEN not in str(caught.value)


async def test_a_redirect_is_not_followed_with_the_token(sqlite_engine: AsyncEngine) -> None:
    elsewhere = "https://desk.example.org/api/v1/accounts/7/conversations?page=1"
    async with FakeChatwoot(conversations=generate(3), redirect_to=elsewhere) as fake:
        with pytest.raises(SyncError) as caught:
            await sync_chatwoot(settings_for(fake), sqlite_engine, since=SINCE)
    assert str(caught.value) == (
        f"Chatwoot at {fake.base_url} redirects the API (301 to https://desk.example.org): "
        "set CHATWOOT_API_URL to the address it redirects to"
    )
    assert len(fake.requests) == 1


async def test_sync_logs_never_hold_the_token(
    sqlite_engine: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fake = FakeChatwoot(conversations=generate(60), fail_on={2}, rate_limit_on={3})
    time = VirtualTime()
    async with fake:
        await sync_chatwoot(
            settings_for(fake), sqlite_engine, since=SINCE, sleep=time.sleep, clock=time.clock
        )
    assert "retry" in caplog.text
    assert TOKEN not in caplog.text


async def test_unusable_conversations_are_skipped_not_the_rest(
    sqlite_engine: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    conversations = generate(30)
    # The newest page holds no usable timestamp at all; the next one an id with the separator.
    for item in conversations[5:]:
        item.override = {"timestamp": None}
    conversations[4].override = {"id": "12:34"}
    async with FakeChatwoot(conversations=conversations) as fake:
        result = await sync_chatwoot(settings_for(fake), sqlite_engine, since=SINCE)
    assert (result.conversations, result.skipped, result.pages) == (4, 26, 3)
    assert len(await appeal_ids(sqlite_engine)) == 4
    assert "conversation 12:34 skipped: conversation id contains" in caplog.text


async def test_a_server_that_ignores_the_page_is_refused(sqlite_engine: AsyncEngine) -> None:
    async with FakeChatwoot(conversations=generate(60), ignore_page=True) as fake:
        with pytest.raises(SyncError, match="page 2 with the conversations of the page before"):
            await sync_chatwoot(settings_for(fake), sqlite_engine, since=SINCE)


async def test_reconcile_picks_up_changes_between_rounds_and_survives_a_failing_round(
    engine: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot.ingest.chatwoot_sync")
    fake = FakeChatwoot(conversations=generate(40))
    time = VirtualTime()
    rounds = 0

    async def sleep(delay: float) -> None:
        nonlocal rounds
        await time.sleep(delay)
        if delay != 600:
            return
        rounds += 1
        if rounds == 1:
            # Between rounds: a new conversation, and Chatwoot starts failing for a round.
            fake.add(conversation(41, "open", time.now - timedelta(minutes=3), time.now))
            fake.fail_after_page = 0
        elif rounds == 2:
            fake.fail_after_page = None
        else:
            raise asyncio.CancelledError

    async with fake:
        settings = settings_for(fake)
        await sync_chatwoot(settings, engine, since=SINCE, clock=time.clock)
        assert len(await appeal_ids(engine)) == 40
        with pytest.raises(asyncio.CancelledError):
            await reconcile_forever(settings, engine, sleep=sleep, clock=time.clock)
    assert "chatwoot:main:41:1" in await appeal_ids(engine)
    assert len(await appeal_ids(engine)) == 41
    lines = [r for r in caplog.records if "reconcile" in r.getMessage()]
    assert [r.levelname for r in lines] == ["INFO", "WARNING", "INFO"]
    assert "HTTP 500" in lines[1].getMessage()
    # Round 1 found nothing new; round 3 read only the new conversation, in one page.
    assert "0 new events" in lines[0].getMessage()
    assert "1 conversations read" in lines[2].getMessage()
    assert TOKEN not in caplog.text


async def test_reconcile_without_any_sync_looks_back_a_day(sqlite_engine: AsyncEngine) -> None:
    time = VirtualTime()
    recent = conversation(1, "open", NOW - timedelta(hours=5), NOW - timedelta(hours=2))
    old = conversation(2, "open", NOW - timedelta(days=5), NOW - timedelta(days=4))
    fake = FakeChatwoot(conversations=[recent, old])

    async def sleep(delay: float) -> None:
        raise asyncio.CancelledError

    async with fake:
        with pytest.raises(asyncio.CancelledError):
            await reconcile_forever(
                settings_for(fake), sqlite_engine, sleep=sleep, clock=time.clock
            )
    assert await appeal_ids(sqlite_engine) == ["chatwoot:main:1:1"]


async def test_sync_needs_the_three_settings(sqlite_engine: AsyncEngine) -> None:
    settings = Settings(_env_file=None, chatwoot_api_url="http://127.0.0.1:9")
    with pytest.raises(SyncError, match="CHATWOOT_API_TOKEN"):
        await sync_chatwoot(settings, sqlite_engine, since=SINCE)


class FakeStream:
    def __init__(self, tty: bool) -> None:
        self.tty = tty
        self.text = ""

    def isatty(self) -> bool:
        return self.tty

    def write(self, text: str) -> None:
        self.text += text

    def flush(self) -> None:
        pass


def test_text_progress_draws_one_line_on_a_terminal_and_lines_in_a_file() -> None:
    terminal = FakeStream(tty=True)
    bar = TextProgress(terminal)  # type: ignore[arg-type]
    bar(250, 1000)
    bar(1000, 1000)
    bar.finish()
    assert terminal.text == (
        "[######..................] synced 250/1,000 conversations\r"
        "\r[########################] synced 1,000/1,000 conversations\r\n"
    )
    log = FakeStream(tty=False)
    bar = TextProgress(log)  # type: ignore[arg-type]
    bar(25, None)
    bar.finish()
    assert log.text == "synced 25 conversations\n"
