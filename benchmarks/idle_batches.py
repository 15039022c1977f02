"""Benchmark: live batches after idle gaps, on copies of a database read plainly, mapped, kept.

Run: .venv/bin/python benchmarks/idle_batches.py [--rows 5000000] [--database FILE]
        [--gap 90] [--rounds 6]
The database is built once into FILE as benchmarks/live_trace.py builds it (give it the same
--rows each time). Three copies of it are opened with the bot's engine: one with SQLite's memory
map turned off (plain read() calls through the page cache, SQLite's default), one with SQLite's
map alone (PRAGMA mmap_size, as the engine opens it), and one as the bot runs it, its file also
kept mapped whole by bot.storage.resident; all three read the indexes a live batch uses once,
whole. Then, --rounds times, after --gap idle seconds, each copy takes the same batch of
report_speed's live appeals, in rotating order. A kernel that pages out file cache nobody read
for a while (this machine's does) takes the pages nobody has mapped: the script prints each
batch's time and how much of each file is in memory before it (util-linux fincore).
"""

import argparse
import asyncio
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.live_trace import build, copy_database  # noqa: E402
from benchmarks.report_speed import live_rows  # noqa: E402
from bot.ingest.merge import store_appeals  # noqa: E402
from bot.storage.checkpoints import checkpoints_in_background  # noqa: E402
from bot.storage.engine import create_engine, write_transaction  # noqa: E402
from bot.storage.resident import resident_in_background  # noqa: E402

# What a live batch reads at random places: the appeals' client and external-id indexes, the
# clients table and its external-id index; read whole once, so the copies start alike.
WARM_UP = (
    "SELECT count(*) FROM appeals INDEXED BY ix_appeals_client_first WHERE client_id > 0",
    "SELECT count(*) FROM appeals INDEXED BY sqlite_autoindex_appeals_1 WHERE external_id > ''",
    # NOT INDEXED: the table itself (the foreign-key lookups), not its smallest index.
    "SELECT count(*) FROM clients NOT INDEXED",
    "SELECT count(*) FROM clients INDEXED BY sqlite_autoindex_clients_1 WHERE external_id > ''",
)


def resident_mb(path: Path) -> float:
    """How much of the file the kernel holds in memory now."""
    if shutil.which("fincore") is None:
        return float("nan")
    out = subprocess.run(
        ["fincore", "--bytes", "--noheadings", "--output", "RES", str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return int(out.split()[0]) / 2**20


def open_copy(path: Path, *, mapped: bool) -> AsyncEngine:
    engine = create_engine(f"sqlite+aiosqlite:///{path}", background_checkpoints=True)
    if not mapped:
        # After the engine's own pragmas: this copy reads as SQLite does by default.
        @event.listens_for(engine.sync_engine, "connect")
        def plain_reads(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.execute("PRAGMA mmap_size=0")

    return engine


async def run(rows: int, database: Path | None, gap: float, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        if database is None:
            database = Path(tmp) / "built.db"
        if not database.exists():
            await build(database, rows)
        copies = {}
        for name, mapped in (("plain", False), ("mapped", True), ("kept", True)):
            path = Path(tmp) / f"{name}.db"
            copy_database(database, path)
            copies[name] = (open_copy(path, mapped=mapped), path)
        for name, (engine, path) in copies.items():
            async with engine.connect() as connection:
                mmap_size = (await connection.execute(text("PRAGMA mmap_size"))).scalar()
                for sql in WARM_UP:
                    await connection.execute(text(sql))
            in_memory = resident_mb(path)
            print(f"{name}: mmap_size {mmap_size}, warmed up, {in_memory:.0f} MB in memory")
        now = datetime.now(UTC)
        times: dict[str, list[float]] = {name: [] for name in copies}
        async with (
            checkpoints_in_background(copies["plain"][0]),
            checkpoints_in_background(copies["mapped"][0]),
            checkpoints_in_background(copies["kept"][0]),
            resident_in_background(copies["kept"][0]) as kept,
        ):
            assert kept is not None
            for round_ in range(rounds):
                await asyncio.sleep(gap)
                if round_ == 0:
                    mapped = kept.database.mapped / 2**20
                    print(f"kept: {mapped:,.0f} MB mapped by bot.storage.resident")
                names = list(copies)
                order = names[round_ % 3 :] + names[: round_ % 3]
                line = []
                for name in order:
                    engine, path = copies[name]
                    in_memory = resident_mb(path)
                    live = live_rows(rows, now, seed=100 + round_)
                    started = time.perf_counter()
                    async with write_transaction(engine) as connection:
                        await store_appeals(connection, live)
                    took = (time.perf_counter() - started) * 1000
                    times[name].append(took)
                    line.append(f"{name} {took:.0f} ms ({in_memory:.0f} MB in memory before)")
                print(f"round {round_ + 1}: " + "; ".join(line), flush=True)
        for name, values in times.items():
            each = ", ".join(f"{value:.0f}" for value in values)
            print(f"{name}: median {statistics.median(values):.1f} ms; each batch, ms: {each}")
        for engine, _ in copies.values():
            await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--database", type=Path, help="built once; the same --rows each time")
    parser.add_argument("--gap", type=float, default=90, help="idle seconds before each round")
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    asyncio.run(run(args.rows, args.database, args.gap, args.rounds))


if __name__ == "__main__":
    main()
