"""Command line of `python -m bot`: run the bot, migrate, import, demo data, reports, the store."""

import argparse
import asyncio
import logging
import random
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.config import Settings, SettingsError, load_settings, zone_named
from bot.ingest.demo import DemoRefused, load_demo
from bot.ingest.files import ImportFileError, import_file
from bot.logs import setup_logging
from bot.storage.aggregates import aggregates_size, rebuild_aggregates
from bot.storage.engine import create_engine, migrate, write_transaction
from bot.storage.store_check import check_store
from reports.aggregates import store_ready
from reports.bundle import render_bundle
from reports.errors import ReportError
from reports.i18n import translator
from reports.metrics import build_report
from reports.model import ReportFilter
from reports.periods import parse_period

logger = logging.getLogger(__name__)

NO_TOKEN_HELP = """\
BOT_TOKEN is not set, so the bot cannot connect to Telegram.
To get a token, open Telegram, talk to @BotFather, send /newbot, choose a name and a username
ending in "bot", and put the token it gives you into .env as BOT_TOKEN=123456:ABC... (see
.env.example). Meanwhile you can try the reports without Telegram:
    .venv/bin/python -m bot demo           # load a realistic sample data set
    .venv/bin/python -m bot report week    # print this week's client report"""


class CliError(Exception):
    """A one-line error for the terminal."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bot", description=__doc__)
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("run", help="run the Telegram bot (the default)")
    commands.add_parser("migrate", help="create or upgrade the database schema")
    importing = commands.add_parser("import", help="load appeals from a CSV or JSON Lines file")
    importing.add_argument("file", type=Path)
    demo = commands.add_parser("demo", help="load a realistic sample data set")
    demo.add_argument("--force", action="store_true", help="replace existing data")
    report = commands.add_parser("report", help="print the client report for a period")
    report.add_argument("period", nargs="+", help="e.g. week, month, 7d, 2026-11-01..2026-11-15")
    report.add_argument("--channel")
    report.add_argument("--app")
    report.add_argument("--tz", help="IANA timezone, default TIMEZONE")
    report.add_argument("--out", type=Path, help="write channels.png, apps.png, clients.csv")
    commands.add_parser(
        "rebuild-aggregates", help="rebuild the pre-aggregated metric store from the appeals"
    )
    check = commands.add_parser(
        "check", help="compare the metric store with plain SQL for random periods"
    )
    check.add_argument("--samples", type=int, default=200, help="random reports to compare")
    check.add_argument("--seed", type=int, default=None, help="repeat a given run")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Only the long-running bot logs progress; one-shot commands print their result alone.
    level = logging.INFO if args.command in (None, "run") else logging.WARNING
    setup_logging(level, secrets=[])
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    token = settings.bot_token.get_secret_value() if settings.bot_token else ""
    setup_logging(level, secrets=[token])
    try:
        return asyncio.run(dispatch(args, settings))
    except (CliError, DemoRefused) as exc:
        print(f"error: {exc}", file=sys.stderr)
    except ReportError as exc:
        print(f"error: {exc.localized(translator(settings.language).gettext)}", file=sys.stderr)
    except ImportFileError as exc:
        print(str(exc), file=sys.stderr)
    except SQLAlchemyError as exc:
        first_line = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        print(f"error: database problem: {first_line}", file=sys.stderr)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
    return 1


async def dispatch(args: argparse.Namespace, settings: Settings) -> int:
    command = args.command or "run"
    engine = create_engine(settings.database_url)
    try:
        await migrate(engine)
        if command == "run":
            return await run_bot(settings, engine)
        if command == "import":
            if not args.file.is_file():
                raise CliError(f"no such file: {args.file}")
            result = await import_file(engine, args.file)
            print(
                f"imported {args.file.name}: {result.rows} rows, {result.new} new, "
                f"{result.duplicates} duplicates"
            )
        elif command == "demo":
            loaded = await load_demo(engine, now=datetime.now(UTC), force=args.force)
            print(
                f"demo data loaded: {loaded.clients} clients, {loaded.appeals} appeals "
                f"from {loaded.start:%Y-%m-%d} to {loaded.end:%Y-%m-%d}"
            )
        elif command == "report":
            await print_report(engine, settings, args)
        elif command == "rebuild-aggregates":
            await rebuild_store(engine)
        elif command == "check":
            return await check(engine, args)
        return 0
    finally:
        await engine.dispose()


async def print_report(engine: AsyncEngine, settings: Settings, args: argparse.Namespace) -> None:
    zone = zone_named(args.tz) if args.tz else settings.zone
    if zone is None:
        raise CliError(f"unknown timezone {args.tz!r} (try Europe/Moscow)")
    periods = parse_period(" ".join(args.period), now=datetime.now(UTC), tz=zone)
    async with engine.connect() as connection:
        report = await build_report(
            connection, periods, ReportFilter(channel=args.channel, app=args.app)
        )
    lang = settings.language
    bundle = render_bundle(report, lang=lang, delimiter=settings.delimiter_for(lang), html=False)
    print(bundle.text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        written = bundle.write_to(args.out)
        print("written: " + ", ".join(str(path) for path in written))


def _progress(label: str) -> Callable[[int, int], None]:
    """A progress line redrawn in place on a terminal; in a log, a line per tenth."""
    interactive = sys.stdout.isatty()
    shown = -1

    def show(done: int, total: int) -> None:
        nonlocal shown
        percent = done * 100 // max(total, 1)
        line = f"{label}: {done}/{total} ({percent}%)"
        if interactive:
            print(f"\r{line}", end="\n" if done == total else "", flush=True)
        elif percent // 10 != shown or done == total:
            shown = percent // 10
            print(line, flush=True)

    return show


async def rebuild_store(engine: AsyncEngine) -> None:
    started = time.perf_counter()
    async with write_transaction(engine) as connection:
        await rebuild_aggregates(connection, _progress("rebuilding the metric store"))
        size = await aggregates_size(connection)
    print(
        f"metric store rebuilt: {size.buckets:,} buckets, {size.bytes / 1e6:.1f} MB of bitmaps "
        f"in {time.perf_counter() - started:.1f} s"
    )


async def check(engine: AsyncEngine, args: argparse.Namespace) -> int:
    if args.samples < 1:
        raise CliError("--samples must be at least 1")
    seed = args.seed if args.seed is not None else random.randrange(1_000_000)
    async with engine.connect() as connection:
        if not await store_ready(connection):
            raise CliError("the metric store is not built: run python -m bot rebuild-aggregates")
        result = await check_store(
            connection, samples=args.samples, seed=seed, progress=_progress("comparing")
        )
    for difference in result.differences:
        print(f"difference: {difference}")
    print(
        f"checked {result.comparisons} reports (seed {seed}): "
        f"{len(result.differences)} differences"
    )
    return 1 if result.differences else 0


async def run_bot(settings: Settings, engine: AsyncEngine) -> int:
    if settings.bot_token is None or not settings.bot_token.get_secret_value().strip():
        print(NO_TOKEN_HELP, file=sys.stderr)
        return 2
    from bot.app import run_polling  # imported late: the CLI's other commands need no aiogram

    return await run_polling(settings, engine)
