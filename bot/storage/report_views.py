"""A report's exact period, zone and filter stored under a short key, for its buttons."""

import base64
import hashlib
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import delete, select

from bot.storage.engine import Executor, upsert
from bot.storage.tables import report_views
from reports.model import Period, ReportFilter

# A button under a monthly digest may be pressed a few months later; a key unused this long is
# deleted and its buttons say they have expired.
REPORT_VIEW_DAYS = 180
KEY_LENGTH = 12  # 72 bits of sha256: no two reports share a key in practice


def view_key(period: Period, report_filter: ReportFilter) -> str:
    """The key of a report's view: the same report always gets the same key."""
    parts = (
        period.start.isoformat(),
        period.end.isoformat(),
        period.tz_name,
        report_filter.channel or "",
        report_filter.app or "",
    )
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return base64.urlsafe_b64encode(digest).decode()[:KEY_LENGTH]


async def remember_view(
    executor: Executor, period: Period, report_filter: ReportFilter, *, now: datetime
) -> str:
    """Store the view (or mark it used again) and forget views long unused; returns its key."""
    key = view_key(period, report_filter)
    await upsert(
        executor,
        report_views,
        {"key": key},
        {
            "period_start": period.start,
            "period_end": period.end,
            "timezone": period.tz_name,
            "channel": report_filter.channel,
            "app": report_filter.app,
            "used_at": now,
        },
    )
    cutoff = now - timedelta(days=REPORT_VIEW_DAYS)
    await executor.execute(delete(report_views).where(report_views.c.used_at < cutoff))
    return key


async def load_view(executor: Executor, key: str) -> tuple[Period, ReportFilter] | None:
    """The period (in its own zone) and filter stored under key; None when unknown or expired."""
    row = (
        await executor.execute(select(report_views).where(report_views.c.key == key))
    ).one_or_none()
    if row is None:
        return None
    try:
        zone = ZoneInfo(row.timezone)
    except (ZoneInfoNotFoundError, ValueError):  # tzdata changed under a stored view
        return None
    period = Period(
        start=row.period_start.astimezone(zone), end=row.period_end.astimezone(zone), tz=zone
    )
    return period, ReportFilter(channel=row.channel, app=row.app)
