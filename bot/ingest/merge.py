"""The one write path into the analytics tables: staged appeals merged, first appeals kept current.

Every way appeals arrive (file import, the HTTP API, desk webhooks, demo data) ends here, inside
the caller's transaction, so each client's first-ever appeal is always current.
"""

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from itertools import islice
from typing import Any, NamedTuple

from sqlalchemy import (
    Column,
    ColumnElement,
    Insert,
    Integer,
    MetaData,
    Select,
    String,
    Table,
    and_,
    delete,
    exists,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.storage.aggregates import (
    GROW_MAX_APPEALS,
    FirstAppeal,
    first_appeal_changes,
    first_appeals,
    grow_aggregates,
    hour_expression,
    lock_aggregates,
    refresh_aggregates,
)
from bot.storage.statistics import analyze_after_write
from reports.aggregates import hour_start, store_ready
from reports.schema import NAME_MAX, UTCDateTime, appeals, apps, clients

BATCH_SIZE = 5_000
# Up to this many clients whose first appeal may move are named by id (SQLite before 3.32
# allows 999 bound values per statement; a live batch of 1,000 appeals has about a hundred);
# more are selected again by their query.
MOVERS_BY_ID = 900
# SQLite's default 2 MB page cache thrashes while a big import updates the appeals indexes at
# random places (1M rows: 30 s instead of 12 s); the connection gets this much during an import.
SQLITE_IMPORT_CACHE_KIB = 64 * 1024

# Rows are staged in a temporary table so that validation streams and every write to the real
# tables is one set-based statement inside the import's single transaction.
_staging_metadata = MetaData()
staging = Table(
    "import_staging",
    _staging_metadata,
    # The physical line (or position) of the row: the earliest occurrence of an appeal_id wins
    # and appeals get internal ids in file order.
    Column("line", Integer, primary_key=True, autoincrement=False),
    Column("appeal_id", String(NAME_MAX), nullable=False),
    Column("client_id", String(NAME_MAX), nullable=False),
    Column("channel", String(NAME_MAX), nullable=False),
    Column("app", String(NAME_MAX), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    prefixes=["TEMPORARY"],
)


class Conflict(NamedTuple):
    """A staged row whose appeal_id is stored with another client, app or time: two sources
    disagree, and the stored row is kept."""

    line: int
    appeal_id: str
    stored_client: str
    stored_channel: str
    stored_app: str
    stored_at: datetime
    client_id: str
    channel: str
    app: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ImportResult:
    rows: int
    new: int
    # Rows whose appeal_id already existed, in the database or earlier in the same file.
    duplicates: int
    # Of the duplicates, how many disagree with the stored row, and the first of them by line.
    conflict_count: int = 0
    conflicts: tuple[Conflict, ...] = ()


class AppealRow(NamedTuple):
    """One already validated appeal: stripped ids, lower-case channel, aware created_at."""

    appeal_id: str
    client_id: str
    channel: str
    app: str
    created_at: datetime


async def store_appeals(connection: AsyncConnection, rows: Iterable[AppealRow]) -> ImportResult:
    """Apply already validated rows through the importer's path, in the caller's transaction."""
    await create_staging(connection)
    iterator = iter(rows)
    count = 0
    while chunk := list(islice(iterator, BATCH_SIZE)):
        batch = [{"line": count + offset, **row._asdict()} for offset, row in enumerate(chunk, 1)]
        count += len(chunk)
        await connection.execute(staging.insert(), batch)
    new = await merge_staging(connection)
    return ImportResult(rows=count, new=new, duplicates=count - new)


async def stage_rows(connection: AsyncConnection, batch: list[dict[str, Any]]) -> None:
    """Add validated rows (with their `line`) to the staging table of this transaction."""
    await connection.execute(staging.insert(), batch)


@asynccontextmanager
async def import_cache(connection: AsyncConnection) -> AsyncIterator[None]:
    """On SQLite, a bigger page cache for the import, given back to the pooled connection."""
    if connection.dialect.name != "sqlite":
        yield
        return
    previous = int((await connection.execute(text("PRAGMA cache_size"))).scalar_one())
    await connection.execute(text(f"PRAGMA cache_size = -{SQLITE_IMPORT_CACHE_KIB}"))
    try:
        yield
    finally:
        await connection.execute(text(f"PRAGMA cache_size = {previous}"))


async def staged_conflicts(
    connection: AsyncConnection, limit: int
) -> tuple[int, tuple[Conflict, ...]]:
    """How many staged rows name a stored appeal with another client, channel, app or time,
    and the first `limit` of them by line; one pass over the staging table, nothing merged."""
    stored = (
        staging.join(appeals, appeals.c.external_id == staging.c.appeal_id)
        .join(clients, clients.c.id == appeals.c.client_id)
        .join(apps, apps.c.id == appeals.c.app_id)
    )
    differs = or_(
        clients.c.external_id != staging.c.client_id,
        apps.c.channel != staging.c.channel,
        apps.c.name != staging.c.app,
        appeals.c.created_at != staging.c.created_at,
    )
    count = await connection.scalar(select(func.count()).select_from(stored).where(differs))
    if not count:
        return 0, ()
    rows = await connection.execute(
        select(
            staging.c.line,
            staging.c.appeal_id,
            clients.c.external_id,
            apps.c.channel,
            apps.c.name,
            appeals.c.created_at,
            staging.c.client_id,
            staging.c.channel,
            staging.c.app,
            staging.c.created_at,
        )
        .select_from(stored)
        .where(differs)
        .order_by(staging.c.line)
        .limit(limit)
    )
    return int(count), tuple(Conflict._make(row) for row in rows)


async def create_staging(connection: AsyncConnection) -> None:
    # On SQLite the driver runs DDL outside the transaction, so a staging table left behind by
    # a rolled-back import on this pooled connection may still exist.
    await connection.execute(text("DROP TABLE IF EXISTS import_staging"))
    await connection.run_sync(staging.create)


def insert_ignoring(connection: AsyncConnection, table: Table) -> Insert:
    """INSERT that can skip rows a concurrent import added (ON CONFLICT DO NOTHING)."""
    dialect = connection.dialect.name
    if dialect == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    if dialect == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing()
    raise RuntimeError(f"unsupported database dialect {dialect!r}")


async def merge_staging(connection: AsyncConnection) -> int:
    """Move staged rows into apps, clients and appeals; return how many appeals were new."""
    maintain_store = await store_ready(connection)
    if maintain_store:
        # Before the duplicates are dropped: then no other writer adds one of the staged
        # appeals before this one inserts, and what stays staged is exactly what is new.
        await lock_aggregates(connection)
    # Built after loading: one sort is cheaper than keeping the index up to date per batch.
    await connection.execute(
        text("CREATE INDEX ix_import_staging_appeal ON import_staging (appeal_id, line)")
    )
    earlier = staging.alias("earlier")
    # Keep the first occurrence of each appeal_id in the file ...
    await connection.execute(
        delete(staging).where(
            exists().where(
                earlier.c.appeal_id == staging.c.appeal_id, earlier.c.line < staging.c.line
            )
        )
    )
    # ... and drop those already imported, so what stays is exactly the new appeals and only
    # their apps and clients get created.
    await connection.execute(
        delete(staging).where(exists().where(appeals.c.external_id == staging.c.appeal_id))
    )
    if connection.dialect.name == "postgresql":
        # Autovacuum never analyzes temporary tables; without statistics the planner guesses.
        await connection.execute(text("ANALYZE import_staging"))

    new_apps = (
        select(staging.c.channel, staging.c.app)
        .where(~exists().where(apps.c.channel == staging.c.channel, apps.c.name == staging.c.app))
        .distinct()
    )
    await connection.execute(
        insert_ignoring(connection, apps).from_select(["channel", "name"], new_apps)
    )

    # Clients above this id are the ones this merge creates (writers of a ready store are
    # serialised): they had no first appeal before it.
    last_existing = (await connection.scalar(select(func.max(clients.c.id)))) or 0
    # New clients need first_appeal_at at once (NOT NULL); the id is set below.
    new_clients = (
        select(staging.c.client_id, func.min(staging.c.created_at))
        .where(~exists().where(clients.c.external_id == staging.c.client_id))
        .group_by(staging.c.client_id)
    )
    await connection.execute(
        insert_ignoring(connection, clients).from_select(
            ["external_id", "first_appeal_at"], new_clients
        )
    )
    # After the new clients exist: a live batch reads the few ids once; a big import keeps the
    # query, too many ids for one statement.
    candidates = first_appeal_candidates()
    found: list[int] = list(
        (await connection.execute(candidates.limit(MOVERS_BY_ID + 1))).scalars()
    )
    movers: list[int] | Select[int] = found if len(found) <= MOVERS_BY_ID else candidates
    # The first appeals of the clients that existed, before any moves: the store's old buckets.
    before: dict[int, FirstAppeal] = {}
    if maintain_store:
        existed = (
            [id_ for id_ in found if id_ <= last_existing]
            if isinstance(movers, list)
            else candidates.where(clients.c.id <= last_existing)
        )
        before = await first_appeals(connection, existed)

    new_appeals = (
        select(staging.c.appeal_id, clients.c.id, apps.c.id, staging.c.created_at)
        .select_from(
            staging.join(clients, clients.c.external_id == staging.c.client_id).join(
                apps, and_(apps.c.channel == staging.c.channel, apps.c.name == staging.c.app)
            )
        )
        # Also the WHERE clause SQLite needs to parse INSERT ... SELECT ... ON CONFLICT.
        .where(~exists().where(appeals.c.external_id == staging.c.appeal_id))
        .order_by(staging.c.line)
    )
    inserted = await connection.execute(
        insert_ignoring(connection, appeals).from_select(
            ["external_id", "client_id", "app_id", "created_at"], new_appeals
        )
    )
    new = inserted.rowcount

    await recompute_first_appeals(connection, clients.c.id.in_(movers))
    if maintain_store and new:
        await _refresh_store(connection, before, movers, new)
    await connection.execute(text("DROP TABLE import_staging"))
    # A big import changes the value distribution the planner relies on.
    await analyze_after_write(connection, new)
    return new


def first_appeal_candidates() -> Select[int]:
    """The ids of the staged clients whose first-ever appeal the merge may move: new ones, and
    those with a staged appeal no later than their stored first appeal.

    A merge only adds appeals, so a first appeal can only move to an earlier staged one; a tie
    in time is decided by id, so ties are candidates too. Everyone else keeps theirs, which
    spares a live batch recomputing (and the store re-reading) a thousand unchanged clients.
    The condition holds before and after the merge alike: a candidate's first appeal becomes
    its earliest staged one or stays.
    """
    earliest = (
        select(staging.c.client_id, func.min(staging.c.created_at).label("created_at"))
        .group_by(staging.c.client_id)
        .subquery("earliest")
    )
    return (
        select(clients.c.id)
        .select_from(clients.join(earliest, earliest.c.client_id == clients.c.external_id))
        .where(
            or_(
                clients.c.first_appeal_id.is_(None),
                clients.c.first_appeal_at >= earliest.c.created_at,
            )
        )
    )


async def _refresh_store(
    connection: AsyncConnection,
    before: dict[int, FirstAppeal],
    movers: list[int] | Select[int],
    new: int,
) -> None:
    """Bring the store's buckets of the merged appeals and moved first appeals up to date."""
    after = await first_appeals(connection, movers)
    merged = select(appeals.c.id).where(appeals.c.external_id.in_(select(staging.c.appeal_id)))
    if new <= GROW_MAX_APPEALS:
        # A live batch: its appeals are added to the buckets they fall in.
        await grow_aggregates(connection, new_appeals=merged, before=before, after=after)
        return
    hour = hour_expression(staging.c.created_at, connection.dialect.name)
    new_hours = await connection.execute(
        select(apps.c.id, hour)
        .select_from(
            staging.join(
                apps, and_(apps.c.channel == staging.c.channel, apps.c.name == staging.c.app)
            )
        )
        .distinct()
    )
    appeal_hours = {(app_id, hour_start(h)) for app_id, h in new_hours}
    moved, first_hours = first_appeal_changes(before, after)
    # A merge only inserts appeals.
    await refresh_aggregates(
        connection,
        appeal_hours=appeal_hours | moved,
        first_hours=first_hours,
        inserts_only=True,
    )


async def recompute_first_appeals(
    connection: AsyncConnection, which: ColumnElement[bool]
) -> None:
    """Recompute the first-ever appeal of the clients `which` selects (a condition on clients).

    An older appeal imported later moves the first appeal; a re-derived conversation can move
    it either way. Ties at one instant go to the smaller appeal id.
    """
    first = appeals.alias("first")
    first_id = (
        select(first.c.id)
        .where(first.c.client_id == clients.c.id)
        .order_by(first.c.created_at, first.c.id)
        .limit(1)
        .scalar_subquery()
    )
    first_at = (
        select(func.min(first.c.created_at))
        .where(first.c.client_id == clients.c.id)
        .scalar_subquery()
    )
    await connection.execute(
        update(clients)
        .where(which)
        .values(
            first_appeal_id=first_id,
            # A client whose only appeal a concurrent import took keeps its value.
            first_appeal_at=func.coalesce(first_at, clients.c.first_appeal_at),
        )
    )
