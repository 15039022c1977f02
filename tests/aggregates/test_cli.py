"""`python -m bot rebuild-aggregates` and `python -m bot check` through the CLI's main()."""

import asyncio
import json
from pathlib import Path

import pytest
from sqlalchemy import update

from bot.cli import main
from bot.storage.engine import create_engine, migrate
from reports.store_schema import rollup_clients
from tests.ingest.support import SECRET, TOKEN, appeals_table, ingest_client
from tests.ingest.test_webhooks import BLINGER_STREAM, CHATWOOT_STREAM, post_blinger, post_chatwoot

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


# Posted to /api/appeals in this order: a client on two channels, a first appeal that arrives
# after a later one, one second either side of Moscow's midnight, names with < & = and Cyrillic.
API_BATCHES = [
    [
        ("p1", "K", "whatsapp", "Sales <VIP> & Co", "2026-11-10T00:00:00+03:00"),
        ("p2", "K", "telegram", "Бот=1", "2026-11-12T12:00:00Z"),
        ("p3", "L", "vk", "Группа ВК", "2026-11-09T23:59:59+03:00"),
    ],
    [
        ("p4", "L", "vk", "Группа ВК", "2026-10-31T21:00:00Z"),
        ("p5", "M", "whatsapp", "Sales <VIP> & Co", "2026-11-30T20:59:59Z"),
        ("p1", "K", "whatsapp", "Sales <VIP> & Co", "2026-11-10T00:00:00+03:00"),
    ],
]


async def build_by_api_and_webhooks(url: str) -> int:
    """A database filled only through the web server: the API, Chatwoot and Blinger."""
    engine = create_engine(url)
    try:
        await migrate(engine)
        fields = ("appeal_id", "client_id", "channel", "app", "created_at")
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with ingest_client(engine, secret=SECRET) as (client, _):
            for batch in API_BATCHES:
                records = [dict(zip(fields, row, strict=True)) for row in batch]
                response = await client.post("/api/appeals", json=records, headers=headers)
                assert response.status == 200, await response.text()
            for name in CHATWOOT_STREAM:
                assert (await post_chatwoot(client, name)).status == 200
            for name in BLINGER_STREAM:
                assert (await post_blinger(client, name)).status == 200
        return len(await appeals_table(engine))
    finally:
        await engine.dispose()


def test_check_passes_on_a_database_built_by_the_api_and_by_webhooks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'live.db'}"
    monkeypatch.chdir(tmp_path)
    for key, value in {"DATABASE_URL": url, "LANGUAGE": "en", "BOT_TOKEN": ""}.items():
        monkeypatch.setenv(key, value)
    # 5 from the API (p1 posted twice), 2 from Chatwoot's stream, 2 from Blinger's.
    assert asyncio.run(build_by_api_and_webhooks(url)) == 9
    assert main(["check", "--samples", "80", "--seed", "7"]) == 0
    assert "checked 80 reports (seed 7): 0 differences" in capsys.readouterr().out
    asyncio.run(corrupt(url))
    assert main(["check", "--samples", "80", "--seed", "7"]) == 1
