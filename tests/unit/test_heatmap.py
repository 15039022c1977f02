"""The hours heatmap counted by hand on both backends, from the store and by the plain SQL.

The data of tests/datasets.py: on 2026-11-10 (a Tuesday) in Moscow B wrote at 00:00 and 15:00,
A at 10:00 and 11:00, D at 12:00 and 13:00, C at 23:59:59; C also on Monday 23:59:59 and on
Wednesday 00:00:00.
"""

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

import reports.heatmap
from reports.errors import FilterError
from reports.heatmap import Cells, Heatmap, build_heatmap, offset_pieces
from reports.model import Period, ReportFilter
from tests.datasets import OLD_ROWS, ROWS_IN_AND_AROUND_P, load

MSK = ZoneInfo("Europe/Moscow")
KATHMANDU = ZoneInfo("Asia/Kathmandu")
KOLKATA = ZoneInfo("Asia/Kolkata")
NEW_YORK = ZoneInfo("America/New_York")
MON, TUE, WED, SAT, SUN = 0, 1, 2, 5, 6

# New York leaves DST on Sunday 2026-11-01 at 06:00 UTC: 01:30 happens twice.
DST_ROWS = [
    ("n1", "N", "whatsapp", "Sales", "2026-10-31T12:00:00Z"),  # Sat 08:00 EDT
    ("n2", "N", "whatsapp", "Sales", "2026-11-01T05:30:00Z"),  # Sun 01:30 EDT
    ("n3", "M", "telegram", "Bot", "2026-11-01T06:30:00Z"),  # Sun 01:30 EST
    ("n4", "M", "telegram", "Bot", "2026-11-01T06:59:59.999999Z"),  # Sun 01:59:59 EST
    ("n5", "N", "whatsapp", "Sales", "2026-11-02T12:00:00Z"),  # Mon 07:00 EST
]


@pytest.fixture
async def loaded(engine: AsyncEngine, tmp_path: Path) -> AsyncEngine:
    await load(engine, tmp_path, ROWS_IN_AND_AROUND_P, "recent")
    await load(engine, tmp_path, OLD_ROWS, "old")
    await load(engine, tmp_path, DST_ROWS, "dst")
    return engine


def period(start: datetime, end: datetime) -> Period:
    return Period(start=start, end=end, tz=start.tzinfo)  # type: ignore[arg-type]


async def cells(engine: AsyncEngine, span: Period, flt: ReportFilter | None = None) -> Cells:
    """The heatmap's cells, checked to be the same from the store and by the plain SQL."""
    async with engine.connect() as connection:
        store = await build_heatmap(connection, span, flt or ReportFilter())
        sql = await build_heatmap(connection, span, flt or ReportFilter(), use_store=False)
    assert store == sql
    return store.cells


async def test_three_days_in_moscow_by_weekday_and_hour(loaded: AsyncEngine) -> None:
    span = period(datetime(2026, 11, 9, tzinfo=MSK), datetime(2026, 11, 12, tzinfo=MSK))
    assert await cells(loaded, span) == {
        (MON, 23): 1,
        (TUE, 0): 1,
        (TUE, 10): 1,
        (TUE, 11): 1,
        (TUE, 12): 1,
        (TUE, 13): 1,
        (TUE, 15): 1,
        (TUE, 23): 1,
        (WED, 0): 1,
    }


async def test_a_filter_and_an_edge_inside_an_hour(loaded: AsyncEngine) -> None:
    # Ends at 12:30: D's 12:00 is in, the partial hour read from the appeals index.
    span = period(datetime(2026, 11, 10, tzinfo=MSK), datetime(2026, 11, 10, 12, 30, tzinfo=MSK))
    assert await cells(loaded, span, ReportFilter(channel="telegram")) == {
        (TUE, 11): 1,
        (TUE, 12): 1,
    }
    assert await cells(loaded, span, ReportFilter(channel="whatsapp", app="sales")) == {
        (TUE, 10): 1
    }


async def test_a_quarter_hour_zone_keeps_its_own_hours(loaded: AsyncEngine) -> None:
    # +05:45: 07:00 UTC is 12:45, and C's 20:59:59 UTC is 02:44:59 of the next day.
    span = period(
        datetime(2026, 11, 10, tzinfo=KATHMANDU), datetime(2026, 11, 12, tzinfo=KATHMANDU)
    )
    assert await cells(loaded, span, ReportFilter(channel="whatsapp")) == {
        (TUE, 2): 1,  # C 2026-11-09 20:59:59 UTC
        (TUE, 12): 1,  # A 07:00 UTC
        (TUE, 15): 1,  # D 10:00 UTC
        (WED, 2): 2,  # C 20:59:59 and 21:00:00 UTC
    }
    kolkata = period(
        datetime(2026, 11, 10, tzinfo=KOLKATA), datetime(2026, 11, 11, tzinfo=KOLKATA)
    )
    # +05:30: B's 21:00 UTC on the 9th is 02:30 on the 10th, A's 07:00 UTC is 12:30.
    assert await cells(loaded, kolkata, ReportFilter(channel="vk")) == {(TUE, 2): 1, (TUE, 17): 1}


async def test_the_repeated_hour_of_a_dst_end_counts_both_halves(loaded: AsyncEngine) -> None:
    span = period(datetime(2026, 10, 31, tzinfo=NEW_YORK), datetime(2026, 11, 3, tzinfo=NEW_YORK))
    assert await cells(loaded, span) == {(SAT, 8): 1, (SUN, 1): 3, (MON, 7): 1}
    # The same instants seen from Moscow (no DST): 15:00 Sat, 08:30, 09:30, 09:59 Sun, 15:00 Mon.
    moscow = period(datetime(2026, 10, 31, tzinfo=MSK), datetime(2026, 11, 3, tzinfo=MSK))
    assert await cells(loaded, moscow, ReportFilter(channel="telegram")) == {(SUN, 9): 2}


async def test_an_empty_period_and_an_unknown_app(loaded: AsyncEngine) -> None:
    span = period(datetime(2026, 6, 1, tzinfo=MSK), datetime(2026, 6, 2, tzinfo=MSK))
    assert await cells(loaded, span) == {}
    async with loaded.connect() as connection:
        with pytest.raises(FilterError):
            await build_heatmap(connection, span, ReportFilter(app="nope"))


def test_offset_pieces_split_at_each_change_to_the_instant() -> None:
    autumn = period(datetime(2026, 10, 1, tzinfo=NEW_YORK), datetime(2026, 12, 1, tzinfo=NEW_YORK))
    change = datetime(2026, 11, 1, 6, tzinfo=UTC)
    assert offset_pieces(autumn) == [
        (datetime(2026, 10, 1, 4, tzinfo=UTC), change, -4 * 3600),
        (change, datetime(2026, 12, 1, 5, tzinfo=UTC), -5 * 3600),
    ]
    year = period(datetime(2026, 1, 1, tzinfo=NEW_YORK), datetime(2027, 1, 1, tzinfo=NEW_YORK))
    assert [piece[2] // 3600 for piece in offset_pieces(year)] == [-5, -4, -5]
    kathmandu = period(
        datetime(2026, 1, 1, tzinfo=KATHMANDU), datetime(2027, 1, 1, tzinfo=KATHMANDU)
    )
    assert [piece[2] for piece in offset_pieces(kathmandu)] == [5 * 3600 + 45 * 60]


def test_days_of_a_heatmap_are_its_local_dates() -> None:
    span = period(datetime(2026, 11, 9, tzinfo=MSK), datetime(2026, 11, 11, 9, tzinfo=MSK))
    days = Heatmap(period=span, filter=ReportFilter()).days()
    assert [day.isoformat() for day in days] == ["2026-11-09", "2026-11-10", "2026-11-11"]
    assert Heatmap(period=span, filter=ReportFilter(), cells={(0, 1): 2, (1, 5): 3}).total == 5
    one = period(
        datetime(2026, 11, 9, tzinfo=MSK), datetime(2026, 11, 9, tzinfo=MSK) + timedelta(days=1)
    )
    assert len(Heatmap(period=one, filter=ReportFilter()).days()) == 1


async def test_the_store_answers_whole_hour_zones_only(
    loaded: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    used: list[tuple[int, int]] = []
    original = reports.heatmap._cells_from_store

    async def spy(connection, h0, h1, *args):  # type: ignore[no-untyped-def]
        used.append((h0, h1))
        await original(connection, h0, h1, *args)

    monkeypatch.setattr(reports.heatmap, "_cells_from_store", spy)
    for zone in (MSK, NEW_YORK, KATHMANDU, KOLKATA):
        span = period(datetime(2026, 10, 31, tzinfo=zone), datetime(2026, 11, 12, tzinfo=zone))
        await cells(loaded, span)
    assert len(used) == 2
