"""The pre-aggregated store equals the plain SQL on hand-counted and generated data, both backends.

Also checked after every write: what the write path kept in the store equals a rebuild from the
tables, so no bucket drifts even when no report happens to read it.
"""

import random
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.ingest import merge
from bot.ingest.merge import AppealRow
from bot.storage.aggregates import (
    appeal_hours,
    first_appeal_changes,
    first_appeals,
    refresh_aggregates,
)
from bot.storage.engine import write_transaction
from reports.aggregates import cover, hour_floor, hour_start, whole_hour_edges
from reports.metrics import build_report
from reports.model import Period, PeriodPair, ReportFilter
from reports.schema import appeals, apps, clients
from reports.store_schema import DAY, HOUR, MONTH
from tests.aggregates.support import (
    ZONES,
    assert_directory_same,
    assert_same,
    assert_store_current,
    filters,
    random_period,
    utc,
)
from tests.conftest import migrated
from tests.datasets import OLD_ROWS, ROWS_IN_AND_AROUND_P, VIP, VK_GROUP, load, stored_appeals

MSK = ZoneInfo("Europe/Moscow")
APPS = [
    ("whatsapp", "Sales"),
    ("whatsapp", "Support"),
    ("telegram", "Bot"),
    ("vk", "Группа ВК"),
    ("email", "Inbox"),
]
LOW, HIGH = utc(2024, 1, 1), utc(2026, 7, 1)


def local_day(zone: ZoneInfo, year: int, month: int, dom: int, days: int = 1) -> Period:
    start = datetime(year, month, dom, tzinfo=zone)
    end = datetime.combine(start.date() + timedelta(days=days), datetime.min.time(), zone)
    return Period(start=start, end=end, tz=zone)


def test_cover_uses_the_largest_aligned_buckets() -> None:
    start, end = hour_floor(utc(2025, 1, 30, 5)), hour_floor(utc(2025, 4, 2, 3))
    runs = cover(start, end)
    assert (MONTH, hour_floor(utc(2025, 2, 1)), hour_floor(utc(2025, 4, 1))) in runs
    assert (DAY, hour_floor(utc(2025, 1, 31)), hour_floor(utc(2025, 2, 1))) in runs
    assert (HOUR, start, hour_floor(utc(2025, 1, 31))) in runs
    covered = sorted((low, high) for _, low, high in runs)
    assert covered[0][0] == start and covered[-1][1] == end
    assert all(a[1] == b[0] for a, b in zip(covered, covered[1:], strict=False))
    assert cover(start, start) == []


async def test_hand_counted_data_sets(engine: AsyncEngine, tmp_path: Path) -> None:
    await load(engine, tmp_path, ROWS_IN_AND_AROUND_P, "recent")
    await load(engine, tmp_path, OLD_ROWS, "old")
    await assert_store_current(engine)
    # /channels by hand: whatsapp has A and D (as "WhatsApp") through Sales, C through Support;
    # the generated data below has clients on two apps of one channel, counted once for it.
    directory = {
        entry.channel: (entry.clients, entry.apps) for entry in await assert_directory_same(engine)
    }
    assert directory == {
        "email": (1, [("Inbox", 1)]),
        "telegram": (2, [(VIP, 2)]),
        "vk": (1, [(VK_GROUP, 1)]),
        "whatsapp": (3, [("Sales", 2), ("Support", 1)]),
    }
    p = PeriodPair(current=local_day(MSK, 2026, 11, 10), previous=local_day(MSK, 2026, 11, 9))
    report = await assert_same(engine, p, ReportFilter())
    assert (report.all_clients, report.current.appeals, report.current.new_clients) == (5, 7, 2)
    periods = [p] + [
        PeriodPair(
            current=local_day(zone, 2026, 11, 10, days), previous=local_day(zone, 2026, 11, 9)
        )
        for zone in ZONES
        for days in (1, 2, 40)
    ]
    periods.append(
        PeriodPair(
            current=local_day(MSK, 2023, 1, 1, 1500), previous=local_day(MSK, 2022, 1, 1, 365)
        )
    )
    for flt in await filters(engine):
        for pair in periods:
            await assert_same(engine, pair, flt)
    # The report path answers from the store and says the same.
    async with engine.connect() as connection:
        assert await build_report(connection, p, ReportFilter()) == report


def generated_rows(rng: random.Random, count: int) -> list[tuple[str, ...]]:
    """Appeals at random instants plus the traps: exact bucket edges and local midnight +-1 s."""
    instants: list[datetime] = []
    for zone in ZONES:
        for day in ("2025-03-09", "2025-11-02", "2025-12-31", "2026-03-29", "2026-01-01"):
            midnight = datetime.fromisoformat(day).replace(tzinfo=zone)
            instants += [midnight + timedelta(seconds=s) for s in (-1, 0, 1)]
    instants += [utc(2025, 6, 1), utc(2025, 6, 1, 13), utc(2025, 7, 1) - timedelta(microseconds=1)]
    span = (HIGH - LOW).total_seconds()
    while len(instants) < count:
        instants.append(LOW + timedelta(seconds=rng.uniform(0, span)))
    rows = []
    for number, moment in enumerate(instants):
        channel, app = rng.choice(APPS)
        client = int(150 * rng.random() ** 2)
        rows.append((f"g{number}", f"c{client}", channel, app, moment.isoformat()))
    return rows


@pytest.mark.parametrize("maintenance", ["grown", "recomputed", "movers by query"])
async def test_generated_data_in_random_order(
    engine: AsyncEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, maintenance: str
) -> None:
    # Small writes add their appeals to the buckets; big ones recompute the touched hours.
    if maintenance == "recomputed":
        monkeypatch.setattr(merge, "GROW_MAX_APPEALS", 0)
    # A big import names the clients whose first appeal may move by their query, not by id.
    if maintenance == "movers by query":
        monkeypatch.setattr(merge, "MOVERS_BY_ID", 2)
    rng = random.Random(11)
    rows = generated_rows(rng, 1500)
    rng.shuffle(rows)
    # The client whose first-ever appeal, through another app, arrives last of all.
    late = ("late-first", "c1", "email", "Inbox", (LOW - timedelta(days=30)).isoformat())
    chunks = [rows[:700], rows[700:1100], rows[1100:1101], rows[1101:], rows[200:400], [late]]
    for number, chunk in enumerate(chunks):
        await load(engine, tmp_path, chunk, f"chunk{number}")
        await assert_store_current(engine)
        await assert_directory_same(engine)
    known = await filters(engine)
    for _ in range(40):
        pair = random_period(rng, LOW - timedelta(days=40), HIGH)
        for flt in rng.sample(known, 3):
            await assert_same(engine, pair, flt)


async def replace_appeals(
    engine: AsyncEngine, client_external: str, drop: int, add: list[tuple[str, int, datetime]]
) -> None:
    """Another write path, as the webhook re-derivation works: delete and insert appeals."""
    async with engine.begin() as connection:
        client_id = (
            await connection.execute(
                select(clients.c.id).where(clients.c.external_id == client_external)
            )
        ).scalar_one()
        before = await first_appeals(connection, [client_id])
        doomed = (
            (
                await connection.execute(
                    select(appeals.c.id)
                    .where(appeals.c.client_id == client_id)
                    .order_by(appeals.c.created_at, appeals.c.id)
                    .limit(drop)
                )
            )
            .scalars()
            .all()
        )
        touched = await appeal_hours(connection, doomed)
        await connection.execute(delete(appeals).where(appeals.c.id.in_(doomed)))
        new_ids = []
        for external, app_id, moment in add:
            result = await connection.execute(
                insert(appeals).values(
                    external_id=external, client_id=client_id, app_id=app_id, created_at=moment
                )
            )
            new_ids.append(result.inserted_primary_key[0])
        touched |= await appeal_hours(connection, new_ids)
        first = (
            await connection.execute(
                select(appeals.c.id, appeals.c.created_at)
                .where(appeals.c.client_id == client_id)
                .order_by(appeals.c.created_at, appeals.c.id)
                .limit(1)
            )
        ).one()
        await connection.execute(
            update(clients)
            .where(clients.c.id == client_id)
            .values(first_appeal_id=first.id, first_appeal_at=first.created_at)
        )
        moved, first_hours = first_appeal_changes(
            before, await first_appeals(connection, [client_id])
        )
        await refresh_aggregates(connection, appeal_hours=touched | moved, first_hours=first_hours)


async def test_another_write_path_replacing_appeals(engine: AsyncEngine, tmp_path: Path) -> None:
    rng = random.Random(5)
    await load(engine, tmp_path, generated_rows(rng, 600), "base")
    async with engine.connect() as connection:
        app_ids = (await connection.execute(select(apps.c.id).order_by(apps.c.id))).scalars().all()
        busiest = (
            (
                await connection.execute(
                    select(clients.c.external_id)
                    .join(appeals, appeals.c.client_id == clients.c.id)
                    .group_by(clients.c.external_id)
                    .order_by(func.count().desc(), clients.c.external_id)
                    .limit(3)
                )
            )
            .scalars()
            .all()
        )
    # First appeal deleted (moves later), then one inserted years earlier (moves earlier), then
    # appeals replaced by others in the same hours.
    await replace_appeals(engine, busiest[0], 2, [])
    await replace_appeals(engine, busiest[1], 0, [("w1", app_ids[-1], LOW - timedelta(days=400))])
    await replace_appeals(
        engine,
        busiest[2],
        3,
        [("w2", app_ids[0], utc(2025, 6, 1)), ("w3", app_ids[1], utc(2025, 6, 1, 0, 30))],
    )
    await assert_store_current(engine)
    await assert_directory_same(engine)
    known = await filters(engine)
    for _ in range(25):
        pair = random_period(rng, LOW - timedelta(days=500), HIGH)
        for flt in rng.sample(known, 3):
            await assert_same(engine, pair, flt)


def test_hour_helpers_round_trip() -> None:
    moment = utc(2025, 6, 1, 13, 59, 59)
    assert hour_start(hour_floor(moment)) == utc(2025, 6, 1, 13)


async def first_appeal_rows(engine: AsyncEngine) -> list[tuple[str, str | None]]:
    """Each client's external id and the external id of its first-ever appeal."""
    query = (
        select(clients.c.external_id, appeals.c.external_id)
        .select_from(clients.outerjoin(appeals, appeals.c.id == clients.c.first_appeal_id))
        .order_by(clients.c.external_id)
    )
    async with engine.connect() as connection:
        return [(client, first) for client, first in await connection.execute(query)]


async def test_rows_in_hand_are_stored_as_a_file_of_them_is_imported(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    # store_appeals (webhooks, demo data) drops repeats itself and finds its appeals by id
    # range; the import finds repeats with an index. Both must leave the same tables and store.
    rng = random.Random(23)
    rows = generated_rows(rng, 700)
    rng.shuffle(rows)
    # The same appeal_id again in one batch, with another client, app and time: the first wins.
    repeats = [(appeal, "c-other", "vk", "Группа ВК", rows[0][4]) for appeal, *_ in rows[5:25]]
    # Two appeals of a new client at one instant: the first in the batch is its first appeal.
    tie = [
        ("tie-b", "c-tie", "email", "Inbox", rows[3][4]),
        ("tie-a", "c-tie", "vk", "Группа ВК", rows[3][4]),
    ]
    batches = [rows[:300] + repeats + tie, rows[280:500], rows[500:]]
    async with migrated(f"sqlite+aiosqlite:///{tmp_path / 'imported.db'}") as imported:
        for number, batch in enumerate(batches):
            in_hand = [
                AppealRow(appeal, client, channel, app, datetime.fromisoformat(moment))
                for appeal, client, channel, app, moment in batch
            ]
            async with write_transaction(engine) as connection:
                result = await merge.store_appeals(connection, in_hand)
            await load(imported, tmp_path, batch, f"batch{number}")
            await assert_store_current(engine)
            assert await stored_appeals(engine) == await stored_appeals(imported)
            assert await first_appeal_rows(engine) == await first_appeal_rows(imported)
            assert result.rows == len(batch)
            assert result.new + result.duplicates == len(batch)
        assert result.new == len(rows) - 500
    stored_clients = {appeal: client for appeal, client, *_ in await stored_appeals(engine)}
    assert all(stored_clients[appeal] == client for appeal, client, *_ in rows[5:25])
    assert ("c-tie", "tie-b") in await first_appeal_rows(engine)


async def test_an_edge_alone_in_its_hour_is_answered_by_the_hour_bucket(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    # 10:00-11:00 UTC holds appeals at 10:05 and 10:20 (a client on two apps, a first appeal);
    # a period ending at 10:30 has no appeal of that hour after it, one ending at 10:10 has.
    rows = [
        ("e1", "c1", "whatsapp", "Sales", "2026-03-02T10:05:00+00:00"),
        ("e2", "c1", "vk", "Группа ВК", "2026-03-02T10:20:00+00:00"),
        ("e3", "c2", "whatsapp", "Sales", "2026-03-02T10:20:00+00:00"),
        ("e0", "c2", "email", "Inbox", "2026-03-01T09:00:00+00:00"),
    ]
    await load(engine, tmp_path, rows, "edges")
    ten, half_past = utc(2026, 3, 2, 10), utc(2026, 3, 2, 10, 30)
    at_ten_past = utc(2026, 3, 2, 10, 10)
    since_midnight = (utc(2026, 3, 2) - timedelta(minutes=30), half_past)
    async with engine.connect() as connection:
        edges, hours = await whole_hour_edges(connection, [(ten, half_past)])
        assert (edges, hours) == ([], [hour_floor(ten)])
        edges, hours = await whole_hour_edges(connection, [(ten, at_ten_past)])
        assert (edges, hours) == ([(ten, at_ten_past)], [])
        # The edge 23:30-24:00 of the day before is alone in its hour as well.
        edges, hours = await whole_hour_edges(
            connection, [(since_midnight[0], utc(2026, 3, 2)), (ten, half_past)]
        )
        assert edges == [] and len(hours) == 2
    for end in (half_past, at_ten_past, utc(2026, 3, 2, 10, 20), utc(2026, 3, 2, 10, 5, 1)):
        for start in (since_midnight[0], ten, utc(2026, 3, 2, 10, 4)):
            current = Period(start=start.astimezone(MSK), end=end.astimezone(MSK), tz=MSK)
            previous = Period(start=start - (end - start), end=start, tz=MSK)
            pair = PeriodPair(current=current, previous=previous)
            for flt in await filters(engine):
                await assert_same(engine, pair, flt)
    pair = PeriodPair(
        current=Period(start=since_midnight[0], end=half_past, tz=MSK),
        previous=Period(start=utc(2026, 3, 1), end=since_midnight[0], tz=MSK),
    )
    report = await assert_same(engine, pair, ReportFilter())
    assert (report.current.appeals, report.current.contacted_clients) == (3, 2)
    assert (report.current.new_clients, report.current.repeat_appeals) == (1, 2)
