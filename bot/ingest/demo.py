"""A realistic, deterministic demo data set of clients and appeals for an empty database."""

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from random import Random
from typing import TypeVar
from zoneinfo import ZoneInfo

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bot.errors import N_, AppError
from bot.ingest.merge import AppealRow, store_appeals
from bot.storage.aggregates import clear_aggregates
from reports.schema import appeals, apps, clients

logger = logging.getLogger(__name__)

T = TypeVar("T")

DAYS = 180
CLIENTS = 5_000
MIN_APPEALS = 30_000
# The desks this imitates work from Moscow: business hours and weekdays follow its clock.
DESK_ZONE = ZoneInfo("Europe/Moscow")

# (channel, share of clients whose main channel it is, ((app, share within channel), ...)).
# Shares follow what Russian support desks typically see: WhatsApp and Telegram dominate.
CHANNELS: tuple[tuple[str, float, tuple[tuple[str, float], ...]], ...] = (
    ("whatsapp", 0.38, (("Sales", 0.6), ("Support", 0.4))),
    ("telegram", 0.26, (("Support bot", 0.55), ("Sales & Partners <VIP>", 0.45))),
    ("vk", 0.10, (("Сообщество", 1.0),)),
    ("webchat", 0.09, (("Website", 1.0),)),
    ("email", 0.08, (("Support inbox", 1.0),)),
    ("instagram", 0.05, (("Direct", 1.0),)),
    ("viber", 0.04, (("Main", 1.0),)),
)
# Acceptance weights (max 1) for rejection sampling of instants in the desk's local time.
WEEKDAY_WEIGHT = (1.0, 1.0, 0.97, 0.95, 0.85, 0.4, 0.3)
HOUR_WEIGHT = (
    0.04, 0.03, 0.03, 0.03, 0.03, 0.04, 0.08, 0.15,  # 00-07
    0.4, 0.8, 1.0, 1.0, 1.0, 0.85, 0.95, 0.95,  # 08-15
    0.95, 0.9, 0.7, 0.45, 0.3, 0.2, 0.12, 0.07,  # 16-23
)  # fmt: skip
SECOND_CHANNEL_SHARE = 0.12
ACTIVE_DAYS_PER_APPEAL = 3.5
# Clients whose whole history is today, and earlier clients who write again today, so the
# `today` and `week` reports of a fresh demo are never empty.
TODAY_NEW_CLIENTS = 8
TODAY_RETURNING_CLIENTS = 15
TODAY_WINDOW = timedelta(hours=2)


@dataclass(frozen=True, slots=True)
class DemoResult:
    clients: int
    appeals: int
    start: datetime
    end: datetime


class DemoRefused(AppError):
    """The database already holds analytics data and --force was not given."""


async def load_demo(
    engine: AsyncEngine, *, now: datetime, force: bool = False, seed: int = 7
) -> DemoResult:
    """Load the demo data set (the same `now` and seed give the same data) in one transaction."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    start = now - timedelta(days=DAYS)
    # Generating takes about half a second of CPU: keep it off the event loop.
    rows = await asyncio.to_thread(_generate, Random(seed), start=start, end=now)
    async with engine.begin() as connection:
        if force:
            # Appeals first: they reference clients and apps.
            for table in (appeals, clients, apps):
                await connection.execute(delete(table))
            # Every appeal is gone, so every bucket of the store is too.
            await clear_aggregates(connection)
        else:
            await _refuse_unless_empty(connection)
        result = await store_appeals(connection, rows)
        client_count = (
            await connection.execute(select(func.count()).select_from(clients))
        ).scalar_one()
    logger.info(
        "demo data loaded: %s clients, %s appeals from %s to %s",
        client_count,
        result.new,
        start.isoformat(),
        now.isoformat(),
    )
    return DemoResult(clients=client_count, appeals=result.new, start=start, end=now)


async def _refuse_unless_empty(connection: AsyncConnection) -> None:
    counts = {}
    for table in (appeals, clients, apps):
        counts[table.name] = (
            await connection.execute(select(func.count()).select_from(table))
        ).scalar_one()
    if any(counts.values()):
        raise DemoRefused(
            N_(
                "The database already has data (clients: {clients}, appeals: {appeals}, apps: "
                "{apps}); demo data goes into an empty database only. Run demo --force to "
                "delete the existing clients, appeals and apps and load the demo data instead."
            ),
            clients=counts["clients"],
            appeals=counts["appeals"],
            apps=counts["apps"],
        )


def _generate(rng: Random, *, start: datetime, end: datetime) -> list[AppealRow]:
    """All demo appeals in chronological order, ids numbered in that order."""
    today_start = end.astimezone(DESK_ZONE).replace(hour=0, minute=0, second=0, microsecond=0)
    recent = max(today_start, end - TODAY_WINDOW)
    fresh_today = set(range(CLIENTS - TODAY_NEW_CLIENTS, CLIENTS)) if recent < end else set()

    counts = [_appeal_count(rng) for _ in range(CLIENTS)]
    for client in fresh_today:
        counts[client] = min(counts[client], 2)
    # The mixture averages about 7 appeals per client; top up the regulars in the rare draw
    # that falls short of the promised minimum.
    regulars = [index for index, count in enumerate(counts) if count >= 10] or [0]
    while sum(counts) < MIN_APPEALS:
        counts[rng.choice(regulars)] += 1

    appeals_: list[tuple[datetime, int, str, str]] = []
    earliest: dict[int, datetime] = {}
    main_app: dict[int, tuple[str, str]] = {}
    span = (end - start).total_seconds()
    for client in range(CLIENTS):
        channels, app_of = _client_channels(rng)
        count = counts[client]
        if client in fresh_today:
            arrival = _uniform(rng, recent, end)
            moments = [arrival] + [_uniform(rng, arrival, end) for _ in range(count - 1)]
        else:
            # A client writes during an active span that grows with how often they write.
            # The window is treated as a circle: a span running past `end` goes on at `start`,
            # the way an export cuts a desk's continuous history, so the load stays level over
            # the months instead of piling up in the middle.
            active = min(span * 0.9, ACTIVE_DAYS_PER_APPEAL * 86_400 * (count - 1))
            arrival = _seasonal(rng, start, end)
            offset = (arrival - start).total_seconds()
            moments = [arrival] + [
                _seasonal(rng, start, end, offset, active) for _ in range(count - 1)
            ]
        earliest[client] = min(moments)
        main_app[client] = (channels[0], app_of[channels[0]])
        for moment in moments:
            # Mostly through the main channel; two-channel clients use the other one too.
            channel = channels[0] if rng.random() < 0.7 else channels[-1]
            appeals_.append((moment, client, channel, app_of[channel]))

    # Some clients known since before yesterday come back today.
    if recent < end:
        known = [
            client
            for client in range(CLIENTS)
            if client not in fresh_today and earliest[client] < today_start - timedelta(days=1)
        ]
        for client in rng.sample(known, TODAY_RETURNING_CLIENTS):
            appeals_.append((_uniform(rng, recent, end), client, *main_app[client]))

    appeals_.sort(key=lambda item: (item[0], item[1]))
    return [
        AppealRow(
            appeal_id=f"demo-a{number:06d}",
            client_id=f"demo-c{client + 1:05d}",
            channel=channel,
            app=app,
            created_at=moment,
        )
        for number, (moment, client, channel, app) in enumerate(appeals_, 1)
    ]


def _client_channels(rng: Random) -> tuple[list[str], dict[str, str]]:
    """A client's main channel (and sometimes a second one) and the app used on each."""
    names = [name for name, _, _ in CHANNELS]
    shares = [share for _, share, _ in CHANNELS]
    channels = [_weighted(rng, names, shares)]
    if rng.random() < SECOND_CHANNEL_SHARE:
        main = names.index(channels[0])
        channels.append(
            _weighted(rng, names[:main] + names[main + 1 :], shares[:main] + shares[main + 1 :])
        )
    app_of = {}
    for channel in channels:
        apps_of_channel = next(pairs for name, _, pairs in CHANNELS if name == channel)
        app_of[channel] = _weighted(
            rng, [app for app, _ in apps_of_channel], [share for _, share in apps_of_channel]
        )
    return channels, app_of


def _appeal_count(rng: Random) -> int:
    """Most clients write 1-3 times, a quarter a handful, a few are regulars."""
    kind = rng.random()
    if kind < 0.55:
        return _weighted(rng, (1, 2, 3), (0.5, 0.3, 0.2))
    if kind < 0.85:
        return rng.randint(4, 12)
    # Long tail of regulars: mostly 15-30, some up to 60.
    return min(60, 15 + int(rng.expovariate(1 / 10)))


def _weighted(rng: Random, items: Sequence[T], weights: Sequence[float]) -> T:
    return rng.choices(items, weights)[0]


def _seasonal(
    rng: Random, start: datetime, end: datetime, low: float = 0.0, width: float | None = None
) -> datetime:
    """An instant in [start, end) with the desk's weekday and hour-of-day profile.

    Drawn from `width` seconds that begin `low` seconds after `start`, wrapping around the
    window; by default from the whole window.
    """
    span = (end - start).total_seconds()
    width = span if width is None else width
    while True:
        moment = start + timedelta(seconds=(low + rng.random() * width) % span)
        if moment >= end:  # microsecond rounding of the offset
            continue
        local = moment.astimezone(DESK_ZONE)
        if rng.random() < WEEKDAY_WEIGHT[local.weekday()] * HOUR_WEIGHT[local.hour]:
            return _whole_second(moment, start)


def _uniform(rng: Random, low: datetime, high: datetime) -> datetime:
    """An instant in [low, high) without seasonality."""
    while True:
        moment = low + timedelta(seconds=rng.random() * (high - low).total_seconds())
        if moment < high:  # microsecond rounding of the offset
            return _whole_second(moment, low)


def _whole_second(moment: datetime, low: datetime) -> datetime:
    """Source systems keep whole seconds; never round below the window's start."""
    rounded = moment.replace(microsecond=0)
    return rounded if rounded >= low else moment
