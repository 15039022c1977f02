"""Planner statistics for the analytics tables: ANALYZE after big writes, when missing or stale.

Without statistics SQLite picks the `(app_id, client_id)` index for a filtered period query and
reads that app's whole history; with them it ranges over the period index. Statistics from a
much smaller table are as bad: SQLite keeps the row counts of its last ANALYZE, so a database
analysed at its first webhook plans every lookup as if appeals held one row (full scans).
"""

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

ANALYTICS_TABLES = ("apps", "clients", "appeals")
# A write adding at least this many appeals refreshes the statistics (1M rows: 0.3 s on SQLite).
ANALYZE_MIN_NEW_ROWS = 10_000
# SQLite statistics taken when appeals had fewer than 1/STALE_GROWTH of its rows are refreshed:
# ANALYZE then runs when the table doubles, so its cost per appeal stays constant.
STALE_GROWTH = 2
# Small writes are counted on the pooled connection (its `info`, kept across transactions) and
# the statistics looked at again only once this share of the analysed rows was added.
_ADDED = "appeals_added_since_statistics_check"
_CHECK_AFTER = "appeals_to_add_before_statistics_check"


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


async def analysed_appeals(connection: AsyncConnection) -> int | None:
    """The appeals row count SQLite's statistics were taken at; None without statistics."""
    has_stat_table = (
        await connection.execute(
            text("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sqlite_stat1'")
        )
    ).first()
    if not has_stat_table:
        return None
    stat = (
        await connection.execute(
            text("SELECT stat FROM sqlite_stat1 WHERE tbl = 'appeals' LIMIT 1")
        )
    ).scalar()
    return int(str(stat).split()[0]) if stat else None


async def statistics_stale(connection: AsyncConnection) -> bool:
    """True when appeals has rows and its statistics are missing or from a table half its size."""
    if connection.dialect.name != "sqlite":
        # PostgreSQL's autovacuum re-analyzes a table that grew; only missing ones matter.
        return await statistics_missing(connection)
    analysed = await analysed_appeals(connection)
    if analysed is not None:
        # The largest id bounds the row count from above and is one index step, where a
        # COUNT reads the whole table (5M appeals: a tenth of a second).
        largest = (await connection.execute(text("SELECT max(id) FROM appeals"))).scalar()
        if (largest or 0) < STALE_GROWTH * analysed:
            return False
    rows = int((await connection.execute(text("SELECT count(*) FROM appeals"))).scalar_one())
    if rows == 0:
        return False
    return analysed is None or rows >= STALE_GROWTH * analysed


async def analyze(connection: AsyncConnection) -> None:
    """Refresh the planner statistics of the analytics tables, in the caller's transaction."""
    for table in ANALYTICS_TABLES:
        await connection.execute(text(f"ANALYZE {table}"))


async def analyze_after_write(connection: AsyncConnection, new_rows: int) -> None:
    """ANALYZE when a write added many rows, or rows to tables never or long ago analyzed."""
    if new_rows <= 0:
        return
    info = connection.info
    added = info.get(_ADDED, 0) + new_rows
    if new_rows < ANALYZE_MIN_NEW_ROWS and added < info.get(_CHECK_AFTER, 0):
        info[_ADDED] = added
        return
    if new_rows >= ANALYZE_MIN_NEW_ROWS or await statistics_stale(connection):
        await analyze(connection)
    if connection.dialect.name == "sqlite":
        # Look again once the table may have grown by half of what it was analysed at.
        check_after = max(1, (await analysed_appeals(connection) or 0) // 2)
    else:
        check_after = ANALYZE_MIN_NEW_ROWS
    info[_ADDED] = 0
    info[_CHECK_AFTER] = check_after
