"""Planner statistics for the analytics tables: ANALYZE after big writes and when missing.

Without statistics SQLite picks the `(app_id, client_id)` index for a filtered period query and
reads that app's whole history; with them it ranges over the period index.
"""

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

ANALYTICS_TABLES = ("apps", "clients", "appeals")
# A write adding at least this many appeals refreshes the statistics (1M rows: 0.3 s on SQLite).
ANALYZE_MIN_NEW_ROWS = 10_000


async def statistics_missing(connection: AsyncConnection) -> bool:
    """True when the appeals table has rows but the planner has no statistics for it."""
    if not (await connection.execute(text("SELECT 1 FROM appeals LIMIT 1"))).first():
        return False
    if connection.dialect.name == "sqlite":
        has_stat_table = (
            await connection.execute(
                text("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sqlite_stat1'")
            )
        ).first()
        if not has_stat_table:
            return True
        query = "SELECT 1 FROM sqlite_stat1 WHERE tbl = 'appeals' LIMIT 1"
    else:
        query = (
            "SELECT 1 FROM pg_stats WHERE schemaname = current_schema() "
            "AND tablename = 'appeals' LIMIT 1"
        )
    return (await connection.execute(text(query))).first() is None


async def analyze(connection: AsyncConnection) -> None:
    """Refresh the planner statistics of the analytics tables, in the caller's transaction."""
    for table in ANALYTICS_TABLES:
        await connection.execute(text(f"ANALYZE {table}"))


async def analyze_after_write(connection: AsyncConnection, new_rows: int) -> None:
    """ANALYZE when a write added many rows, or added rows to tables never analyzed."""
    if new_rows >= ANALYZE_MIN_NEW_ROWS or (new_rows > 0 and await statistics_missing(connection)):
        await analyze(connection)
