"""The database file kept mapped and in memory: the whole file, its growth, a shrink, a limit."""

import asyncio
import logging
import mmap
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from bot.storage import resident as resident_module
from bot.storage.engine import create_engine, migrate
from bot.storage.resident import (
    MAX_SEGMENTS,
    WAL_KEPT_BYTES,
    ResidentFile,
    keep_resident_forever,
    resident_in_background,
    sqlite_file,
)

PAGE = mmap.ALLOCATIONGRANULARITY
LIMIT = 1 << 30


def in_memory(path: Path) -> int | None:
    """How many bytes of this process's mappings of the file are in memory (Rss in smaps),
    None where /proc does not tell."""
    smaps = Path("/proc/self/smaps")
    if not smaps.exists():
        return None
    total, ours = 0, False
    for line in smaps.read_text().splitlines():
        fields = line.split()
        if fields and "-" in fields[0] and len(fields) >= 5:
            # A mapping's header line: address range, perms, offset, device, inode[, path].
            ours = len(fields) >= 6 and fields[5] == str(path)
        elif ours and fields[0] == "Rss:":
            total += int(fields[1]) * 1024
    return total


def grow(path: Path, pages: int) -> None:
    with path.open("ab") as handle:
        handle.write(b"\x01" * PAGE * pages)


def assert_mapped_in_memory(path: Path, resident: ResidentFile, size: int) -> None:
    assert resident.mapped == size
    held = in_memory(path)
    if held is not None:
        # Whole pages: a WAL's size is a header and frames, not a number of pages.
        assert held == -(-size // mmap.PAGESIZE) * mmap.PAGESIZE


def test_a_sqlite_file_is_mapped_whole_and_its_growth_after(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    with closing(sqlite3.connect(path)) as db:
        db.execute("CREATE TABLE t (v TEXT)")
        db.executemany("INSERT INTO t VALUES (?)", [("x" * 500,)] * 4000)
        db.commit()
        first = path.stat().st_size
        resident = ResidentFile(path, LIMIT)
        try:
            assert resident.extend() == first
            assert_mapped_in_memory(path, resident, first)
            assert resident.extend() == 0
            db.executemany("INSERT INTO t VALUES (?)", [("y" * 500,)] * 4000)
            db.commit()
            second = path.stat().st_size
            assert second > first
            assert resident.extend() == second - first
            assert resident.segments == 2
            assert_mapped_in_memory(path, resident, second)
        finally:
            resident.close()
    assert in_memory(path) in (0, None)
    assert resident.mapped == 0


def test_many_growths_are_mapped_again_as_one(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    grow(path, 2)
    resident = ResidentFile(path, LIMIT)
    try:
        for _ in range(MAX_SEGMENTS):
            resident.extend()
            grow(path, 1)
        assert resident.segments == MAX_SEGMENTS
        size = path.stat().st_size
        assert resident.extend() == size
        assert resident.segments == 1
        assert_mapped_in_memory(path, resident, size)
    finally:
        resident.close()


def test_a_file_that_shrank_is_mapped_again_from_its_start(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    grow(path, 8)
    resident = ResidentFile(path, LIMIT)
    try:
        resident.extend()
        grow(path, 2)
        resident.extend()
        with path.open("r+b") as handle:
            handle.truncate(3 * PAGE)
        assert resident.extend() == 3 * PAGE
        assert resident.segments == 1
        assert_mapped_in_memory(path, resident, 3 * PAGE)
        with path.open("r+b") as handle:
            handle.truncate(0)
        assert resident.extend() == 0
        assert resident.segments == 0 and resident.mapped == 0
    finally:
        resident.close()


def test_no_more_than_the_limit_is_mapped(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    grow(path, 16)
    # A limit that is not a whole number of pages maps the whole pages below it.
    resident = ResidentFile(path, 4 * PAGE + 100)
    try:
        assert resident.extend() == 4 * PAGE
        grow(path, 4)
        assert resident.extend() == 0
        assert_mapped_in_memory(path, resident, 4 * PAGE)
    finally:
        resident.close()


async def test_a_missing_file_is_nothing_to_map_and_a_failed_round_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "bot.db-wal"
    wal = ResidentFile(path, LIMIT)
    real_mmap = mmap.mmap
    refusals = []

    def refusing_once(*args: object, **kwargs: object) -> mmap.mmap:
        if not refusals:
            refusals.append(args)
            raise OSError(12, "Cannot allocate memory")
        return real_mmap(*args, **kwargs)  # type: ignore[arg-type]

    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) in (1, 2):
            # The WAL appears after the first round; the second round's mapping is refused.
            grow(path, 3)
        else:
            raise asyncio.CancelledError

    monkeypatch.setattr(mmap, "mmap", refusing_once)
    try:
        with caplog.at_level(logging.WARNING), pytest.raises(asyncio.CancelledError):
            await keep_resident_forever([wal], every=2.5, sleep=sleep)
        assert waits == [2.5, 2.5, 2.5]
        # Round 1: no file, nothing to map and nothing to say; round 2 refused; round 3 maps.
        assert [r.getMessage() for r in caplog.records] == [
            f"cannot keep {path} in memory; the next round tries again"
        ]
        assert len(refusals) == 1
        assert_mapped_in_memory(path, wal, 6 * PAGE)
        path.unlink()
        assert wal.extend() == 0
        assert wal.mapped == 0 and wal.segments == 0
    finally:
        wal.close()


async def test_the_bots_database_and_wal_are_kept_while_the_block_runs(tmp_path: Path) -> None:
    path = tmp_path / "bot.db"
    wal = tmp_path / "bot.db-wal"
    engine = create_engine(f"sqlite+aiosqlite:///{path}", background_checkpoints=True)
    rounds = asyncio.Event()
    real_extend = ResidentFile.extend

    def extend_and_tell(self: ResidentFile) -> int:
        grown = real_extend(self)
        if self.path == wal:  # the round's last file
            loop.call_soon_threadsafe(rounds.set)
        return grown

    loop = asyncio.get_running_loop()
    try:
        await migrate(engine)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(ResidentFile, "extend", extend_and_tell)
            # A connection stays open, so the WAL stays (SQLite deletes it with the last one).
            async with engine.connect(), resident_in_background(engine) as resident:
                assert resident is not None
                assert (resident.database.path, resident.wal.path) == (path, wal)
                assert resident.wal.limit == WAL_KEPT_BYTES
                await asyncio.wait_for(rounds.wait(), timeout=10)
                assert_mapped_in_memory(path, resident.database, path.stat().st_size)
                assert wal.stat().st_size > 0
                assert_mapped_in_memory(wal, resident.wal, wal.stat().st_size)
            assert resident.database.mapped == 0 and resident.wal.mapped == 0
    finally:
        await engine.dispose()


@pytest.mark.parametrize(
    "url",
    ["sqlite+aiosqlite://", "sqlite+aiosqlite:///:memory:", "postgresql+asyncpg://u@h/db"],
)
async def test_nothing_is_kept_for_a_database_without_a_file(url: str) -> None:
    engine = create_engine(url)
    try:
        assert sqlite_file(engine) is None
        async with resident_in_background(engine) as resident:
            assert resident is None
    finally:
        await engine.dispose()


async def test_nothing_is_kept_without_map_populate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Touching pages to fault them in could meet a WAL cut short meanwhile: SIGBUS.
    monkeypatch.delattr(mmap, "MAP_POPULATE", raising=False)
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}")
    try:
        async with resident_in_background(engine) as resident:
            assert resident is None
    finally:
        await engine.dispose()


def test_the_limit_is_what_sqlite_maps_and_a_quarter_of_the_memory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sizes = {"SC_PAGE_SIZE": 4096, "SC_PHYS_PAGES": 1 << 18}  # 1 GiB of memory
    monkeypatch.setattr(resident_module.os, "sysconf", sizes.__getitem__)
    assert resident_module.default_limit() == 256 << 20
    sizes["SC_PHYS_PAGES"] = 24 << 18  # 24 GiB: SQLite's own limit decides
    assert resident_module.default_limit() == resident_module.SQLITE_MMAP_BYTES
