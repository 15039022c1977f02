"""Shared fixtures: migrated databases (SQLite always, PostgreSQL when reachable), and the
hand-counted data set of tests/datasets.py loaded into SQLite."""

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from bot.storage.engine import create_engine, migrate
from reports.i18n import LOCALES_DIR, translator
from tests.datasets import OLD_ROWS, ROWS_IN_AND_AROUND_P, load

POSTGRES_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
REQUIRE_POSTGRES = os.environ.get("REQUIRE_POSTGRES") == "1"


def _run_admin(statement: str) -> None:
    """Run one statement on the maintenance connection (sync fixtures run outside the loop)."""

    async def run() -> None:
        admin = create_async_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
        try:
            async with admin.connect() as connection:
                await connection.execute(text(statement))
        finally:
            await admin.dispose()

    asyncio.run(run())


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    try:
        _run_admin("select 1")
    except Exception as exc:  # noqa: BLE001 - any failure to connect means "not reachable"
        if REQUIRE_POSTGRES:
            pytest.fail(f"PostgreSQL required (REQUIRE_POSTGRES=1) but unreachable: {exc}")
        pytest.skip(f"PostgreSQL not reachable at {POSTGRES_URL}: PostgreSQL tests skipped")
    name = f"bot_test_{uuid.uuid4().hex[:12]}"
    _run_admin(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        _run_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}"


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> str:
    """Each test using this runs on SQLite and on PostgreSQL."""
    name = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    return str(request.getfixturevalue(name))


@asynccontextmanager
async def migrated(url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(url)
    await migrate(engine)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """A migrated engine on each backend."""
    async with migrated(database_url) as engine:
        yield engine


@pytest.fixture
async def sqlite_engine(sqlite_url: str) -> AsyncIterator[AsyncEngine]:
    async with migrated(sqlite_url) as engine:
        yield engine


@pytest.fixture
async def hand_counted(sqlite_engine: AsyncEngine, tmp_path: Path) -> AsyncEngine:
    """SQLite holding the hand-counted day 2026-11-10 and the rows around it."""
    await load(sqlite_engine, tmp_path, ROWS_IN_AND_AROUND_P, "recent")
    await load(sqlite_engine, tmp_path, OLD_ROWS, "old")
    return sqlite_engine


@pytest.fixture(scope="session", autouse=True)
def compiled_catalogs() -> None:
    """Compile stale .mo files as `make install` does, so a bare `pytest` sees Russian."""
    for po in LOCALES_DIR.glob("*/LC_MESSAGES/messages.po"):
        mo = po.with_suffix(".mo")
        if mo.exists() and mo.stat().st_mtime >= po.stat().st_mtime:
            continue
        with po.open("rb") as source:
            catalog = read_po(source, locale=po.parent.parent.name)
        with mo.open("wb") as target:
            write_mo(target, catalog, use_fuzzy=True)
    translator.cache_clear()
