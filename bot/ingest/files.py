"""Import of appeals from CSV or JSON Lines: validate every row, then apply all or nothing."""

import asyncio
import csv
import gettext
import json
import logging
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from functools import partial
from itertools import chain, islice
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy.ext.asyncio import AsyncEngine

from bot.errors import N_, AppError, N_plural
from bot.ingest.merge import (
    BATCH_SIZE,
    Conflict,
    ImportResult,
    create_staging,
    import_cache,
    merge_staging,
    stage_rows,
    staged_conflicts,
)
from bot.ingest.payloads import EARLIEST, LATEST
from reports.schema import NAME_MAX

logger = logging.getLogger(__name__)

FIELDS = ("appeal_id", "client_id", "channel", "app", "created_at")
EXPECTED_HEADER = ", ".join(FIELDS)
SUFFIXES = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
MAX_LISTED_PROBLEMS = 100
# A valid record is a few hundred bytes; reading a line without a bound would let one broken
# file (no newlines at all) pull gigabytes into memory.
MAX_LINE_BYTES = 1 << 20
# Values quoted back in messages are cut so a message stays readable.
SHOWN_VALUE_MAX = 40

_FIELD_SET = frozenset(FIELDS)
_ID_FIELDS = ("appeal_id", "client_id")


class Problem(str):
    """One problem of a file: "line N: reason" in English (as the HTTP API reports it), and
    its template and values, so that the CLI can say it in the operator's language."""

    def __new__(
        cls, line: int, template: str | tuple[str, str], count: int = 1, **values: Any
    ) -> "Problem":
        # A pair (N_plural) has a plural form, chosen by count.
        singular, plural = (template, None) if isinstance(template, str) else template
        reason = (singular if plural is None or count == 1 else plural).format(
            count=count, **values
        )
        problem = super().__new__(cls, f"line {line}: {reason}")
        problem.line, problem.template, problem.plural = line, singular, plural
        problem.number, problem.values = count, values
        return problem

    line: int
    template: str
    plural: str | None
    # The count that picks the plural form ("count" is str's own method).
    number: int
    values: dict[str, Any]

    def localized(self, translations: gettext.NullTranslations) -> str:
        if self.plural is None:
            reason = translations.gettext(self.template)
        else:
            reason = translations.ngettext(self.template, self.plural, self.number)
        return translations.gettext("line {line}: {reason}").format(
            line=self.line, reason=reason.format(count=self.number, **self.values)
        )


def _localized(problem: str, translations: gettext.NullTranslations) -> str:
    return problem.localized(translations) if isinstance(problem, Problem) else problem


class ImportFileError(AppError):
    """The file was not imported; the message is a user-safe multi-line text."""

    labelled = False

    def __init__(self, template: str, problems: list[str] | None = None, **values: Any) -> None:
        # Every problem found, each "line N: reason"; empty for file-level errors.
        self.problems: list[str] = list(problems or [])
        super().__init__(template, **values)

    @classmethod
    def from_problems(cls, problems: list[str]) -> "ImportFileError":
        singular, plural = N_plural(
            "Nothing was imported: the file has {count} problem.",
            "Nothing was imported: the file has {count} problems.",
        )
        return cls(singular, problems, plural=plural, count=len(problems))

    def localized(self, translations: gettext.NullTranslations) -> str:
        if self.plural is None:
            # A file-level message may quote the problem that stopped the reading.
            values = {key: _localized(value, translations) for key, value in self.values.items()}
            template = translations.gettext(self.template)
            return template.format(**values) if values else template
        heading = super().localized(translations)
        lines = [
            heading,
            *(
                _localized(problem, translations)
                for problem in self.problems[:MAX_LISTED_PROBLEMS]
            ),
        ]
        hidden = len(self.problems) - MAX_LISTED_PROBLEMS
        if hidden > 0:
            lines.append(translations.gettext("... and {count} more").format(count=hidden))
        return "\n".join(lines)


async def import_file(engine: AsyncEngine, path: Path) -> ImportResult:
    """Import a .csv or .jsonl file in one transaction; any bad row means nothing is applied."""
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        shown = path.suffix or "(no extension)"
        raise ImportFileError(
            N_(
                "Unsupported file type {suffix}: import a .csv file or a .jsonl (JSON Lines) file."
            ),
            suffix=shown,
        )
    try:
        file = path.open("rb")
    except FileNotFoundError:
        raise ImportFileError(N_("File not found: {path}"), path=str(path)) from None
    except OSError as exc:
        raise ImportFileError(
            N_("Cannot read {path}: {reason}"), path=str(path), reason=exc.strerror
        ) from None
    with file:
        reader = _FileReader(file, kind)
        async with engine.begin() as connection, import_cache(connection):
            await create_staging(connection)
            # Parsing runs in a worker thread one batch at a time so a big file never blocks
            # the event loop (the bot keeps answering while an import runs).
            while (batch := await asyncio.to_thread(reader.next_batch, BATCH_SIZE)) is not None:
                # After the first problem the file will be refused: keep validating to report
                # every problem, but stop writing.
                if batch and not reader.problems:
                    await stage_rows(connection, batch)
            if reader.problems:
                raise ImportFileError.from_problems(reader.problems)
            conflict_count, conflicts = await staged_conflicts(connection, MAX_LISTED_PROBLEMS)
            new = await merge_staging(connection)
    result = ImportResult(
        rows=reader.rows,
        new=new,
        duplicates=reader.rows - new,
        conflict_count=conflict_count,
        conflicts=conflicts,
    )
    logger.info(
        "imported %s: %s rows, %s new, %s duplicates, %s conflicting",
        path,
        result.rows,
        result.new,
        result.duplicates,
        result.conflict_count,
    )
    return result


def conflict_report(result: ImportResult, translations: gettext.NullTranslations) -> list[str]:
    """A heading and one line per conflict (the first MAX_LISTED_PROBLEMS), or nothing."""
    if not result.conflict_count:
        return []
    heading = translations.ngettext(
        "{count} appeal in the file disagrees with the stored one (the stored one is kept):",
        "{count} appeals in the file disagree with the stored ones (the stored ones are kept):",
        result.conflict_count,
    ).format(count=result.conflict_count)
    lines = [heading, *(_conflict_line(c, translations) for c in result.conflicts)]
    hidden = result.conflict_count - len(result.conflicts)
    if hidden > 0:
        lines.append(translations.gettext("... and {count} more").format(count=hidden))
    return lines


def _conflict_line(conflict: Conflict, translations: gettext.NullTranslations) -> str:
    return translations.gettext(
        "line {line}: appeal {appeal_id} is stored with client {stored_client}, "
        "{stored_channel} / {stored_app}, {stored_at}; the file says client {client}, "
        "{channel} / {app}, {created_at}"
    ).format(
        line=conflict.line,
        appeal_id=_show(conflict.appeal_id),
        stored_client=_show(conflict.stored_client),
        stored_channel=conflict.stored_channel,
        stored_app=conflict.stored_app,
        stored_at=conflict.stored_at.isoformat(sep=" "),
        client=_show(conflict.client_id),
        channel=conflict.channel,
        app=conflict.app,
        created_at=conflict.created_at.isoformat(sep=" "),
    )


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
            message = Problem(
                number, N_("the line is longer than {size} KB"), size=MAX_LINE_BYTES // 1024
            )
            raise ImportFileError(
                N_("Nothing was imported: {problem}. Is this really a CSV or JSON Lines file?"),
                [message],
                problem=message,
            )
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            message = Problem(number, N_("the text is not UTF-8"))
            raise ImportFileError(
                N_(
                    "Nothing was imported: the file is not UTF-8 text (first bad byte on line "
                    '{line}). Save it as UTF-8 (in Excel: "CSV UTF-8") and import it again.'
                ),
                [message],
                line=number,
            ) from None
        if number == 1:
            line = line.removeprefix("\ufeff")
        yield line


def _csv_problem(line: int, exc: csv.Error) -> "Problem":
    """The csv module's complaint in words an operator can act on."""
    if "new-line character seen in unquoted field" in str(exc):
        # A lone CR (classic Mac OS line end) cannot be told from a break inside a value.
        return Problem(
            line,
            N_(
                "a lone carriage return (CR) outside quotes: save the file with Windows (CRLF) "
                "or Unix (LF) line ends"
            ),
        )
    # The csv module's own words, as they are: there is no catalog of them.
    return Problem(line, "{detail}", detail=str(exc))


def _no_header() -> "Problem":
    return Problem(1, N_("the header row is missing (expected {header})"), header=EXPECTED_HEADER)


def _csv_records(lines: Iterator[str], problems: list[str]) -> Iterator[tuple[int, list[Any]]]:
    """(line where the record starts, values in FIELDS order) for each data row of a CSV."""
    first = next(lines, None)
    if first is None or not first.strip():
        problems.append(_no_header())
        return
    # The header names are known, so the delimiter is whichever candidate the header uses most;
    # ties (a one-column header) fall back to the comma.
    delimiter = max((",", ";", "\t"), key=first.count)
    reader = csv.reader(chain([first], lines), delimiter=delimiter)
    try:
        written = [name.strip() for name in next(reader)]
    except csv.Error as exc:
        problems.append(_csv_problem(1, exc))
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
            problems.append(_csv_problem(start, exc))
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
            problems.append(
                Problem(
                    line,
                    N_("expected {width} fields, found {found}"),
                    width=width,
                    found=len(record),
                )
            )
        else:
            yield line, [record[position] for position in positions]


def _header_ok(written: list[str], header: list[str], problems: list[str]) -> bool:
    """Report header problems on line 1; False when rows cannot be mapped to fields."""
    if not _FIELD_SET.intersection(header):
        problems.append(_no_header())
        return False
    unknown = [name for name, key in zip(written, header, strict=True) if key not in _FIELD_SET]
    missing = [name for name in FIELDS if name not in header]
    repeated = [name for name in FIELDS if header.count(name) > 1]
    if unknown:
        shown = ", ".join(_show(name) for name in unknown)
        problems.append(
            Problem(
                1,
                N_plural(
                    "unknown column {names} (expected {header})",
                    "unknown columns {names} (expected {header})",
                ),
                len(unknown),
                names=shown,
                header=EXPECTED_HEADER,
            )
        )
    if missing:
        problems.append(
            Problem(
                1,
                N_plural(
                    "missing column {names}",
                    "missing columns {names}",
                ),
                len(missing),
                names=", ".join(missing),
            )
        )
    if repeated:
        problems.append(
            Problem(
                1,
                N_plural(
                    "repeated column {names}",
                    "repeated columns {names}",
                ),
                len(repeated),
                names=", ".join(repeated),
            )
        )
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
            # json's own words name the fault (Expecting ',' delimiter): kept as they are.
            problems.append(
                Problem(
                    line,
                    N_("invalid JSON ({detail} at column {column})"),
                    detail=exc.msg,
                    column=exc.colno,
                )
            )
            continue
        except (ValueError, RecursionError):
            # Python refuses integers of thousands of digits and recursion without end.
            problems.append(
                Problem(line, N_("invalid JSON (a number too long or nesting too deep)"))
            )
            continue
        if not isinstance(data, dict):
            problems.append(Problem(line, N_("expected a JSON object")))
            continue
        if data.keys() != _FIELD_SET:
            unknown = [key for key in data if key not in _FIELD_SET]
            missing = [name for name in FIELDS if name not in data]
            if unknown:
                shown = ", ".join(_show(key) for key in unknown)
                problems.append(
                    Problem(
                        line,
                        N_plural(
                            "unknown field {names}",
                            "unknown fields {names}",
                        ),
                        len(unknown),
                        names=shown,
                    )
                )
            if missing:
                problems.append(
                    Problem(
                        line,
                        N_plural(
                            "missing field {names}",
                            "missing fields {names}",
                        ),
                        len(missing),
                        names=", ".join(missing),
                    )
                )
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
            problems.append(Problem(line, N_("{field} must be a string"), field=name))
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
            problems.append(Problem(line, N_("{field} is empty"), field=name))
            ok = False
        elif len(value) > NAME_MAX:
            problems.append(
                Problem(
                    line,
                    N_plural(
                        "{field} is longer than {count} character",
                        "{field} is longer than {count} characters",
                    ),
                    NAME_MAX,
                    field=name,
                )
            )
            ok = False
        elif "\x00" in value:
            # PostgreSQL text cannot hold NUL; refusing it keeps both backends alike.
            problems.append(Problem(line, N_("{field} contains a NUL character"), field=name))
            ok = False
        elif not _encodable(value):
            # A lone surrogate (JSON "\ud800") is no text: the database driver would fail.
            problems.append(
                Problem(line, N_("{field} contains invalid text (a lone surrogate)"), field=name)
            )
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
        problems.append(
            Problem(
                line, N_("created_at {value} is not an ISO 8601 timestamp"), value=_show(stamp)
            )
        )
        return None
    if moment.tzinfo is None:
        # A local time without its offset is ambiguous: guessing would shift reports by hours.
        problems.append(
            Problem(
                line,
                N_("created_at {value} has no UTC offset (add Z or an offset such as +03:00)"),
                value=_show(stamp),
            )
        )
        return None
    try:
        instant = moment.astimezone(UTC)
    except OverflowError:
        problems.append(
            Problem(line, N_("created_at {value} is out of range"), value=_show(stamp))
        )
        return None
    if not EARLIEST <= instant < LATEST:
        # A zero, a typo or a placeholder date: no real appeal is dated outside 2000-2099.
        problems.append(
            Problem(line, N_("created_at {value} is outside 2000-2099"), value=_show(stamp))
        )
        return None
    return instant


def _encodable(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _show(value: str) -> str:
    """A value quoted for a message: cut to a readable length, line breaks made visible."""
    if len(value) > SHOWN_VALUE_MAX:
        value = value[:SHOWN_VALUE_MAX] + "…"
    value = "".join(char if char.isprintable() else f"\\x{ord(char):02x}" for char in value)
    return f"'{value}'"


def validate_json_lines(lines: Iterable[str]) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows and problems ("line N: reason") of import records given as JSON lines.

    The HTTP API validates exactly like a file import: same reasons, same all-or-nothing.
    """
    problems: list[str] = []
    rows = []
    for line, values in _jsonl_records(iter(lines), problems):
        row = _validate(line, values, problems)
        if row is not None:
            rows.append(row)
    return rows, problems
