"""Import lines that would crash a JSON parser get line-numbered problems; nothing is stored."""

from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.ingest.files import ImportFileError, import_file
from reports.schema import appeals

GOOD = (
    '{"appeal_id": "a1", "client_id": "c1", "channel": "vk", "app": "main", '
    '"created_at": "2026-11-01T10:00:00Z"}'
)


@pytest.mark.parametrize(
    "bad_line",
    [
        '{"appeal_id": ' + "9" * 5000 + ', "client_id": "c", "channel": "vk", "app": "m", '
        '"created_at": "2026-11-01T10:00:00Z"}',
        "[" * 100_000 + "]" * 100_000,
    ],
    ids=["5000-digit number", "100000 nested brackets"],
)
async def test_a_line_python_cannot_parse_is_a_problem_not_a_crash(
    sqlite_engine: AsyncEngine, tmp_path: Path, bad_line: str
) -> None:
    path = tmp_path / "appeals.jsonl"
    path.write_text(GOOD + "\n" + bad_line + "\n", "utf-8")
    with pytest.raises(ImportFileError) as refused:
        await import_file(sqlite_engine, path)
    assert refused.value.problems == [
        "line 2: invalid JSON (a number too long or nesting too deep)"
    ]
    async with sqlite_engine.connect() as connection:
        assert await connection.scalar(select(func.count()).select_from(appeals)) == 0
