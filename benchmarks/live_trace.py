"""Benchmark: where a live batch of 1,000 appeals spends its time, statement by statement.

Run: .venv/bin/python benchmarks/live_trace.py [--rows 1000000] [--database FILE]
With --database FILE the rows are generated and imported into FILE once (as report_speed
does); a later run with the same FILE applies its batches to a copy of it, so the same
state is traced again without the import. Eleven batches of report_speed's live appeals go
through the bot's write path with its engine (background checkpoints); each statement's time
is taken around the driver's execute (the thread hop included), and what the statements and
the commit do not account for is SQLAlchemy, the event loop and this process's Python.
"""

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import event

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.report_speed import DAYS, LIVE_BATCHES, generate_csv, live_rows  # noqa: E402
from bot.ingest.files import import_file  # noqa: E402
from bot.ingest.merge import store_appeals  # noqa: E402
from bot.storage.checkpoints import checkpoints_in_background  # noqa: E402
from bot.storage.engine import create_engine, migrate, write_transaction  # noqa: E402

SUFFIXES = ("", "-wal", "-shm")
CHECKPOINT = "PRAGMA wal_checkpoint(PASSIVE)"


async def build(path: Path, rows: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        csv_path = Path(tmp) / "appeals.csv"
        generate_csv(csv_path, rows, datetime.now(UTC), days=DAYS)
        engine = create_engine(f"sqlite+aiosqlite:///{path}", background_checkpoints=True)
        async with checkpoints_in_background(engine):
            await migrate(engine)
            started = time.perf_counter()
            result = await import_file(engine, csv_path)
            print(f"imported {result.new:,} appeals in {time.perf_counter() - started:.0f} s")
        await engine.dispose()


def copy_database(source: Path, target: Path) -> None:
    for suffix in SUFFIXES:
        origin, copy = Path(f"{source}{suffix}"), Path(f"{target}{suffix}")
        copy.unlink(missing_ok=True)
        if origin.exists():
            shutil.copyfile(origin, copy)


async def trace(path: Path, rows: int) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{path}", background_checkpoints=True)
    # statement (first words) -> its time in each run
    spent: dict[str, list[float]] = defaultdict(list)
    started_at: dict[int, float] = {}

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def before(_conn: Any, cursor: Any, *_args: Any) -> None:
        started_at[id(cursor)] = time.perf_counter()

    @event.listens_for(engine.sync_engine, "after_cursor_execute")
    def after(_conn: Any, cursor: Any, statement: str, *_args: Any) -> None:
        took = time.perf_counter() - started_at.pop(id(cursor))
        spent[" ".join(statement.split())[:80]].append(took)

    def batch_statements() -> float:
        # The background checkpoints run on a connection of their own, beside the batches.
        return sum(sum(times) for text, times in spent.items() if CHECKPOINT not in text)

    totals, commits, in_statements = [], [], []
    now = datetime.now(UTC)
    async with checkpoints_in_background(engine):
        for batch in range(LIVE_BATCHES):
            live = live_rows(rows, now, seed=2 + batch)
            before_batch = batch_statements()
            started = time.perf_counter()
            async with write_transaction(engine) as connection:
                await store_appeals(connection, live)
                committing = time.perf_counter()
            totals.append(time.perf_counter() - started)
            commits.append(time.perf_counter() - committing)
            in_statements.append(batch_statements() - before_batch)
    await engine.dispose()

    # The first batch compiles the statements and reads cold pages: the medians leave it out.
    def ms(values: list[float]) -> float:
        return statistics.median(values[1:]) * 1000

    print("each batch, ms: " + ", ".join(f"{took * 1000:.0f}" for took in totals))
    print(
        f"median of the last {LIVE_BATCHES - 1}: {ms(totals):.1f} ms; in statements "
        f"{ms(in_statements):.1f} ms, commit {ms(commits):.1f} ms, the rest (SQLAlchemy, event "
        f"loop, Python) {ms(totals) - ms(in_statements) - ms(commits):.1f} ms; background "
        f"checkpoints beside them: {len(spent.get(CHECKPOINT, []))}"
    )
    print("\nper statement, ms a batch (its median times its runs a batch):")
    for statement, times in sorted(spent.items(), key=lambda item: -sum(item[1])):
        share = statistics.median(times[1:] or times) * 1000 * len(times) / LIVE_BATCHES
        print(f"{share:7.1f}  x{len(times):<3} {statement}")


async def run(rows: int, database: Path | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        if database is None:
            database = Path(tmp) / "built.db"
        if not database.exists():
            await build(database, rows)
        work = Path(tmp) / "traced.db"
        copy_database(database, work)
        await trace(work, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument(
        "--database",
        type=Path,
        help="built once, then traced on a copy; give it the same --rows each time (the live "
        "batches pick their clients from the N/6 the rows were generated with)",
    )
    args = parser.parse_args()
    asyncio.run(run(args.rows, args.database))


if __name__ == "__main__":
    main()
