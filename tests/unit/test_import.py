"""The importer: formats, line-numbered problems, all or nothing, idempotency, first appeals."""

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

import bot.ingest.files as importer
from bot.ingest.files import ImportFileError, import_file
from bot.ingest.merge import ImportResult
from reports.i18n import translator
from reports.schema import appeals, apps, clients
from tests.datasets import stored_appeals

HEADER = "appeal_id,client_id,channel,app,created_at\n"


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        # newline="" keeps the exact line endings the test wrote.
        with path.open("w", encoding="utf-8", newline="") as file:
            file.write(content)
    return path


def jsonl(*records: dict[str, object]) -> str:
    return "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)


def record(
    appeal_id: str,
    client_id: str = "c1",
    channel: str = "whatsapp",
    app: str = "Sales",
    created_at: str = "2026-11-01T10:00:00Z",
) -> dict[str, object]:
    return {
        "appeal_id": appeal_id,
        "client_id": client_id,
        "channel": channel,
        "app": app,
        "created_at": created_at,
    }


async def counts(engine: AsyncEngine) -> tuple[int, int, int]:
    async with engine.connect() as connection:
        result = []
        for table in (apps, clients, appeals):
            count = select(func.count()).select_from(table)
            result.append((await connection.execute(count)).scalar_one())
    return result[0], result[1], result[2]


async def first_appeal(engine: AsyncEngine, client: str) -> tuple[datetime, str]:
    """The client's stored first_appeal_at and the external id of its first_appeal_id."""
    query = (
        select(clients.c.first_appeal_at, appeals.c.external_id)
        .join(appeals, appeals.c.id == clients.c.first_appeal_id)
        .where(clients.c.external_id == client)
    )
    async with engine.connect() as connection:
        row = (await connection.execute(query)).one()
    return row[0], row[1]


async def refused(engine: AsyncEngine, path: Path) -> ImportFileError:
    with pytest.raises(ImportFileError) as caught:
        await import_file(engine, path)
    return caught.value


# --- bad rows: exact message, line number, nothing applied --------------------------------------

GOOD = "a1,c1,whatsapp,Sales,2026-11-01T10:00:00Z\n"

BAD_CSV_ROWS = [
    pytest.param(
        GOOD + "a2,c1,whatsapp,2026-11-01T10:00:00Z\n",
        "line 3: expected 5 fields, found 4",
        id="missing-field",
    ),
    pytest.param(
        GOOD + "a2,c1,whatsapp,Sales,2026-11-01T10:00:00Z,extra\n",
        "line 3: expected 5 fields, found 6",
        id="extra-field",
    ),
    pytest.param(
        GOOD + "  ,c1,whatsapp,Sales,2026-11-01T10:00:00Z\n",
        "line 3: appeal_id is empty",
        id="empty-appeal-id",
    ),
    pytest.param(
        GOOD + "a2,,whatsapp,Sales,2026-11-01T10:00:00Z\n",
        "line 3: client_id is empty",
        id="empty-client-id",
    ),
    pytest.param(
        GOOD + "a2,c1, ,Sales,2026-11-01T10:00:00Z\n",
        "line 3: channel is empty",
        id="empty-channel",
    ),
    pytest.param(
        GOOD + "a2,c1,whatsapp,,2026-11-01T10:00:00Z\n",
        "line 3: app is empty",
        id="empty-app",
    ),
    pytest.param(
        GOOD + "a2,c1,whatsapp,Sales,\n",
        "line 3: created_at is empty",
        id="empty-created-at",
    ),
    pytest.param(
        GOOD + "a2,c1,whatsapp,Sales,yesterday\n",
        "line 3: created_at 'yesterday' is not an ISO 8601 timestamp",
        id="unparseable-timestamp",
    ),
    pytest.param(
        GOOD + "a2,c1,whatsapp,Sales,2026-13-01T10:00:00Z\n",
        "line 3: created_at '2026-13-01T10:00:00Z' is not an ISO 8601 timestamp",
        id="impossible-month",
    ),
    pytest.param(
        GOOD + "a2,c1,whatsapp,Sales,2026-11-01T10:00:00\n",
        "line 3: created_at '2026-11-01T10:00:00' has no UTC offset "
        "(add Z or an offset such as +03:00)",
        id="no-offset",
    ),
    pytest.param(
        GOOD + "a2,c1,whatsapp,Sales,2026-11-01\n",
        "line 3: created_at '2026-11-01' has no UTC offset (add Z or an offset such as +03:00)",
        id="date-only",
    ),
    pytest.param(
        GOOD + f"{'x' * 201},c1,whatsapp,Sales,2026-11-01T10:00:00Z\n",
        "line 3: appeal_id is longer than 200 characters",
        id="long-appeal-id",
    ),
    pytest.param(
        GOOD + f"a2,{'c' * 201},whatsapp,Sales,2026-11-01T10:00:00Z\n",
        "line 3: client_id is longer than 200 characters",
        id="long-client-id",
    ),
    pytest.param(
        GOOD + f"a2,c1,{'w' * 201},Sales,2026-11-01T10:00:00Z\n",
        "line 3: channel is longer than 200 characters",
        id="long-channel",
    ),
    pytest.param(
        GOOD + f"a2,c1,whatsapp,{'S' * 201},2026-11-01T10:00:00Z\n",
        "line 3: app is longer than 200 characters",
        id="long-app",
    ),
    pytest.param(
        GOOD + f"a2,c1,whatsapp,Sales,2026-11-01T10:00:00Z{' ' * 190}0\n",
        "line 3: created_at is longer than 200 characters",
        id="long-created-at",
    ),
    pytest.param(
        GOOD + "a2,c1,whatsapp,Sa\x00les,2026-11-01T10:00:00Z\n",
        "line 3: app contains a NUL character",
        id="nul",
    ),
    pytest.param(
        GOOD + "a2,c1,whatsapp,Sales,0001-01-01T00:00:00+03:00\n",
        "line 3: created_at '0001-01-01T00:00:00+03:00' is out of range",
        id="out-of-range",
    ),
]


@pytest.mark.parametrize(("rows", "problem"), BAD_CSV_ROWS)
async def test_bad_csv_row_is_reported_with_its_line_and_nothing_is_applied(
    engine: AsyncEngine, tmp_path: Path, rows: str, problem: str
) -> None:
    error = await refused(engine, write(tmp_path, "appeals.csv", HEADER + rows))
    assert str(error) == f"Nothing was imported: the file has 1 problem.\n{problem}"
    assert error.problems == [problem]
    assert await counts(engine) == (0, 0, 0)


BAD_JSONL_LINES = [
    pytest.param(
        jsonl(record("a1"), {k: v for k, v in record("a2").items() if k != "app"}),
        "line 2: missing field app",
        id="missing-key",
    ),
    pytest.param(
        jsonl(record("a1"), {**record("a2"), "priority": "high"}),
        "line 2: unknown field 'priority'",
        id="unknown-key",
    ),
    pytest.param(
        jsonl(record("a1")) + '{"appeal_id": "a2",\n',
        "line 2: invalid JSON (Expecting property name enclosed in double quotes at column 20)",
        id="invalid-json",
    ),
    pytest.param(
        jsonl(record("a1")) + '["a2", "c1"]\n',
        "line 2: expected a JSON object",
        id="not-an-object",
    ),
    pytest.param(
        jsonl(record("a1"), {**record("a2"), "created_at": 1762000000}),
        "line 2: created_at must be a string",
        id="number-timestamp",
    ),
    pytest.param(
        jsonl(record("a1"), {**record("a2"), "client_id": None}),
        "line 2: client_id must be a string",
        id="null-id",
    ),
    pytest.param(
        jsonl(record("a1"), record("a2", created_at="2026-11-01T10:00:00")),
        "line 2: created_at '2026-11-01T10:00:00' has no UTC offset "
        "(add Z or an offset such as +03:00)",
        id="no-offset",
    ),
    pytest.param(
        jsonl(record("a1"), record("  ")),
        "line 2: appeal_id is empty",
        id="empty-id",
    ),
]


@pytest.mark.parametrize(("content", "problem"), BAD_JSONL_LINES)
async def test_bad_jsonl_line_is_reported_with_its_line_and_nothing_is_applied(
    engine: AsyncEngine, tmp_path: Path, content: str, problem: str
) -> None:
    error = await refused(engine, write(tmp_path, "appeals.jsonl", content))
    assert str(error) == f"Nothing was imported: the file has 1 problem.\n{problem}"
    assert error.problems == [problem]
    assert await counts(engine) == (0, 0, 0)


async def test_unknown_csv_column_is_one_header_problem(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    content = (
        "appeal_id,client_id,channel,app,created_at,priority\n"
        "a1,c1,whatsapp,Sales,2026-11-01T10:00:00Z,high\n"
        "a2,c1,whatsapp,Sales,2026-11-01T10:00:00Z,low\n"
    )
    error = await refused(engine, write(tmp_path, "appeals.csv", content))
    assert str(error) == (
        "Nothing was imported: the file has 1 problem.\n"
        "line 1: unknown column 'priority' "
        "(expected appeal_id, client_id, channel, app, created_at)"
    )
    assert await counts(engine) == (0, 0, 0)


async def test_missing_csv_column_stops_at_the_header(engine: AsyncEngine, tmp_path: Path) -> None:
    content = "appeal_id,client_id,channel,created_at\na1,c1,whatsapp,2026-11-01T10:00:00Z\n"
    error = await refused(engine, write(tmp_path, "appeals.csv", content))
    assert error.problems == ["line 1: missing column app"]


async def test_csv_without_header_says_what_header_is_expected(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    error = await refused(engine, write(tmp_path, "appeals.csv", GOOD))
    assert error.problems == [
        "line 1: the header row is missing "
        "(expected appeal_id, client_id, channel, app, created_at)"
    ]


async def test_unknown_csv_columns_are_quoted_as_written(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    content = "appeal_id,client_id,Channel,application,Created,app\n"
    error = await refused(engine, write(tmp_path, "appeals.csv", content))
    assert error.problems == [
        "line 1: unknown columns 'application', 'Created' "
        "(expected appeal_id, client_id, channel, app, created_at)",
        "line 1: missing column created_at",
    ]


async def test_empty_csv_is_refused(engine: AsyncEngine, tmp_path: Path) -> None:
    error = await refused(engine, write(tmp_path, "appeals.csv", ""))
    assert error.problems == [
        "line 1: the header row is missing "
        "(expected appeal_id, client_id, channel, app, created_at)"
    ]


async def test_a_good_and_a_bad_row_apply_nothing_and_keep_existing_data(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    await import_file(engine, write(tmp_path, "first.csv", HEADER + GOOD))
    before = await stored_appeals(engine)
    content = (
        HEADER
        + "old,c1,whatsapp,Sales,2026-10-01T10:00:00Z\n"  # would move c1's first appeal
        + "a3,c9,telegram,New bot,2026-11-02T10:00:00Z\n"
        + "a4,c9,telegram,New bot,not a date\n"
    )
    error = await refused(engine, write(tmp_path, "second.csv", content))
    assert error.problems == ["line 4: created_at 'not a date' is not an ISO 8601 timestamp"]
    assert await counts(engine) == (1, 1, 1)
    assert await stored_appeals(engine) == before
    assert await first_appeal(engine, "c1") == (datetime(2026, 11, 1, 10, tzinfo=UTC), "a1")


async def test_every_problem_is_collected_and_the_message_lists_the_first_hundred(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    rows = "".join(f"a{n},c1,whatsapp,Sales,bad{n}\n" for n in range(105))
    error = await refused(engine, write(tmp_path, "appeals.csv", HEADER + GOOD + rows))
    assert len(error.problems) == 105
    assert error.problems[0] == "line 3: created_at 'bad0' is not an ISO 8601 timestamp"
    assert error.problems[-1] == "line 107: created_at 'bad104' is not an ISO 8601 timestamp"
    lines = str(error).split("\n")
    assert lines[0] == "Nothing was imported: the file has 105 problems."
    assert lines[1:101] == error.problems[:100]
    assert lines[101:] == ["... and 5 more"]
    assert await counts(engine) == (0, 0, 0)


@pytest.mark.parametrize(
    ("count", "heading"),
    [
        (1, "Ничего не импортировано: в файле 1 ошибка."),
        (3, "Ничего не импортировано: в файле 3 ошибки."),
        (5, "Ничего не импортировано: в файле 5 ошибок."),
        (11, "Ничего не импортировано: в файле 11 ошибок."),
        (21, "Ничего не импортировано: в файле 21 ошибка."),
    ],
)
def test_the_problem_count_takes_the_russian_plural_form(count: int, heading: str) -> None:
    problems = [f"line {n + 2}: created_at is empty" for n in range(count)]
    text = ImportFileError.from_problems(problems).localized(translator("ru"))
    assert text.split("\n") == [heading, *problems]


def test_the_hidden_problems_line_is_translated_too() -> None:
    problems = [f"line {n + 2}: created_at is empty" for n in range(102)]
    text = ImportFileError.from_problems(problems).localized(translator("ru"))
    assert text.split("\n")[-1] == "... и ещё 2"


async def test_each_problem_line_is_said_in_the_operators_language(
    sqlite_engine: AsyncEngine, tmp_path: Path
) -> None:
    content = "appeal_id,client_id,channel,app,created_at,priority,owner\n"
    error = await refused(sqlite_engine, write(tmp_path, "appeals.csv", content))
    assert error.localized(translator("en")).split("\n") == [
        "Nothing was imported: the file has 1 problem.",
        "line 1: unknown columns 'priority', 'owner' "
        "(expected appeal_id, client_id, channel, app, created_at)",
    ]
    assert error.localized(translator("ru")).split("\n") == [
        "Ничего не импортировано: в файле 1 ошибка.",
        "строка 1: неизвестные столбцы 'priority', 'owner' "
        "(ожидается appeal_id, client_id, channel, app, created_at)",
    ]
    rows = ",c1,whatsapp,Sales,2026-11-01T10:00:00\na2,c1,vk,Main,2026-11-01\n"
    error = await refused(sqlite_engine, write(tmp_path, "rows.csv", HEADER + rows))
    assert error.localized(translator("ru")).split("\n") == [
        "Ничего не импортировано: в файле 3 ошибки.",
        "строка 2: appeal_id пусто",
        "строка 2: у created_at '2026-11-01T10:00:00' нет смещения от UTC (добавьте Z или "
        "смещение, например +03:00)",
        "строка 3: у created_at '2026-11-01' нет смещения от UTC (добавьте Z или смещение, "
        "например +03:00)",
    ]
    # The HTTP API reports the same problems in English, whatever the operator's language.
    assert error.problems[0] == "line 2: appeal_id is empty"


async def test_several_problems_of_one_row_are_all_reported(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    content = HEADER + ",c1,,Sales,2026-11-01T10:00:00\n"
    error = await refused(engine, write(tmp_path, "appeals.csv", content))
    assert error.problems == [
        "line 2: appeal_id is empty",
        "line 2: channel is empty",
        "line 2: created_at '2026-11-01T10:00:00' has no UTC offset "
        "(add Z or an offset such as +03:00)",
    ]


async def test_problems_after_many_batches_still_roll_back(
    engine: AsyncEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(importer, "BATCH_SIZE", 3)
    rows = "".join(f"a{n},c{n % 4},whatsapp,Sales,2026-11-01T10:00:{n:02d}Z\n" for n in range(20))
    path = write(tmp_path, "appeals.csv", HEADER + rows + "a99,c1,whatsapp,Sales,\n")
    error = await refused(engine, path)
    assert error.problems == ["line 22: created_at is empty"]
    assert await counts(engine) == (0, 0, 0)


# --- file-level errors --------------------------------------------------------------------------


async def test_non_utf8_file_is_one_clear_error(engine: AsyncEngine, tmp_path: Path) -> None:
    content = (HEADER + GOOD + "a2,c1,vk,Сообщество,2026-11-01T10:00:00Z\n").encode("cp1251")
    error = await refused(engine, write(tmp_path, "appeals.csv", content))
    assert str(error) == (
        "Nothing was imported: the file is not UTF-8 text (first bad byte on line 3). "
        'Save it as UTF-8 (in Excel: "CSV UTF-8") and import it again.'
    )
    assert error.problems == ["line 3: the text is not UTF-8"]
    assert await counts(engine) == (0, 0, 0)


@pytest.mark.parametrize("name", ["appeals.xlsx", "appeals.json", "appeals"])
async def test_unsupported_extension_is_refused(
    engine: AsyncEngine, tmp_path: Path, name: str
) -> None:
    error = await refused(engine, write(tmp_path, name, HEADER + GOOD))
    suffix = Path(name).suffix or "(no extension)"
    assert str(error) == (
        f"Unsupported file type {suffix}: import a .csv file or a .jsonl (JSON Lines) file."
    )
    assert error.problems == []
    assert await counts(engine) == (0, 0, 0)


async def test_missing_file_is_a_clear_error(sqlite_engine: AsyncEngine, tmp_path: Path) -> None:
    error = await refused(sqlite_engine, tmp_path / "nowhere.csv")
    assert str(error) == f"File not found: {tmp_path / 'nowhere.csv'}"


# --- what a good file stores ------------------------------------------------------------------


async def test_csv_and_jsonl_store_the_same_data(engine: AsyncEngine, tmp_path: Path) -> None:
    csv_path = write(
        tmp_path,
        "appeals.CSV",
        HEADER
        + "a1,c1, WhatsApp ,  Sales  ,2026-11-01T10:00:00Z\n"
        + "a2,c2,TELEGRAM,Support bot,2026-11-01T11:00:00+03:00\n",
    )
    assert await import_file(engine, csv_path) == ImportResult(rows=2, new=2, duplicates=0)
    from_csv = await stored_appeals(engine)
    assert from_csv == [
        ("a1", "c1", "whatsapp", "Sales", datetime(2026, 11, 1, 10, tzinfo=UTC)),
        ("a2", "c2", "telegram", "Support bot", datetime(2026, 11, 1, 8, tzinfo=UTC)),
    ]
    jsonl_path = write(
        tmp_path,
        "appeals.ndjson",
        jsonl(
            record("a1", "c1", " WhatsApp ", "  Sales  ", "2026-11-01T10:00:00Z"),
            record("a2", "c2", "TELEGRAM", "Support bot", "2026-11-01T11:00:00+03:00"),
        ),
    )
    assert await import_file(engine, jsonl_path) == ImportResult(rows=2, new=0, duplicates=2)
    assert await stored_appeals(engine) == from_csv


async def test_jsonl_skips_blank_lines_and_counts_them_in_line_numbers(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    content = "\n" + jsonl(record("a1")) + "   \n\n" + jsonl(record("a2", created_at="x"))
    error = await refused(engine, write(tmp_path, "appeals.jsonl", content))
    assert error.problems == ["line 5: created_at 'x' is not an ISO 8601 timestamp"]
    path = write(tmp_path, "good.jsonl", "\n" + jsonl(record("a1")) + "\n\n" + jsonl(record("a2")))
    assert await import_file(engine, path) == ImportResult(rows=2, new=2, duplicates=0)


async def test_jsonl_accepts_numeric_ids(engine: AsyncEngine, tmp_path: Path) -> None:
    content = jsonl({**record("x"), "appeal_id": 1001, "client_id": 42})
    await import_file(engine, write(tmp_path, "appeals.jsonl", content))
    assert [row[:2] for row in await stored_appeals(engine)] == [("1001", "42")]


async def test_offsets_are_stored_as_the_right_utc_instant(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    content = (
        HEADER
        + "msk,c1,vk,main,2026-11-01T10:00:00+03:00\n"
        + "zulu,c1,vk,main,2026-11-01T10:00:00Z\n"
        + "ny,c1,vk,main,2026-11-01T10:00:00-05:00\n"
        + "frac,c1,vk,main,2026-11-01T23:30:00.250+05:30\n"
    )
    await import_file(engine, write(tmp_path, "appeals.csv", content))
    assert {row[0]: row[4] for row in await stored_appeals(engine)} == {
        "msk": datetime(2026, 11, 1, 7, tzinfo=UTC),
        "zulu": datetime(2026, 11, 1, 10, tzinfo=UTC),
        "ny": datetime(2026, 11, 1, 15, tzinfo=UTC),
        "frac": datetime(2026, 11, 1, 18, 0, 0, 250_000, tzinfo=UTC),
    }
    # Stored instants compare as instants: the Moscow appeal is c1's first.
    assert await first_appeal(engine, "c1") == (datetime(2026, 11, 1, 7, tzinfo=UTC), "msk")


async def test_semicolon_csv(engine: AsyncEngine, tmp_path: Path) -> None:
    content = (
        "appeal_id;client_id;channel;app;created_at\r\n"
        "a1;c1;whatsapp;Sales, North;2026-11-01T10:00:00Z\r\n"
    )
    assert await import_file(engine, write(tmp_path, "appeals.csv", content)) == ImportResult(
        rows=1, new=1, duplicates=0
    )
    assert [row[3] for row in await stored_appeals(engine)] == ["Sales, North"]


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("appeals.csv", HEADER + GOOD),
        ("appeals.jsonl", jsonl(record("a1"))),
    ],
)
async def test_utf8_bom_is_accepted(
    engine: AsyncEngine, tmp_path: Path, name: str, content: str
) -> None:
    path = write(tmp_path, name, b"\xef\xbb\xbf" + content.encode("utf-8"))
    assert await import_file(engine, path) == ImportResult(rows=1, new=1, duplicates=0)
    assert [row[0] for row in await stored_appeals(engine)] == ["a1"]


async def test_quoted_field_with_newline_and_comma(engine: AsyncEngine, tmp_path: Path) -> None:
    content = (
        HEADER
        + 'a1,c1,whatsapp,"Sales, North\nDesk",2026-11-01T10:00:00Z\n'
        + '"a,2",c1,whatsapp,"He said ""hi""",2026-11-01T11:00:00Z\n'
    )
    await import_file(engine, write(tmp_path, "appeals.csv", content))
    assert [(row[0], row[3]) for row in await stored_appeals(engine)] == [
        ("a1", "Sales, North\nDesk"),
        ("a,2", 'He said "hi"'),
    ]


async def test_line_numbers_after_a_multiline_record_are_physical_lines(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    content = (
        HEADER
        + 'a1,c1,whatsapp,"Sales\nNorth\nDesk",2026-11-01T10:00:00Z\n'  # lines 2-4
        + 'a2,c1,whatsapp,"Two\nlines",oops\n'  # lines 5-6: reported where it starts
        + "a3,c1,whatsapp,Sales,\n"  # line 7
    )
    error = await refused(engine, write(tmp_path, "appeals.csv", content))
    assert error.problems == [
        "line 5: created_at 'oops' is not an ISO 8601 timestamp",
        "line 7: created_at is empty",
    ]


async def test_blank_and_all_empty_csv_rows_are_skipped(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    content = HEADER + "\n" + GOOD + ",,,,\n\n"
    assert await import_file(engine, write(tmp_path, "appeals.csv", content)) == ImportResult(
        rows=1, new=1, duplicates=0
    )


async def test_header_names_are_matched_in_any_order_and_case(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    content = " Created_At ,APP,channel,client_id,appeal_id\n2026-11-01T10:00:00Z,Sales,vk,c1,a1\n"
    await import_file(engine, write(tmp_path, "appeals.csv", content))
    assert await stored_appeals(engine) == [
        ("a1", "c1", "vk", "Sales", datetime(2026, 11, 1, 10, tzinfo=UTC))
    ]


async def test_cyrillic_and_hostile_names_round_trip_exactly(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    names = ["Продажи «Север»", "Sales & Partners <VIP>", "Поддержка 24/7 — ёлка"]
    content = jsonl(
        *(
            record(f"a{n}", client_id=f"клиент-{n}", channel="Telegram", app=name)
            for n, name in enumerate(names)
        )
    )
    await import_file(engine, write(tmp_path, "appeals.jsonl", content))
    rows = await stored_appeals(engine)
    assert [(row[1], row[2], row[3]) for row in rows] == [
        (f"клиент-{n}", "telegram", name) for n, name in enumerate(names)
    ]
    async with engine.connect() as connection:
        stored = (await connection.execute(select(apps.c.name).order_by(apps.c.id))).scalars()
        assert sorted(stored) == sorted(names)


# --- idempotency ------------------------------------------------------------------------------


async def test_importing_the_same_file_twice_adds_nothing(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    content = HEADER + "".join(
        f"a{n},c{n % 3},whatsapp,Sales,2026-11-0{1 + n % 5}T10:00:00Z\n" for n in range(10)
    )
    path = write(tmp_path, "appeals.csv", content)
    assert await import_file(engine, path) == ImportResult(rows=10, new=10, duplicates=0)
    before = await stored_appeals(engine)
    assert await import_file(engine, path) == ImportResult(rows=10, new=0, duplicates=10)
    assert await stored_appeals(engine) == before
    assert await counts(engine) == (1, 3, 10)


async def test_duplicate_inside_one_file_keeps_the_first_occurrence(
    engine: AsyncEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small batches: the repeat lands in another batch than the original.
    monkeypatch.setattr(importer, "BATCH_SIZE", 2)
    content = (
        HEADER
        + "a1,c1,whatsapp,Sales,2026-11-01T10:00:00Z\n"
        + "a2,c2,whatsapp,Sales,2026-11-01T11:00:00Z\n"
        + "a3,c2,whatsapp,Sales,2026-11-01T12:00:00Z\n"
        + "a1,c9,telegram,Other,2026-10-01T10:00:00Z\n"
    )
    result = await import_file(engine, write(tmp_path, "appeals.csv", content))
    assert result == ImportResult(rows=4, new=3, duplicates=1)
    assert (await stored_appeals(engine))[0] == (
        "a1",
        "c1",
        "whatsapp",
        "Sales",
        datetime(2026, 11, 1, 10, tzinfo=UTC),
    )
    # The ignored row creates neither its client nor its app.
    assert await counts(engine) == (1, 2, 3)


async def test_partly_new_file_adds_only_the_new_rows(engine: AsyncEngine, tmp_path: Path) -> None:
    await import_file(engine, write(tmp_path, "first.csv", HEADER + GOOD))
    content = HEADER + GOOD + "a2,c2,vk,main,2026-11-02T10:00:00Z\n"
    result = await import_file(engine, write(tmp_path, "second.csv", content))
    assert result == ImportResult(rows=2, new=1, duplicates=1)
    assert await counts(engine) == (2, 2, 2)


async def test_header_only_file_imports_nothing(engine: AsyncEngine, tmp_path: Path) -> None:
    result = await import_file(engine, write(tmp_path, "appeals.csv", HEADER))
    assert result == ImportResult(rows=0, new=0, duplicates=0)


# --- first appeal of each client ----------------------------------------------------------------


async def test_older_appeal_imported_later_moves_the_first_appeal(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    await import_file(
        engine,
        write(
            tmp_path,
            "november.csv",
            HEADER
            + "nov1,c1,whatsapp,Sales,2026-11-01T10:00:00Z\n"
            + "nov2,c1,whatsapp,Sales,2026-11-02T10:00:00Z\n"
            + "other,c2,whatsapp,Sales,2026-11-03T10:00:00Z\n",
        ),
    )
    assert await first_appeal(engine, "c1") == (datetime(2026, 11, 1, 10, tzinfo=UTC), "nov1")
    await import_file(
        engine,
        write(
            tmp_path,
            "october.csv",
            HEADER
            + "oct,c1,telegram,Support bot,2026-10-15T09:00:00+03:00\n"
            + "late,c2,whatsapp,Sales,2026-11-20T10:00:00Z\n",
        ),
    )
    assert await first_appeal(engine, "c1") == (datetime(2026, 10, 15, 6, tzinfo=UTC), "oct")
    # A later appeal leaves the first one where it is.
    assert await first_appeal(engine, "c2") == (datetime(2026, 11, 3, 10, tzinfo=UTC), "other")


async def test_first_appeal_of_new_clients_is_the_earliest_in_the_file(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    content = (
        HEADER
        + "late,c1,whatsapp,Sales,2026-11-05T10:00:00Z\n"
        + "early,c1,whatsapp,Sales,2026-11-01T10:00:00Z\n"
    )
    await import_file(engine, write(tmp_path, "appeals.csv", content))
    assert await first_appeal(engine, "c1") == (datetime(2026, 11, 1, 10, tzinfo=UTC), "early")


async def test_tie_at_the_same_instant_goes_to_the_smaller_id(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    # The same instant written two ways; the earlier line gets the smaller internal id.
    content = (
        HEADER
        + "first,c1,whatsapp,Sales,2026-11-01T13:00:00+03:00\n"
        + "second,c1,telegram,Support bot,2026-11-01T10:00:00Z\n"
    )
    await import_file(engine, write(tmp_path, "appeals.csv", content))
    assert await first_appeal(engine, "c1") == (datetime(2026, 11, 1, 10, tzinfo=UTC), "first")
    # An appeal at that instant imported later has a larger id: the first appeal stays.
    later = HEADER + "third,c1,vk,main,2026-11-01T10:00:00Z\n"
    await import_file(engine, write(tmp_path, "later.csv", later))
    assert await first_appeal(engine, "c1") == (datetime(2026, 11, 1, 10, tzinfo=UTC), "first")


async def test_sqlite_staging_table_left_by_a_refused_import_does_not_block_the_next(
    sqlite_engine: AsyncEngine, tmp_path: Path
) -> None:
    bad = write(tmp_path, "bad.csv", HEADER + GOOD + "a2,c1,vk,main,nope\n")
    for _ in range(2):
        await refused(sqlite_engine, bad)
    good = write(tmp_path, "good.csv", HEADER + GOOD)
    assert await import_file(sqlite_engine, good) == ImportResult(rows=1, new=1, duplicates=0)


async def test_failure_while_applying_rolls_back_what_was_already_written(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    # Apps and clients are written before appeals; a failure then must undo them too.
    def failing(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        if statement.startswith("INSERT INTO appeals"):
            raise RuntimeError("disk full")

    event.listen(engine.sync_engine, "before_cursor_execute", failing)
    try:
        with pytest.raises(RuntimeError, match="disk full"):
            await import_file(engine, write(tmp_path, "appeals.csv", HEADER + GOOD))
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", failing)
    assert await counts(engine) == (0, 0, 0)
    path = write(tmp_path, "appeals.csv", HEADER + GOOD)
    assert await import_file(engine, path) == ImportResult(rows=1, new=1, duplicates=0)


async def test_mixed_line_endings_load_every_row(engine: AsyncEngine, tmp_path: Path) -> None:
    # Files stitched together by hand mix Windows and Unix line ends.
    content = (
        "appeal_id,client_id,channel,app,created_at\r\n"
        "m1,c1,vk,Main,2026-11-01T10:00:00Z\n"
        "m2,c2,vk,Main,2026-11-01T11:00:00Z\r\n"
        "m3,c3,vk,Main,2026-11-01T12:00:00Z\n"
        "m4,c4,vk,Main,2026-11-01T13:00:00Z"
    )
    result = await import_file(engine, write(tmp_path, "mixed.csv", content))
    assert result == ImportResult(rows=4, new=4, duplicates=0)
    assert [row[0] for row in await stored_appeals(engine)] == ["m1", "m2", "m3", "m4"]


async def test_a_lone_carriage_return_is_refused_with_a_clear_reason(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    content = HEADER + "m1,c1,vk,Main,2026-11-01T10:00:00Z\rm2,c2,vk,Main,2026-11-01T11:00:00Z\n"
    with pytest.raises(ImportFileError) as error:
        await import_file(engine, write(tmp_path, "old_mac.csv", content))
    assert error.value.problems == [
        "line 2: a lone carriage return (CR) outside quotes: save the file with Windows (CRLF) "
        "or Unix (LF) line ends"
    ]
    assert await counts(engine) == (0, 0, 0)


async def test_ten_thousand_character_field_is_refused_with_its_line(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    huge = "x" * 10_000
    content = (
        HEADER + "a1,c1,vk,Main,2026-11-01T10:00:00Z\n" + f"a2,c2,vk,{huge},2026-11-01T10:00:00Z\n"
    )
    with pytest.raises(ImportFileError) as error:
        await import_file(engine, write(tmp_path, "huge.csv", content))
    assert error.value.problems == ["line 3: app is longer than 200 characters"]
    assert huge not in error.value.message
    assert await counts(engine) == (0, 0, 0)


async def test_a_large_file_is_streamed_in_bounded_memory(
    sqlite_engine: AsyncEngine, tmp_path: Path
) -> None:
    """Stands in for "a billion-row claim": nothing scales with the file but the database."""
    import tracemalloc

    path = tmp_path / "large.csv"
    with path.open("w", encoding="utf-8") as file:
        file.write(HEADER)
        for number in range(120_000):
            file.write(f"a{number},c{number % 9000},vk,Main,2026-11-01T10:00:{number % 60:02d}Z\n")
    tracemalloc.start()
    try:
        result = await import_file(sqlite_engine, path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result == ImportResult(rows=120_000, new=120_000, duplicates=0)
    # 120,000 rows are ~6 MB of text; holding them as Python objects would take far more.
    assert peak < 20 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB"


async def test_a_reimported_appeal_with_another_client_or_time_is_a_conflict_by_line(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    first = (
        HEADER
        + "a1,c1,whatsapp,Sales,2026-11-01T10:00:00Z\n"
        + "a2,c2,whatsapp,Sales,2026-11-01T11:00:00Z\n"
    )
    assert await import_file(engine, write(tmp_path, "first.csv", first)) == ImportResult(
        rows=2, new=2, duplicates=0
    )
    before = await stored_appeals(engine)
    second = (
        HEADER
        + "a1,c1,whatsapp,Sales,2026-11-01T10:00:00Z\n"  # the same: a plain duplicate
        + "a2,c9,whatsapp,Sales,2026-11-01T11:00:00Z\n"  # another client
        + "a3,c3,whatsapp,Sales,2026-11-02T10:00:00Z\n"
        + "a1,c1,whatsapp,Sales,2026-11-01T13:00:00+03:00\n"  # the same instant: no conflict
        + "a1,c1,whatsapp,Sales,2026-11-01T12:00:00Z\n"  # another time
    )
    result = await import_file(engine, write(tmp_path, "second.csv", second))

    assert (result.rows, result.new, result.duplicates) == (5, 1, 4)
    assert [(c.line, c.appeal_id) for c in result.conflicts] == [(3, "a2"), (6, "a1")]
    assert result.conflict_count == 2
    # The stored rows are kept as they were.
    assert (await stored_appeals(engine))[:2] == before
    lines = importer.conflict_report(result, translator("en"))
    assert lines == [
        "2 appeals in the file disagree with the stored ones (the stored ones are kept):",
        "line 3: appeal 'a2' is stored with client 'c2', whatsapp / Sales, "
        "2026-11-01 11:00:00+00:00; the file says client 'c9', whatsapp / Sales, "
        "2026-11-01 11:00:00+00:00",
        "line 6: appeal 'a1' is stored with client 'c1', whatsapp / Sales, "
        "2026-11-01 10:00:00+00:00; the file says client 'c1', whatsapp / Sales, "
        "2026-11-01 12:00:00+00:00",
    ]
    assert importer.conflict_report(result, translator("ru"))[0] == (
        "2 обращения в файле расходятся с сохранёнными (сохранённые оставлены без изменений):"
    )
