"""Check of the pre-aggregated store: its reports against the plain SQL for random periods."""

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from reports.metrics import build_report_from_store, build_report_sql, load_catalog
from reports.model import Metrics, Period, PeriodPair, Report, ReportFilter
from reports.periods import parse_period
from reports.schema import appeals

# Whole-hour, half-hour and quarter-hour offsets, and zones with DST.
ZONES = (
    "UTC",
    "Europe/Moscow",
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "America/New_York",
    "Europe/London",
    "Australia/Adelaide",
)
PRESETS = ("today", "yesterday", "week", "last week", "month", "last month", "quarter", "year")


@dataclass
class CheckResult:
    comparisons: int = 0
    differences: list[str] = field(default_factory=list)


def _diff(store: Report, sql: Report) -> list[str]:
    found = []
    if store.all_clients != sql.all_clients:
        found.append(f"all_clients store={store.all_clients} sql={sql.all_clients}")
    for name in ("current", "previous"):
        ours: Metrics = getattr(store, name)
        theirs: Metrics = getattr(sql, name)
        for metric in (
            "contacted_clients",
            "new_clients",
            "appeals",
            "repeat_appeals",
            "channel_clients",
            "app_clients",
        ):
            a, b = getattr(ours, metric), getattr(theirs, metric)
            if a != b:
                found.append(f"{name}.{metric} store={a} sql={b}")
    return found


def _random_pair(rng: random.Random, low: datetime, high: datetime) -> PeriodPair:
    zone = ZoneInfo(rng.choice(ZONES))
    now = low + (high - low) * rng.random() + timedelta(hours=rng.choice([0, 1, 30]))
    if rng.random() < 0.5:
        return parse_period(rng.choice(PRESETS), now=now, tz=zone)
    # Arbitrary instants, to the microsecond, from minutes to two years long.
    length = timedelta(seconds=rng.choice([900, 5000, 86400 * 3, 86400 * 40, 86400 * 730]))
    start = (now - length * rng.random()).astimezone(zone)
    end = start + length
    return PeriodPair(
        current=Period(start=start, end=end, tz=zone),
        previous=Period(start=start - length, end=start, tz=zone),
    )


async def check_store(
    connection: AsyncConnection,
    *,
    samples: int,
    seed: int,
    progress: Callable[[int, int], None] | None = None,
) -> CheckResult:
    """Compare store and plain SQL for `samples` random periods, zones and filters."""
    rng = random.Random(seed)
    catalog = await load_catalog(connection)
    low, high = (
        await connection.execute(
            select(func.min(appeals.c.created_at), func.max(appeals.c.created_at))
        )
    ).one()
    if low is None:
        low = high = datetime.now(UTC)
    filters = [ReportFilter()]
    filters += [ReportFilter(channel=channel) for channel in catalog.channels()]
    filters += [ReportFilter(channel=k.channel, app=k.name) for k in catalog.by_id.values()]
    result = CheckResult()
    for number in range(1, samples + 1):
        pair = _random_pair(rng, low, high)
        flt = filters[0] if number % 3 == 0 else rng.choice(filters)
        store = await build_report_from_store(connection, pair, flt)
        sql = await build_report_sql(connection, pair, flt)
        result.comparisons += 1
        for difference in _diff(store, sql):
            shown = (
                f"{pair.current.start.isoformat()}..{pair.current.end.isoformat()} "
                f"{pair.current.tz_name} channel={flt.channel} app={flt.app}"
            )
            result.differences.append(f"{shown}: {difference}")
        if progress:
            progress(number, samples)
    return result
