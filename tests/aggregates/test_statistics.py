"""Planner statistics: kept after writes and made at start when missing.

Without them SQLite once read a filtered period through the (app_id, client_id) index, 46x
slower; migration 0009 dropped that index, and the period index is now chosen either way.
"""

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bot.ingest.merge import AppealRow, store_appeals
from bot.storage.engine import create_engine, migrate, write_transaction
from bot.storage.statistics import STALE_GROWTH, analysed_appeals, statistics_missing
from reports.schema import appeals, apps, clients
from tests.datasets import load

START = datetime(2025, 1, 1, tzinfo=UTC)
ROWS = 20_000
FILTERED_PERIOD = (
    "SELECT count(*), count(DISTINCT client_id) FROM appeals "
    "WHERE created_at >= :start AND created_at < :end AND app_id IN (1)"
)


async def fill_without_statistics(engine: AsyncEngine) -> None:
    """A year of appeals through two apps, written around the import path (no ANALYZE)."""
    async with engine.begin() as connection:
        await connection.execute(insert(apps), [{"channel": "vk", "name": n} for n in "ab"])
        await connection.execute(
            insert(clients),
            [{"external_id": f"c{i}", "first_appeal_at": START} for i in range(1, 1001)],
        )
        await connection.execute(
            insert(appeals),
            [
                {
                    "external_id": f"a{i}",
                    "client_id": i % 1000 + 1,
                    "app_id": i % 2 + 1,
                    "created_at": START + timedelta(minutes=26 * i),
                }
                for i in range(ROWS)
            ],
        )


async def plan(connection: AsyncConnection) -> str:
    rows = await connection.execute(
        text("EXPLAIN QUERY PLAN " + FILTERED_PERIOD),
        {"start": "2025-06-01 00:00:00.000000", "end": "2025-06-02 00:00:00.000000"},
    )
    return " | ".join(str(row[-1]) for row in rows)


async def test_start_analyzes_a_database_without_statistics(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}")
    try:
        await migrate(engine)
        await fill_without_statistics(engine)
        async with engine.connect() as connection:
            assert await statistics_missing(connection)
            # No index led by app_id is left to tempt the planner (migration 0009).
            assert "ix_appeals_period_scan" in await plan(connection)
        await migrate(engine)
        async with engine.connect() as connection:
            assert not await statistics_missing(connection)
            assert "ix_appeals_period_scan" in await plan(connection)
    finally:
        await engine.dispose()


async def test_an_import_leaves_statistics_behind(
    sqlite_engine: AsyncEngine, tmp_path: Path
) -> None:
    rows = [
        (
            f"a{i}",
            f"c{i % 700}",
            "vk",
            "ab"[i % 2],
            (START + timedelta(minutes=26 * i)).isoformat(),
        )
        for i in range(ROWS)
    ]
    await load(sqlite_engine, tmp_path, rows, "year")
    async with sqlite_engine.connect() as connection:
        assert not await statistics_missing(connection)
        assert "ix_appeals_period_scan" in await plan(connection)


async def test_postgres_start_analyzes_when_statistics_are_missing(postgres_url: str) -> None:
    engine = create_engine(postgres_url)
    try:
        await migrate(engine)
        await fill_without_statistics(engine)
        async with engine.connect() as connection:
            assert await statistics_missing(connection)
        await migrate(engine)
        async with engine.connect() as connection:
            assert not await statistics_missing(connection)
    finally:
        await engine.dispose()


LOOKUP = "SELECT created_at FROM appeals WHERE external_id IN ('a1', 'a2', 'a3')"


async def test_statistics_follow_a_database_that_grows_by_small_writes(tmp_path: Path) -> None:
    """Analysed at its first webhook (one appeal), the table must not stay planned as tiny."""
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}")
    try:
        await migrate(engine)
        for batch in range(41):
            size = 1 if batch == 0 else 50
            rows = [
                AppealRow(f"a{batch}-{n}", f"c{n % 300}", "vk", "a", START + timedelta(hours=n))
                for n in range(size)
            ]
            async with write_transaction(engine) as connection:
                await store_appeals(connection, rows)
        async with engine.connect() as connection:
            analysed = await analysed_appeals(connection)
            # 2,001 appeals now: statistics taken at one appeal would read "1".
            assert analysed is not None and analysed > 2001 / STALE_GROWTH / 2
            steps = " | ".join(
                str(row[-1])
                for row in await connection.execute(text("EXPLAIN QUERY PLAN " + LOOKUP))
            )
        assert "SEARCH appeals USING INDEX" in steps, steps
    finally:
        await engine.dispose()
