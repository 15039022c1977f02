"""Metric definitions of DESIGN.md §4 on a small data set counted by hand, on both backends.

Timezone Europe/Moscow (UTC+3). The period P is the local day 2026-11-10; the previous period is
2026-11-09. Apps: whatsapp/Sales, whatsapp/Support, telegram/"Sales & Partners <VIP>",
vk/"Группа ВК", email/Inbox. Clients:

- A: first appeal 2023-05-01 (whatsapp/Sales); in P: whatsapp/Sales 10:00 and telegram VIP 11:00.
- B: first appeal at 00:00:00 local on P's first second (vk), again at 15:00 (vk).
- C: first appeal 2026-11-09 23:59:59 (whatsapp/Support: previous period), then 2026-11-10
  23:59:59 (P's last second) and 2026-11-11 00:00:00 (after P).
- D: first appeal in P at 12:00 via telegram VIP, then 13:00 via whatsapp/Sales.
- E: only 2025 (email): counts in all_clients alone.

In P: appeals A2 + B2 + C1 + D2 = 7; contacted A, B, C, D = 4; new B, D = 2; returning 2;
repeat appeals: A 2, B 1, C 1, D 1 = 5. Channels: whatsapp A, C, D = 3; telegram A, D = 2;
vk B = 1 (slices add to 6 > 4: they overlap). Apps: Sales A, D = 2; Support C = 1; VIP A, D = 2;
Группа ВК B = 1. All clients ever: 5.
"""

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from reports.errors import FilterError
from reports.metrics import (
    FIRST_APPEAL_AT,
    build_report,
    build_report_from_store,
    build_report_sql,
)
from reports.model import AppKey, Period, PeriodPair, ReportFilter
from tests.datasets import OLD_ROWS, ROWS_IN_AND_AROUND_P, VIP, VK_GROUP, load

MSK = ZoneInfo("Europe/Moscow")


def day(year: int, month: int, dom: int) -> Period:
    start = datetime(year, month, dom, tzinfo=MSK)
    return Period(
        start=start, end=start + timedelta(days=1), tz=MSK, label=start.date().isoformat()
    )


P = PeriodPair(current=day(2026, 11, 10), previous=day(2026, 11, 9))


@pytest.fixture
async def loaded(engine: AsyncEngine, tmp_path: Path) -> AsyncEngine:
    # The old first appeals arrive last: they must still move A's first appeal back to 2023.
    await load(engine, tmp_path, ROWS_IN_AND_AROUND_P, "recent")
    await load(engine, tmp_path, OLD_ROWS, "old")
    return engine


async def report_for(engine: AsyncEngine, flt: ReportFilter, periods: PeriodPair = P):  # noqa: ANN201
    async with engine.connect() as connection:
        return await build_report(connection, periods, flt)


async def test_unfiltered_period_counts_every_trap(loaded: AsyncEngine) -> None:
    report = await report_for(loaded, ReportFilter())
    m = report.current
    assert report.all_clients == 5
    assert (m.appeals, m.contacted_clients, m.new_clients, m.returning_clients) == (7, 4, 2, 2)
    assert m.repeat_appeals == 5
    assert m.channel_clients == {"whatsapp": 3, "telegram": 2, "vk": 1}
    assert m.app_clients == {
        AppKey(channel="whatsapp", name="Sales"): 2,
        AppKey(channel="whatsapp", name="Support"): 1,
        AppKey(channel="telegram", name=VIP): 2,
        AppKey(channel="vk", name=VK_GROUP): 1,
    }
    assert m.channels_overlap


async def test_previous_period_holds_the_second_before_midnight(loaded: AsyncEngine) -> None:
    previous = (await report_for(loaded, ReportFilter())).previous
    assert (previous.appeals, previous.contacted_clients, previous.new_clients) == (1, 1, 1)
    assert previous.repeat_appeals == 0
    assert previous.channel_clients == {"whatsapp": 1}
    assert not previous.channels_overlap


async def test_channel_filter_keeps_new_by_first_appeal_on_any_channel(
    loaded: AsyncEngine,
) -> None:
    # D's first appeal was on telegram, in P: D is new even when only whatsapp is counted.
    report = await report_for(loaded, ReportFilter(channel="WhatsApp"))
    m = report.current
    assert report.all_clients == 3  # A (2023), C, D
    assert (m.appeals, m.contacted_clients, m.new_clients, m.repeat_appeals) == (3, 3, 1, 3)
    assert m.channel_clients == {"whatsapp": 3}
    assert m.app_clients == {
        AppKey(channel="whatsapp", name="Sales"): 2,
        AppKey(channel="whatsapp", name="Support"): 1,
    }
    assert not m.channels_overlap


async def test_app_filter_is_case_insensitive(loaded: AsyncEngine) -> None:
    report = await report_for(loaded, ReportFilter(app="sales"))
    m = report.current
    assert report.all_clients == 2  # A, D
    assert (m.appeals, m.contacted_clients, m.new_clients, m.repeat_appeals) == (2, 2, 1, 2)


async def test_app_with_html_characters_is_matched(loaded: AsyncEngine) -> None:
    report = await report_for(
        loaded, ReportFilter(channel="telegram", app="sales & partners <vip>")
    )
    m = report.current
    # A's telegram appeal repeats (first was 2023); D's telegram appeal is D's first.
    assert (m.appeals, m.contacted_clients, m.new_clients, m.repeat_appeals) == (2, 2, 1, 1)


async def test_cyrillic_app_filter(loaded: AsyncEngine) -> None:
    report = await report_for(loaded, ReportFilter(app="группа вк"))
    assert (report.current.appeals, report.current.new_clients, report.all_clients) == (2, 1, 1)


async def test_unknown_names_list_the_known_ones(loaded: AsyncEngine) -> None:
    with pytest.raises(FilterError) as channel_error:
        await report_for(loaded, ReportFilter(channel="fax"))
    assert channel_error.value.message == (
        "Unknown channel “fax”. Known channels: email, telegram, vk, whatsapp"
    )
    with pytest.raises(FilterError) as app_error:
        await report_for(loaded, ReportFilter(channel="telegram", app="Sales"))
    assert app_error.value.message == f"Unknown app “Sales”. Known apps: {VIP}"


async def test_empty_period_counts_nothing_but_all_clients(loaded: AsyncEngine) -> None:
    empty = PeriodPair(current=day(2026, 11, 20), previous=day(2026, 11, 19))
    report = await report_for(loaded, ReportFilter(), empty)
    assert report.is_empty
    assert report.all_clients == 5
    assert report.current.channel_clients == {}
    assert (report.current.contacted_clients, report.current.repeat_appeals) == (0, 0)


async def test_first_appeal_ties_go_to_the_smaller_appeal_id(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    same_instant = "2026-11-10T10:00:00+03:00"
    await load(
        engine,
        tmp_path,
        [("x1", "X", "vk", "Main", same_instant), ("x2", "X", "telegram", "Bot", same_instant)],
        "tie",
    )
    vk = (await report_for(engine, ReportFilter(channel="vk"))).current
    telegram = (await report_for(engine, ReportFilter(channel="telegram"))).current
    # x1 was stored first (smaller id): it is X's first appeal, x2 is a repeat.
    assert (vk.repeat_appeals, telegram.repeat_appeals) == (0, 1)
    assert (vk.new_clients, telegram.new_clients) == (1, 1)


async def test_first_appeal_the_database_holds_on_both_paths(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    # Only the recent rows: the data begins with C's appeal at 23:59:59 on the previous day, so
    # the previous period (from its midnight) starts before the data and has no earlier data.
    await load(engine, tmp_path, ROWS_IN_AND_AROUND_P, "recent")
    async with engine.connect() as connection:
        sql = await build_report_sql(connection, P, ReportFilter())
        store = await build_report_from_store(connection, P, ReportFilter())
    assert sql == store
    assert sql.data_since == datetime(2026, 11, 9, 20, 59, 59, tzinfo=UTC)
    assert P.previous.start < sql.data_since
    # A's 2023 appeal arrives later and becomes the first one the database holds, whatever the
    # filter (vk has none before P, but the database does).
    await load(engine, tmp_path, OLD_ROWS, "old")
    for flt in (ReportFilter(), ReportFilter(channel="vk"), ReportFilter(app=VK_GROUP)):
        async with engine.connect() as connection:
            sql = await build_report_sql(connection, P, flt)
            store = await build_report_from_store(connection, P, flt)
        assert sql == store
        assert sql.data_since == datetime(2023, 5, 1, 6, 0, tzinfo=UTC)
        assert P.previous.start > sql.data_since


async def test_no_appeals_no_first_appeal(engine: AsyncEngine) -> None:
    report = await report_for(engine, ReportFilter())
    assert report.data_since is None
    assert report.is_empty


async def test_first_appeal_is_one_query_per_report(loaded: AsyncEngine) -> None:
    statements: list[str] = []

    def record(*args: Any) -> None:
        statements.append(args[2].lower())

    event.listen(loaded.sync_engine, "before_cursor_execute", record)
    try:
        await report_for(loaded, ReportFilter(channel="whatsapp"))
    finally:
        event.remove(loaded.sync_engine, "before_cursor_execute", record)
    assert sum("min(appeals.created_at)" in statement for statement in statements) == 1


async def test_first_appeal_reads_the_period_index(hand_counted: AsyncEngine) -> None:
    async with hand_counted.connect() as connection:
        sql = str(FIRST_APPEAL_AT.compile(connection.sync_connection))
        plan = (await connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}")).all()
    assert [row[-1] for row in plan] == [
        "SEARCH appeals USING COVERING INDEX ix_appeals_period_scan"
    ]
