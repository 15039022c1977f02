"""SQLite's write-ahead log copied into the database file in the background, never by a commit.

By default SQLite checkpoints inside the commit that takes the WAL past 1,000 pages, and a
checkpoint fsyncs the database file: on this machine 400 to 500 ms added to whichever webhook or
live batch happened to commit then (a 1,000-appeal batch at 1M appeals writes more than that
many pages, so every one paid it). The bot's engine turns that off
(`create_engine(url, background_checkpoints=True)`) and runs `checkpoint_forever` beside its
other tasks, so the fsync happens on a connection of its own while writers go on. Short-lived
CLI commands keep SQLite's own checkpoints; the last connection to close checkpoints as well.
"""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import NamedTuple

from sqlalchemy.ext.asyncio import AsyncEngine

logger = logging.getLogger(__name__)

# Often enough that the WAL stays a few MB under a steady webhook flow; a round with nothing
# to copy only reads the WAL index.
CHECKPOINT_EVERY = 1.0

Sleep = Callable[[float], Awaitable[None]]


class WalState(NamedTuple):
    """What `PRAGMA wal_checkpoint` reports: whether a writer or reader kept it from finishing,
    the frames in the WAL, and how many of them are now in the database file."""

    busy: bool
    frames: int
    checkpointed: int


async def checkpoint(engine: AsyncEngine) -> WalState | None:
    """Copy what the WAL holds into the database file without blocking readers or writers
    (PASSIVE); None for a database that keeps no WAL (PostgreSQL, SQLite in memory)."""
    if engine.dialect.name != "sqlite":
        return None
    async with engine.connect() as connection:
        row = (await connection.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")).one()
    busy, frames, checkpointed = (int(value) for value in row)
    if frames < 0:
        return None
    return WalState(bool(busy), frames, checkpointed)


async def checkpoint_forever(
    engine: AsyncEngine, *, every: float = CHECKPOINT_EVERY, sleep: Sleep = asyncio.sleep
) -> None:
    """Checkpoint every `every` seconds until cancelled; a failed round is logged, never raised
    (the next one copies what it left)."""
    if engine.dialect.name != "sqlite":
        return
    while True:
        try:
            await checkpoint(engine)
        except Exception:
            logger.warning("WAL checkpoint failed; the next round tries again", exc_info=True)
        await sleep(every)


@contextlib.asynccontextmanager
async def checkpoints_in_background(engine: AsyncEngine) -> AsyncIterator[asyncio.Task[None]]:
    """Run checkpoint_forever for as long as the block runs."""
    task = asyncio.create_task(checkpoint_forever(engine), name="wal-checkpoints")
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
