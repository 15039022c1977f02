"""Background WAL checkpoints: the bot's commits leave the WAL to a task of its own."""

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from bot.ingest.merge import AppealRow, store_appeals
from bot.storage import checkpoints
from bot.storage.checkpoints import WalState, checkpoint, checkpoint_forever
from bot.storage.engine import SQLITE_WAL_KEEP_BYTES, create_engine, migrate, write_transaction

START = datetime(2026, 11, 1, tzinfo=UTC)


def rows(count: int) -> list[AppealRow]:
    # Long ids make a write of a few thousand pages, past SQLite's 1,000-page checkpoint mark.
    return [
        AppealRow(
            f"appeal-{n:06d}-" + "x" * 150,
            f"client-{n % 997}",
            "vk",
            "main",
            START + timedelta(minutes=n),
        )
        for n in range(count)
    ]


async def write_and_measure(tmp_path: Path, *, background: bool) -> tuple[int, int, int]:
    """The database file's size before the write, after its commit, after a checkpoint."""
    path = tmp_path / f"bot-{background}.db"
    engine = create_engine(f"sqlite+aiosqlite:///{path}", background_checkpoints=background)
    try:
        await migrate(engine)
        await checkpoint(engine)
        before = path.stat().st_size
        async with write_transaction(engine) as connection:
            await store_appeals(connection, rows(12_000))
        committed = path.stat().st_size
        state = await checkpoint(engine)
        assert state is not None and state.frames > 1000 and not state.busy
        assert state.checkpointed == state.frames
        return before, committed, path.stat().st_size
    finally:
        await engine.dispose()


async def test_a_commit_of_the_bots_engine_does_not_checkpoint(tmp_path: Path) -> None:
    before, committed, checkpointed = await write_and_measure(tmp_path, background=True)
    # The pages are in the WAL only: the database file grows when the task copies them.
    assert committed == before
    assert checkpointed > before + 1_000_000


async def test_sqlites_own_checkpoint_stays_for_other_engines(tmp_path: Path) -> None:
    before, committed, _ = await write_and_measure(tmp_path, background=False)
    # SQLite checkpointed inside the commit (the fsync the bot keeps off its commits).
    assert committed > before + 1_000_000


async def test_autocheckpoint_is_off_on_every_connection_of_the_bots_engine(
    tmp_path: Path,
) -> None:
    engine = create_engine(
        f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}", background_checkpoints=True
    )
    default = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}")
    try:
        async with engine.connect() as one, engine.connect() as two, default.connect() as other:
            for connection in (one, two):
                assert (await connection.scalar(text("PRAGMA wal_autocheckpoint"))) == 0
            assert (await other.scalar(text("PRAGMA wal_autocheckpoint"))) == 1000
    finally:
        await engine.dispose()
        await default.dispose()


async def test_the_wal_of_a_big_write_is_cut_back_by_the_next_commit(tmp_path: Path) -> None:
    # Left long, the WAL of a big import stays on the disk and later writes go into pages of
    # it the kernel has paged out since.
    path = tmp_path / "bot.db"
    wal = tmp_path / "bot.db-wal"
    engine = create_engine(f"sqlite+aiosqlite:///{path}", background_checkpoints=True)
    try:
        async with engine.connect() as one, engine.connect() as two:
            for connection in (one, two):
                limit = await connection.scalar(text("PRAGMA journal_size_limit"))
                assert limit == SQLITE_WAL_KEEP_BYTES
        await migrate(engine)
        async with write_transaction(engine) as connection:
            await store_appeals(connection, rows(60_000))
        assert wal.stat().st_size > SQLITE_WAL_KEEP_BYTES + 4 * 2**20
        state = await checkpoint(engine)
        assert state is not None and state.checkpointed == state.frames
        # The WAL restarts with the next write; its commit cuts the file back to the limit.
        async with write_transaction(engine) as connection:
            await store_appeals(connection, rows(60_010)[60_000:])
        assert 0 < wal.stat().st_size <= SQLITE_WAL_KEEP_BYTES
    finally:
        await engine.dispose()


async def test_postgres_has_no_wal_to_checkpoint(postgres_url: str) -> None:
    engine = create_engine(postgres_url, background_checkpoints=True)
    try:
        assert await checkpoint(engine) is None
        # The loop ends at once instead of polling a database that needs nothing.
        await asyncio.wait_for(checkpoint_forever(engine), timeout=5)
    finally:
        await engine.dispose()


async def test_a_failed_round_is_logged_and_the_next_one_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    engine = create_engine(
        f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}", background_checkpoints=True
    )
    rounds: list[WalState | None] = []
    real = checkpoints.checkpoint

    async def failing_once(target):  # noqa: ANN001, ANN202
        if not rounds:
            rounds.append(None)
            raise OSError("disk I/O error")
        rounds.append(await real(target))
        return rounds[-1]

    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 2:
            raise asyncio.CancelledError

    monkeypatch.setattr(checkpoints, "checkpoint", failing_once)
    try:
        await migrate(engine)
        with caplog.at_level(logging.WARNING), pytest.raises(asyncio.CancelledError):
            await checkpoint_forever(engine, every=0.5, sleep=sleep)
    finally:
        await engine.dispose()
    assert waits == [0.5, 0.5]
    assert rounds[0] is None and isinstance(rounds[1], WalState)
    assert [r.getMessage() for r in caplog.records] == [
        "WAL checkpoint failed; the next round tries again"
    ]
