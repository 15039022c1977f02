"""Appeals by local weekday x local hour of a period (the "By hour" heatmap), by SQL aggregation.

The period is cut into pieces in which the zone's UTC offset is constant (a DST change starts a
new piece), so local time is the UTC epoch plus that piece's offset: exact for +05:30, +05:45
and DST days, with the same integer arithmetic on SQLite and PostgreSQL. When the store is
complete and every offset is a whole number of hours, each whole UTC hour lies in one local hour
and the store's hour buckets answer it; the partial hours at the edges (and any zone otherwise)
are read from the appeals index.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Integer,
    and_,
    case,
    cast,
    extract,
    func,
    literal,
    select,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from reports.aggregates import app_not_indexed, hour_ceil, hour_floor, hour_start, store_ready
from reports.metrics import load_catalog
from reports.model import Period, ReportFilter
from reports.schema import UTCDateTime, appeals
from reports.store_schema import HOUR, rollup_clients

# 1970-01-01, day 0 of the epoch, was a Thursday: ISO weekday index 3 (Monday is 0).
EPOCH_WEEKDAY = 3
# Zones change offset at most a few times a year: probing once a day finds every change of
# the periods this bot reports on, and a bisection pins it to the second.
PROBE = timedelta(days=1)
TICK = timedelta(microseconds=1)

# (weekday 0 = Monday, local hour 0-23) -> appeals
Cells = dict[tuple[int, int], int]
# [start, end) in UTC and the zone's UTC offset in seconds all along it.
Piece = tuple[datetime, datetime, int]


@dataclass(frozen=True, slots=True, kw_only=True)
class Heatmap:
    """Appeals of a period and filter per local weekday and hour (empty cells left out)."""

    period: Period
    filter: ReportFilter
    cells: Cells = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.cells.values())

    def days(self) -> list[date]:
        """The local dates the period touches, first to last."""
        tz = self.period.tz
        first = self.period.start.astimezone(tz).date()
        last = (self.period.end.astimezone(tz) - timedelta(microseconds=1)).date()
        return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def _offset(moment: datetime, period: Period) -> int:
    offset = moment.astimezone(period.tz).utcoffset()
    return int(offset.total_seconds()) if offset is not None else 0


def offset_pieces(period: Period) -> list[Piece]:
    """The period in UTC cut where the zone's offset changes, each piece with its offset."""
    start, end = period.start.astimezone(UTC), period.end.astimezone(UTC)
    pieces: list[Piece] = []
    low, offset = start, _offset(start, period)
    probe = start
    while probe < end:
        step = min(probe + PROBE, end)
        last = step - TICK
        if _offset(last, period) == offset:
            probe = step
            continue
        # Bisect for the first instant with the new offset: `before` keeps the old one.
        before, after = probe, last
        while after - before > TICK:
            middle = before + (after - before) / 2
            if _offset(middle, period) == offset:
                before = middle
            else:
                after = middle
        pieces.append((low, after, offset))
        low, offset, probe = after, _offset(after, period), after
    pieces.append((low, end, offset))
    return pieces


def epoch_seconds(column: ColumnElement[datetime], dialect: str) -> ColumnElement[int]:
    """Whole seconds since the epoch of a UTCDateTime column, in SQL (the fraction cut off)."""
    if dialect == "sqlite":
        # Stored as UTC text 'YYYY-MM-DD HH:MM:SS.ffffff'. The fraction is cut off first:
        # SQLite rounds it to milliseconds, so 23:59:59.999999 would land in the next second.
        return cast(func.strftime("%s", func.substr(column, 1, 19)), Integer)
    # EXTRACT gives an exact numeric on PostgreSQL 14+, so the floor never rounds wrongly.
    return cast(func.floor(extract("epoch", column)), Integer)


def _offset_at(column: ColumnElement[datetime], pieces: Sequence[Piece]) -> ColumnElement[int]:
    """The UTC offset in seconds of the piece holding the column."""
    if len(pieces) == 1:
        return literal(pieces[0][2])
    return case(
        *((column < literal(end, UTCDateTime()), offset) for _, end, offset in pieces[:-1]),
        else_=pieces[-1][2],
    )


def _add(cells: Cells, rows: Iterable[Any]) -> None:
    for weekday, hour, count in rows:
        key = (int(weekday), int(hour))
        cells[key] = cells.get(key, 0) + int(count)


async def _cells_from_appeals(
    connection: AsyncConnection,
    ranges: Sequence[tuple[datetime, datetime]],
    pieces: Sequence[Piece],
    app_ids: Sequence[int] | None,
    cells: Cells,
) -> None:
    """Count the appeals of the UTC ranges into cells, by their local weekday and hour."""
    created = appeals.c.created_at
    for low, high in ranges:
        local = epoch_seconds(created, connection.dialect.name) + _offset_at(created, pieces)
        hour = ((local // 3600) % 24).label("hour")
        weekday = ((local // 86400 + EPOCH_WEEKDAY) % 7).label("weekday")
        conditions = [created >= low, created < high]
        if app_ids is not None:
            conditions.append(app_not_indexed().in_(app_ids))
        rows = await connection.execute(
            select(weekday, hour, func.count()).where(and_(*conditions)).group_by(weekday, hour)
        )
        _add(cells, rows)


async def _cells_from_store(
    connection: AsyncConnection,
    h0: int,
    h1: int,
    pieces: Sequence[Piece],
    app_ids: Sequence[int] | None,
    cells: Cells,
) -> None:
    """Count the whole UTC hours [h0, h1) from the store's hour buckets (whole-hour offsets)."""
    bucket = rollup_clients.c.bucket
    if len(pieces) == 1:
        shift: ColumnElement[int] = literal(pieces[0][2] // 3600)
    else:
        shift = case(
            *((bucket < hour_floor(end), offset // 3600) for _, end, offset in pieces[:-1]),
            else_=pieces[-1][2] // 3600,
        )
    local = bucket + shift
    hour = (local % 24).label("hour")
    weekday = ((local // 24 + EPOCH_WEEKDAY) % 7).label("weekday")
    query = select(weekday, hour, func.sum(rollup_clients.c.appeals)).where(
        rollup_clients.c.level == HOUR, bucket >= h0, bucket < h1
    )
    if app_ids is not None:
        query = query.where(rollup_clients.c.app_id.in_(app_ids))
    rows = await connection.execute(query.group_by(weekday, hour))
    _add(cells, rows)


async def build_heatmap(
    connection: AsyncConnection, period: Period, flt: ReportFilter, *, use_store: bool = True
) -> Heatmap:
    """The heatmap of one period and filter; FilterError for unknown names, as build_report.

    `use_store=False` gives the plain SQL over the appeals index, the reference tests use.
    """
    app_ids = (await load_catalog(connection)).resolve(flt)
    start, end = period.start.astimezone(UTC), period.end.astimezone(UTC)
    cells: Cells = {}
    if end <= start or app_ids == []:
        return Heatmap(period=period, filter=flt, cells=cells)
    pieces = offset_pieces(period)
    h0, h1 = hour_ceil(start), hour_floor(end)
    # The store answers when every UTC hour bucket lies in one local hour: whole-hour
    # offsets that change only at the start of a UTC hour.
    whole_hours = all(offset % 3600 == 0 for _, _, offset in pieces) and all(
        hour_start(hour_floor(change)) == change for _, change, _ in pieces[:-1]
    )
    if use_store and whole_hours and h0 < h1 and await store_ready(connection):
        await _cells_from_store(connection, h0, h1, pieces, app_ids, cells)
        edges = [(start, hour_start(h0)), (hour_start(h1), end)]
        ranges = [(low, high) for low, high in edges if low < high]
    else:
        ranges = [(start, end)]
    await _cells_from_appeals(connection, ranges, pieces, app_ids, cells)
    return Heatmap(period=period, filter=flt, cells={k: v for k, v in cells.items() if v})
