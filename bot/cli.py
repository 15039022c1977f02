"""Command line of `python -m bot`: run the bot, migrate, import, sync, demo data, reports, the
metric store."""

import argparse
import asyncio
import gettext
import logging
import os
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, date, datetime
from datetime import time as day_time
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.config import Settings, load_settings, zone_named
from bot.errors import N_, AppError, CliError
from bot.ingest.chatwoot_sync import SyncError, TextProgress, sync_chatwoot
from bot.ingest.demo import load_demo
from bot.ingest.export import export_appeals
from bot.ingest.files import conflict_report, import_file
from bot.ingest.status import newest_data
from bot.logs import setup_logging
from bot.storage.aggregates import aggregates_size, rebuild_aggregates
from bot.storage.engine import create_engine, migrate, write_transaction
from bot.storage.store_check import check_store
from bot.web.server import LABEL_PATTERN as _LABEL
from reports.aggregates import store_ready
from reports.bundle import render_bundle
from reports.charts import render_heatmap_png
from reports.errors import ReportError
from reports.heatmap import build_heatmap
from reports.i18n import format_number, translator
from reports.metrics import build_report
from reports.model import ReportFilter
from reports.periods import parse_period
from reports.trend import build_trend

logger = logging.getLogger(__name__)

NO_TOKEN_HELP = """\
BOT_TOKEN is not set, so the bot cannot connect to Telegram.
To get a token, open Telegram, talk to @BotFather, send /newbot, choose a name and a username
ending in "bot", and put the token it gives you into .env as BOT_TOKEN=123456:ABC... (see
.env.example). Meanwhile you can try the reports without Telegram:
    .venv/bin/python -m bot demo           # load a realistic sample data set
    .venv/bin/python -m bot report week    # print this week's client report"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bot", description=__doc__)
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("run", help="run the Telegram bot (the default)")
    commands.add_parser("migrate", help="create or upgrade the database schema")
    importing = commands.add_parser("import", help="load appeals from a CSV or JSON Lines file")
    importing.add_argument("file", type=Path)
    exporting = commands.add_parser(
        "export", help="write every appeal to a CSV file that `import` reads (to move databases)"
    )
    exporting.add_argument("file", type=Path)
    demo = commands.add_parser("demo", help="load a realistic sample data set")
    demo.add_argument("--force", action="store_true", help="replace existing data")
    sync = commands.add_parser("sync", help="read a desk's history into the event table")
    sync.add_argument("desk", choices=["chatwoot"])
    sync.add_argument(
        "--since", required=True, type=_day, help="first day to read, e.g. 2026-01-01"
    )
    sync.add_argument(
        "--label", default="main", help="the desk account's label in its webhook URL"
    )
    report = commands.add_parser("report", help="print the client report for a period")
    report.add_argument("period", nargs="+", help="e.g. week, month, 7d, 2026-11-01..2026-11-15")
    report.add_argument("--channel")
    report.add_argument("--app")
    report.add_argument("--tz", help="IANA timezone, default TIMEZONE")
    report.add_argument(
        "--out",
        type=Path,
        help="write channels.png, apps.png, trend.png, heatmap.png, clients.csv",
    )
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
    except AppError as exc:
        # The settings could not be read, LANGUAGE among them: the environment's, if it is one.
        early = os.environ.get("LANGUAGE") or "ru"
        _error(exc.localized(translator(early)), early)
        return 1
    setup_logging(level, secrets=settings.secrets)
    lang = settings.language
    translations = translator(lang)
    try:
        return asyncio.run(dispatch(args, settings))
    except AppError as exc:
        text = exc.localized(translations)
        if exc.labelled:
            _error(text, lang)
        else:
            print(text, file=sys.stderr)
    except ReportError as exc:
        _error(exc.localized(translations.gettext), lang)
    except SyncError as exc:
        _error(str(exc), lang)
    except BrokenPipeError:
        # `report ... | head -3`: the reader left early; end quietly, as Unix tools do, and keep
        # the interpreter from failing again when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        # Not an error but the operator's Ctrl-C: one word instead of a traceback.
        print(translations.gettext("interrupted"), file=sys.stderr)
    return 1


def _error(message: str, lang: str) -> None:
    """The one line of a failed command: "error: ..." in the operator's language."""
    print(translator(lang).gettext("error: {message}").format(message=message), file=sys.stderr)


async def dispatch(args: argparse.Namespace, settings: Settings) -> int:
    command = args.command or "run"
    t = translator(settings.language)
    # The running bot checkpoints SQLite's WAL in the background (bot/storage/checkpoints.py).
    engine = create_engine(settings.database_url, background_checkpoints=command == "run")
    try:
        try:
            await migrate(engine)
        except OSError as exc:
            # A closed port or an unknown host: the driver raises before SQLAlchemy sees it.
            raise CliError(
                N_("cannot reach the database {url}: {reason}"),
                url=engine.url.render_as_string(hide_password=True),
                reason=exc.strerror or str(exc),
            ) from exc
        if command == "run":
            return await run_bot(settings, engine)
        if command == "import":
            if args.file.is_dir():
                raise CliError(
                    N_("{path} is a directory: name one .csv or .jsonl file"), path=str(args.file)
                )
            if not args.file.is_file():
                raise CliError(N_("no such file: {path}"), path=str(args.file))
            result = await import_file(engine, args.file)
            rows, new, duplicates = result.rows, result.new, result.duplicates
            print(
                t.gettext("imported {file}: {rows}, {new}, {duplicates}").format(
                    file=args.file.name,
                    rows=t.ngettext("{count} row", "{count} rows", rows).format(count=rows),
                    new=t.ngettext("{count} new", "{count} new", new).format(count=new),
                    duplicates=t.ngettext(
                        "{count} duplicate", "{count} duplicates", duplicates
                    ).format(count=duplicates),
                )
            )
            # Two sources disagree about these appeals: an operator should look.
            for line in conflict_report(result, t):
                print(line)
        elif command == "export":
            await export_to(engine, args.file)
        elif command == "demo":
            loaded = await load_demo(engine, now=datetime.now(UTC), force=args.force)
            print(
                t.gettext("demo data loaded: {clients}, {appeals} from {start} to {end}").format(
                    clients=t.ngettext("{count} client", "{count} clients", loaded.clients).format(
                        count=loaded.clients
                    ),
                    appeals=t.ngettext("{count} appeal", "{count} appeals", loaded.appeals).format(
                        count=loaded.appeals
                    ),
                    start=f"{loaded.start:%Y-%m-%d}",
                    end=f"{loaded.end:%Y-%m-%d}",
                )
            )
        elif command == "report":
            await print_report(engine, settings, args)
        elif command == "sync":
            await run_sync(engine, settings, args)
        elif command == "rebuild-aggregates":
            await rebuild_store(engine, t)
        elif command == "check":
            return await check(engine, args, t)
        return 0
    except SQLAlchemyError as exc:
        first_line = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        raise CliError(N_("database problem: {detail}"), detail=first_line) from exc
    finally:
        await engine.dispose()


async def export_to(engine: AsyncEngine, path: Path) -> None:
    try:
        with path.open("x", encoding="utf-8", newline="") as out:
            count = await export_appeals(engine, out)
    except FileExistsError:
        raise CliError(N_("{path} exists: name a new file"), path=str(path)) from None
    except OSError as exc:
        raise CliError(
            N_("cannot write {path}: {reason}"), path=str(path), reason=exc.strerror or str(exc)
        ) from None
    print(f"exported {count} appeals to {path}")


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date: {text!r} (try 2026-01-01)") from None


async def run_sync(engine: AsyncEngine, settings: Settings, args: argparse.Namespace) -> None:
    if not _LABEL.fullmatch(args.label):
        raise CliError(N_("--label may hold only letters, digits, '-' and '_' (at most 64)"))
    since = datetime.combine(args.since, day_time(), tzinfo=settings.zone)
    bar = TextProgress()
    try:
        result = await sync_chatwoot(settings, engine, since=since, label=args.label, progress=bar)
    finally:
        bar.finish()
    t = translator(settings.language)
    lang = settings.language
    parts = [
        t.ngettext("{count} new event", "{count} new events", result.new_events),
        t.ngettext("{count} page", "{count} pages", result.pages),
    ]
    counts = [result.new_events, result.pages]
    if result.skipped:
        parts.append(t.ngettext("{count} skipped", "{count} skipped", result.skipped))
        counts.append(result.skipped)
    conversations = t.ngettext(
        "synced {count} conversation", "synced {count} conversations", result.conversations
    ).format(count=format_number(result.conversations, lang))
    details = ", ".join(
        part.format(count=format_number(count, lang))
        for part, count in zip(parts, counts, strict=True)
    )
    print(f"{conversations}: {details}")


async def print_report(engine: AsyncEngine, settings: Settings, args: argparse.Namespace) -> None:
    zone = zone_named(args.tz) if args.tz else settings.zone
    if zone is None:
        raise CliError(N_("unknown timezone {zone} (try Europe/Moscow)"), zone=repr(args.tz))
    now = datetime.now(UTC)
    periods = parse_period(" ".join(args.period), now=now, tz=zone)
    async with engine.connect() as connection:
        report_filter = ReportFilter(channel=args.channel, app=args.app)
        report = await build_report(connection, periods, report_filter)
        report = replace(
            report,
            trend=await build_trend(connection, periods, report_filter),
            data_until=await newest_data(connection),
            as_of=now,
        )
        heatmap = await build_heatmap(connection, periods.current, report_filter)
    lang = settings.language
    bundle = render_bundle(report, lang=lang, delimiter=settings.delimiter_for(lang), html=False)
    print(bundle.text)
    if args.out:
        heatmap_png = render_heatmap_png(heatmap, lang=lang)
        try:
            args.out.mkdir(parents=True, exist_ok=True)
            written = bundle.write_to(args.out, heatmap_png=heatmap_png)
        except OSError as exc:
            raise CliError(
                N_("cannot write the report files to {path}: {reason}"),
                path=str(args.out),
                reason=exc.strerror or str(exc),
            ) from exc
        files = ", ".join(str(path) for path in written)
        print(translator(lang).gettext("written: {files}").format(files=files))


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


async def rebuild_store(engine: AsyncEngine, t: gettext.NullTranslations) -> None:
    started = time.perf_counter()
    async with write_transaction(engine) as connection:
        await rebuild_aggregates(connection, _progress(t.gettext("rebuilding the metric store")))
        size = await aggregates_size(connection)
    print(
        t.gettext(
            "metric store rebuilt: {buckets} buckets, {size} MB of bitmaps in {seconds} s"
        ).format(
            buckets=f"{size.buckets:,}",
            size=f"{size.bytes / 1e6:.1f}",
            seconds=f"{time.perf_counter() - started:.1f}",
        )
    )


async def check(engine: AsyncEngine, args: argparse.Namespace, t: gettext.NullTranslations) -> int:
    if args.samples < 1:
        raise CliError(N_("--samples must be at least 1"))
    seed = args.seed if args.seed is not None else random.randrange(1_000_000)
    async with engine.connect() as connection:
        if not await store_ready(connection):
            raise CliError(
                N_("the metric store is not built: run python -m bot rebuild-aggregates")
            )
        result = await check_store(
            connection, samples=args.samples, seed=seed, progress=_progress(t.gettext("comparing"))
        )
    for difference in result.differences:
        print(t.gettext("difference: {difference}").format(difference=difference))
    found = len(result.differences)
    print(
        t.gettext("checked {reports} (seed {seed}): {differences}").format(
            reports=t.ngettext("{count} report", "{count} reports", result.comparisons).format(
                count=result.comparisons
            ),
            seed=seed,
            differences=t.ngettext("{count} difference", "{count} differences", found).format(
                count=found
            ),
        )
    )
    return 1 if result.differences else 0


async def run_bot(settings: Settings, engine: AsyncEngine) -> int:
    if settings.bot_token is None or not settings.bot_token.get_secret_value().strip():
        print(NO_TOKEN_HELP, file=sys.stderr)
        return 2
    from bot.app import serve  # imported late: the CLI's other commands need no aiogram

    return await serve(settings, engine)
