"""Migrations build the schema on both backends and the UTC column keeps instants exact."""

import sqlite3
from contextlib import closing
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, insert, select, text
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.storage.engine import SQLITE_MMAP_BYTES, migrate
from bot.storage.tables import metadata
from reports.schema import UTCDateTime, appeals, apps, clients

MSK = timezone(timedelta(hours=3))


async def test_migrate_twice_keeps_data(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        await connection.execute(insert(apps).values(channel="vk", name="main"))
    await migrate(engine)
    async with engine.connect() as connection:
        assert (await connection.execute(select(apps.c.name))).scalars().all() == ["main"]


async def test_aware_instants_are_stored_as_utc_and_compare_correctly(engine: AsyncEngine) -> None:
    moscow_midnight = datetime(2026, 11, 27, 0, 0, tzinfo=MSK)  # 2026-11-26 21:00 UTC
    async with engine.begin() as connection:
        app_id = (
            await connection.execute(insert(apps).values(channel="vk", name="a"))
        ).inserted_primary_key[0]
        client_id = (
            await connection.execute(
                insert(clients).values(external_id="c", first_appeal_at=moscow_midnight)
            )
        ).inserted_primary_key[0]
        await connection.execute(
            insert(appeals),
            [
                {
                    "external_id": "before",
                    "client_id": client_id,
                    "app_id": app_id,
                    "created_at": moscow_midnight - timedelta(seconds=1),
                },
                {
                    "external_id": "at",
                    "client_id": client_id,
                    "app_id": app_id,
                    "created_at": moscow_midnight,
                },
            ],
        )
    async with engine.connect() as connection:
        rows = (
            await connection.execute(
                select(appeals.c.external_id, appeals.c.created_at).where(
                    appeals.c.created_at >= datetime(2026, 11, 26, 21, 0, tzinfo=UTC)
                )
            )
        ).all()
    assert [(r.external_id, r.created_at) for r in rows] == [
        ("at", datetime(2026, 11, 26, 21, 0, tzinfo=UTC))
    ]


async def test_naive_instants_are_refused(sqlite_engine: AsyncEngine) -> None:
    async with sqlite_engine.begin() as connection:
        with pytest.raises(Exception, match="naive datetime"):
            await connection.execute(
                insert(clients).values(external_id="c", first_appeal_at=datetime(2026, 1, 1))  # noqa: DTZ001
            )


async def test_sqlite_runs_in_wal_mode(sqlite_engine: AsyncEngine) -> None:
    async with sqlite_engine.connect() as connection:
        assert (await connection.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
        assert (await connection.execute(text("PRAGMA busy_timeout"))).scalar() == 10000


def _mmap_limit_of_this_sqlite() -> int:
    """The most a `PRAGMA mmap_size` gets from this SQLite build (its MAX_MMAP_SIZE)."""
    with closing(sqlite3.connect(":memory:")) as probe:
        for (option,) in probe.execute("PRAGMA compile_options"):
            if option.startswith("MAX_MMAP_SIZE="):
                return int(option.split("=", 1)[1], 0)
    return 0x7FFF0000  # SQLite's default when the build does not say


async def test_sqlite_reads_the_database_through_a_memory_map(
    sqlite_engine: AsyncEngine,
) -> None:
    # The build's default is 0 (plain reads); every pooled connection maps the file.
    expected = min(SQLITE_MMAP_BYTES, _mmap_limit_of_this_sqlite())
    assert expected > 0
    async with sqlite_engine.connect() as first, sqlite_engine.connect() as second:
        for connection in (first, second):
            assert (await connection.execute(text("PRAGMA mmap_size"))).scalar() == expected


async def test_migrations_build_exactly_the_declared_schema(engine: AsyncEngine) -> None:
    def differences(connection: Connection) -> list[object]:
        context = MigrationContext.configure(connection)
        return compare_metadata(context, metadata)

    async with engine.connect() as connection:
        assert await connection.run_sync(differences) == []


def test_sqlite_instants_are_written_as_sqlalchemys_datetime_writes_them() -> None:
    # The fast bind processor must write exactly the text SQLAlchemy's DATETIME would: stored
    # rows are compared as text with rows written before it, and by SQLite's date functions.
    dialect = sqlite.dialect()
    ours = UTCDateTime().dialect_impl(dialect).bind_processor(dialect)
    reference = sqlite.DATETIME().bind_processor(dialect)
    for instant in (
        datetime(2026, 11, 26, 21, 0, tzinfo=UTC),
        datetime(2026, 1, 1, 0, 0, 0, 1, tzinfo=MSK),
        datetime(999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(2024, 2, 29, 12, 30, 5, 120000, tzinfo=ZoneInfo("Asia/Kathmandu")),
    ):
        expected = reference(instant.astimezone(UTC).replace(tzinfo=None))
        assert ours(instant) == expected
    assert ours(None) is None
    with pytest.raises(ValueError, match="naive datetime"):
        ours(datetime(2026, 1, 1))  # noqa: DTZ001
