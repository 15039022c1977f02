"""Benchmark: many admins ask for a report at the same moment, then hundreds of renders in a row.

Run: .venv/bin/python benchmarks/load.py [--rows 1000000] [--database PATH] [--users 50]
     [--renders 500]

1. A SQLite database with N generated appeals (`generate_csv` + `import_file`, built in a child
   process so its memory does not count below). `--database PATH` keeps the file: an existing
   file is reused as it is, a missing one is built there.
2. Load: the real application (`build_application`, production outbound limiter) polls the fake
   Bot API server (in this process, `enforce_rate_limits=True`: it answers 429 to anything over
   1 message/s per chat or 30/s overall); `--users` admins each send `/clients month` at the
   same moment. Time per report runs from queueing the update to that user's CSV arriving.
3. Memory: the same month report rendered `--renders` times one after another (the renderer's
   process pool) and delivered to one chat (text, album, CSV) through a fast limiter to a fake
   server in a child process (its stored uploads must not count as our memory).

Prints the figures and one PASS/FAIL line per target.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import multiprocessing
import os
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# The bot's modules are imported inside the functions, not here: the renderer's workers are
# spawned, and a spawned process re-imports the parent's __main__ script (as __mp_main__), so
# imports at this level would load aiogram, SQLAlchemy and the fake server into every worker and
# inflate its memory. `python -m bot` does not have this cost (multiprocessing skips a package's
# __main__).
if TYPE_CHECKING:
    from reports.model import Report

TOKEN = "123456:BENCH-token"
ZONE = ZoneInfo("Europe/Moscow")
FIRST_USER = 10_001
SENDS = frozenset({"sendMessage", "sendPhoto", "sendMediaGroup", "sendDocument"})
RSS_GROWTH_LIMIT_MB = 50.0
# Matplotlib's font and text caches fill during a worker's first ~50 renders and then stay flat;
# growth is measured after that, so it shows a leak rather than a warm cache.
WARM_UP_RENDERS = 100
CURVE_EVERY = 100

# The fake server for the memory phase, in a child process: prints its URL, serves until stdin
# closes.
FAKE_CHILD = f"""
import asyncio, sys
sys.path.insert(0, {str(ROOT)!r})
from tests.fake_telegram import FakeTelegram

async def main():
    async with FakeTelegram(token={TOKEN!r}) as tg:
        print(tg.base_url, flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

asyncio.run(main())
"""


# -- memory figures ------------------------------------------------------------------------------


def _status_kb(pid: int | str, field: str) -> int:
    """A `kB` field of /proc/<pid>/status (VmRSS: now, VmHWM: peak), 0 if the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def rss_mb(pid: int | str = "self") -> float:
    return _status_kb(pid, "VmRSS") / 1024


def worker_pids() -> list[int]:
    """The renderer's spawned workers (the only multiprocessing children of this process)."""
    return [process.pid for process in multiprocessing.active_children() if process.pid]


def mb(kilobytes: int) -> float:
    return kilobytes / 1024


# -- 1. the database -----------------------------------------------------------------------------


async def build_database(database: Path, rows: int) -> None:
    from benchmarks.report_speed import generate_csv
    from bot.ingest.files import import_file
    from bot.storage.engine import create_engine, migrate

    engine = create_engine(f"sqlite+aiosqlite:///{database}")
    try:
        await migrate(engine)
        with tempfile.TemporaryDirectory() as tmp:
            csv_path = Path(tmp) / "appeals.csv"
            started = time.perf_counter()
            generate_csv(csv_path, rows, datetime.now(UTC))
            generated = time.perf_counter() - started
            started = time.perf_counter()
            result = await import_file(engine, csv_path)
            imported = time.perf_counter() - started
        print(
            f"database: generated {rows:,} appeals in {generated:.1f} s, imported {result.new:,} "
            f"in {imported:.1f} s ({result.new / imported:,.0f} rows/s)"
        )
    finally:
        await engine.dispose()


def count_appeals(database: Path) -> int:
    with sqlite3.connect(database) as connection:
        return int(connection.execute("SELECT count(*) FROM appeals").fetchone()[0])


# -- 2. many users at once -----------------------------------------------------------------------


def quantile(values: list[float], q: int) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


async def load_phase(url: str, users: int) -> dict[str, Any]:
    from bot.app import build_application
    from bot.config import Settings
    from bot.storage.engine import create_engine
    from tests.fake_telegram import FakeTelegram

    admins = [FIRST_USER + number for number in range(users)]
    engine = create_engine(url)
    async with FakeTelegram(token=TOKEN, enforce_rate_limits=True) as tg:
        settings = Settings(
            _env_file=None,
            bot_token=TOKEN,
            telegram_api_url=tg.base_url,
            database_url=url,
            admin_ids=",".join(str(admin) for admin in admins),
            timezone="Europe/Moscow",
            language="en",
        )
        app = build_application(settings, engine)  # the production limiter
        dispatcher = app.dispatcher
        polling = asyncio.create_task(dispatcher.start_polling(app.bot, handle_signals=False))
        try:
            ready = asyncio.create_task(tg.wait_polling(timeout=120))
            await asyncio.wait({polling, ready}, return_when=asyncio.FIRST_COMPLETED)
            if not ready.done():
                ready.cancel()
                polling.result()
            ready.result()
            first_call = len(tg.calls())

            # Everyone at the same moment: the updates reach the bot in one getUpdates batch.
            injected: dict[int, float] = {}
            last_update = 0
            for admin in admins:
                last_update = tg.send_message("/clients month", chat_id=admin, user_id=admin)
                injected[admin] = time.monotonic()
            started = min(injected.values())
            await tg.wait_confirmed(last_update, timeout=120)
            # aiogram keeps its handler tasks here; the run is over when they all finished.
            while tasks := set(dispatcher._handle_update_tasks):
                await asyncio.gather(*tasks)
            finished = time.monotonic()

            workers = {pid: mb(_status_kb(pid, "VmHWM")) for pid in worker_pids()}
            main_peak = mb(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
        finally:
            if not polling.done():
                await dispatcher.stop_polling()
            await polling
        await engine.dispose()

        calls = tg.calls()[first_call:]
        sends = [call for call in calls if call.method in SENDS]
        ok_sends = [call for call in sends if call.ok]
        per_user: dict[int, list[str]] = {admin: [] for admin in admins}
        notes: Counter[str] = Counter()
        for call in ok_sends:
            chat = int(call.params["chat_id"])
            per_user.setdefault(chat, []).append(call.method)
            text = call.result.get("text", "") if call.method == "sendMessage" else ""
            if text.startswith("Temporary problem with the database"):
                notes["database error"] += 1
            elif "could not be delivered" in text:
                notes["part not delivered"] += 1
            if "Charts are unavailable" in text:
                notes["charts unavailable"] += 1
        latencies = []
        for admin in admins:
            documents = [
                call
                for call in ok_sends
                if call.method == "sendDocument" and call.params["chat_id"] == str(admin)
            ]
            if documents:
                latencies.append(documents[0].at - injected[admin])
        complete = sum(
            methods == ["sendMessage", "sendMediaGroup", "sendDocument"]
            for methods in per_user.values()
        )
        last_send = max((call.at for call in ok_sends), default=finished)
        span = max(last_send - started, 1e-9)
        messages = sum(
            len(call.result) if call.method == "sendMediaGroup" else 1 for call in ok_sends
        )
        return {
            "users": users,
            "complete": complete,
            "with_csv": len(latencies),
            "notes": dict(notes),
            "p50": quantile(latencies, 50),
            "p95": quantile(latencies, 95),
            "max": max(latencies, default=float("nan")),
            "wall": finished - started,
            "requests_per_s": len(ok_sends) / span,
            "messages_per_s": messages / span,
            "requests": len(ok_sends),
            "messages": messages,
            "too_many_requests": sum(call.status == 429 for call in calls),
            "other_errors": Counter(
                call.status for call in sends if not call.ok and call.status != 429
            ),
            "violations": len(tg.rate_violations()),
            "main_peak": main_peak,
            "workers_peak": workers,
            "children_peak": mb(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss),
        }


# -- 3. renders in a row -------------------------------------------------------------------------


async def month_report(url: str) -> Report:
    from bot.storage.engine import create_engine
    from reports.metrics import build_report
    from reports.model import ReportFilter
    from reports.periods import parse_period

    engine = create_engine(url)
    try:
        periods = parse_period("month", now=datetime.now(UTC), tz=ZONE)
        async with engine.connect() as connection:
            return await build_report(connection, periods, ReportFilter())
    finally:
        await engine.dispose()


async def render_phase(url: str, renders: int) -> dict[str, Any]:
    from aiogram import Bot

    from bot.app import build_bot
    from bot.config import Settings
    from bot.rendering import Renderer
    from bot.telegram import outbound
    from bot.telegram.delivery import deliver_bundle
    from bot.telegram.outbound import Limits, OutboundLimiter

    report = await month_report(url)
    fake = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        FAKE_CHILD,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert fake.stdout is not None and fake.stdin is not None
    base_url = (await fake.stdout.readline()).decode().strip()
    renderer = Renderer()
    bot: Bot | None = None
    try:
        settings = Settings(_env_file=None, bot_token=TOKEN, telegram_api_url=base_url)
        bot = build_bot(settings)
        fast = OutboundLimiter(Limits(per_second=10_000, chat_interval=0, group_per_minute=10**6))
        outbound.install(bot, fast)
        chat = FIRST_USER
        await renderer.warm_up()

        async def one() -> int:
            bundle = await renderer.render(report, lang="en", delimiter=",")
            await deliver_bundle(bot, chat, bundle)
            return len(bundle.charts)

        fresh = rss_mb() + sum(rss_mb(pid) for pid in worker_pids())
        for _ in range(WARM_UP_RENDERS):
            await one()
        gc.collect()
        main_before = rss_mb()
        workers_before = {pid: rss_mb(pid) for pid in worker_pids()}
        curve = [main_before + sum(workers_before.values())]
        started = time.perf_counter()
        charts: Counter[int] = Counter()
        for number in range(1, renders + 1):
            charts[await one()] += 1
            if number % CURVE_EVERY == 0:
                curve.append(rss_mb() + sum(rss_mb(pid) for pid in worker_pids()))
        elapsed = time.perf_counter() - started
        gc.collect()
        main_after = rss_mb()
        workers_after = {pid: rss_mb(pid) for pid in worker_pids()}
    finally:
        if bot is not None:
            await bot.session.close()
        renderer.close()
        fake.stdin.close()
        await fake.wait()
    same_workers = workers_before.keys() == workers_after.keys()
    return {
        "renders": renders,
        "charts": dict(charts),
        "elapsed": elapsed,
        "main_before": main_before,
        "main_after": main_after,
        "workers_before": sum(workers_before.values()),
        "workers_after": sum(workers_after.values()),
        "same_workers": same_workers,
        "fresh": fresh,
        "curve": curve,
        "appeals": report.current.appeals,
    }


# -- main ----------------------------------------------------------------------------------------


def verdict(ok: bool, text: str) -> str:
    return f"{'PASS' if ok else 'FAIL'}  {text}"


async def run(database: Path, users: int, renders: int) -> int:
    url = f"sqlite+aiosqlite:///{database}"
    print(f"database: {database} ({count_appeals(database):,} appeals)")
    print(f"CPUs: {os.cpu_count()}, python {sys.version.split()[0]}")

    load = await load_phase(url, users)
    print(f"\n== {users} admins send /clients month at the same moment ==")
    print(
        f"complete (text + album + CSV, each once): {load['complete']}/{users}; "
        f"with a CSV: {load['with_csv']}/{users}; notes to users: {load['notes'] or 'none'}"
    )
    print(
        f"time per report (update queued -> CSV arrived): p50 {load['p50']:.1f} s, "
        f"p95 {load['p95']:.1f} s, max {load['max']:.1f} s; all done in {load['wall']:.1f} s"
    )
    print(
        f"sent: {load['requests']} requests, {load['messages']} messages; "
        f"{load['requests_per_s']:.1f} requests/s, {load['messages_per_s']:.1f} messages/s"
    )
    print(
        f"429 answers: {load['too_many_requests']}; other send errors: "
        f"{dict(load['other_errors']) or 'none'}; rate violations: {load['violations']}"
    )
    workers = load["workers_peak"]
    print(
        f"peak RSS: bot process {load['main_peak']:.0f} MB (includes the in-process fake "
        f"server and its stored uploads), render workers "
        f"{', '.join(f'{value:.0f}' for value in workers.values()) or 'none'} MB; "
        f"total {load['main_peak'] + sum(workers.values()):.0f} MB"
    )

    memory = await render_phase(url, renders)
    main_growth = memory["main_after"] - memory["main_before"]
    workers_growth = memory["workers_after"] - memory["workers_before"]
    print(f"\n== {renders} month reports ({memory['appeals']:,} appeals) rendered and sent ==")
    print(
        f"{renders} renders + deliveries in {memory['elapsed']:.1f} s "
        f"({memory['elapsed'] / renders * 1000:.0f} ms each); charts per bundle: "
        f"{memory['charts']}"
    )
    print(
        f"RSS bot process: {memory['main_before']:.1f} -> {memory['main_after']:.1f} MB "
        f"({main_growth:+.1f} MB); render workers: {memory['workers_before']:.1f} -> "
        f"{memory['workers_after']:.1f} MB ({workers_growth:+.1f} MB"
        f"{'' if memory['same_workers'] else ', workers were replaced'})"
    )

    print(
        f"bot + workers RSS: {memory['fresh']:.0f} MB with fresh workers, "
        f"{memory['curve'][0]:.0f} MB after {WARM_UP_RENDERS} warm-up renders (caches filled), "
        f"then every {CURVE_EVERY}: " + " -> ".join(f"{value:.0f}" for value in memory["curve"])
    )

    growth = main_growth + max(workers_growth, 0.0)
    results = [
        verdict(load["complete"] == users, f"all reports complete: {load['complete']}/{users}"),
        verdict(load["too_many_requests"] == 0, f"429 answers: {load['too_many_requests']}"),
        verdict(load["violations"] == 0, f"rate violations: {load['violations']}"),
        verdict(
            growth < RSS_GROWTH_LIMIT_MB,
            f"RSS growth over {renders} renders after warm-up: {growth:+.1f} MB "
            f"(< {RSS_GROWTH_LIMIT_MB:.0f} MB; bot {main_growth:+.1f}, "
            f"workers {workers_growth:+.1f})",
        ),
    ]
    print("\n" + "\n".join(results))
    print(
        f"info  p50 {load['p50']:.1f} s, p95 {load['p95']:.1f} s per report; "
        f"peak RSS {load['main_peak'] + sum(workers.values()):.0f} MB; "
        f"{load['messages_per_s']:.1f} messages/s"
    )
    return 0 if all(line.startswith("PASS") for line in results) else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="appeals to generate")
    parser.add_argument(
        "--database", type=Path, help="SQLite file: reused if it exists, else built there"
    )
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--renders", type=int, default=500)
    parser.add_argument("--build-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.build_only:
        asyncio.run(build_database(args.database, args.rows))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        database = args.database or Path(tmp) / "load.db"
        if database.exists():
            print(f"reusing {database}")
        else:
            database.parent.mkdir(parents=True, exist_ok=True)
            # In a child process, so the import's memory is not in this process's peak RSS.
            subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--build-only",
                    "--rows",
                    str(args.rows),
                    "--database",
                    str(database),
                ],
                check=True,
            )
        return asyncio.run(run(database, args.users, args.renders))


if __name__ == "__main__":
    raise SystemExit(main())
