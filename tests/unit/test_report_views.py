"""The short keys behind a report's buttons: stored on both backends, expiring, within 64 bytes."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.storage.report_views import REPORT_VIEW_DAYS, load_view, remember_view, view_key
from bot.storage.tables import report_views
from bot.telegram.keyboards import report_keyboard
from reports.model import Period, ReportFilter

KATHMANDU = ZoneInfo("Asia/Kathmandu")
NOW = datetime(2026, 11, 11, 9, tzinfo=UTC)
LONG = ReportFilter(channel="telegram", app="Отдел продаж и партнёров «Северо-Запад» <VIP>")
DAY = Period(
    start=datetime(2026, 11, 10, tzinfo=KATHMANDU),
    end=datetime(2026, 11, 11, tzinfo=KATHMANDU),
    tz=KATHMANDU,
)


async def test_a_view_is_stored_once_and_read_back_in_its_zone(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        key = await remember_view(connection, DAY, LONG, now=NOW)
        assert await remember_view(connection, DAY, LONG, now=NOW + timedelta(hours=1)) == key
        assert key == view_key(DAY, LONG) and len(key) == 12
        assert view_key(DAY, ReportFilter(channel="telegram")) != key
    async with engine.connect() as connection:
        assert await connection.scalar(select(func.count()).select_from(report_views)) == 1
        period, report_filter = await load_view(connection, key) or (None, None)
        assert await load_view(connection, "nope") is None
    assert period is not None
    assert (period.start, period.end, period.tz_name) == (DAY.start, DAY.end, "Asia/Kathmandu")
    assert period.start.isoformat() == "2026-11-10T00:00:00+05:45"
    assert report_filter == LONG


async def test_a_view_unused_for_its_lifetime_is_forgotten(engine: AsyncEngine) -> None:
    later = NOW + timedelta(days=REPORT_VIEW_DAYS, seconds=1)
    other = Period(start=DAY.start, end=DAY.end + timedelta(days=1), tz=KATHMANDU)
    async with engine.begin() as connection:
        old = await remember_view(connection, DAY, LONG, now=NOW)
        used = await remember_view(connection, other, LONG, now=NOW)
        await remember_view(connection, other, LONG, now=later - timedelta(days=1))
        await remember_view(connection, DAY, ReportFilter(), now=later)
    async with engine.connect() as connection:
        assert await load_view(connection, old) is None
        assert await load_view(connection, used) is not None


def buttons(report_filter: ReportFilter, **kwargs: object) -> list[str]:
    keyboard = report_keyboard(report_filter, lambda text: text, **kwargs)  # type: ignore[arg-type]
    if keyboard is None:
        return []
    return [b.callback_data or "" for row in keyboard.inline_keyboard for b in row]


def test_buttons_carry_a_short_filter_and_a_key_for_a_long_one() -> None:
    assert buttons(ReportFilter(channel="vk"), view_key="k" * 12, by_hour=True) == [
        "rep:today:vk:",
        "rep:yesterday:vk:",
        "rep:week:vk:",
        "rep:month:vk:",
        "rep:last_month:vk:",
        "hm:kkkkkkkkkkkk",
    ]
    long = buttons(LONG, view_key="k" * 12, by_hour=True)
    assert long[0] == "rv:today:kkkkkkkkkkkk" and long[-1] == "hm:kkkkkkkkkkkk"
    assert all(len(data.encode()) <= 64 for data in long)
    # A name holding ":" cannot travel inline either; an empty report has no "By hour".
    assert buttons(ReportFilter(app="a:b"), view_key="k" * 12)[0] == "rv:today:kkkkkkkkkkkk"
    assert buttons(LONG) == []
