"""The trend series (DESIGN.md §4 counts per local hour, day or ISO week) by SQL aggregation.

Bucket bounds are local wall-clock instants computed here (so DST days get 23 or 25 hours and
+05:45 zones keep their own midnights) and handed to SQL as a CASE over the bounds: one range
scan of the period's index per period, never a loop over appeals.
"""

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, case, distinct, func, literal, select
from sqlalchemy.ext.asyncio import AsyncConnection

from reports.metrics import _in_period, load_catalog
from reports.model import Period, PeriodPair, ReportFilter, Trend, TrendBucket, TrendUnit
from reports.schema import UTCDateTime, appeals, clients

# A quarter has at most 92 days: up to there a point per day stays readable, beyond it weeks.
MAX_DAILY_DAYS = 92

Bounds = list[tuple[datetime, datetime]]


def _last_day(period: Period) -> date:
    # The end is exclusive: the last local day covered is the one of the instant just before it.
    return (period.end.astimezone(period.tz) - timedelta(microseconds=1)).date()


def trend_unit(period: Period) -> TrendUnit:
    """hour for a single local day, week beyond MAX_DAILY_DAYS local days, day otherwise."""
    days = (_last_day(period) - period.start.astimezone(period.tz).date()).days + 1
    if days <= 1:
        return "hour"
    return "week" if days > MAX_DAILY_DAYS else "day"


def _hour_marks(day: date, tz: ZoneInfo) -> list[datetime]:
    """Every local full hour of day as a UTC instant, a repeated hour (DST end) twice."""
    marks = set()
    for hour in range(24):
        for fold in (0, 1):
            # In UTC, since equal wall times of one zone compare equal whatever their fold;
            # a skipped hour (DST start) resolves to the next real one, so the set drops it.
            local = datetime(day.year, day.month, day.day, hour, fold=fold, tzinfo=tz)
            marks.add(local.astimezone(UTC))
    return sorted(marks)


def bucket_bounds(period: Period, unit: TrendUnit) -> Bounds:
    """[start, end) of each bucket in the period's zone, the first and last clipped to it."""
    tz = period.tz
    start, end = period.start.astimezone(tz), period.end.astimezone(tz)
    first, last = start.date(), _last_day(period)
    marks: list[datetime] = []
    day = first
    while day <= last + timedelta(days=1):
        if unit == "hour":
            marks.extend(_hour_marks(day, tz))
        elif unit == "day" or day.weekday() == 0:
            marks.append(datetime(day.year, day.month, day.day, tzinfo=tz).astimezone(UTC))
        day += timedelta(days=1)
    inner = [mark for mark in marks if start < mark < end]
    edges = [start, *(mark.astimezone(tz) for mark in inner), end]
    return list(zip(edges, edges[1:], strict=False))


def _utc(moment: datetime) -> ColumnElement[datetime]:
    return literal(moment.astimezone(UTC), UTCDateTime())


def _bucket_of(column: ColumnElement[datetime], bounds: Bounds) -> ColumnElement[int]:
    """The index of the bucket holding column (rows are already limited to the period)."""
    if len(bounds) == 1:
        # A CASE needs at least one WHEN ("today" in its first hour is one bucket).
        return literal(0)
    return case(
        *((column < _utc(end), index) for index, (_, end) in enumerate(bounds[:-1])),
        else_=len(bounds) - 1,
    )


def _end_of_bucket(column: ColumnElement[datetime], bounds: Bounds) -> ColumnElement[datetime]:
    if len(bounds) == 1:
        return _utc(bounds[0][1])
    return case(
        *((column < _utc(end), _utc(end)) for _, end in bounds[:-1]),
        else_=_utc(bounds[-1][1]),
    )


async def bucket_counts(
    connection: AsyncConnection,
    period: Period,
    bounds: Bounds,
    app_ids: Sequence[int] | None,
) -> tuple[TrendBucket, ...]:
    """Appeals, contacted and new clients of each bucket, per DESIGN.md §4 for that bucket."""
    if not bounds:
        return ()
    start, end = bounds[0][0].astimezone(UTC), bounds[-1][1].astimezone(UTC)
    span = Period(start=bounds[0][0], end=bounds[-1][1], tz=period.tz)
    bucket = _bucket_of(appeals.c.created_at, bounds).label("bucket")
    wrote = {
        row.bucket: (row.appeals, row.contacted)
        for row in await connection.execute(
            select(
                bucket,
                func.count().label("appeals"),
                func.count(distinct(appeals.c.client_id)).label("contacted"),
            )
            .where(_in_period(span, app_ids))
            .group_by(bucket)
        )
    }
    first_bucket = _bucket_of(clients.c.first_appeal_at, bounds).label("bucket")
    new_query = select(first_bucket, func.count().label("new")).where(
        clients.c.first_appeal_at >= start, clients.c.first_appeal_at < end
    )
    if app_ids is not None:
        # New by the first appeal on any channel, but only if the client wrote through the
        # filter in that same bucket: every appeal of a client is at or after its first, so
        # "before the end of the first appeal's bucket" is "in that bucket".
        new_query = new_query.where(
            select(appeals.c.id)
            .where(
                appeals.c.client_id == clients.c.id,
                appeals.c.app_id.in_(app_ids),
                appeals.c.created_at < _end_of_bucket(clients.c.first_appeal_at, bounds),
            )
            .exists()
        )
    new = dict((await connection.execute(new_query.group_by(first_bucket))).all())
    return tuple(
        TrendBucket(
            start=low,
            end=high,
            appeals=wrote.get(index, (0, 0))[0],
            contacted_clients=wrote.get(index, (0, 0))[1],
            new_clients=new.get(index, 0),
        )
        for index, (low, high) in enumerate(bounds)
    )


async def build_trend(
    connection: AsyncConnection, periods: PeriodPair, flt: ReportFilter
) -> Trend:
    """The trend of the current period and, bucket by bucket, of the previous one.

    The previous period is cut with the current period's unit, so bucket i of each lines up
    (Nov 3 with Oct 3 for "month"); FilterError for unknown names, as build_report.
    """
    app_ids = (await load_catalog(connection)).resolve(flt)
    unit = trend_unit(periods.current)
    current, previous = periods.current, periods.previous
    return Trend(
        unit=unit,
        current=await bucket_counts(connection, current, bucket_bounds(current, unit), app_ids),
        previous=await bucket_counts(connection, previous, bucket_bounds(previous, unit), app_ids),
    )
