"""The one write path into the analytics tables: staged appeals merged, first appeals kept current.

Every way appeals arrive (file import, the HTTP API, desk webhooks, demo data) ends here, inside
the caller's transaction, so each client's first-ever appeal is always current.
"""

from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import cache
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
    bindparam,
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
from reports.aggregates import hour_floor, hour_start, store_ready
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
    # The rows are in hand: the first occurrence of each appeal_id is kept here, so the merge
    # needs no index and no statement to find repeats.
    seen: set[str] = set()
    iterator = iter(rows)
    count = staged = 0
    while chunk := list(islice(iterator, BATCH_SIZE)):
        count += len(chunk)
        batch = []
        for row in chunk:
            if row.appeal_id not in seen:
                seen.add(row.appeal_id)
                staged += 1
                batch.append((staged, *row))
        await _stage(connection, batch)
    new = await merge_staging(connection, unique=True)
    return ImportResult(rows=count, new=new, duplicates=count - new)


async def stage_rows(connection: AsyncConnection, batch: list[dict[str, Any]]) -> None:
    """Add validated rows (with their `line`) to the staging table of this transaction."""
    await _stage(connection, [tuple(row[name] for name in _STAGED) for row in batch])


# The staging table's columns in the order _stage takes them.
_STAGED = ("line", "appeal_id", "client_id", "channel", "app", "created_at")
_staging_inserts: dict[tuple[str, str], tuple[str, Callable[[Any], Any]]] = {}


async def _stage(connection: AsyncConnection, rows: list[tuple[Any, ...]]) -> None:
    """Insert (line, appeal_id, client_id, channel, app, created_at) tuples into staging.

    Handed to the driver as they are: SQLAlchemy's per-row parameter handling cost more than
    the insert itself (a live batch of 1,000: about 10 ms of 15).
    """
    dialect = connection.dialect
    key = (dialect.name, dialect.driver)
    if key not in _staging_inserts:
        compiled = staging.insert().compile(dialect=dialect)
        if tuple(compiled.positiontup or ()) != _STAGED:
            raise RuntimeError(f"unexpected staging parameters {compiled.positiontup!r}")
        instant = staging.c.created_at.type.bind_processor(dialect) or (lambda value: value)
        _staging_inserts[key] = (str(compiled), instant)
    sql, instant = _staging_inserts[key]
    await connection.exec_driver_sql(sql, [(*row[:5], instant(row[5])) for row in rows])


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
    # A rollback drops the staging table with the rest (the engine begins SQLite transactions
    # itself, so DDL is inside them); this guards against a caller that caught a failed merge
    # and committed, which would leave one on this pooled connection.
    await connection.execute(text("DROP TABLE IF EXISTS import_staging"))
    await connection.run_sync(staging.create)


def _insert_ignoring(dialect: str, table: Table) -> Insert:
    """INSERT that can skip rows a concurrent import added (ON CONFLICT DO NOTHING)."""
    if dialect == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    if dialect == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing()
    raise RuntimeError(f"unsupported database dialect {dialect!r}")


class _MergeStatements(NamedTuple):
    add_apps: Insert
    add_clients: Insert
    add_appeals: Insert
    # (app_id, UTC hour, client_id) of the merged appeals: what the store grows by.
    merged_buckets: Select[Any]


@cache
def _merge_statements(dialect: str) -> _MergeStatements:
    """The merge's statements, built once a dialect: a live batch of a thousand appeals paid
    more for building and keying them than for running most of them."""
    new_apps = (
        select(staging.c.channel, staging.c.app)
        .where(~exists().where(apps.c.channel == staging.c.channel, apps.c.name == staging.c.app))
        .distinct()
    )
    # New clients need first_appeal_at at once (NOT NULL); the id is set by the merge.
    new_clients = (
        select(staging.c.client_id, func.min(staging.c.created_at))
        .where(~exists().where(clients.c.external_id == staging.c.client_id))
        .group_by(staging.c.client_id)
    )
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
    return _MergeStatements(
        add_apps=_insert_ignoring(dialect, apps).from_select(["channel", "name"], new_apps),
        add_clients=_insert_ignoring(dialect, clients).from_select(
            ["external_id", "first_appeal_at"], new_clients
        ),
        add_appeals=_insert_ignoring(dialect, appeals).from_select(
            ["external_id", "client_id", "app_id", "created_at"], new_appeals
        ),
        # The appeals above the largest id before the merge: one range of the primary key.
        merged_buckets=select(
            appeals.c.app_id,
            hour_expression(appeals.c.created_at, dialect),
            appeals.c.client_id,
        ).where(appeals.c.id > bindparam("last")),
    )


_earlier = staging.alias("earlier")
# Keep the first occurrence of each appeal_id in the file ...
_DROP_REPEATED = delete(staging).where(
    exists().where(_earlier.c.appeal_id == staging.c.appeal_id, _earlier.c.line < staging.c.line)
)
# ... and drop those already imported, so what stays is exactly the new appeals and only
# their apps and clients get created.
_DROP_STORED = delete(staging).where(exists().where(appeals.c.external_id == staging.c.appeal_id))
# The largest ids before a merge: clients and appeals above them are the ones it creates.
_LAST_IDS = select(
    select(func.max(clients.c.id)).scalar_subquery(),
    select(func.max(appeals.c.id)).scalar_subquery(),
)


async def merge_staging(connection: AsyncConnection, *, unique: bool = False) -> int:
    """Move staged rows into apps, clients and appeals; return how many appeals were new.

    unique=True promises that no appeal_id is staged twice (store_appeals drops repeats).
    """
    statements = _merge_statements(connection.dialect.name)
    maintain_store = await store_ready(connection)
    if maintain_store:
        # Before the duplicates are dropped: then no other writer adds one of the staged
        # appeals before this one inserts, and what stays staged is exactly what is new.
        await lock_aggregates(connection)
    if not unique:
        # Built after loading: one sort is cheaper than keeping the index up to date per batch.
        await connection.execute(
            text("CREATE INDEX ix_import_staging_appeal ON import_staging (appeal_id, line)")
        )
        await connection.execute(_DROP_REPEATED)
    await connection.execute(_DROP_STORED)
    if connection.dialect.name == "postgresql":
        # Autovacuum never analyzes temporary tables; without statistics the planner guesses.
        await connection.execute(text("ANALYZE import_staging"))
    await connection.execute(statements.add_apps)

    last_client = last_appeal = 0
    if maintain_store:
        # Writers of a ready store are serialised, so the clients and appeals above these ids
        # are the ones this merge creates: the new clients had no first appeal before it.
        last_client, last_appeal = (
            value or 0 for value in (await connection.execute(_LAST_IDS)).one()
        )
    await connection.execute(statements.add_clients)
    # After the new clients exist: a live batch reads the few candidates once, with their
    # first appeals as stored (the store's old buckets); a big import keeps the query, too
    # many ids for one statement.
    found = (await connection.execute(_CANDIDATE_FIRSTS.limit(MOVERS_BY_ID + 1))).all()
    movers: list[int] | Select[int] = (
        [row.id for row in found] if len(found) <= MOVERS_BY_ID else _CANDIDATES
    )
    # The first appeals of the clients that existed, before any moves.
    before: dict[int, FirstAppeal] = {}
    if maintain_store:
        if isinstance(movers, list):
            before = {
                id_: FirstAppeal(appeal_id, app_id, hour_floor(first_at))
                for id_, appeal_id, app_id, first_at in found
                if id_ <= last_client
            }
        else:
            existed = _CANDIDATES.where(clients.c.id <= last_client)
            before = await first_appeals(connection, existed)

    inserted = await connection.execute(statements.add_appeals)
    new = inserted.rowcount

    if isinstance(movers, list):
        await connection.execute(_RECOMPUTE_FIRST_BY_ID, {"ids": movers})
    else:
        await recompute_first_appeals(connection, clients.c.id.in_(movers))
    if maintain_store and new:
        await _refresh_store(connection, statements, before, movers, new, last_appeal)
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


_CANDIDATES = first_appeal_candidates()
# The candidates with their first appeals as stored: id, first_appeal_id, its app_id and
# first_appeal_at, the columns of bot.storage.aggregates.first_appeals.
_CANDIDATE_FIRSTS = _CANDIDATES.add_columns(
    clients.c.first_appeal_id, appeals.c.app_id, clients.c.first_appeal_at
).outerjoin(appeals, appeals.c.id == clients.c.first_appeal_id)


async def _refresh_store(
    connection: AsyncConnection,
    statements: _MergeStatements,
    before: dict[int, FirstAppeal],
    movers: list[int] | Select[int],
    new: int,
    last_appeal: int,
) -> None:
    """Bring the store's buckets of the merged appeals and moved first appeals up to date."""
    after = await first_appeals(connection, movers)
    if new <= GROW_MAX_APPEALS:
        # A live batch: its appeals are added to the buckets they fall in.
        merged = await connection.execute(statements.merged_buckets, {"last": last_appeal})
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


def _first_appeal_values() -> dict[str, Any]:
    """The first-ever appeal of each updated client, from its appeals (SET of an UPDATE)."""
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
    # A client whose only appeal a concurrent import took keeps its value.
    return {
        "first_appeal_id": first_id,
        "first_appeal_at": func.coalesce(first_at, clients.c.first_appeal_at),
    }


_FIRST_APPEAL_VALUES = _first_appeal_values()
# The live batch's form, built once: the clients named by id.
_RECOMPUTE_FIRST_BY_ID = (
    update(clients)
    .where(clients.c.id.in_(bindparam("ids", expanding=True)))
    .values(_FIRST_APPEAL_VALUES)
)


async def recompute_first_appeals(connection: AsyncConnection, which: ColumnElement[bool]) -> None:
    """Recompute the first-ever appeal of the clients `which` selects (a condition on clients).

    An older appeal imported later moves the first appeal; a re-derived conversation can move
    it either way. Ties at one instant go to the smaller appeal id.
    """
    await connection.execute(update(clients).where(which).values(_FIRST_APPEAL_VALUES))
