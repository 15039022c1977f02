"""Appeal cycles from desk events: hand-counted cases, order independence, re-derivation."""

import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.ingest import chatwoot
from bot.ingest.desk import (
    Cycle,
    DeskEvent,
    appeal_id,
    client_id,
    derive_cycles,
    store_desk_events,
)
from bot.storage.engine import create_engine, migrate, write_transaction
from bot.storage.tables import desk_apps
from tests.ingest.support import (
    NOW,
    appeals_table,
    apps_table,
    clients_table,
    payload,
)

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


def event(
    key: str,
    kind: str,
    minutes: float,
    *,
    conversation: str = "42",
    contact: str | None = "7",
    label: str = "main",
    app_key: str = "3",
    app_name: str | None = None,
    channel: str = "whatsapp",
) -> DeskEvent:
    return DeskEvent(
        source="chatwoot",
        label=label,
        key=key,
        conversation_id=conversation,
        contact_id=contact,
        kind=kind,  # type: ignore[arg-type]
        occurred_at=T0 + timedelta(minutes=minutes),
        channel=channel,
        app_key=app_key,
        app_name=app_name,
    )


def starts(cycles: Sequence[Cycle]) -> list[tuple[int, datetime]]:
    return [(cycle.number, cycle.started_at) for cycle in cycles]


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


# --- hand-counted cases ------------------------------------------------------------------------


def test_created_message_resolved_message_is_two_appeals() -> None:
    cycles = derive_cycles(
        [
            event("created", "open", 0),
            event("m1", "client", 1),
            event("resolved", "close", 30),
            event("m2", "client", 90),
        ]
    )
    assert starts(cycles) == [(1, at(0)), (2, at(90))]
    assert {(c.contact_id, c.channel, c.app_key) for c in cycles} == {("7", "whatsapp", "3")}


def test_messages_while_open_stay_one_appeal() -> None:
    cycles = derive_cycles(
        [event("created", "open", 0), event("m1", "client", 1), event("m2", "client", 5)]
    )
    assert starts(cycles) == [(1, at(0))]


def test_client_message_at_the_same_instant_as_a_close_sorts_before_it() -> None:
    # created 0, resolved 30 and a message at 30: the message belongs to the cycle being
    # closed, so there is no second appeal ...
    same_time = [event("created", "open", 0), event("zz", "client", 30), event("aa", "close", 30)]
    assert starts(derive_cycles(same_time)) == [(1, at(0))]
    # ... whereas a message one second after the close opens one.
    later = [event("created", "open", 0), event("aa", "close", 30), event("zz", "client", 30.02)]
    assert starts(derive_cycles(later)) == [(1, at(0)), (2, at(30.02))]


def test_a_conversation_first_seen_resolved_opens_its_first_cycle_at_the_close() -> None:
    assert starts(derive_cycles([event("r", "close", 10)])) == [(1, at(10))]
    cycles = derive_cycles([event("r", "close", 10), event("m", "client", 20)])
    assert starts(cycles) == [(1, at(10)), (2, at(20))]


def test_repeated_closes_and_reopens() -> None:
    cycles = derive_cycles(
        [
            event("o", "open", 0),
            event("c1", "close", 10),
            event("c2", "close", 11),
            event("m1", "client", 20),
            event("m2", "client", 21),
            event("c3", "close", 30),
            event("m3", "client", 40),
        ]
    )
    assert starts(cycles) == [(1, at(0)), (2, at(20)), (3, at(40))]


def test_no_contact_no_appeal_until_an_event_names_one() -> None:
    assert derive_cycles([event("o", "open", 0, contact=None)]) == []
    cycles = derive_cycles([event("o", "open", 0, contact=None), event("m", "client", 5)])
    assert starts(cycles) == [(1, at(0))]


def test_pending_and_snoozed_statuses_are_ignored() -> None:
    for status in ("pending", "snoozed"):
        body = payload("chatwoot_status_resolved") | {
            "status": status,
            "event": "conversation_status_changed",
        }
        assert chatwoot.events_from_webhook(body, "main") == []
    resolved = chatwoot.events_from_webhook(payload("chatwoot_status_resolved"), "main")
    assert [e.kind for e in resolved] == ["close", "open"]
    reopened = payload("chatwoot_status_resolved") | {"status": "open"}
    assert [e.kind for e in chatwoot.events_from_webhook(reopened, "main")] == ["client", "open"]


def test_id_formats() -> None:
    assert appeal_id("chatwoot", "main", "42", 2) == "chatwoot:main:42:2"
    assert client_id("blinger", "shop-2", "374") == "blinger:shop-2:374"


async def test_stored_ids_follow_the_formats(sqlite_engine: AsyncEngine) -> None:
    events = [
        event("o", "open", 0, label="eu_1"),
        event("c", "close", 10, label="eu_1"),
        event("m", "client", 20, label="eu_1"),
    ]
    async with write_transaction(sqlite_engine) as connection:
        await store_desk_events(connection, events, received_at=NOW)
    table = await appeals_table(sqlite_engine)
    assert {row[0] for row in table} == {"chatwoot:eu_1:42:1", "chatwoot:eu_1:42:2"}
    assert {row[1] for row in table} == {"chatwoot:eu_1:7"}
    assert await clients_table(sqlite_engine) == {"chatwoot:eu_1:7": at(0)}


# --- order independence: the pure function -----------------------------------------------------


def reference(events: Sequence[DeskEvent]) -> list[datetime]:
    """Cycle starts of an ordered, duplicate-free stream, walked one event at a time."""
    order = {"open": 0, "client": 1, "close": 2}
    walked = sorted(events, key=lambda e: (e.occurred_at, order[e.kind], e.key))
    found: list[datetime] = []
    closed = True
    for e in walked:
        if not found or (closed and e.kind != "close"):
            found.append(e.occurred_at)
        closed = e.kind == "close"
    return found


streams = st.lists(
    st.tuples(st.sampled_from(["open", "client", "close"]), st.integers(0, 12)),
    min_size=1,
    max_size=14,
)


@settings(max_examples=400, deadline=None)
@given(steps=streams, data=st.data())
def test_shuffled_streams_with_duplicates_derive_the_ordered_streams_appeals(
    steps: list[tuple[str, int]], data: st.DataObject
) -> None:
    ordered = [event(f"e{i}", kind, minute * 5) for i, (kind, minute) in enumerate(steps)]
    ordered.sort(key=lambda e: e.occurred_at)
    repeats = data.draw(st.lists(st.sampled_from(ordered), max_size=len(ordered)))
    shuffled = data.draw(st.permutations(ordered + repeats))
    expected = derive_cycles(ordered)
    assert derive_cycles(shuffled) == expected
    assert [c.started_at for c in expected] == reference(ordered)
    assert [c.number for c in expected] == list(range(1, len(expected) + 1))


# --- order independence: end to end on SQLite -------------------------------------------------


def random_conversations(rng: random.Random, label: str) -> list[DeskEvent]:
    events: list[DeskEvent] = []
    for conversation in range(rng.randint(1, 4)):
        contact = str(rng.randint(1, 3))
        # Every desk account has inboxes 1 and 2 (each with names of its own).
        inbox = str(rng.randint(1, 2))
        for i in range(rng.randint(1, 10)):
            # Each inbox has its own names (two inboxes sharing a name: see the report).
            name = rng.choice([None, None, f"{label}/{inbox} support", f"{label}/{inbox} sales"])
            events.append(
                event(
                    f"{conversation}:{i}",
                    rng.choice(["open", "client", "client", "close"]),
                    rng.randint(0, 40) * 15,
                    conversation=f"c{conversation}",
                    contact=contact,
                    label=label,
                    app_key=inbox,
                    app_name=name,
                )
            )
    return events


async def test_batches_in_random_order_give_the_appeals_of_one_ordered_batch(
    tmp_path: object,
) -> None:
    rng = random.Random(20261201)
    ordered_engine = create_engine(f"sqlite+aiosqlite:///{tmp_path}/ordered.db")
    shuffled_engine = create_engine(f"sqlite+aiosqlite:///{tmp_path}/shuffled.db")
    try:
        await migrate(ordered_engine)
        await migrate(shuffled_engine)
        for stream in range(150):
            events = random_conversations(rng, f"s{stream}")
            ordered = sorted(events, key=lambda e: (e.occurred_at, e.key))
            async with write_transaction(ordered_engine) as connection:
                await store_desk_events(connection, ordered, received_at=NOW)
            arrivals = events + rng.choices(events, k=rng.randint(0, len(events)))
            rng.shuffle(arrivals)
            while arrivals:
                size = rng.randint(1, 4)
                batch, arrivals = arrivals[:size], arrivals[size:]
                async with write_transaction(shuffled_engine) as connection:
                    await store_desk_events(connection, batch, received_at=NOW)
        expected = await appeals_table(ordered_engine)
        assert len(expected) > 150
        assert await appeals_table(shuffled_engine) == expected
        assert await clients_table(shuffled_engine) == await clients_table(ordered_engine)
        assert await apps_table(shuffled_engine) == await apps_table(ordered_engine)
    finally:
        await ordered_engine.dispose()
        await shuffled_engine.dispose()


# --- re-derivation -----------------------------------------------------------------------------


async def store(engine: AsyncEngine, events: list[DeskEvent]) -> None:
    async with write_transaction(engine) as connection:
        await store_desk_events(connection, events, received_at=NOW)


async def test_a_late_event_splits_a_cycle_and_moves_the_first_appeal(
    engine: AsyncEngine,
) -> None:
    await store(engine, [event("m1", "client", 60), event("m2", "client", 120)])
    assert {r[0]: r[4] for r in await appeals_table(engine)} == {"chatwoot:main:42:1": at(60)}
    assert await clients_table(engine) == {"chatwoot:main:7": at(60)}
    # The resolve of an earlier cycle arrives late: the conversation was first closed at 30,
    # so cycle 1 starts there and the message at 60 opens cycle 2.
    await store(engine, [event("r0", "close", 30)])
    assert {r[0]: r[4] for r in await appeals_table(engine)} == {
        "chatwoot:main:42:1": at(30),
        "chatwoot:main:42:2": at(60),
    }
    assert await clients_table(engine) == {"chatwoot:main:7": at(30)}
    # A close between the messages splits the second cycle again.
    await store(engine, [event("r1", "close", 90)])
    assert {r[0]: r[4] for r in await appeals_table(engine)} == {
        "chatwoot:main:42:1": at(30),
        "chatwoot:main:42:2": at(60),
        "chatwoot:main:42:3": at(120),
    }
    assert await clients_table(engine) == {"chatwoot:main:7": at(30)}


async def test_a_late_creation_moves_the_first_appeal_across_conversations(
    engine: AsyncEngine,
) -> None:
    await store(engine, [event("b", "client", 100, conversation="43")])
    await store(engine, [event("a", "client", 200, conversation="42")])
    assert await clients_table(engine) == {"chatwoot:main:7": at(100)}
    await store(engine, [event("created", "open", 50, conversation="42")])
    assert await clients_table(engine) == {"chatwoot:main:7": at(50)}
    assert {r[0]: r[4] for r in await appeals_table(engine)} == {
        "chatwoot:main:43:1": at(100),
        "chatwoot:main:42:1": at(50),
    }


async def test_a_renamed_inbox_keeps_one_app_and_renames_it(engine: AsyncEngine) -> None:
    await store(engine, [event("o", "open", 0)])
    assert await apps_table(engine) == {("whatsapp", "inbox 3")}
    await store(engine, [event("m1", "client", 1, app_name="Support")])
    assert await apps_table(engine) == {("whatsapp", "Support")}
    await store(
        engine, [event("m2", "client", 5, conversation="43", contact="8", app_name="Support RU")]
    )
    assert await apps_table(engine) == {("whatsapp", "Support RU")}
    # An older event with the old name arriving late does not rename it back.
    await store(engine, [event("m0", "client", 0.5, app_name="Support")])
    assert await apps_table(engine) == {("whatsapp", "Support RU")}
    assert {(r[0], r[3]) for r in await appeals_table(engine)} == {
        ("chatwoot:main:42:1", "Support RU"),
        ("chatwoot:main:43:1", "Support RU"),
    }
    async with engine.connect() as connection:
        mapped = (await connection.execute(select(desk_apps))).all()
    assert len(mapped) == 1


async def test_two_desks_with_inbox_2_keep_their_own_apps(engine: AsyncEngine) -> None:
    # Regression: both unnamed inboxes stood for the one app "inbox 2", so naming one renamed
    # the other desk's history.
    await store(engine, [event("a", "open", 0, label="shop", app_key="2")])
    await store(engine, [event("b", "open", 0, label="cafe", app_key="2")])
    await store(engine, [event("b2", "open", 0, label="cafe", app_key="2", conversation="43")])
    await store(engine, [event("c", "client", 5, label="cafe", app_key="2", app_name="Cafe")])
    apps = {(r[0], r[3]) for r in await appeals_table(engine)}
    assert apps == {
        ("chatwoot:shop:42:1", "inbox 2"),
        ("chatwoot:cafe:42:1", "Cafe"),
        # A conversation of the renamed inbox that got no new event moves with it.
        ("chatwoot:cafe:43:1", "Cafe"),
    }
    await store(engine, [event("d", "client", 6, label="shop", app_key="2", app_name="Shop")])
    apps = {(r[0], r[3]) for r in await appeals_table(engine)}
    assert ("chatwoot:shop:42:1", "Shop") in apps
    assert ("chatwoot:cafe:43:1", "Cafe") in apps
