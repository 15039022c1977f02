"""`python -m bot rebuild-aggregates` and `python -m bot check` through the CLI's main()."""

import asyncio
import json
from pathlib import Path

import pytest
from sqlalchemy import update

from bot.cli import main
from bot.storage.engine import create_engine
from reports.store_schema import rollup_clients

ROWS = [
    ("a1", "A", "whatsapp", "Sales", "2026-11-10T10:00:00+03:00"),
    ("a2", "A", "telegram", "Bot", "2026-10-01T08:30:00Z"),
    ("b1", "B", "vk", "Group", "2026-11-09T23:59:59+05:30"),
    ("c1", "C", "whatsapp", "Support", "2025-12-31T23:00:00Z"),
]


@pytest.fixture
def database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.chdir(tmp_path)
    for key, value in {"DATABASE_URL": url, "LANGUAGE": "en", "BOT_TOKEN": ""}.items():
        monkeypatch.setenv(key, value)
    fields = ("appeal_id", "client_id", "channel", "app", "created_at")
    path = tmp_path / "appeals.jsonl"
    path.write_text("\n".join(json.dumps(dict(zip(fields, r, strict=True))) for r in ROWS))
    assert main(["import", str(path)]) == 0
    return url


def test_rebuild_prints_progress_and_size(
    database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["rebuild-aggregates"]) == 0
    out = capsys.readouterr().out
    assert "rebuilding the metric store:" in out and "(100%)" in out
    assert "metric store rebuilt:" in out and "buckets" in out


def test_check_passes_on_a_current_store(
    database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", "--samples", "60", "--seed", "4"]) == 0
    assert "checked 60 reports (seed 4): 0 differences" in capsys.readouterr().out


async def corrupt(url: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                update(rollup_clients).values(appeals=rollup_clients.c.appeals + 1)
            )
    finally:
        await engine.dispose()


def test_check_reports_differences_and_fails(
    database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    asyncio.run(corrupt(database))
    assert main(["check", "--samples", "40", "--seed", "1"]) == 1
    out = capsys.readouterr().out
    assert "difference: " in out and "appeals store=" in out
    # A rebuild repairs it.
    assert main(["rebuild-aggregates"]) == 0
    assert main(["check", "--samples", "40", "--seed", "1"]) == 0


def test_check_bad_samples_is_a_one_line_error(
    database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", "--samples", "0"]) == 1
    assert capsys.readouterr().err == "error: --samples must be at least 1\n"
