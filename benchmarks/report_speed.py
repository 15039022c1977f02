"""Benchmark: plain SQL, the pre-aggregated store and DuckDB on the same generated appeals.

Run: .venv/bin/python benchmarks/report_speed.py [--rows 1000000] [--database-url URL]
DuckDB is a benchmark-only extra (`pip install -e '.[bench]'`, done by `make bench`).

Each time is the whole report (the period, its previous period and all-time clients), the
median of --repeats runs (plain SQL: one run, it is the reference); every row checks that the
three give the same numbers. Then eleven batches of 1,000 new appeals are applied live through
the write path, each timed with its commit (the first apart, the median of the other ten), the
store is checked again, and its size is printed. The engine is the bot's and runs what the bot
runs beside it: the background checkpoint task (commits leave the WAL to it) and the task that
keeps the database file and its WAL mapped and in memory (bot.storage.resident).
"""

import argparse
import asyncio
import csv
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import bot.ingest.merge as merge  # noqa: E402
from bot.ingest.files import import_file  # noqa: E402
from bot.ingest.merge import AppealRow, store_appeals  # noqa: E402
from bot.storage.aggregates import aggregates_size  # noqa: E402
from bot.storage.checkpoints import checkpoints_in_background  # noqa: E402
from bot.storage.engine import create_engine, migrate, write_transaction  # noqa: E402
from bot.storage.resident import resident_in_background  # noqa: E402
from reports.metrics import build_report_from_store, build_report_sql  # noqa: E402
from reports.model import Period, PeriodPair, Report, ReportFilter  # noqa: E402
from reports.periods import parse_period  # noqa: E402

PERIODS = ["today", "week", "month", "quarter", "year", "2-year range"]
ZONE = ZoneInfo("Asia/Kolkata")
CHANNEL = "whatsapp"
DAYS = 730
LIVE_APPEALS = 1_000
LIVE_BATCHES = 11
APPS = [
    ("whatsapp", "Sales", 22),
    ("whatsapp", "Support", 18),
    ("telegram", "Support bot", 14),
    ("telegram", "Sales & Partners <VIP>", 6),
    ("vk", "Группа ВК", 12),
    ("viber", "Main", 6),
    ("email", "Inbox", 10),
    ("webchat", "Site", 8),
    ("instagram", "Direct", 4),
]


def generate_csv(path: Path, rows: int, now: datetime, seed: int = 1, days: int = 365) -> None:
    """N appeals over the `days` days before now from N/6 clients; repeat writers are common."""
    rng = random.Random(seed)
    clients = max(rows // 6, 1)
    span = int(timedelta(days=days).total_seconds())
    weights = [weight for *_, weight in APPS]
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["appeal_id", "client_id", "channel", "app", "created_at"])
        for number in range(rows):
            channel, app, _ = rng.choices(APPS, weights)[0]
            # A skewed client pick: a few clients write often, most rarely.
            client = int(clients * rng.random() ** 2)
            created = now - timedelta(seconds=rng.randrange(span))
            writer.writerow([f"a{number}", f"c{client}", channel, app, created.isoformat()])


DUCK_PERIOD_SQL = """
SELECT count(*),
       count(DISTINCT a.client_id),
       count(DISTINCT CASE WHEN f.first_at >= $s AND f.first_at < $e THEN a.client_id END),
       coalesce(sum(CASE WHEN a.rn = f.first_rn THEN 0 ELSE 1 END), 0)
FROM appeals a JOIN firsts f USING (client_id)
WHERE a.created_at >= $s AND a.created_at < $e AND {where}
"""
DUCK_CHANNELS_SQL = """
SELECT channel, count(DISTINCT client_id) FROM appeals
WHERE created_at >= $s AND created_at < $e AND {where} GROUP BY channel
"""
DUCK_APPS_SQL = """
SELECT channel, app, count(DISTINCT client_id) FROM appeals
WHERE created_at >= $s AND created_at < $e AND {where} GROUP BY channel, app
"""


def duck_load(csv_path: Path):  # noqa: ANN201 - duckdb is an optional import
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute(
        "CREATE TABLE appeals AS SELECT row_number() OVER () AS rn, client_id, channel, app, "
        "CAST(created_at AS TIMESTAMPTZ) AS created_at "
        f"FROM read_csv('{csv_path}', header = true, all_varchar = true)"
    )
    con.execute(
        "CREATE TABLE firsts AS SELECT client_id, min(created_at) AS first_at, "
        "arg_min(rn, (created_at, rn)) AS first_rn FROM appeals GROUP BY client_id"
    )
    return con


def duck_append(con, rows: list[AppealRow]) -> None:  # noqa: ANN001
    """The live batch in DuckDB too, so the rows stay the same for the check after it."""
    con.execute(
        "CREATE TEMP TABLE live (client_id TEXT, channel TEXT, app TEXT, created_at TIMESTAMPTZ)"
    )
    con.executemany(
        "INSERT INTO live VALUES (?, ?, ?, ?)",
        [(r.client_id, r.channel, r.app, r.created_at) for r in rows],
    )
    con.execute(
        "INSERT INTO appeals SELECT (SELECT max(rn) FROM appeals) + row_number() OVER (), "
        "client_id, channel, app, created_at FROM live"
    )
    con.execute("DROP TABLE live")
    con.execute(
        "CREATE OR REPLACE TABLE firsts AS SELECT client_id, min(created_at) AS first_at, "
        "arg_min(rn, (created_at, rn)) AS first_rn FROM appeals GROUP BY client_id"
    )


def duck_report(con, current: Period, previous: Period, channel: str | None) -> tuple:  # noqa: ANN001
    where = "channel = $ch" if channel else "true"
    extra = {"ch": channel} if channel else {}
    results = [
        con.execute(
            f"SELECT count(DISTINCT client_id) FROM appeals WHERE {where}", extra
        ).fetchone()[0]
    ]
    for period in (current, previous):
        params = {"s": period.start.astimezone(UTC), "e": period.end.astimezone(UTC), **extra}
        totals = con.execute(
            DUCK_PERIOD_SQL.format(where=where.replace("channel", "a.channel")), params
        ).fetchone()
        channels = dict(con.execute(DUCK_CHANNELS_SQL.format(where=where), params).fetchall())
        apps = {
            (c, a): n
            for c, a, n in con.execute(DUCK_APPS_SQL.format(where=where), params).fetchall()
        }
        results.append((tuple(int(x) for x in totals), channels, apps))
    return tuple(results)


def same_numbers(report: Report, duck: tuple) -> bool:
    def ours(metrics) -> tuple:  # noqa: ANN001
        totals = (
            metrics.appeals,
            metrics.contacted_clients,
            metrics.new_clients,
            metrics.repeat_appeals,
        )
        apps = {(key.channel, key.name): n for key, n in metrics.app_clients.items()}
        return totals, metrics.channel_clients, apps

    return (report.all_clients, ours(report.current), ours(report.previous)) == duck


def periods(text: str, now: datetime) -> PeriodPair:
    if text == "2-year range":
        today = now.astimezone(ZONE).date()
        first = today.replace(year=today.year - 2) + timedelta(days=1)
        return parse_period(f"{first.isoformat()}..{today.isoformat()}", now=now, tz=ZONE)
    return parse_period(text, now=now, tz=ZONE)


def live_rows(rows: int, now: datetime, seed: int = 2) -> list[AppealRow]:
    """New appeals: the last hour's, one in ten from a new client, one in twenty late by days."""
    rng = random.Random(seed)
    clients = max(rows // 6, 1)
    batch = []
    for number in range(LIVE_APPEALS):
        channel, app, _ = rng.choices(APPS, [w for *_, w in APPS])[0]
        client = int(clients * rng.random() ** 2) if rng.random() < 0.9 else clients + number
        back = timedelta(days=rng.randrange(1, 4)) if rng.random() < 0.05 else timedelta()
        # Stored before the report asks: none at its very instant (the store answers the hour
        # ending now from its bucket while no appeal of the hour is at or after now).
        created = now - back - timedelta(seconds=rng.randrange(3600), microseconds=1)
        batch.append(AppealRow(f"live{seed}-{number}", f"c{client}", channel, app, created))
    return batch


def file_size(folder: Path, suffixes: tuple[str, ...] = ("", "-wal", "-shm")) -> int:
    return sum(
        path.stat().st_size
        for suffix in suffixes
        if (path := folder / f"bench.db{suffix}").exists()
    )


async def timed(function, *args):  # noqa: ANN001, ANN201
    started = time.perf_counter()
    result = await function(*args)
    return time.perf_counter() - started, result


async def compare_all(engine, duck, now: datetime, repeats: int, heading: bool) -> bool:  # noqa: ANN001
    all_same = True
    if heading:
        print(
            "\n| period | filter | appeals in period | plain SQL ms | store ms | DuckDB ms "
            "| store/DuckDB | same |"
        )
        print("|---|---|---:|---:|---:|---:|---:|---|")
    for text in PERIODS:
        pair = periods(text, now)
        for channel in (None, CHANNEL):
            flt = ReportFilter(channel=channel)
            async with engine.connect() as connection:
                sql_s, sql = await timed(build_report_sql, connection, pair, flt)
                store_runs = []
                for _ in range(repeats):
                    took, store = await timed(build_report_from_store, connection, pair, flt)
                    store_runs.append(took)
            duck_runs = []
            for _ in range(repeats):
                started = time.perf_counter()
                duck_result = duck_report(duck, pair.current, pair.previous, channel)
                duck_runs.append(time.perf_counter() - started)
            store_s, duck_s = statistics.median(store_runs), statistics.median(duck_runs)
            same = store == sql and same_numbers(store, duck_result)
            all_same &= same
            print(
                f"| {text} | {channel or '-'} | {store.current.appeals:,} | {sql_s * 1000:,.0f} "
                f"| {store_s * 1000:.1f} | {duck_s * 1000:.1f} | {store_s / duck_s:.2f}x "
                f"| {'yes' if same else 'NO'} |"
            )
    return all_same


async def run(rows: int, database_url: str | None, repeats: int) -> None:
    now = datetime.now(UTC)
    with tempfile.TemporaryDirectory() as tmp:
        csv_path = Path(tmp) / "appeals.csv"
        started = time.perf_counter()
        generate_csv(csv_path, rows, now, days=DAYS)
        print(
            f"generated {rows:,} appeals over {DAYS} days in {time.perf_counter() - started:.1f} s"
        )
        db_path = Path(tmp) / "bench.db"
        url = database_url or f"sqlite+aiosqlite:///{db_path}"
        # The bot's own setting: commits leave the WAL to a background checkpoint task.
        engine = create_engine(url, background_checkpoints=True)
        async with checkpoints_in_background(engine), resident_in_background(engine) as resident:
            await migrate(engine)
            started = time.perf_counter()
            result = await import_file(engine, csv_path)
            import_s = time.perf_counter() - started
            print(
                f"import (store kept current): {result.new:,} new rows in {import_s:.1f} s "
                f"({result.new / import_s:,.0f} rows/s) into {engine.dialect.name}; "
                f"zone {ZONE.key}"
            )
            started = time.perf_counter()
            duck = duck_load(csv_path)
            print(f"duckdb load: {time.perf_counter() - started:.1f} s")
            same = await compare_all(engine, duck, now, repeats, heading=True)

            totals: list[float] = []
            store_parts: list[float] = []
            refresh = merge._refresh_store

            async def timed_refresh(*args):  # noqa: ANN002, ANN202
                took, _ = await timed(refresh, *args)
                store_parts.append(took)

            merge._refresh_store = timed_refresh
            if resident is not None:
                print(
                    f"\nbefore the live batches, kept mapped: "
                    f"{resident.database.mapped / 2**20:,.0f} MB of the "
                    f"{file_size(Path(tmp), suffixes=('',)) / 2**20:,.0f} MB database file, "
                    f"{resident.wal.mapped / 2**20:,.1f} MB of the "
                    f"{file_size(Path(tmp), suffixes=('-wal',)) / 2**20:,.1f} MB WAL"
                )
            for batch in range(LIVE_BATCHES):
                live = live_rows(rows, now, seed=2 + batch)
                started = time.perf_counter()
                async with write_transaction(engine) as connection:
                    await store_appeals(connection, live)
                totals.append(time.perf_counter() - started)
                duck_append(duck, live)
            merge._refresh_store = refresh
            # The first batch also compiles the write statements and reads pages the import
            # left cold; the rest is what a running bot pays per batch.
            steady, steady_store = totals[1:], store_parts[1:]
            print(
                f"\n{LIVE_APPEALS:,} live appeals applied in one transaction, commit included: "
                f"first batch {totals[0] * 1000:.0f} ms (store {store_parts[0] * 1000:.0f} ms); "
                f"the next {len(steady)}: median {statistics.median(steady) * 1000:.0f} ms, "
                f"max {max(steady) * 1000:.0f} ms, of which keeping the store current: median "
                f"{statistics.median(steady_store) * 1000:.0f} ms"
            )
            print("each batch, ms: " + ", ".join(f"{took * 1000:.0f}" for took in totals))
            print("after the live batches:")
            same &= await compare_all(engine, duck, now, repeats, heading=True)
            async with engine.connect() as connection:
                size = await aggregates_size(connection)
            db_size = 0 if database_url else file_size(Path(tmp))
            shown = f" of a {db_size / 1e6:,.0f} MB database file" if db_size else ""
            print(
                f"store size: {size.buckets:,} buckets, {size.bytes / 1e6:.1f} MB of bitmaps"
                f"{shown}"
            )
            print("every number equal: " + ("yes" if same else "NO"))
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--database-url", help="default: a fresh SQLite file")
    parser.add_argument("--repeats", type=int, default=5, help="median of N per period")
    args = parser.parse_args()
    asyncio.run(run(args.rows, args.database_url, args.repeats))


if __name__ == "__main__":
    main()
