"""The demo data set: size, channels and apps, seasonality, determinism, refusal and --force."""

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.ingest.demo import DemoRefused, DemoResult, load_demo
from bot.storage.engine import create_engine, migrate
from reports.schema import appeals, apps, clients
from tests.datasets import stored_appeals

# A Friday late morning in Moscow.
NOW = datetime(2026, 11, 27, 8, 30, 15, 123456, tzinfo=UTC)
MOSCOW = ZoneInfo("Europe/Moscow")


# Every appeal as (appeal, client, channel, app, created_at), by external appeal id.
all_appeals = partial(stored_appeals, order_by=appeals.c.external_id)


async def first_appeals(engine: AsyncEngine) -> dict[str, tuple[datetime, str]]:
    query = select(clients.c.external_id, clients.c.first_appeal_at, appeals.c.external_id).join(
        appeals, appeals.c.id == clients.c.first_appeal_id
    )
    async with engine.connect() as connection:
        rows = (await connection.execute(query)).all()
    return {row[0]: (row[1], row[2]) for row in rows}


async def table_counts(engine: AsyncEngine) -> tuple[int, int, int]:
    async with engine.connect() as connection:
        result = [
            (await connection.execute(select(func.count()).select_from(table))).scalar_one()
            for table in (apps, clients, appeals)
        ]
    return result[0], result[1], result[2]


def expected_first_appeals(
    rows: list[tuple[str, str, str, str, datetime]], ids: dict[str, int]
) -> dict[str, tuple[datetime, str]]:
    """Earliest appeal per client, ties to the smaller internal id, computed in Python."""
    best: dict[str, tuple[datetime, int, str]] = {}
    for appeal, client, _, _, created_at in rows:
        key = (created_at, ids[appeal], appeal)
        if client not in best or key < best[client]:
            best[client] = key
    return {client: (at, appeal) for client, (at, _, appeal) in best.items()}


@pytest.fixture
async def demo(sqlite_engine: AsyncEngine) -> AsyncIterator[tuple[AsyncEngine, DemoResult]]:
    result = await load_demo(sqlite_engine, now=NOW)
    yield sqlite_engine, result


async def test_size_and_window(demo: tuple[AsyncEngine, DemoResult]) -> None:
    engine, result = demo
    assert result.clients == 5_000
    assert result.appeals >= 30_000
    assert result.start == NOW - timedelta(days=180)
    assert result.end == NOW
    _, client_count, appeal_count = await table_counts(engine)
    assert (client_count, appeal_count) == (result.clients, result.appeals)
    moments = [row[4] for row in await all_appeals(engine)]
    assert max(moments) <= NOW
    assert min(moments) >= result.start
    # Spread over the whole window, not bunched at one end.
    assert min(moments) < result.start + timedelta(days=3)
    assert max(moments) > NOW - timedelta(hours=2)


async def test_channels_and_apps(demo: tuple[AsyncEngine, DemoResult]) -> None:
    engine, _ = demo
    rows = await all_appeals(engine)
    per_channel: dict[str, int] = {}
    apps_of: dict[str, set[str]] = {}
    for _, _, channel, app, _ in rows:
        per_channel[channel] = per_channel.get(channel, 0) + 1
        apps_of.setdefault(channel, set()).add(app)
    assert set(per_channel) == {
        "whatsapp",
        "telegram",
        "vk",
        "viber",
        "email",
        "webchat",
        "instagram",
    }
    assert len(apps_of["whatsapp"]) >= 2
    assert len(apps_of["telegram"]) >= 2
    assert "Sales & Partners <VIP>" in apps_of["telegram"]
    # Realistic shares: the two big messengers lead, every channel has real traffic.
    ranked = sorted(per_channel, key=per_channel.__getitem__, reverse=True)
    assert ranked[:2] == ["whatsapp", "telegram"]
    assert min(per_channel.values()) > 0.02 * len(rows)


async def test_seasonality_and_recent_activity(demo: tuple[AsyncEngine, DemoResult]) -> None:
    engine, _ = demo
    moments = [row[4].astimezone(MOSCOW) for row in await all_appeals(engine)]
    weekday = sum(1 for moment in moments if moment.weekday() < 5) / 5
    weekend = sum(1 for moment in moments if moment.weekday() >= 5) / 2
    assert weekend < 0.6 * weekday
    business = sum(1 for moment in moments if 9 <= moment.hour < 19)
    night = sum(1 for moment in moments if moment.hour < 7)
    assert business > 0.7 * len(moments)
    assert night < 0.03 * len(moments)
    today = NOW.astimezone(MOSCOW).replace(hour=0, minute=0, second=0, microsecond=0)
    assert sum(1 for moment in moments if moment >= today) >= 10
    assert sum(1 for moment in moments if moment >= NOW - timedelta(days=7)) > 500
    # The load stays level: no month of the window has twice another full month's appeals.
    months: dict[tuple[int, int], int] = {}
    for moment in moments:
        months[moment.year, moment.month] = months.get((moment.year, moment.month), 0) + 1
    full = [count for (year, month), count in months.items() if (year, month) in FULL_MONTHS]
    assert max(full) < 2 * min(full)


FULL_MONTHS = {(2026, 6), (2026, 7), (2026, 8), (2026, 9), (2026, 10)}


async def test_new_and_returning_clients(demo: tuple[AsyncEngine, DemoResult]) -> None:
    engine, _ = demo
    rows = await all_appeals(engine)
    per_client: dict[str, int] = {}
    channels_of: dict[str, set[str]] = {}
    for _, client, channel, _, _ in rows:
        per_client[client] = per_client.get(client, 0) + 1
        channels_of.setdefault(client, set()).add(channel)
    few = sum(1 for count in per_client.values() if count <= 3)
    assert few > 0.5 * len(per_client)
    assert sum(1 for count in per_client.values() if count >= 20) > 50
    assert sum(1 for used in channels_of.values() if len(used) == 2) > 100
    firsts = await first_appeals(engine)
    today = NOW.astimezone(MOSCOW).replace(hour=0, minute=0, second=0, microsecond=0)
    new_today = {client for client, (at, _) in firsts.items() if at >= today}
    returning_today = {
        client for _, client, _, _, at in rows if at >= today and client not in new_today
    }
    assert new_today
    assert returning_today
    week = NOW - timedelta(days=7)
    assert sum(1 for at, _ in firsts.values() if at >= week) > 50


async def test_first_appeals_are_filled_correctly(demo: tuple[AsyncEngine, DemoResult]) -> None:
    engine, _ = demo
    rows = await all_appeals(engine)
    async with engine.connect() as connection:
        ids = dict((await connection.execute(select(appeals.c.external_id, appeals.c.id))).all())
    assert await first_appeals(engine) == expected_first_appeals(rows, ids)


async def test_same_now_gives_the_same_data(
    demo: tuple[AsyncEngine, DemoResult], tmp_path: Path
) -> None:
    engine, result = demo
    other = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'other.db'}")
    try:
        await migrate(other)
        assert await load_demo(other, now=NOW) == result
        assert await all_appeals(other) == await all_appeals(engine)
        assert await first_appeals(other) == await first_appeals(engine)
    finally:
        await other.dispose()


async def test_another_seed_gives_other_data(
    demo: tuple[AsyncEngine, DemoResult], tmp_path: Path
) -> None:
    engine, _ = demo
    other = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'other.db'}")
    try:
        await migrate(other)
        await load_demo(other, now=NOW, seed=8)
        assert await all_appeals(other) != await all_appeals(engine)
    finally:
        await other.dispose()


async def test_refuses_a_database_with_data(demo: tuple[AsyncEngine, DemoResult]) -> None:
    engine, result = demo
    before = await all_appeals(engine)
    with pytest.raises(DemoRefused, match="--force"):
        await load_demo(engine, now=NOW + timedelta(days=1))
    assert await all_appeals(engine) == before


async def test_refuses_even_when_only_an_app_exists(sqlite_engine: AsyncEngine) -> None:
    async with sqlite_engine.begin() as connection:
        await connection.execute(insert(apps).values(channel="vk", name="main"))
    with pytest.raises(DemoRefused) as caught:
        await load_demo(sqlite_engine, now=NOW)
    assert str(caught.value) == (
        "The database already has data (clients: 0, appeals: 0, apps: 1); demo data goes into "
        "an empty database only. Run demo --force to delete the existing clients, appeals and "
        "apps and load the demo data instead."
    )
    assert await table_counts(sqlite_engine) == (1, 0, 0)


async def test_force_replaces_existing_data(demo: tuple[AsyncEngine, DemoResult]) -> None:
    engine, first = demo
    async with engine.begin() as connection:
        await connection.execute(insert(apps).values(channel="fax", name="Old"))
    later = NOW + timedelta(days=3)
    result = await load_demo(engine, now=later, force=True)
    assert result.clients == 5_000
    assert result.end == later
    rows = await all_appeals(engine)
    assert len(rows) == result.appeals
    assert "fax" not in {row[2] for row in rows}
    assert min(row[4] for row in rows) >= later - timedelta(days=180)
    assert await table_counts(engine) == (9, 5_000, result.appeals)
    # Reloading with the first `now` restores exactly the first data set.
    again = await load_demo(engine, now=NOW, force=True)
    assert again == first


async def test_now_must_be_aware(sqlite_engine: AsyncEngine) -> None:
    with pytest.raises(ValueError, match="aware"):
        await load_demo(sqlite_engine, now=datetime(2026, 11, 27, 8, 30))  # noqa: DTZ001


async def test_demo_on_postgres(postgres_url: str) -> None:
    engine = create_engine(postgres_url)
    try:
        await migrate(engine)
        result = await load_demo(engine, now=NOW)
        assert result.clients == 5_000
        assert result.appeals >= 30_000
        rows = await all_appeals(engine)
        assert len(rows) == result.appeals
        assert max(row[4] for row in rows) <= NOW
        async with engine.connect() as connection:
            ids = dict(
                (await connection.execute(select(appeals.c.external_id, appeals.c.id))).all()
            )
        assert await first_appeals(engine) == expected_first_appeals(rows, ids)
        with pytest.raises(DemoRefused):
            await load_demo(engine, now=NOW)
        assert (await load_demo(engine, now=NOW, force=True)).appeals == result.appeals
    finally:
        await engine.dispose()
