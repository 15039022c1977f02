"""Desk events to appeals: store minimised events append-only, derive each conversation's cycles.

A desk's conversation is not an appeal (DESIGN.md §10): an appeal is one cycle of it, from its
start (or the client writing again after a close) until it is closed. The adapters
(`bot/ingest/chatwoot.py`, `bot/ingest/blinger.py`) turn payloads into `DeskEvent`s; this module
stores them keyed by identity and re-derives every conversation that got a new event, all in the
caller's transaction and through the one write path of `bot/ingest/merge.py`.

Invariant: the appeals of a conversation are a pure function of its stored events. The same
events in any order, any of them repeated, give the same appeals.
"""

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import bindparam, delete, exists, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.ingest.merge import AppealRow, recompute_first_appeals, store_appeals
from bot.storage.aggregates import (
    appeal_hours,
    first_appeal_changes,
    first_appeals,
    lock_aggregates,
    refresh_aggregates,
)
from bot.storage.engine import dialect_insert
from bot.storage.tables import desk_apps, desk_events
from reports.aggregates import store_ready
from reports.schema import NAME_MAX, appeals, apps, clients

Kind = Literal["open", "client", "close"]
# At one instant the client writing sorts before a close (DESIGN.md §10), and a conversation's
# creation before both.
_KIND_ORDER = {"open": 0, "client": 1, "close": 2}
_CYCLE_BATCH = 64
# Stored cycles read beyond those a conversation derives now, before reading on in batches.
_SPARE_CYCLES = 4
# Ids of one IN list: well under SQLite's 32,766 bound parameters and PostgreSQL's 65,535.
_READ_CHUNK = 900


@dataclass(frozen=True, slots=True, kw_only=True)
class DeskEvent:
    """One relevant desk event, minimised: ids, time, channel, inbox, what it means."""

    source: str
    label: str
    # Identity within (source, label): a repeated delivery of the event has the same key.
    key: str
    conversation_id: str
    contact_id: str | None
    kind: Kind
    occurred_at: datetime
    channel: str | None
    app_key: str | None
    # The inbox's (or account's) display name where the payload carries one.
    app_name: str | None


@dataclass(frozen=True, slots=True)
class Cycle:
    """One derived appeal of a conversation, before its app gets a display name."""

    number: int
    started_at: datetime
    contact_id: str
    channel: str
    app_key: str


@dataclass(frozen=True, slots=True)
class StoredEvents:
    received: int
    new: int
    duplicates: int
    conversations: int
    # (source, label, event key) of each event stored for the first time.
    new_keys: frozenset[tuple[str, str, str]] = frozenset()


def derive_cycles(events: Iterable[DeskEvent]) -> list[Cycle]:
    """The appeals of one conversation from its events, whatever their order or repeats."""
    unique = {event.key: event for event in events}
    ordered = sorted(unique.values(), key=lambda e: (e.occurred_at, _KIND_ORDER[e.kind], e.key))
    if not ordered:
        return []
    contact = next((e.contact_id for e in ordered if e.contact_id), None)
    # The latest channel and inbox the conversation was seen in; both rarely change.
    channel = next((e.channel for e in reversed(ordered) if e.channel), None)
    app_key = next((e.app_key for e in reversed(ordered) if e.app_key), None) or channel
    if contact is None or channel is None or app_key is None:
        # Without a contact there is no client to count: wait for an event that names one.
        return []
    starts = [ordered[0].occurred_at]
    open_ = ordered[0].kind != "close"
    for event in ordered[1:]:
        if event.kind == "close":
            open_ = False
        elif not open_:
            starts.append(event.occurred_at)
            open_ = True
    return [
        Cycle(number, start, contact, channel, app_key) for number, start in enumerate(starts, 1)
    ]


def appeal_id(source: str, label: str, conversation_id: str, cycle: int) -> str:
    return f"{source}:{label}:{conversation_id}:{cycle}"


def client_id(source: str, label: str, contact_id: str) -> str:
    return f"{source}:{label}:{contact_id}"


async def store_desk_events(
    connection: AsyncConnection, events: Sequence[DeskEvent], *, received_at: datetime
) -> StoredEvents:
    """Store new events and re-derive the conversations they touch, in the caller's transaction."""
    insert = dialect_insert(connection.dialect.name)
    new = 0
    touched: set[tuple[str, str, str]] = set()
    new_keys: set[tuple[str, str, str]] = set()
    if not events:
        return StoredEvents(0, 0, 0, 0)
    rows = [
        {
            "source": event.source,
            "label": event.label,
            "event_key": event.key,
            "conversation_id": event.conversation_id,
            "contact_id": event.contact_id,
            "kind": event.kind,
            "occurred_at": event.occurred_at,
            "channel": event.channel,
            "app_key": event.app_key,
            "app_name": event.app_name,
            "received_at": received_at,
        }
        for event in events
    ]
    # Executed as many rows: one statement compiled once, sent in pages of rows; RETURNING
    # names only the rows inserted, not the repeats.
    inserted = await connection.execute(
        insert(desk_events)
        .on_conflict_do_nothing()
        .returning(
            desk_events.c.source,
            desk_events.c.label,
            desk_events.c.conversation_id,
            desk_events.c.event_key,
        ),
        rows,
    )
    for row in inserted:
        new += 1
        touched.add((row.source, row.label, row.conversation_id))
        new_keys.add((row.source, row.label, row.event_key))
    await rederive_conversations(connection, sorted(touched))
    return StoredEvents(len(events), new, len(events) - new, len(touched), frozenset(new_keys))


async def rederive_conversations(
    connection: AsyncConnection, conversations: Sequence[tuple[str, str, str]]
) -> None:
    """Replace each conversation's stored appeals by those its events derive, where they differ.

    The events, the stored appeals and the app names of all of them are read together, and
    their new appeals go through the one write path together, so a batch of webhooks costs a
    few statements, not a few per conversation.
    """
    stale: list[str] = []
    fresh: list[AppealRow] = []
    moved_clients: set[str] = set()
    derived = await _derived_appeals(connection, conversations)
    stored = await _stored_appeals(connection, conversations, derived)
    for conversation in conversations:
        wanted, have = derived.get(conversation, {}), stored.get(conversation, {})
        gone = [external for external, row in have.items() if wanted.get(external) != row]
        added = [row for external, row in wanted.items() if have.get(external) != row]
        stale.extend(gone)
        fresh.extend(added)
        if gone:
            moved_clients |= {row.client_id for row in have.values()}
            moved_clients |= {row.client_id for row in added}
    affected = sorted(moved_clients)
    client_keys = select(clients.c.id).where(clients.c.external_id.in_(affected))
    # The metric store is kept exact through its maintenance contract (bot/storage/
    # aggregates.py): the hours of the appeals replaced and the first appeals that move.
    maintain_store = bool(stale) and await store_ready(connection)
    if maintain_store:
        await lock_aggregates(connection)
        before = await first_appeals(connection, client_keys)
        hours = await appeal_hours(
            connection, select(appeals.c.id).where(appeals.c.external_id.in_(stale))
        )
    if stale:
        await connection.execute(delete(appeals).where(appeals.c.external_id.in_(stale)))
    if fresh:
        # The one write path: it keeps the store current for what it inserts.
        await store_appeals(connection, fresh)
    if affected:
        await recompute_first_appeals(connection, clients.c.external_id.in_(affected))
        # A client left without any appeal must not count as new in the period it started.
        await connection.execute(
            delete(clients).where(
                clients.c.external_id.in_(affected),
                ~exists().where(appeals.c.client_id == clients.c.id),
            )
        )
    if maintain_store:
        moved, first_hours = first_appeal_changes(
            before, await first_appeals(connection, client_keys)
        )
        await refresh_aggregates(connection, appeal_hours=hours | moved, first_hours=first_hours)


Conversation = tuple[str, str, str]


# The statements a webhook batch runs every time, built once with bound parameters: building
# and keying a statement per batch cost more Python than running these indexed reads.
_CONVERSATION_EVENTS = select(
    *(column for column in desk_events.c if column.name not in ("id", "received_at"))
).where(
    desk_events.c.source == bindparam("source"),
    desk_events.c.label == bindparam("label"),
    desk_events.c.conversation_id.in_(bindparam("ids", expanding=True)),
)
_APPEALS_BY_ID = (
    select(
        appeals.c.external_id,
        clients.c.external_id.label("client"),
        apps.c.channel,
        apps.c.name,
        appeals.c.created_at,
    )
    .select_from(
        appeals.join(clients, clients.c.id == appeals.c.client_id).join(
            apps, apps.c.id == appeals.c.app_id
        )
    )
    .where(appeals.c.external_id.in_(bindparam("ids", expanding=True)))
)


async def _derived_appeals(
    connection: AsyncConnection, conversations: Sequence[Conversation]
) -> dict[Conversation, dict[str, AppealRow]]:
    """The appeals each conversation's stored events derive, by appeal id."""
    events: dict[Conversation, list[DeskEvent]] = defaultdict(list)
    by_desk: dict[tuple[str, str], list[str]] = defaultdict(list)
    for source, label, conversation_id in conversations:
        by_desk[(source, label)].append(conversation_id)
    for (source, label), ids in by_desk.items():
        for start in range(0, len(ids), _READ_CHUNK):
            for row in await connection.execute(
                _CONVERSATION_EVENTS,
                {"source": source, "label": label, "ids": ids[start : start + _READ_CHUNK]},
            ):
                events[(row.source, row.label, row.conversation_id)].append(
                    DeskEvent(
                        source=row.source,
                        label=row.label,
                        key=row.event_key,
                        conversation_id=row.conversation_id,
                        contact_id=row.contact_id,
                        kind=row.kind,
                        occurred_at=row.occurred_at,
                        channel=row.channel,
                        app_key=row.app_key,
                        app_name=row.app_name,
                    )
                )
    cycles = {conversation: derive_cycles(events[conversation]) for conversation in conversations}
    # Every cycle of a conversation has its latest channel and inbox, so one app name.
    inboxes = {
        (source, label, found[0].channel, found[0].app_key)
        for (source, label, _), found in cycles.items()
        if found
    }
    names = await _app_names(connection, inboxes)
    derived: dict[Conversation, dict[str, AppealRow]] = {}
    for (source, label, conversation_id), found in cycles.items():
        if not found:
            continue
        app = names[(source, label, found[0].channel, found[0].app_key)]
        derived[(source, label, conversation_id)] = {
            (external := appeal_id(source, label, conversation_id, cycle.number)): AppealRow(
                appeal_id=external,
                client_id=client_id(source, label, cycle.contact_id),
                channel=cycle.channel,
                app=app,
                created_at=cycle.started_at,
            )
            for cycle in found
        }
    return derived


async def _stored_appeals(
    connection: AsyncConnection,
    conversations: Sequence[Conversation],
    derived: dict[Conversation, dict[str, AppealRow]],
) -> dict[Conversation, dict[str, AppealRow]]:
    """Each conversation's appeals as stored, by appeal id.

    Its cycles are always stored as 1..n (a re-derivation replaces them whole), so the ids up to
    a few more than it derives now are read for all conversations at once, and a conversation
    that has all of them is read on until a batch is not full; a LIKE on the prefix would not
    use the index.
    """
    stored: dict[Conversation, dict[str, AppealRow]] = defaultdict(dict)
    owner: dict[str, Conversation] = {}
    asked: dict[Conversation, int] = {}
    for conversation in conversations:
        asked[conversation] = len(derived.get(conversation, ())) + _SPARE_CYCLES
        for number in range(1, asked[conversation] + 1):
            owner[appeal_id(*conversation, number)] = conversation
    await _read_appeals(connection, owner, stored)
    for conversation, count in asked.items():
        first = count + 1
        while len(stored[conversation]) == first - 1:
            batch = {
                appeal_id(*conversation, n): conversation
                for n in range(first, first + _CYCLE_BATCH)
            }
            await _read_appeals(connection, batch, stored)
            first += _CYCLE_BATCH
    return stored


async def _read_appeals(
    connection: AsyncConnection,
    owner: dict[str, Conversation],
    stored: dict[Conversation, dict[str, AppealRow]],
) -> None:
    """Add the stored appeals among these ids to `stored`, under the conversation owning each."""
    ids = list(owner)
    for start in range(0, len(ids), _READ_CHUNK):
        for row in await connection.execute(
            _APPEALS_BY_ID, {"ids": ids[start : start + _READ_CHUNK]}
        ):
            stored[owner[row.external_id]][row.external_id] = AppealRow(
                row.external_id, row.client, row.channel, row.name, row.created_at
            )


Inbox = tuple[str, str, str]  # (source, label, app_key)


async def _app_names(
    connection: AsyncConnection, inboxes: set[tuple[str, str, str, str]]
) -> dict[tuple[str, str, str, str], str]:
    """The app name of each (source, label, channel, inbox) of a batch, in a stable order."""
    keys = sorted(inboxes)
    inbox_keys = sorted({(source, label, app_key) for source, label, _, app_key in keys})
    latest = await _latest_names(connection, inbox_keys)
    mapped = await _mapped_apps(connection, inbox_keys)
    names = {}
    for source, label, channel, app_key in keys:
        inbox = (source, label, app_key)
        names[(source, label, channel, app_key)] = await _app_name(
            connection, inbox, channel, latest.get(inbox), mapped.get(inbox)
        )
    return names


# Run per inbox of a batch; built once for the same reason as the reads above.
_LATEST_NAME = (
    select(desk_events.c.app_name)
    .where(
        desk_events.c.source == bindparam("source"),
        desk_events.c.label == bindparam("label"),
        desk_events.c.app_key == bindparam("app_key"),
        desk_events.c.app_name.is_not(None),
    )
    .order_by(desk_events.c.occurred_at.desc(), desk_events.c.event_key.desc())
    .limit(1)
)


async def _latest_names(connection: AsyncConnection, inboxes: list[Inbox]) -> dict[Inbox, str]:
    """The name on the newest stored event of each inbox that carries one.

    It depends only on the stored events, not on their arrival order.
    """
    latest: dict[Inbox, str] = {}
    for source, label, app_key in inboxes:
        name = await connection.scalar(
            _LATEST_NAME, {"source": source, "label": label, "app_key": app_key}
        )
        if name is not None:
            latest[(source, label, app_key)] = name
    return latest


async def _mapped_apps(connection: AsyncConnection, inboxes: list[Inbox]) -> dict[Inbox, Any]:
    """The app (id, name) each inbox already stands for."""
    by_desk: dict[tuple[str, str], list[str]] = defaultdict(list)
    for source, label, app_key in inboxes:
        by_desk[(source, label)].append(app_key)
    mapped: dict[Inbox, Any] = {}
    for (source, label), app_keys in by_desk.items():
        for start in range(0, len(app_keys), _READ_CHUNK):
            for row in await connection.execute(
                select(desk_apps.c.app_key, apps.c.id, apps.c.name)
                .select_from(desk_apps.join(apps, apps.c.id == desk_apps.c.app_id))
                .where(
                    desk_apps.c.source == source,
                    desk_apps.c.label == label,
                    desk_apps.c.app_key.in_(app_keys[start : start + _READ_CHUNK]),
                )
            ):
                mapped[(source, label, row.app_key)] = row
    return mapped


async def _app_name(
    connection: AsyncConnection, inbox: Inbox, channel: str, latest: str | None, mapped: Any
) -> str:
    """The name of the app that stands for this inbox, renamed to the latest name seen."""
    source, label, app_key = inbox
    name = (latest or default_app_name(source, app_key))[:NAME_MAX]
    if mapped is None:
        app = await _app_id(connection, channel, name)
        await connection.execute(
            desk_apps.insert().values(source=source, label=label, app_key=app_key, app_id=app)
        )
        return name
    if mapped.name == name:
        return name
    sharing = await connection.scalar(
        select(func.count()).select_from(desk_apps).where(desk_apps.c.app_id == mapped.id)
    )
    if sharing and sharing > 1:
        # Another inbox (of another desk account, say, also still "inbox 2") stands for the
        # same app: renaming it in place would rename that inbox's history too. This inbox
        # moves to an app of its new name, with its appeals.
        app = await _app_id(connection, channel, name)
        await connection.execute(
            desk_apps.update()
            .where(
                desk_apps.c.source == source,
                desk_apps.c.label == label,
                desk_apps.c.app_key == app_key,
            )
            .values(app_id=app)
        )
        await _move_inbox_appeals(connection, source, label, app_key, int(mapped.id), app)
        return name
    taken = await connection.scalar(
        select(apps.c.id).where(apps.c.channel == channel, apps.c.name == name)
    )
    if taken is not None:
        # Another app of the channel already has that name: keep the history under the old one.
        return str(mapped.name)
    await connection.execute(apps.update().where(apps.c.id == mapped.id).values(name=name))
    return name


async def _move_inbox_appeals(
    connection: AsyncConnection, source: str, label: str, app_key: str, old: int, new: int
) -> None:
    """Point the stored appeals of the inbox's conversations from app `old` to app `new`."""
    conversations = await connection.execute(
        select(desk_events.c.conversation_id)
        .where(
            desk_events.c.source == source,
            desk_events.c.label == label,
            desk_events.c.app_key == app_key,
        )
        .distinct()
    )
    moved = [(source, label, conversation_id) for (conversation_id,) in conversations.all()]
    stored = await _stored_appeals(connection, moved, {})
    ids = [external for appeals_of in stored.values() for external in appeals_of]
    for start in range(0, len(ids), _READ_CHUNK):
        await connection.execute(
            appeals.update()
            .where(
                appeals.c.external_id.in_(ids[start : start + _READ_CHUNK]),
                appeals.c.app_id == old,
            )
            .values(app_id=new)
        )


async def _app_id(connection: AsyncConnection, channel: str, name: str) -> int:
    found = await connection.scalar(
        select(apps.c.id).where(apps.c.channel == channel, apps.c.name == name)
    )
    if found is not None:
        return int(found)
    result = await connection.execute(apps.insert().values(channel=channel, name=name))
    key = result.inserted_primary_key
    assert key is not None  # an INSERT of one row always has its key
    return int(key[0])


def default_app_name(source: str, app_key: str) -> str:
    """Chatwoot inboxes are `inbox <id>` until a message names them; Blinger's is its code."""
    return f"inbox {app_key}" if source == "chatwoot" else app_key
