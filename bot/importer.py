"""Import of appeals from CSV or JSON Lines: validate every row, then apply all or nothing."""

import asyncio
import csv
import json
import logging
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from itertools import chain, islice
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

from sqlalchemy import (
    Column,
    Insert,
    Integer,
    MetaData,
    String,
    Table,
    and_,
    delete,
    exists,
    func,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from reports.schema import NAME_MAX, UTCDateTime, appeals, apps, clients

logger = logging.getLogger(__name__)

FIELDS = ("appeal_id", "client_id", "channel", "app", "created_at")
EXPECTED_HEADER = ", ".join(FIELDS)
SUFFIXES = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
BATCH_SIZE = 5_000
MAX_LISTED_PROBLEMS = 100
# A valid record is a few hundred bytes; reading a line without a bound would let one broken
# file (no newlines at all) pull gigabytes into memory.
MAX_LINE_BYTES = 1 << 20
# SQLite's default 2 MB page cache thrashes while a big import updates the appeals indexes at
# random places (1M rows: 30 s instead of 12 s); the connection gets this much during an import.
SQLITE_IMPORT_CACHE_KIB = 64 * 1024
# Values quoted back in messages are cut so a message stays readable.
SHOWN_VALUE_MAX = 40

_FIELD_SET = frozenset(FIELDS)
_ID_FIELDS = ("appeal_id", "client_id")

# Rows are staged in a temporary table so that validation streams and every write to the real
# tables is one set-based statement inside the import's single transaction.
_staging_metadata = MetaData()
staging = Table(
    "import_staging",
    _staging_metadata,
    # The physical line (or position) of the row: the earliest occurrence of an appeal_id wins
    # and appeals get internal ids in file order.
    Column("line", Integer, primary_key=True, autoincrement=False),
    Column("appeal_id", String(NAME_MAX), nullable=False),
    Column("client_id", String(NAME_MAX), nullable=False),
    Column("channel", String(NAME_MAX), nullable=False),
    Column("app", String(NAME_MAX), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    prefixes=["TEMPORARY"],
)


@dataclass(frozen=True, slots=True)
class ImportResult:
    rows: int
    new: int
    # Rows whose appeal_id already existed, in the database or earlier in the same file.
    duplicates: int


class ImportFileError(Exception):
    """The file was not imported; the message is a user-safe multi-line text."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        # Every problem found, each "line N: reason"; empty for file-level errors.
        self.problems: list[str] = problems or []

    @classmethod
    def from_problems(cls, problems: list[str]) -> "ImportFileError":
        count = len(problems)
        noun = "problem" if count == 1 else "problems"
        lines = [f"Nothing was imported: the file has {count} {noun}."]
        lines.extend(problems[:MAX_LISTED_PROBLEMS])
        if count > MAX_LISTED_PROBLEMS:
            lines.append(f"... and {count - MAX_LISTED_PROBLEMS} more")
        return cls("\n".join(lines), problems)


class AppealRow(NamedTuple):
    """One already validated appeal: stripped ids, lower-case channel, aware created_at."""

    appeal_id: str
    client_id: str
    channel: str
    app: str
    created_at: datetime


async def import_file(engine: AsyncEngine, path: Path) -> ImportResult:
    """Import a .csv or .jsonl file in one transaction; any bad row means nothing is applied."""
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        shown = path.suffix or "(no extension)"
        raise ImportFileError(
            f"Unsupported file type {shown}: import a .csv file or a .jsonl (JSON Lines) file."
        )
    try:
        file = path.open("rb")
    except FileNotFoundError:
        raise ImportFileError(f"File not found: {path}") from None
    except OSError as exc:
        raise ImportFileError(f"Cannot read {path}: {exc.strerror}") from None
    with file:
        reader = _FileReader(file, kind)
        async with engine.begin() as connection, _import_cache(connection):
            await _create_staging(connection)
            # Parsing runs in a worker thread one batch at a time so a big file never blocks
            # the event loop (the bot keeps answering while an import runs).
            while (batch := await asyncio.to_thread(reader.next_batch, BATCH_SIZE)) is not None:
                # After the first problem the file will be refused: keep validating to report
                # every problem, but stop writing.
                if batch and not reader.problems:
                    await connection.execute(staging.insert(), batch)
            if reader.problems:
                raise ImportFileError.from_problems(reader.problems)
            new = await _merge_staging(connection)
    result = ImportResult(rows=reader.rows, new=new, duplicates=reader.rows - new)
    logger.info(
        "imported %s: %s rows, %s new, %s duplicates",
        path,
        result.rows,
        result.new,
        result.duplicates,
    )
    return result


async def store_appeals(connection: AsyncConnection, rows: Iterable[AppealRow]) -> ImportResult:
    """Apply already validated rows through the importer's path, in the caller's transaction."""
    await _create_staging(connection)
    iterator = iter(rows)
    count = 0
    while chunk := list(islice(iterator, BATCH_SIZE)):
        batch = [{"line": count + offset, **row._asdict()} for offset, row in enumerate(chunk, 1)]
        count += len(chunk)
        await connection.execute(staging.insert(), batch)
    new = await _merge_staging(connection)
    return ImportResult(rows=count, new=new, duplicates=count - new)


# --- reading and validation -------------------------------------------------------------------


class _FileReader:
    """Streams one file: validated staging rows in batches, problems collected on the side."""

    def __init__(self, file: BinaryIO, kind: str) -> None:
        self.problems: list[str] = []
        self.rows = 0
        lines = _decoded_lines(file)
        self._records = (
            _csv_records(lines, self.problems)
            if kind == "csv"
            else _jsonl_records(lines, self.problems)
        )

    def next_batch(self, size: int) -> list[dict[str, Any]] | None:
        """Valid rows of the next `size` records; None once the file is exhausted."""
        records = list(islice(self._records, size))
        if not records:
            return None
        self.rows += len(records)
        problems = self.problems
        batch = []
        for line, values in records:
            row = _validate(line, values, problems)
            if row is not None:
                batch.append(row)
        return batch


def _decoded_lines(file: BinaryIO) -> Iterator[str]:
    """Physical lines as text; decoding line by line names the exact line of a bad byte."""
    for number, raw in enumerate(iter(partial(file.readline, MAX_LINE_BYTES), b""), 1):
        if len(raw) == MAX_LINE_BYTES and not raw.endswith(b"\n"):
            message = f"line {number}: the line is longer than {MAX_LINE_BYTES // 1024} KB"
            raise ImportFileError(
                f"Nothing was imported: {message}. Is this really a CSV or JSON Lines file?",
                [message],
            )
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            message = f"line {number}: the text is not UTF-8"
            raise ImportFileError(
                f"Nothing was imported: the file is not UTF-8 text (first bad byte on line "
                f'{number}). Save it as UTF-8 (in Excel: "CSV UTF-8") and import it again.',
                [message],
            ) from None
        if number == 1:
            line = line.removeprefix("\ufeff")
        yield line


def _csv_problem(exc: csv.Error) -> str:
    """The csv module's complaint in words an operator can act on."""
    if "new-line character seen in unquoted field" in str(exc):
        # A lone CR (classic Mac OS line end) cannot be told from a break inside a value.
        return (
            "a lone carriage return (CR) outside quotes: save the file with Windows (CRLF) "
            "or Unix (LF) line ends"
        )
    return str(exc)


def _csv_records(lines: Iterator[str], problems: list[str]) -> Iterator[tuple[int, list[Any]]]:
    """(line where the record starts, values in FIELDS order) for each data row of a CSV."""
    first = next(lines, None)
    if first is None or not first.strip():
        problems.append(f"line 1: the header row is missing (expected {EXPECTED_HEADER})")
        return
    # The header names are known, so the delimiter is whichever candidate the header uses most;
    # ties (a one-column header) fall back to the comma.
    delimiter = max((",", ";", "\t"), key=first.count)
    reader = csv.reader(chain([first], lines), delimiter=delimiter)
    try:
        written = [name.strip() for name in next(reader)]
    except csv.Error as exc:
        problems.append(f"line 1: {_csv_problem(exc)}")
        return
    # Spreadsheet users retype headers: matching ignores case and surrounding spaces.
    header = [name.lower() for name in written]
    if not _header_ok(written, header, problems):
        return
    positions = [header.index(name) for name in FIELDS]
    width = len(header)
    start = reader.line_num + 1
    while True:
        try:
            record = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            problems.append(f"line {start}: {_csv_problem(exc)}")
            if reader.line_num < start:
                return
            start = reader.line_num + 1
            continue
        line, start = start, reader.line_num + 1
        if len(record) == width and record[0].strip():
            yield line, [record[position] for position in positions]
        elif not any(cell.strip() for cell in record):
            # Blank lines and the all-empty rows spreadsheets leave at the end are not data.
            continue
        elif len(record) != width:
            problems.append(f"line {line}: expected {width} fields, found {len(record)}")
        else:
            yield line, [record[position] for position in positions]


def _header_ok(written: list[str], header: list[str], problems: list[str]) -> bool:
    """Report header problems on line 1; False when rows cannot be mapped to fields."""
    if not _FIELD_SET.intersection(header):
        problems.append(f"line 1: the header row is missing (expected {EXPECTED_HEADER})")
        return False
    unknown = [name for name, key in zip(written, header, strict=True) if key not in _FIELD_SET]
    missing = [name for name in FIELDS if name not in header]
    repeated = [name for name in FIELDS if header.count(name) > 1]
    if unknown:
        shown = ", ".join(_show(name) for name in unknown)
        problems.append(f"line 1: unknown column(s) {shown} (expected {EXPECTED_HEADER})")
    if missing:
        problems.append(f"line 1: missing column(s) {', '.join(missing)}")
    if repeated:
        problems.append(f"line 1: repeated column(s) {', '.join(repeated)}")
    return not missing and not repeated


def _jsonl_records(lines: Iterator[str], problems: list[str]) -> Iterator[tuple[int, list[Any]]]:
    """(line, values in FIELDS order) for each JSON object line; blank lines are skipped."""
    for line, content in enumerate(lines, 1):
        if not content.strip():
            continue
        try:
            # Without the line break an error at the end of the line gets a useful column.
            data = json.loads(content.rstrip("\r\n"))
        except json.JSONDecodeError as exc:
            problems.append(f"line {line}: invalid JSON ({exc.msg} at column {exc.colno})")
            continue
        if not isinstance(data, dict):
            problems.append(f"line {line}: expected a JSON object")
            continue
        if data.keys() != _FIELD_SET:
            unknown = [key for key in data if key not in _FIELD_SET]
            missing = [name for name in FIELDS if name not in data]
            if unknown:
                shown = ", ".join(_show(key) for key in unknown)
                problems.append(f"line {line}: unknown field(s) {shown}")
            if missing:
                problems.append(f"line {line}: missing field(s) {', '.join(missing)}")
            continue
        values = [data[name] for name in FIELDS]
        typed = True
        for index, name in enumerate(FIELDS):
            value = values[index]
            if isinstance(value, str):
                continue
            # Numeric ids are common in exports; bool is an int subclass but never an id.
            if name in _ID_FIELDS and isinstance(value, int) and not isinstance(value, bool):
                values[index] = str(value)
                continue
            problems.append(f"line {line}: {name} must be a string")
            typed = False
        if typed:
            yield line, values


def _validate(line: int, values: list[str], problems: list[str]) -> dict[str, Any] | None:
    """The staging row for one record, or None after appending its problems."""
    appeal_id = values[0].strip()
    client_id = values[1].strip()
    channel = values[2].strip().lower()
    app = values[3].strip()
    stamp = values[4].strip()
    ok = True
    for name, value in (
        ("appeal_id", appeal_id),
        ("client_id", client_id),
        ("channel", channel),
        ("app", app),
        ("created_at", stamp),
    ):
        if not value:
            problems.append(f"line {line}: {name} is empty")
            ok = False
        elif len(value) > NAME_MAX:
            problems.append(f"line {line}: {name} is longer than {NAME_MAX} characters")
            ok = False
        elif "\x00" in value:
            # PostgreSQL text cannot hold NUL; refusing it keeps both backends alike.
            problems.append(f"line {line}: {name} contains a NUL character")
            ok = False
    moment = _instant(line, stamp, problems) if stamp and len(stamp) <= NAME_MAX else None
    if not ok or moment is None:
        return None
    return {
        "line": line,
        "appeal_id": appeal_id,
        "client_id": client_id,
        "channel": channel,
        "app": app,
        "created_at": moment,
    }


def _instant(line: int, stamp: str, problems: list[str]) -> datetime | None:
    """The UTC instant of an ISO 8601 timestamp that carries an offset."""
    try:
        moment = datetime.fromisoformat(stamp)
    except ValueError:
        problems.append(f"line {line}: created_at {_show(stamp)} is not an ISO 8601 timestamp")
        return None
    if moment.tzinfo is None:
        # A local time without its offset is ambiguous: guessing would shift reports by hours.
        problems.append(
            f"line {line}: created_at {_show(stamp)} has no UTC offset "
            "(add Z or an offset such as +03:00)"
        )
        return None
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        problems.append(f"line {line}: created_at {_show(stamp)} is out of range")
        return None


def _show(value: str) -> str:
    """A value quoted for a message: cut to a readable length, line breaks made visible."""
    if len(value) > SHOWN_VALUE_MAX:
        value = value[:SHOWN_VALUE_MAX] + "…"
    value = "".join(char if char.isprintable() else f"\\x{ord(char):02x}" for char in value)
    return f"'{value}'"


# --- applying the staged rows -------------------------------------------------------------------


@asynccontextmanager
async def _import_cache(connection: AsyncConnection) -> AsyncIterator[None]:
    """On SQLite, a bigger page cache for the import, given back to the pooled connection."""
    if connection.dialect.name != "sqlite":
        yield
        return
    previous = int((await connection.execute(text("PRAGMA cache_size"))).scalar_one())
    await connection.execute(text(f"PRAGMA cache_size = -{SQLITE_IMPORT_CACHE_KIB}"))
    try:
        yield
    finally:
        await connection.execute(text(f"PRAGMA cache_size = {previous}"))


async def _create_staging(connection: AsyncConnection) -> None:
    # On SQLite the driver runs DDL outside the transaction, so a staging table left behind by
    # a rolled-back import on this pooled connection may still exist.
    await connection.execute(text("DROP TABLE IF EXISTS import_staging"))
    await connection.run_sync(staging.create)


def _insert(connection: AsyncConnection, table: Table) -> Insert:
    """INSERT that can skip rows a concurrent import added (ON CONFLICT DO NOTHING)."""
    dialect = connection.dialect.name
    if dialect == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    if dialect == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing()
    raise RuntimeError(f"unsupported database dialect {dialect!r}")


async def _merge_staging(connection: AsyncConnection) -> int:
    """Move staged rows into apps, clients and appeals; return how many appeals were new."""
    # Built after loading: one sort is cheaper than keeping the index up to date per batch.
    await connection.execute(
        text("CREATE INDEX ix_import_staging_appeal ON import_staging (appeal_id, line)")
    )
    earlier = staging.alias("earlier")
    # Keep the first occurrence of each appeal_id in the file ...
    await connection.execute(
        delete(staging).where(
            exists().where(
                earlier.c.appeal_id == staging.c.appeal_id, earlier.c.line < staging.c.line
            )
        )
    )
    # ... and drop those already imported, so what stays is exactly the new appeals and only
    # their apps and clients get created.
    await connection.execute(
        delete(staging).where(exists().where(appeals.c.external_id == staging.c.appeal_id))
    )
    if connection.dialect.name == "postgresql":
        # Autovacuum never analyzes temporary tables; without statistics the planner guesses.
        await connection.execute(text("ANALYZE import_staging"))

    new_apps = (
        select(staging.c.channel, staging.c.app)
        .where(~exists().where(apps.c.channel == staging.c.channel, apps.c.name == staging.c.app))
        .distinct()
    )
    await connection.execute(_insert(connection, apps).from_select(["channel", "name"], new_apps))

    # New clients need first_appeal_at at once (NOT NULL); the id is set below.
    new_clients = (
        select(staging.c.client_id, func.min(staging.c.created_at))
        .where(~exists().where(clients.c.external_id == staging.c.client_id))
        .group_by(staging.c.client_id)
    )
    await connection.execute(
        _insert(connection, clients).from_select(["external_id", "first_appeal_at"], new_clients)
    )

    new_appeals = (
        select(staging.c.appeal_id, clients.c.id, apps.c.id, staging.c.created_at)
        .select_from(
            staging.join(clients, clients.c.external_id == staging.c.client_id).join(
                apps, and_(apps.c.channel == staging.c.channel, apps.c.name == staging.c.app)
            )
        )
        # Also the WHERE clause SQLite needs to parse INSERT ... SELECT ... ON CONFLICT.
        .where(~exists().where(appeals.c.external_id == staging.c.appeal_id))
        .order_by(staging.c.line)
    )
    inserted = await connection.execute(
        _insert(connection, appeals).from_select(
            ["external_id", "client_id", "app_id", "created_at"], new_appeals
        )
    )
    new = inserted.rowcount

    # Recompute the first-ever appeal of every client that got an appeal: an older appeal
    # imported later moves it. Ties at one instant go to the smaller appeal id.
    first = appeals.alias("first")
    first_id = (
        select(first.c.id)
        .where(first.c.client_id == clients.c.id)
        .order_by(first.c.created_at, first.c.id)
        .limit(1)
        .scalar_subquery()
    )
    first_at = (
        select(func.min(first.c.created_at))
        .where(first.c.client_id == clients.c.id)
        .scalar_subquery()
    )
    await connection.execute(
        update(clients)
        .where(clients.c.external_id.in_(select(staging.c.client_id)))
        .values(
            first_appeal_id=first_id,
            # A client whose only appeal a concurrent import took keeps its value.
            first_appeal_at=func.coalesce(first_at, clients.c.first_appeal_at),
        )
    )
    await connection.execute(text("DROP TABLE import_staging"))
    return new
