"""Maintenance of the pre-aggregated metric store: touched UTC hours recomputed exactly.

Contract for every write path into appeals/clients (file import, API, webhooks, demo data),
all inside the write's own transaction:

1. Before writing, `await lock_aggregates(connection)`, then note what will change:
   - `before = await first_appeals(connection, client_ids)` for every client whose appeals are
     inserted, deleted or moved (their first-ever appeal may move earlier or later);
   - `hours = await appeal_hours(connection, appeal_ids)` for appeals that will be deleted or
     whose created_at/app changes (their old buckets).
2. Write appeals and keep clients.first_appeal_at/first_appeal_id current.
3. Add the (app_id, hour) of the inserted or moved appeals (`appeal_hours` again, after), then
   `changed_appeals, changed_firsts = first_appeal_changes(before, await first_appeals(...))`
   and call `await refresh_aggregates(connection, appeal_hours=hours | changed_appeals |
   new_hours, first_hours=changed_firsts)`. Pass `inserts_only=True` only when no appeal was
   deleted or moved (bot.ingest.merge does): months are then grown instead of re-unioned.
   A write that only inserted up to GROW_MAX_APPEALS appeals may instead call
   `grow_aggregates(connection, new_appeals=<(app_id, hour, client_id) of exactly those>,
   before=before, after=<first_appeals after the write>)`, which adds them to the buckets of
   every level.
   A writer that deletes every appeal calls clear_aggregates instead.

refresh_aggregates recomputes the named hour buckets from the appeals and clients tables (so a
deletion is as exact as an insertion, and naming an hour that did not change is harmless), then
re-derives the day and month buckets above them from the hour buckets: bitmap unions and sums.
Hours are aware datetimes at the start of a UTC hour (any instant inside the hour also works).
Writers are serialised: SQLite by its write lock, PostgreSQL by a transaction advisory lock
taken here, so concurrent writers never overwrite each other's buckets. While the store is not
complete (no rollup_state row) nothing is maintained and reports use the plain SQL;
rebuild_aggregates makes it complete.
"""

import logging
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable
from datetime import datetime
from functools import cache
from typing import Any, NamedTuple

from pyroaring import BitMap
from sqlalchemy import (
    ColumnElement,
    Insert,
    Integer,
    Select,
    Table,
    and_,
    bindparam,
    cast,
    delete,
    extract,
    func,
    insert,
    literal_column,
    or_,
    select,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from reports.aggregates import (
    app_not_indexed,
    day_of,
    hour_floor,
    hour_start,
    month_of,
    next_month,
    store_ready,
)
from reports.schema import appeals, clients
from reports.store_schema import (
    DAY,
    HOUR,
    MONTH,
    STORE_VERSION,
    rollup_clients,
    rollup_first,
    rollup_state,
)

logger = logging.getLogger(__name__)

# Any constant shared by every writer of this database: the key of the advisory lock.
_PG_LOCK_KEY = 0x726F6C6C  # "roll"
# Touched hours closer than this are recomputed as one range: fewer, simpler statements.
_MERGE_GAP_HOURS = 6
# Recompute at most about this many hours per round, so a rebuild holds a month in memory.
_ROUND_HOURS = 24 * 31
# Up to this many inserted appeals a write adds them to the buckets (grow_aggregates) instead
# of recomputing the touched hours from the tables.
GROW_MAX_APPEALS = 20_000

Progress = Callable[[int, int], None]


class FirstAppeal(NamedTuple):
    """A client's first-ever appeal as stored on the client: its id, app and UTC hour."""

    appeal_id: int | None
    app_id: int | None
    hour: int


def hour_expression(column: Any, dialect: str) -> ColumnElement[int]:
    """The UTC hour (hours since the epoch) of a UTCDateTime column, in SQL."""
    if dialect == "sqlite":
        # Stored as UTC text 'YYYY-MM-DD HH:MM:SS.ffffff'. The fraction is cut off first:
        # SQLite rounds it to milliseconds, so 23:59:59.999999 would land in the next hour.
        text_seconds = cast(func.strftime("%s", func.substr(column, 1, 19)), Integer)
        return cast(text_seconds // 3600, Integer).label("hour")
    # EXTRACT gives an exact numeric on PostgreSQL 14+, so the floor never rounds wrongly.
    epoch_seconds = extract("epoch", column)
    return cast(func.floor(epoch_seconds / 3600), Integer).label("hour")


def _in_hours(column: Any, ranges: list[tuple[int, int]]) -> ColumnElement[bool]:
    return _within(column, [(hour_start(low), hour_start(high)) for low, high in ranges])


def _bucket_ranges(column: Any, ranges: list[tuple[int, int]]) -> ColumnElement[bool]:
    return _within(column, ranges)


def _within(column: Any, ranges: list[tuple[Any, Any]]) -> ColumnElement[bool]:
    """column in any of the sorted half-open ranges.

    The enclosing range comes first so that SQLite ranges over the index even where it does
    not split the OR into one index range per term (it then scanned the whole level).
    """
    runs = or_(*(and_(column >= low, column < high) for low, high in ranges))
    if len(ranges) == 1:
        return runs
    return and_(column >= ranges[0][0], column < ranges[-1][1], runs)


def _ranges(hours: Iterable[int], gap: int = 1) -> list[tuple[int, int]]:
    """Sorted hours as half-open [low, high) runs, joining runs less than `gap` apart."""
    runs: list[tuple[int, int]] = []
    for hour in sorted(set(hours)):
        if runs and hour < runs[-1][1] + gap:
            runs[-1] = (runs[-1][0], max(runs[-1][1], hour + 1))
        else:
            runs.append((hour, hour + 1))
    return runs


def _blob(bitmap: BitMap) -> bytes:
    bitmap.run_optimize()
    return bitmap.serialize()


# The first appeals of clients named by id, built once: a live batch names its few clients,
# and building this select per batch cost more Python than running it.
_FIRST_APPEALS_BY_ID = (
    select(clients.c.id, clients.c.first_appeal_id, appeals.c.app_id, clients.c.first_appeal_at)
    .select_from(clients.outerjoin(appeals, appeals.c.id == clients.c.first_appeal_id))
    .where(clients.c.id.in_(bindparam("ids", expanding=True)))
)


async def first_appeals(
    connection: AsyncConnection, client_ids: Select[Any] | Collection[int]
) -> dict[int, FirstAppeal]:
    """The first appeal (id, app, UTC hour) of each of these clients, as stored now."""
    if isinstance(client_ids, Select):
        rows = await connection.execute(
            select(*_FIRST_APPEALS_BY_ID.selected_columns)
            .select_from(clients.outerjoin(appeals, appeals.c.id == clients.c.first_appeal_id))
            .where(clients.c.id.in_(client_ids))
        )
    else:
        rows = await connection.execute(_FIRST_APPEALS_BY_ID, {"ids": list(client_ids)})
    return {
        client_id: FirstAppeal(appeal_id, app_id, hour_floor(first_at))
        for client_id, appeal_id, app_id, first_at in rows
    }


def first_appeal_changes(
    before: dict[int, FirstAppeal], after: dict[int, FirstAppeal]
) -> tuple[set[tuple[int, datetime]], set[datetime]]:
    """The (app, hour) buckets and first-appeal hours of clients whose first appeal moved."""
    app_hours: set[tuple[int, datetime]] = set()
    first_hours: set[datetime] = set()
    for client_id in before.keys() | after.keys():
        old, new = before.get(client_id), after.get(client_id)
        if old == new:
            continue
        for first in (old, new):
            if first is None:
                continue
            first_hours.add(hour_start(first.hour))
            if first.app_id is not None:
                app_hours.add((first.app_id, hour_start(first.hour)))
    return app_hours, first_hours


async def appeal_hours(
    connection: AsyncConnection, appeal_ids: Select[Any] | Collection[int]
) -> set[tuple[int, datetime]]:
    """The (app_id, UTC hour) buckets of these appeals as stored now."""
    hour = hour_expression(appeals.c.created_at, connection.dialect.name)
    ids = appeal_ids if isinstance(appeal_ids, Select) else list(appeal_ids)
    rows = await connection.execute(
        select(appeals.c.app_id, hour).where(appeals.c.id.in_(ids)).distinct()
    )
    return {(app_id, hour_start(h)) for app_id, h in rows}


async def refresh_aggregates(
    connection: AsyncConnection,
    *,
    appeal_hours: set[tuple[int, datetime]],
    first_hours: set[datetime],
    inserts_only: bool = False,
) -> None:
    """Recompute these (app_id, UTC hour) and first-appeal hour buckets and the days and months
    above them, exactly, from the appeals and clients tables, in the caller's transaction.

    inserts_only=True promises that since the store was last current appeals were only added
    (none deleted or moved): a month's client bitmap is then its old one joined with the
    recomputed days instead of the union of all its days. A small insert-only write uses
    grow_aggregates instead.
    """
    if not (appeal_hours or first_hours) or not await store_ready(connection):
        return
    await lock_aggregates(connection)
    by_app: dict[int, set[int]] = defaultdict(set)
    for app_id, moment in appeal_hours:
        by_app[app_id].add(hour_floor(moment))
    first = {hour_floor(moment) for moment in first_hours}
    await _refresh(connection, by_app, first, grow_only=inserts_only)


async def grow_aggregates(
    connection: AsyncConnection,
    *,
    new_appeals: Iterable[tuple[int, int, int]],
    before: dict[int, FirstAppeal],
    after: dict[int, FirstAppeal],
) -> None:
    """Add a write's newly inserted appeals to the buckets of every level, exactly.

    Only for a write that inserted appeals and deleted or moved none; `new_appeals` are the
    (app_id, UTC hour, client_id) of exactly the inserted ones, and `before`/`after` are the
    first appeals of every client they belong to, taken under lock_aggregates before and after
    the write. With appeals only added, each bucket's clients and appeal count only grow, and
    its first-appeal count changes by the clients whose first appeal moved into or out of it:
    a handful of rows read and written back instead of hours recomputed from the tables (the
    live webhook path).
    """
    # (app, hour) -> the clients of its new appeals, one entry per appeal
    by_hour: dict[tuple[int, int], list[int]] = defaultdict(list)
    for app_id, hour, client_id in new_appeals:
        by_hour[(app_id, hour)].append(client_id)
    # (level, bucket, app) -> [appeals added, first-appeal count change, clients added]
    grown: dict[tuple[int, int, int], list[Any]] = defaultdict(lambda: [0, 0, BitMap()])
    # A live batch falls into a few hours: their days and months are worked out once each.
    for (app_id, hour), client_ids in by_hour.items():
        added = BitMap(client_ids)
        for key in _bucket_keys(hour, app_id):
            grown[key][0] += len(client_ids)
            grown[key][2] |= added
    # (level, bucket) -> (clients whose first appeal left it, clients whose first appeal is in it)
    firsts: dict[tuple[int, int], tuple[BitMap, BitMap]] = defaultdict(
        lambda: (BitMap(), BitMap())
    )
    for client_id in before.keys() | after.keys():
        old, new = before.get(client_id), after.get(client_id)
        if old == new:
            continue
        for first, change, side in ((old, -1, 0), (new, 1, 1)):
            if first is None:
                continue
            for level, bucket, _ in _bucket_keys(first.hour, 0):
                firsts[(level, bucket)][side].add(client_id)
            if first.app_id is not None:
                for key in _bucket_keys(first.hour, first.app_id):
                    grown[key][1] += change
    if grown:
        await _grow_rollup_clients(connection, grown)
    if firsts:
        await _grow_rollup_first(connection, firsts)


def _bucket_keys(hour: int, app_id: int) -> list[tuple[int, int, int]]:
    """The (level, bucket, app) of the hour, its day and its month."""
    return [(HOUR, hour, app_id), (DAY, day_of(hour), app_id), (MONTH, month_of(hour), app_id)]


def _of_levels(table: Table) -> ColumnElement[bool]:
    """Rows of the buckets bound as `hours`, `days` and `months`, each list at its level."""
    return or_(
        *(
            and_(table.c.level == level, table.c.bucket.in_(bindparam(name, expanding=True)))
            for level, name in ((HOUR, "hours"), (DAY, "days"), (MONTH, "months"))
        )
    )


def _level_params(keys: Iterable[tuple[int, ...]]) -> dict[str, list[int]]:
    """The bound lists of _of_levels for these (level, bucket[, app]) keys: callers then match
    keys exactly, as a row of another key may come too."""
    buckets: dict[int, set[int]] = {HOUR: set(), DAY: set(), MONTH: set()}
    for level, bucket, *_ in keys:
        buckets[level].add(bucket)
    return {
        name: sorted(buckets[level])
        for level, name in ((HOUR, "hours"), (DAY, "days"), (MONTH, "months"))
    }


# The statements of a live batch, built once: building and keying them per batch cost more
# Python than running them.
_STORED_CLIENT_BUCKETS = select(rollup_clients).where(
    _of_levels(rollup_clients), rollup_clients.c.app_id.in_(bindparam("apps", expanding=True))
)
_STORED_FIRST_BUCKETS = select(rollup_first).where(_of_levels(rollup_first))
_DELETE_FIRST_BUCKETS = delete(rollup_first).where(_of_levels(rollup_first))


async def _grow_rollup_clients(
    connection: AsyncConnection, grown: dict[tuple[int, int, int], list[Any]]
) -> None:
    params = _level_params(grown) | {"apps": sorted({app_id for _, _, app_id in grown})}
    stored = {
        (row.level, row.bucket, row.app_id): row
        for row in await connection.execute(_STORED_CLIENT_BUCKETS, params)
    }
    values = []
    for (level, bucket, app_id), (added, first_change, new_clients) in grown.items():
        row = stored.get((level, bucket, app_id))
        bitmap = BitMap.deserialize(row.clients) if row is not None else BitMap()
        values.append(
            {
                "level": level,
                "bucket": bucket,
                "app_id": app_id,
                "appeals": (row.appeals if row is not None else 0) + added,
                "firsts": (row.firsts if row is not None else 0) + first_change,
                "clients": _blob(bitmap | new_clients),
            }
        )
    await connection.execute(_upsert(connection.dialect.name, rollup_clients), values)


async def _grow_rollup_first(
    connection: AsyncConnection, firsts: dict[tuple[int, int], tuple[BitMap, BitMap]]
) -> None:
    stored = {
        (row.level, row.bucket): BitMap.deserialize(row.clients)
        for row in await connection.execute(_STORED_FIRST_BUCKETS, _level_params(firsts))
    }
    values, emptied = [], []
    for (level, bucket), (left, arrived) in firsts.items():
        # A client whose first appeal moved within the bucket both left and arrived: it stays.
        bitmap = (stored.get((level, bucket), BitMap()) - left) | arrived
        if bitmap:
            values.append({"level": level, "bucket": bucket, "clients": _blob(bitmap)})
        elif (level, bucket) in stored:
            emptied.append((level, bucket))
    if emptied:
        await connection.execute(_DELETE_FIRST_BUCKETS, _level_params(emptied))
    if values:
        await connection.execute(_upsert(connection.dialect.name, rollup_first), values)


@cache
def _upsert(dialect: str, table: Table) -> Insert:
    """Insert rows, or overwrite the stored row with the same primary key (built once a table)."""
    insert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)
    key = [column.name for column in table.primary_key]
    return insert.on_conflict_do_update(
        index_elements=key,
        set_={
            column.name: insert.excluded[column.name]
            for column in table.columns
            if column.name not in key
        },
    )


async def lock_aggregates(connection: AsyncConnection) -> None:
    """Serialise store writers until the transaction ends (PostgreSQL; SQLite has one writer).

    Take it before the `first_appeals` snapshot, so no other writer moves a first appeal
    between the snapshot and the refresh.
    """
    if connection.dialect.name == "postgresql":
        await connection.execute(text(f"SELECT pg_advisory_xact_lock({_PG_LOCK_KEY})"))


async def _refresh(
    connection: AsyncConnection,
    by_app: dict[int, set[int]],
    first_hours: set[int],
    progress: Progress | None = None,
    *,
    grow_only: bool = False,
) -> None:
    """Recompute in rounds of whole UTC months so memory stays bounded on a big write."""
    rounds: dict[int, tuple[dict[int, set[int]], set[int]]] = defaultdict(
        lambda: (defaultdict(set), set())
    )
    for app_id, hours in by_app.items():
        for hour in hours:
            rounds[month_of(hour)][0][app_id].add(hour)
    for hour in first_hours:
        rounds[month_of(hour)][1].add(hour)
    months = sorted(rounds)
    # Few touched hours (a live batch) go in one round whatever months they fall in.
    total = sum(len(h) for h in by_app.values()) + len(first_hours)
    if total <= _ROUND_HOURS:
        merged_apps: dict[int, set[int]] = defaultdict(set)
        merged_firsts: set[int] = set()
        for month in months:
            for app_id, hours in rounds[month][0].items():
                merged_apps[app_id] |= hours
            merged_firsts |= rounds[month][1]
        await _refresh_round(connection, merged_apps, merged_firsts, grow_only)
        if progress:
            progress(1, 1)
        return
    for done, month in enumerate(months, 1):
        await _refresh_round(connection, *rounds[month], grow_only)
        if progress:
            progress(done, len(months))


async def _refresh_round(
    connection: AsyncConnection,
    by_app: dict[int, set[int]],
    first_hours: set[int],
    grow_only: bool,
) -> None:
    dialect = connection.dialect.name
    apps = sorted(by_app)
    hours = set().union(*by_app.values()) if by_app else set()
    if apps:
        # Every hour inside the merged ranges is recomputed for these apps, touched or not:
        # recomputing from the source is exact either way.
        ranges = _ranges(hours, _MERGE_GAP_HOURS)
        await _hours_from_appeals(connection, apps, ranges, dialect)
        days = {day_of(h) for low, high in ranges for h in range(low, high)}
        day_ranges = _ranges_of_buckets(days, 24)
        await _derive(connection, rollup_clients, apps, HOUR, DAY, day_ranges, day_of)
        if grow_only:
            await _grow_months(connection, apps, days)
        else:
            month_ranges = _month_ranges({month_of(d) for d in days})
            await _derive(connection, rollup_clients, apps, DAY, MONTH, month_ranges, month_of)
    if first_hours:
        ranges = _ranges(first_hours, _MERGE_GAP_HOURS)
        await _first_hours_from_clients(connection, ranges, dialect)
        days = {day_of(h) for low, high in ranges for h in range(low, high)}
        await _derive(
            connection, rollup_first, None, HOUR, DAY, _ranges_of_buckets(days, 24), day_of
        )
        month_ranges = _month_ranges({month_of(d) for d in days})
        await _derive(connection, rollup_first, None, DAY, MONTH, month_ranges, month_of)


def _ranges_of_buckets(starts: set[int], width: int) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for start in sorted(starts):
        if runs and runs[-1][1] == start:
            runs[-1] = (runs[-1][0], start + width)
        else:
            runs.append((start, start + width))
    return runs


def _month_ranges(months: set[int]) -> list[tuple[int, int]]:
    runs: list[tuple[int, int]] = []
    for month in sorted(months):
        if runs and runs[-1][1] == month:
            runs[-1] = (runs[-1][0], next_month(month))
        else:
            runs.append((month, next_month(month)))
    return runs


async def _hours_from_appeals(
    connection: AsyncConnection, apps: list[int], ranges: list[tuple[int, int]], dialect: str
) -> None:
    """Hour buckets of these apps within these hour ranges, from appeals and first appeals."""
    hour = hour_expression(appeals.c.created_at, dialect)
    in_ranges = and_(_in_hours(appeals.c.created_at, ranges), app_not_indexed().in_(apps))
    counts = await connection.execute(
        select(hour, appeals.c.app_id, func.count())
        .where(in_ranges)
        .group_by(literal_column("hour"), appeals.c.app_id)
    )
    rows: dict[tuple[int, int], list[Any]] = {(h, app_id): [n, 0, []] for h, app_id, n in counts}
    await _count_firsts(connection, rows, ranges, apps, dialect)
    pairs = await connection.execute(
        select(hour, appeals.c.app_id, appeals.c.client_id).where(in_ranges)
    )
    for h, app_id, client_id in pairs:
        rows[(h, app_id)][2].append(client_id)
    await connection.execute(
        delete(rollup_clients).where(
            rollup_clients.c.level == HOUR,
            rollup_clients.c.app_id.in_(apps),
            _bucket_ranges(rollup_clients.c.bucket, ranges),
        )
    )
    if rows:
        await connection.execute(
            insert(rollup_clients),
            [
                {
                    "level": HOUR,
                    "bucket": h,
                    "app_id": app_id,
                    "appeals": n,
                    "firsts": f,
                    "clients": _blob(BitMap(ids)),
                }
                for (h, app_id), (n, f, ids) in rows.items()
            ],
        )


async def _first_hours_from_clients(
    connection: AsyncConnection, ranges: list[tuple[int, int]], dialect: str
) -> None:
    hour = hour_expression(clients.c.first_appeal_at, dialect)
    found: dict[int, list[int]] = defaultdict(list)
    for h, client_id in await connection.execute(
        select(hour, clients.c.id).where(_in_hours(clients.c.first_appeal_at, ranges))
    ):
        found[h].append(client_id)
    await connection.execute(
        delete(rollup_first).where(
            rollup_first.c.level == HOUR, _bucket_ranges(rollup_first.c.bucket, ranges)
        )
    )
    if found:
        await connection.execute(
            insert(rollup_first),
            [
                {"level": HOUR, "bucket": h, "clients": _blob(BitMap(ids))}
                for h, ids in found.items()
            ],
        )


async def _derive(
    connection: AsyncConnection,
    table: Any,
    apps: list[int] | None,
    source: int,
    target: int,
    ranges: list[tuple[int, int]],
    parent: Callable[[int], int],
) -> None:
    """Buckets of level `target` in these ranges as unions and sums of their `source` buckets."""
    if not ranges:
        return
    per_app = apps is not None
    columns = [table.c.bucket, table.c.clients]
    if per_app:
        columns += [table.c.app_id, table.c.appeals, table.c.firsts]
    query = select(*columns).where(table.c.level == source, _bucket_ranges(table.c.bucket, ranges))
    if per_app:
        query = query.where(table.c.app_id.in_(apps))
    groups: dict[tuple[int, int], list[Any]] = {}
    for row in await connection.execute(query):
        key = (parent(row.bucket), row.app_id if per_app else 0)
        group = groups.setdefault(key, [0, 0, []])
        if per_app:
            group[0] += row.appeals
            group[1] += row.firsts
        group[2].append(BitMap.deserialize(row.clients))
    clear = delete(table).where(table.c.level == target, _bucket_ranges(table.c.bucket, ranges))
    if per_app:
        clear = clear.where(table.c.app_id.in_(apps))
    await connection.execute(clear)
    if not groups:
        return
    values: list[dict[str, Any]] = []
    for (bucket, app_id), (n, f, bitmaps) in groups.items():
        union = BitMap.union(*bitmaps) if len(bitmaps) > 1 else bitmaps[0]
        value: dict[str, Any] = {"level": target, "bucket": bucket, "clients": _blob(union)}
        if per_app:
            value |= {"app_id": app_id, "appeals": n, "firsts": f}
        values.append(value)
    await connection.execute(insert(table), values)


async def _grow_months(connection: AsyncConnection, apps: list[int], days: set[int]) -> None:
    """Months above these recomputed days after appeals were only added.

    Adding appeals only adds clients, so the old month bitmap joined with the recomputed days
    holds every client of the month; the counts are summed afresh from all the month's days,
    since first appeals can move between buckets even when appeals are only added.
    """
    groups: dict[tuple[int, int], list[Any]] = {}
    months = sorted({month_of(day) for day in days})
    for month in months:
        sums = await connection.execute(
            select(
                rollup_clients.c.app_id,
                func.sum(rollup_clients.c.appeals),
                func.sum(rollup_clients.c.firsts),
            )
            .where(
                rollup_clients.c.level == DAY,
                rollup_clients.c.bucket >= month,
                rollup_clients.c.bucket < next_month(month),
                rollup_clients.c.app_id.in_(apps),
            )
            .group_by(rollup_clients.c.app_id)
        )
        for app_id, appeal_count, firsts in sums:
            groups[(month, app_id)] = [appeal_count, firsts, []]
    sources = [
        (MONTH, _month_ranges(set(months)), lambda bucket: bucket),
        (DAY, _ranges_of_buckets(days, 24), month_of),
    ]
    for level, ranges, parent in sources:
        rows = await connection.execute(
            select(
                rollup_clients.c.bucket, rollup_clients.c.app_id, rollup_clients.c.clients
            ).where(
                rollup_clients.c.level == level,
                _bucket_ranges(rollup_clients.c.bucket, ranges),
                rollup_clients.c.app_id.in_(apps),
            )
        )
        for bucket, app_id, blob in rows:
            if (group := groups.get((parent(bucket), app_id))) is not None:
                group[2].append(BitMap.deserialize(blob))
    await connection.execute(
        delete(rollup_clients).where(
            rollup_clients.c.level == MONTH,
            _bucket_ranges(rollup_clients.c.bucket, _month_ranges(set(months))),
            rollup_clients.c.app_id.in_(apps),
        )
    )
    if groups:
        await connection.execute(
            insert(rollup_clients),
            [
                {
                    "level": MONTH,
                    "bucket": month,
                    "app_id": app_id,
                    "appeals": appeal_count,
                    "firsts": firsts,
                    "clients": _blob(BitMap.union(*bitmaps)),
                }
                for (month, app_id), (appeal_count, firsts, bitmaps) in groups.items()
            ],
        )


async def clear_aggregates(connection: AsyncConnection) -> None:
    """Empty the store but keep it complete: for a writer that deletes every appeal."""
    await connection.execute(delete(rollup_clients))
    await connection.execute(delete(rollup_first))


async def rebuild_aggregates(
    connection: AsyncConnection, progress: Progress | None = None
) -> None:
    """Build the whole store from the appeals and clients tables and mark it complete."""
    await lock_aggregates(connection)
    await connection.execute(delete(rollup_state))
    await clear_aggregates(connection)
    low, high = (
        await connection.execute(
            select(func.min(appeals.c.created_at), func.max(appeals.c.created_at))
        )
    ).one()
    first_low, first_high = (
        await connection.execute(
            select(func.min(clients.c.first_appeal_at), func.max(clients.c.first_appeal_at))
        )
    ).one()
    app_ids = (await connection.execute(select(appeals.c.app_id).distinct())).scalars().all()
    hours = set(range(hour_floor(low), hour_floor(high) + 1)) if low is not None else set()
    firsts = (
        set(range(hour_floor(first_low), hour_floor(first_high) + 1))
        if first_low is not None
        else set()
    )
    await _refresh(connection, dict.fromkeys(app_ids, hours), firsts, progress)
    await connection.execute(insert(rollup_state).values(id=1, version=STORE_VERSION))


class StoreSize(NamedTuple):
    buckets: int
    bytes: int


async def aggregates_size(connection: AsyncConnection) -> StoreSize:
    """How many buckets the store holds and the bytes of their bitmaps."""
    buckets = size = 0
    for table in (rollup_clients, rollup_first):
        count, total = (
            await connection.execute(
                select(func.count(), func.coalesce(func.sum(func.length(table.c.clients)), 0))
            )
        ).one()
        buckets += count
        size += int(total)
    return StoreSize(buckets, size)


async def ensure_aggregates(connection: AsyncConnection) -> bool:
    """Build the store when it is missing (first start after the upgrade); True if built."""
    if await store_ready(connection):
        return False
    logger.info("building the pre-aggregated metric store")
    await rebuild_aggregates(connection)
    return True


async def _count_firsts(
    connection: AsyncConnection,
    rows: dict[tuple[int, int], list[Any]],
    ranges: Any,
    apps: Any,
    dialect: str,
) -> None:
    """Set the count of first-ever appeals of each (hour, app) of `ranges` into `rows`."""
    first_hour = hour_expression(clients.c.first_appeal_at, dialect)
    firsts = await connection.execute(
        select(first_hour, appeals.c.app_id, func.count())
        .select_from(clients.join(appeals, appeals.c.id == clients.c.first_appeal_id))
        .where(_in_hours(clients.c.first_appeal_at, ranges), app_not_indexed().in_(apps))
        .group_by(literal_column("hour"), appeals.c.app_id)
    )
    for h, app_id, n in firsts:
        rows.setdefault((h, app_id), [0, 0, []])[1] = n
