"""The SQLite database file and its WAL kept in memory while the bot runs, by mapping them.

A live batch and a report read pages at random places all over the file: a thousand appeals
touch a thousand leaves of each index they update. Some kernels page out file cache nobody
read for a while long before memory runs short (proactive reclaim, DAMON's `pageout` scheme:
this machine's sends unmapped file pages idle for a minute back to the disk), and the next
batch then reads its pages from the disk one by one. SQLite's own memory map
(bot.storage.engine) keeps only the pages the bot has already read, and the WAL is never mapped
by SQLite: a commit's frames are written over the WAL's first megabytes again after every
checkpoint, and a frame that only partly covers a paged-out page makes the kernel read that
page back first. So the bot maps both files once more, read-only, populated (MAP_POPULATE: the
kernel reads them in and maps every page at once), and never touches that memory: mapped pages
are exempt from such reclaim and stay cached. Growth is mapped as it comes, checked every
RESIDENT_EVERY seconds; a file that shrank is mapped again.

At most SQLITE_MMAP_BYTES of the database (what SQLite itself maps) and a quarter of the
machine's memory are mapped, and the WAL's first WAL_KEPT_BYTES (the part writes reuse): under
real memory pressure the kernel still evicts mapped file pages (they are clean copies of the
file), so a database bigger than memory costs nothing but the part that fits. Without
MAP_POPULATE (not Linux) nothing is kept: faulting pages in by touching them could meet a WAL
cut short meanwhile, and SIGBUS.
"""

import asyncio
import contextlib
import logging
import mmap
import os
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.storage.engine import SQLITE_MMAP_BYTES, SQLITE_WAL_KEEP_BYTES

logger = logging.getLogger(__name__)

# A stat() of the file a round; mapping its growth is one populated mmap of the new tail.
RESIDENT_EVERY = 10.0
# Growth is mapped tail by tail; past this many mappings the file is mapped again as one, so a
# bot that runs for months holds a few mappings, not one per round the file grew.
MAX_SEGMENTS = 16
# The WAL restarts from its start after a complete checkpoint (every second, beside the
# writes): a burst of back-to-back batches may run past the part SQLite keeps (journal_size_
# limit) before the next restart.
WAL_KEPT_BYTES = 4 * SQLITE_WAL_KEEP_BYTES

Sleep = Callable[[float], Awaitable[None]]


def sqlite_file(engine: AsyncEngine) -> Path | None:
    """The engine's database file, or None for PostgreSQL and an in-memory SQLite."""
    url = make_url(str(engine.url))
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    return Path(url.database)


def default_limit() -> int:
    """The most of the file kept mapped: what SQLite maps, and a quarter of the memory."""
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return min(SQLITE_MMAP_BYTES, memory // 4)


class ResidentFile:
    """The first `limit` bytes of a file, mapped read-only and populated, as the file grows."""

    def __init__(self, path: Path, limit: int) -> None:
        self.path = path
        self.limit = limit - limit % mmap.ALLOCATIONGRANULARITY
        self._segments: list[mmap.mmap] = []
        # The file's bytes [0, mapped) are mapped, in order, by the segments.
        self.mapped = 0
        # extend runs in a thread that a cancelled task does not stop: close waits for it.
        self._lock = threading.Lock()

    @property
    def segments(self) -> int:
        return len(self._segments)

    def extend(self) -> int:
        """Map what the file has grown by since the last call; return the bytes newly mapped.

        Blocking (the kernel reads what it maps in): call it from a thread. A file that
        shrank (a WAL cut back, a VACUUM) is mapped again from its start; a missing one is
        unmapped.
        """
        with self._lock:
            return self._extend()

    def _extend(self) -> int:
        try:
            size = min(self.path.stat().st_size, self.limit)
        except FileNotFoundError:
            # The WAL is gone while no connection is open (and the database before migrate).
            size = 0
        if size < self.mapped or (size > self.mapped and len(self._segments) >= MAX_SEGMENTS):
            # The new mapping is populated before the old ones go: no moment without a map.
            whole = self._map(0, size) if size else None
            self._unmap()
            if whole is not None:
                self._segments.append(whole)
            self.mapped = size
            return size
        if size == self.mapped:
            return 0
        self._segments.append(self._map(self.mapped, size))
        grown, self.mapped = size - self.mapped, size
        return grown

    def _map(self, start: int, end: int) -> mmap.mmap:
        # Offsets must be multiples of the allocation granularity. The database file is a whole
        # number of SQLite pages, a WAL is not (a header, then frames of a page and 24 bytes):
        # a tail of it starts at the page boundary below, the page there mapped twice.
        start -= start % mmap.ALLOCATIONGRANULARITY
        with self.path.open("rb") as handle:
            return mmap.mmap(
                handle.fileno(),
                end - start,
                flags=mmap.MAP_SHARED | mmap.MAP_POPULATE,
                prot=mmap.PROT_READ,
                offset=start,
            )

    def close(self) -> None:
        with self._lock:
            self._unmap()

    def _unmap(self) -> None:
        for segment in self._segments:
            segment.close()
        self._segments.clear()
        self.mapped = 0


@dataclass(frozen=True)
class Resident:
    """What is kept mapped: the database file and its WAL."""

    database: ResidentFile
    wal: ResidentFile

    def files(self) -> tuple[ResidentFile, ResidentFile]:
        return self.database, self.wal

    def close(self) -> None:
        for file in self.files():
            file.close()


async def keep_resident_forever(
    files: Sequence[ResidentFile], *, every: float = RESIDENT_EVERY, sleep: Sleep = asyncio.sleep
) -> None:
    """Map the files' growth every `every` seconds until cancelled; a failed round (no memory
    for the mapping, a file that cannot be read) is logged, never raised: the next one tries
    again."""
    while True:
        for file in files:
            try:
                grown = await asyncio.to_thread(file.extend)
                if grown:
                    logger.debug("%s: %d bytes mapped anew", file.path, grown)
            except (OSError, ValueError):
                logger.warning(
                    "cannot keep %s in memory; the next round tries again",
                    file.path,
                    exc_info=True,
                )
        await sleep(every)


@contextlib.asynccontextmanager
async def resident_in_background(engine: AsyncEngine) -> AsyncIterator[Resident | None]:
    """Keep the engine's SQLite file and its WAL mapped for as long as the block runs (None:
    nothing to keep, a PostgreSQL or in-memory database, or a system without MAP_POPULATE)."""
    path = sqlite_file(engine)
    if path is None or not hasattr(mmap, "MAP_POPULATE"):
        yield None
        return
    resident = Resident(
        database=ResidentFile(path, default_limit()),
        wal=ResidentFile(path.with_name(f"{path.name}-wal"), WAL_KEPT_BYTES),
    )
    task = asyncio.create_task(keep_resident_forever(resident.files()), name="database-resident")
    try:
        yield resident
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        # Off the event loop: close waits for a mapping still being read in by the cancelled
        # round's thread (seconds for a big file just after start).
        await asyncio.to_thread(resident.close)
