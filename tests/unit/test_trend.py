"""The trend series counted by hand, per hour, day and week, on both backends.

The data of tests/datasets.py (Europe/Moscow), see tests/test_metrics.py. On 2026-11-10 local:
B 00:00 (first ever), A 10:00 whatsapp and 11:00 telegram (first in 2023), D 12:00 telegram
(first ever) and 13:00 whatsapp, B 15:00, C 23:59:59 (first on 2026-11-09 23:59:59). C again on
2026-11-11 00:00:00.
"""

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from reports.metrics import build_report
from reports.model import Period, PeriodPair, ReportFilter, Trend
from reports.periods import parse_period
from reports.trend import bucket_bounds, build_trend, trend_unit
from tests.datasets import OLD_ROWS, ROWS_IN_AND_AROUND_P, load

MSK = ZoneInfo("Europe/Moscow")
BERLIN = ZoneInfo("Europe/Berlin")
KATHMANDU = ZoneInfo("Asia/Kathmandu")


def days(first: datetime, count: int) -> Period:
    return Period(start=first, end=first + timedelta(days=count), tz=first.tzinfo)  # type: ignore[arg-type]


def pair(first: datetime, count: int) -> PeriodPair:
    return PeriodPair(current=days(first, count), previous=days(first - timedelta(count), count))


@pytest.fixture
async def loaded(engine: AsyncEngine, tmp_path: Path) -> AsyncEngine:
    await load(engine, tmp_path, ROWS_IN_AND_AROUND_P, "recent")
    await load(engine, tmp_path, OLD_ROWS, "old")
    return engine


async def trend_for(engine: AsyncEngine, periods: PeriodPair, flt: ReportFilter) -> Trend:
    async with engine.connect() as connection:
        return await build_trend(connection, periods, flt)


def counts(trend: Trend, previous: bool = False) -> dict[int, tuple[int, int, int]]:
    """Non-empty buckets by index: (appeals, contacted, new)."""
    buckets = trend.previous if previous else trend.current
    return {
        index: (b.appeals, b.contacted_clients, b.new_clients)
        for index, b in enumerate(buckets)
        if (b.appeals, b.contacted_clients, b.new_clients) != (0, 0, 0)
    }


async def test_single_day_is_counted_per_hour(loaded: AsyncEngine) -> None:
    trend = await trend_for(loaded, pair(datetime(2026, 11, 10, tzinfo=MSK), 1), ReportFilter())
    assert trend.unit == "hour"
    assert len(trend.current) == len(trend.previous) == 24
    assert trend.current[0].start == datetime(2026, 11, 10, tzinfo=MSK)
    assert trend.current[23].end == datetime(2026, 11, 11, tzinfo=MSK)
    # B's first second of the day is hour 0; C's last second is hour 23 and not new.
    assert counts(trend) == {
        0: (1, 1, 1),
        10: (1, 1, 0),
        11: (1, 1, 0),
        12: (1, 1, 1),
        13: (1, 1, 0),
        15: (1, 1, 0),
        23: (1, 1, 0),
    }
    # C's first appeal, one second before midnight, is the previous day's hour 23.
    assert counts(trend, previous=True) == {23: (1, 1, 1)}


async def test_a_filter_counts_new_only_where_the_client_wrote_through_it(
    loaded: AsyncEngine,
) -> None:
    periods = pair(datetime(2026, 11, 10, tzinfo=MSK), 1)
    telegram = await trend_for(loaded, periods, ReportFilter(channel="telegram"))
    assert counts(telegram) == {11: (1, 1, 0), 12: (1, 1, 1)}
    # D's first appeal (12:00) was through telegram, so at 13:00 through whatsapp it is not new.
    whatsapp = await trend_for(loaded, periods, ReportFilter(channel="whatsapp"))
    assert counts(whatsapp) == {10: (1, 1, 0), 13: (1, 1, 0), 23: (1, 1, 0)}
    assert counts(whatsapp, previous=True) == {23: (1, 1, 1)}


async def test_days_count_a_client_on_two_channels_once(loaded: AsyncEngine) -> None:
    trend = await trend_for(loaded, pair(datetime(2026, 11, 9, tzinfo=MSK), 3), ReportFilter())
    assert trend.unit == "day"
    assert [(b.start.day, b.end.day) for b in trend.current] == [(9, 10), (10, 11), (11, 12)]
    assert counts(trend) == {0: (1, 1, 1), 1: (7, 4, 2), 2: (1, 1, 0)}
    assert counts(trend, previous=True) == {}
    assert len(trend.previous) == 3
    # Within the day D's telegram first appeal and whatsapp appeal share a bucket: new.
    whatsapp = await trend_for(
        loaded, pair(datetime(2026, 11, 9, tzinfo=MSK), 3), ReportFilter(channel="whatsapp")
    )
    assert counts(whatsapp) == {0: (1, 1, 1), 1: (3, 3, 1), 2: (1, 1, 0)}
    app = await trend_for(
        loaded, pair(datetime(2026, 11, 9, tzinfo=MSK), 3), ReportFilter(app="Sales")
    )
    assert counts(app) == {1: (2, 2, 1)}


async def test_buckets_agree_with_the_period_report(loaded: AsyncEngine) -> None:
    day = pair(datetime(2026, 11, 10, tzinfo=MSK), 1)
    async with loaded.connect() as connection:
        report = await build_report(connection, day, ReportFilter())
    trend = await trend_for(loaded, day, ReportFilter())
    assert sum(b.appeals for b in trend.current) == report.current.appeals == 7
    assert sum(b.appeals for b in trend.previous) == report.previous.appeals == 1

    week = pair(datetime(2026, 11, 8, tzinfo=MSK), 5)
    for flt in (ReportFilter(), ReportFilter(channel="whatsapp"), ReportFilter(app="Sales")):
        trend = await trend_for(loaded, week, flt)
        for bucket in trend.current:
            one_day = PeriodPair(
                current=Period(start=bucket.start, end=bucket.end, tz=MSK),
                previous=Period(start=bucket.start - timedelta(1), end=bucket.start, tz=MSK),
            )
            async with loaded.connect() as connection:
                metrics = (await build_report(connection, one_day, flt)).current
            assert bucket.contacted_clients == metrics.contacted_clients
            assert bucket.appeals == metrics.appeals
            assert bucket.new_clients == metrics.new_clients


async def test_dst_end_day_in_berlin_has_25_hours(engine: AsyncEngine, tmp_path: Path) -> None:
    rows = [
        ("z1", "Z", "whatsapp", "Sales", "2026-10-25T00:00:00+02:00"),
        ("x1", "X", "whatsapp", "Sales", "2026-10-25T02:30:00+02:00"),
        ("x2", "X", "telegram", "Bot", "2026-10-25T02:30:00+01:00"),
        ("y0", "Y", "whatsapp", "Sales", "2026-10-24T23:59:59+02:00"),
        ("y1", "Y", "whatsapp", "Sales", "2026-10-25T23:59:59+01:00"),
    ]
    await load(engine, tmp_path, rows, "berlin")
    trend = await trend_for(engine, pair(datetime(2026, 10, 25, tzinfo=BERLIN), 1), ReportFilter())
    assert len(trend.current) == 25 and len(trend.previous) == 24
    # Bucket 2 is the first 02:00 (CEST), bucket 3 the repeated one (CET).
    assert [b.start.utcoffset() for b in trend.current[2:4]] == [
        timedelta(hours=2),
        timedelta(hours=1),
    ]
    assert counts(trend) == {0: (1, 1, 1), 2: (1, 1, 1), 3: (1, 1, 0), 24: (1, 1, 0)}
    assert counts(trend, previous=True) == {23: (1, 1, 1)}

    three = await trend_for(engine, pair(datetime(2026, 10, 24, tzinfo=BERLIN), 3), ReportFilter())
    # In UTC: subtracting two times of one zone gives the wall-clock difference.
    assert [b.end.astimezone(UTC) - b.start for b in three.current] == [
        timedelta(hours=24),
        timedelta(hours=25),
        timedelta(hours=24),
    ]
    assert counts(three) == {0: (1, 1, 1), 1: (4, 3, 2)}


async def test_dst_start_day_in_berlin_has_23_hours(engine: AsyncEngine, tmp_path: Path) -> None:
    rows = [
        ("a", "A", "whatsapp", "Sales", "2026-03-29T01:59:59+01:00"),
        ("b", "B", "whatsapp", "Sales", "2026-03-29T03:00:00+02:00"),
    ]
    await load(engine, tmp_path, rows, "berlin")
    trend = await trend_for(engine, pair(datetime(2026, 3, 29, tzinfo=BERLIN), 1), ReportFilter())
    assert [b.start.hour for b in trend.current[:3]] == [0, 1, 3]
    assert len(trend.current) == 23
    assert counts(trend) == {1: (1, 1, 1), 2: (1, 1, 1)}


async def test_kathmandu_days_start_at_its_own_midnight(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    rows = [
        ("k1", "K", "webchat", "Site", "2026-11-09T18:14:59Z"),  # 23:59:59 on the 9th
        ("k2", "K", "webchat", "Site", "2026-11-09T18:15:00Z"),  # 00:00:00 on the 10th
    ]
    await load(engine, tmp_path, rows, "kathmandu")
    trend = await trend_for(
        engine, pair(datetime(2026, 11, 9, tzinfo=KATHMANDU), 2), ReportFilter()
    )
    assert trend.current[1].start.isoformat() == "2026-11-10T00:00:00+05:45"
    assert counts(trend) == {0: (1, 1, 1), 1: (1, 1, 0)}


def test_units_and_clipped_bounds() -> None:
    now = datetime(2026, 11, 10, 9, 30, tzinfo=MSK)
    today = Period(start=datetime(2026, 11, 10, tzinfo=MSK), end=now, tz=MSK)
    assert trend_unit(today) == "hour"
    hours = bucket_bounds(today, "hour")
    assert len(hours) == 10 and hours[-1] == (datetime(2026, 11, 10, 9, tzinfo=MSK), now)
    quarter = days(datetime(2026, 7, 1, tzinfo=MSK), 92)
    assert trend_unit(quarter) == "day"
    longer = days(datetime(2026, 7, 1, tzinfo=MSK), 93)  # Wednesday 1 July to 1 October
    assert trend_unit(longer) == "week"
    weeks = bucket_bounds(longer, "week")
    assert weeks[0] == (datetime(2026, 7, 1, tzinfo=MSK), datetime(2026, 7, 6, tzinfo=MSK))
    assert weeks[1][0].weekday() == 0 and weeks[1][1] - weeks[1][0] == timedelta(days=7)
    assert weeks[-1] == (datetime(2026, 9, 28, tzinfo=MSK), datetime(2026, 10, 2, tzinfo=MSK))
    assert len(weeks) == 14


async def test_weeks_count_clients_per_iso_week(loaded: AsyncEngine) -> None:
    periods = pair(datetime(2026, 9, 1, tzinfo=MSK), 100)
    trend = await trend_for(loaded, periods, ReportFilter())
    assert trend.unit == "week"
    # 2026-11-09 is a Monday: C's three appeals fall in one week, counted once.
    index = next(
        i for i, b in enumerate(trend.current) if b.start.date().isoformat() == "2026-11-09"
    )
    assert counts(trend) == {index: (9, 4, 3)}


async def test_the_first_hour_of_today_is_one_bucket(loaded: AsyncEngine) -> None:
    # "today" at 00:40 local is one hour bucket: the query once had a CASE without WHEN,
    # a syntax error every night between local midnight and 01:00.
    periods = parse_period("today", now=datetime(2026, 11, 10, 0, 40, tzinfo=MSK), tz=MSK)
    for flt, current in (
        (ReportFilter(), {0: (1, 1, 1)}),
        (ReportFilter(channel="vk"), {0: (1, 1, 1)}),
        (ReportFilter(channel="whatsapp"), {}),
    ):
        trend = await trend_for(loaded, periods, flt)
        assert trend.unit == "hour"
        assert len(trend.current) == len(trend.previous) == 1
        assert trend.current[0].start == datetime(2026, 11, 10, tzinfo=MSK)
        assert counts(trend) == current
        assert counts(trend, previous=True) == {}
