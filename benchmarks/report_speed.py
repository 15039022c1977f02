"""Benchmark: import N generated appeals, time reports on SQLite and DuckDB over the same rows.

Run: .venv/bin/python benchmarks/report_speed.py [--rows 1000000] [--database-url URL]
DuckDB is a benchmark-only extra (`pip install -e '.[bench]'`, done by `make bench`).
"""

import argparse
import asyncio
import csv
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.ingest.files import import_file  # noqa: E402
from bot.storage.engine import create_engine, migrate  # noqa: E402
from reports.metrics import build_report  # noqa: E402
from reports.model import Period, Report, ReportFilter  # noqa: E402
from reports.periods import parse_period  # noqa: E402

PERIODS = ["today", "week", "month", "quarter", "year"]
ZONE = ZoneInfo("Europe/Moscow")
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


def generate_csv(path: Path, rows: int, now: datetime, seed: int = 1) -> None:
    """N appeals over the 365 days before now from N/6 clients; repeat writers are common."""
    rng = random.Random(seed)
    clients = max(rows // 6, 1)
    span = int(timedelta(days=365).total_seconds())
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
WHERE a.created_at >= $s AND a.created_at < $e
"""
DUCK_CHANNELS_SQL = """
SELECT channel, count(DISTINCT client_id) FROM appeals
WHERE created_at >= $s AND created_at < $e GROUP BY channel
"""
DUCK_APPS_SQL = """
SELECT channel, app, count(DISTINCT client_id) FROM appeals
WHERE created_at >= $s AND created_at < $e GROUP BY channel, app
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


def duck_report(con, current: Period, previous: Period) -> tuple:  # noqa: ANN001
    results = [con.execute("SELECT count(DISTINCT client_id) FROM appeals").fetchone()[0]]
    for period in (current, previous):
        params = {"s": period.start.astimezone(UTC), "e": period.end.astimezone(UTC)}
        totals = con.execute(DUCK_PERIOD_SQL, params).fetchone()
        channels = dict(con.execute(DUCK_CHANNELS_SQL, params).fetchall())
        apps = {(c, a): n for c, a, n in con.execute(DUCK_APPS_SQL, params).fetchall()}
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


async def run(rows: int, database_url: str | None, repeats: int) -> None:
    now = datetime.now(UTC)
    with tempfile.TemporaryDirectory() as tmp:
        csv_path = Path(tmp) / "appeals.csv"
        started = time.perf_counter()
        generate_csv(csv_path, rows, now)
        print(f"generated {rows:,} appeals in {time.perf_counter() - started:.1f} s")
        url = database_url or f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
        engine = create_engine(url)
        await migrate(engine)
        started = time.perf_counter()
        result = await import_file(engine, csv_path)
        import_s = time.perf_counter() - started
        print(
            f"import: {result.new:,} new rows in {import_s:.1f} s "
            f"({result.new / import_s:,.0f} rows/s) into {engine.dialect.name}"
        )

        started = time.perf_counter()
        duck = duck_load(csv_path)
        print(f"duckdb load: {time.perf_counter() - started:.1f} s")

        print(
            f"\n| period | appeals in period | {engine.dialect.name} s | duckdb s | ratio | same |"
        )
        print("|---|---:|---:|---:|---:|---|")
        for text in PERIODS:
            pair = parse_period(text, now=now, tz=ZONE)
            ours_s, duck_s = [], []
            for _ in range(repeats):
                started = time.perf_counter()
                async with engine.connect() as connection:
                    report = await build_report(connection, pair, ReportFilter())
                ours_s.append(time.perf_counter() - started)
                started = time.perf_counter()
                duck_result = duck_report(duck, pair.current, pair.previous)
                duck_s.append(time.perf_counter() - started)
            best_ours, best_duck = min(ours_s), min(duck_s)
            print(
                f"| {text} | {report.current.appeals:,} | {best_ours:.3f} | {best_duck:.3f} | "
                f"{best_ours / best_duck:.1f}x | {same_numbers(report, duck_result)} |"
            )
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--database-url", help="default: a fresh SQLite file")
    parser.add_argument("--repeats", type=int, default=3, help="best of N per period")
    args = parser.parse_args()
    asyncio.run(run(args.rows, args.database_url, args.repeats))


if __name__ == "__main__":
    main()
