"""Demo data, loaded and replaced with --force, leaves the store equal to a rebuild."""

from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from bot.ingest.demo import load_demo
from tests.aggregates.support import assert_store_current


async def test_demo_force_replaces_the_store_too(sqlite_engine: AsyncEngine) -> None:
    await load_demo(sqlite_engine, now=datetime(2026, 11, 27, 12, tzinfo=UTC))
    await load_demo(sqlite_engine, now=datetime(2026, 10, 1, 12, tzinfo=UTC), force=True, seed=3)
    await assert_store_current(sqlite_engine)
