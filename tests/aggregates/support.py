"""Helpers for store tests: the store against the plain SQL, and against a fresh rebuild."""

import random
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from pyroaring import BitMap
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.storage.aggregates import rebuild_aggregates
from reports.aggregates import store_ready
from reports.directory import ChannelEntry, directory_sql, load_directory
from reports.metrics import build_report_from_store, build_report_sql, load_catalog
from reports.model import Period, PeriodPair, Report, ReportFilter
from reports.store_schema import rollup_clients, rollup_first

ZONES = [
    ZoneInfo(name)
    for name in ("Asia/Kolkata", "Asia/Kathmandu", "America/New_York", "Europe/Moscow", "UTC")
]


async def both(
    engine: AsyncEngine, periods: PeriodPair, flt: ReportFilter
) -> tuple[Report, Report]:
    async with engine.connect() as connection:
        assert await store_ready(connection)
        return (
            await build_report_from_store(connection, periods, flt),
            await build_report_sql(connection, periods, flt),
        )


async def assert_same(engine: AsyncEngine, periods: PeriodPair, flt: ReportFilter) -> Report:
    store, sql = await both(engine, periods, flt)
    assert store == sql, (periods, flt)
    return store


async def filters(engine: AsyncEngine) -> list[ReportFilter]:
    """No filter, every channel, every app within its channel."""
    async with engine.connect() as connection:
        catalog = await load_catalog(connection)
    found = [ReportFilter()]
    found += [ReportFilter(channel=channel) for channel in catalog.channels()]
    found += [ReportFilter(channel=k.channel, app=k.name) for k in catalog.by_id.values()]
    return found


async def store_rows(engine: AsyncEngine, *, rebuilt: bool = False) -> dict[str, Any]:
    """The store's content (bitmaps as sets); with rebuilt, as a fresh rebuild would make it."""
    async with engine.connect() as connection:
        transaction = await connection.begin()
        try:
            if rebuilt:
                await rebuild_aggregates(connection)
            clients = {
                (row.level, row.bucket, row.app_id): (
                    row.appeals,
                    row.firsts,
                    set(BitMap.deserialize(row.clients)),
                )
                for row in await connection.execute(select(rollup_clients))
            }
            firsts = {
                (row.level, row.bucket): set(BitMap.deserialize(row.clients))
                for row in await connection.execute(select(rollup_first))
            }
        finally:
            await transaction.rollback()
    return {"clients": clients, "firsts": firsts}


async def assert_store_current(engine: AsyncEngine) -> None:
    """What the write path kept equals what a rebuild from the tables gives."""
    assert await store_rows(engine) == await store_rows(engine, rebuilt=True)


async def assert_directory_same(engine: AsyncEngine) -> list[ChannelEntry]:
    """/channels from the store equals its plain SQL."""
    async with engine.connect() as connection:
        assert await store_ready(connection)
        store, sql = await load_directory(connection), await directory_sql(connection)
    assert store == sql
    return store


def random_period(rng: random.Random, low: datetime, high: datetime) -> PeriodPair:
    """A random period in a random zone: local midnights, whole hours or any microsecond."""
    zone = rng.choice(ZONES)
    span = (high - low).total_seconds()
    start = low + timedelta(seconds=rng.uniform(0, span))
    length = timedelta(seconds=rng.choice([600, 5400, 86400, 7 * 86400, 95 * 86400, 800 * 86400]))
    length *= rng.uniform(0.5, 1.5)
    kind = rng.choice(["midnight", "hour", "micro"])
    local = start.astimezone(zone)
    if kind == "midnight":
        start = datetime(local.year, local.month, local.day, tzinfo=zone)
        end_local = (start + length).astimezone(zone)
        end = datetime(end_local.year, end_local.month, end_local.day, tzinfo=zone)
        if end <= start:
            end = datetime.combine(start.date() + timedelta(days=1), datetime.min.time(), zone)
    elif kind == "hour":
        start = local.replace(minute=0, second=0, microsecond=0)
        end = (start + length).replace(minute=0, second=0, microsecond=0)
    else:
        start, end = local, (local + length).astimezone(zone)
    previous_start = start - (end - start)
    return PeriodPair(
        current=Period(start=start, end=end, tz=zone),
        previous=Period(start=previous_start.astimezone(zone), end=start, tz=zone),
    )


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)
