"""The web endpoints end to end: Chatwoot and Blinger webhooks, /api/appeals, /healthz."""

import json
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yarl
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.logs import REDACTED, RedactSecrets
from bot.storage.engine import create_engine
from bot.storage.tables import desk_events, ingest_refusals
from bot.web.server import IngestServer, start_web
from tests.ingest.support import (
    NOW,
    PERSONAL,
    SECRET,
    TOKEN,
    Clock,
    appeals_table,
    apps_table,
    clients_table,
    ingest_client,
    payload,
    raw,
    row_counts,
    settings,
    sign,
    text_values,
)

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
D0 = T0 + timedelta(days=1)
STAMP = int(NOW.timestamp())
CHATWOOT_STREAM = [
    "chatwoot_conversation_created",
    "chatwoot_message_incoming",
    "chatwoot_message_outgoing",
    "chatwoot_status_resolved",
    "chatwoot_message_incoming_again",
    "chatwoot_status_pending",
    "chatwoot_webwidget_triggered",
]
BLINGER_STREAM = [
    "blinger_on_new_client",
    "blinger_on_conversation_unassigned",
    "blinger_on_conversation_assigned",
    "blinger_on_conversation_closed",
    "blinger_on_incoming_message",
]
CHATWOOT_APPEALS = {
    ("chatwoot:main:42:1", "chatwoot:main:7", "whatsapp", "Support WhatsApp", T0),
    (
        "chatwoot:main:42:2",
        "chatwoot:main:7",
        "whatsapp",
        "Support WhatsApp",
        T0 + timedelta(hours=1),
    ),
}
BLINGER_APPEALS = {
    ("blinger:main:181:1", "blinger:main:374", "telegram", "telegrambot", D0),
    ("blinger:main:181:2", "blinger:main:374", "telegram", "telegrambot", D0 + timedelta(hours=2)),
}
# ingest_refusals grows on a refusal by design; every other table must not.
DATA_TABLES_SKIP = ("ingest_refusals",)


async def post_chatwoot(client: Any, name: str, *, delivery: str | None = None, path: str = ""):
    body = raw(name)
    headers = sign(body, STAMP)
    headers["X-Chatwoot-Delivery"] = delivery or f"delivery-{name}"
    return await client.post(f"/ingest/chatwoot/{TOKEN}{path}", data=body, headers=headers)


async def post_blinger(client: Any, name: str, *, path: str = ""):
    return await client.post(f"/ingest/blinger/{TOKEN}{path}", data=raw(name))


# --- the desks end to end ----------------------------------------------------------------------


async def test_chatwoot_stream_end_to_end(engine: AsyncEngine) -> None:
    async with ingest_client(engine, secret=SECRET) as (client, _):
        answers = []
        for name in CHATWOOT_STREAM:
            response = await post_chatwoot(client, name)
            assert response.status == 200, (name, await response.text())
            answers.append(await response.json())
    # created; message (+ its conversation's start, a repeat); outgoing; resolve (+ start);
    # the message after the resolve (+ start); pending and the widget event ignored.
    assert [a["received"] for a in answers] == [1, 2, 0, 2, 2, 0, 0]
    assert [a["new"] for a in answers] == [1, 1, 0, 1, 1, 0, 0]
    assert await appeals_table(engine) == CHATWOOT_APPEALS
    assert await apps_table(engine) == {("whatsapp", "Support WhatsApp")}
    assert await clients_table(engine) == {"chatwoot:main:7": T0}


async def test_blinger_stream_end_to_end(engine: AsyncEngine) -> None:
    async with ingest_client(engine) as (client, _):
        for name in BLINGER_STREAM:
            response = await post_blinger(client, name)
            assert response.status == 200, (name, await response.text())
    assert await appeals_table(engine) == BLINGER_APPEALS
    assert await apps_table(engine) == {("telegram", "telegrambot")}
    assert await clients_table(engine) == {"blinger:main:374": D0}


async def test_a_chatwoot_conversation_first_seen_at_its_second_message(
    sqlite_engine: AsyncEngine,
) -> None:
    # The webhook was set up late: the conversation's creation is taken from the message's
    # conversation, so cycle 1 still starts at its created_at.
    async with ingest_client(sqlite_engine, secret=SECRET) as (client, _):
        assert (await post_chatwoot(client, "chatwoot_message_incoming_again")).status == 200
    assert {(r[0], r[4]) for r in await appeals_table(sqlite_engine)} == {
        ("chatwoot:main:42:1", T0)
    }


async def test_nothing_personal_is_stored_anywhere(engine: AsyncEngine) -> None:
    async with ingest_client(engine, secret=SECRET) as (client, _):
        for name in CHATWOOT_STREAM:
            assert (await post_chatwoot(client, name)).status == 200
        for name in BLINGER_STREAM:
            assert (await post_blinger(client, name)).status == 200
    values = await text_values(engine)
    assert len(values) > 20
    stored = "\n".join(values).lower()
    leaked = [word for word in PERSONAL if word.lower() in stored]
    assert leaked == []
    # The fixtures do carry them, so the search above is not vacuous.
    fixtures = "\n".join(raw(name).decode() for name in CHATWOOT_STREAM + BLINGER_STREAM)
    assert all(word in fixtures for word in PERSONAL)


# --- Chatwoot's signature and deliveries -------------------------------------------------------


@pytest.mark.parametrize(
    "case",
    ["no headers", "wrong secret", "another body", "stale", "future", "tampered body", "bad hex"],
)
async def test_bad_signatures_get_401_and_store_nothing(
    sqlite_engine: AsyncEngine, case: str
) -> None:
    body = raw("chatwoot_message_incoming")
    headers = {
        "no headers": {},
        "wrong secret": sign(body, STAMP, secret="another-secret"),
        "another body": sign(raw("chatwoot_status_resolved"), STAMP),
        "stale": sign(body, STAMP - 301),
        "future": sign(body, STAMP + 301),
        "tampered body": sign(body, STAMP),
        "bad hex": {**sign(body, STAMP), "X-Chatwoot-Signature": "sha256=zz"},
    }[case]
    if case == "tampered body":
        body = body.replace(b"Hello", b"Hellp")
    before = await row_counts(sqlite_engine, skip=DATA_TABLES_SKIP)
    async with ingest_client(sqlite_engine, secret=SECRET) as (client, _):
        response = await client.post(f"/ingest/chatwoot/{TOKEN}", data=body, headers=headers)
        assert response.status == 401
        assert await response.json() == {"error": "unauthorized"}
    assert await row_counts(sqlite_engine, skip=DATA_TABLES_SKIP) == before
    async with sqlite_engine.connect() as connection:
        reasons = (await connection.execute(select(ingest_refusals.c.reason))).scalars().all()
    assert reasons == ["stale signature" if case in ("stale", "future") else "bad signature"]


async def test_a_signature_within_five_minutes_is_accepted(sqlite_engine: AsyncEngine) -> None:
    body = raw("chatwoot_message_incoming")
    async with ingest_client(sqlite_engine, secret=SECRET) as (client, _):
        for offset in (-299, 0, 299):
            headers = sign(body, STAMP + offset)
            response = await client.post(f"/ingest/chatwoot/{TOKEN}", data=body, headers=headers)
            assert response.status == 200


async def test_without_a_secret_chatwoot_needs_no_signature(sqlite_engine: AsyncEngine) -> None:
    async with ingest_client(sqlite_engine) as (client, _):
        response = await client.post(
            f"/ingest/chatwoot/{TOKEN}", data=raw("chatwoot_message_incoming")
        )
        assert response.status == 200


async def test_a_replayed_delivery_stores_nothing_new(engine: AsyncEngine) -> None:
    async with ingest_client(engine, secret=SECRET) as (client, _):
        first = await post_chatwoot(client, "chatwoot_message_incoming", delivery="d-1")
        assert (await first.json())["new"] == 2
        before = await row_counts(engine)
        again = await post_chatwoot(client, "chatwoot_message_incoming", delivery="d-1")
        assert again.status == 200
        assert (await again.json())["new"] == 0
        # A replay with another (validly signed) body under the same delivery id.
        other = await post_chatwoot(client, "chatwoot_status_resolved", delivery="d-1")
        assert other.status == 200
        assert (await other.json())["replayed"] is True
        assert await row_counts(engine) == before


# --- labels, unknown events --------------------------------------------------------------------


async def test_labels_name_the_desk_account(sqlite_engine: AsyncEngine) -> None:
    async with ingest_client(sqlite_engine, secret=SECRET) as (client, _):
        assert (
            await post_chatwoot(client, "chatwoot_message_incoming", path="/shop-2")
        ).status == 200
        assert (
            await post_blinger(client, "blinger_on_conversation_closed", path="/b_1")
        ).status == 200
        for bad in ("/a.b", "/" + "x" * 65, "/%D0%BA%D0%B8%D1%80"):
            response = await post_chatwoot(client, "chatwoot_message_incoming", path=bad)
            assert response.status == 400, bad
    table = await appeals_table(sqlite_engine)
    assert {(r[0], r[1]) for r in table} == {
        ("chatwoot:shop-2:42:1", "chatwoot:shop-2:7"),
        ("blinger:b_1:181:1", "blinger:b_1:374"),
    }
    async with sqlite_engine.connect() as connection:
        labels = (await connection.execute(select(desk_events.c.label).distinct())).scalars()
        assert set(labels) == {"shop-2", "b_1"}


@pytest.mark.parametrize(
    ("source", "body"),
    [
        ("chatwoot", {"event": "contact_created", "id": 7, "name": "Anna Petrova"}),
        ("chatwoot", {"event": "conversation_typing_on", "conversation": {"id": 42}}),
        ("chatwoot", payload("chatwoot_webwidget_triggered")),
        ("chatwoot", payload("chatwoot_message_outgoing")),
        ("chatwoot", payload("chatwoot_message_incoming") | {"private": True}),
        ("chatwoot", payload("chatwoot_message_incoming") | {"message_type": "activity"}),
        ("chatwoot", payload("chatwoot_status_pending")),
        ("chatwoot", payload("chatwoot_status_pending") | {"status": "snoozed"}),
        ("blinger", payload("blinger_on_new_client")),
        ("blinger", payload("blinger_on_conversation_assigned")),
        ("blinger", {"webhook": "on_outgoing_message", "conversation": {}}),
        ("blinger", {"webhook": "on_something_new"}),
    ],
)
async def test_events_that_do_not_matter_get_200_and_are_ignored(
    sqlite_engine: AsyncEngine, source: str, body: dict[str, Any]
) -> None:
    before = await row_counts(sqlite_engine)
    async with ingest_client(sqlite_engine) as (client, _):
        response = await client.post(f"/ingest/{source}/{TOKEN}", json=body)
        assert response.status == 200
        assert await response.json() == {"received": 0, "new": 0}
    assert await row_counts(sqlite_engine) == before


# --- /api/appeals ------------------------------------------------------------------------------


def record(
    n: int, client: str = "c1", created: str = "2026-11-30T10:00:00+03:00"
) -> dict[str, str]:
    return {
        "appeal_id": f"a{n}",
        "client_id": client,
        "channel": "WhatsApp",
        "app": "Shop",
        "created_at": created,
    }


def bearer(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_api_json_lines_and_array(engine: AsyncEngine) -> None:
    lines = "\n".join(json.dumps(record(n)) for n in range(1, 4)) + "\n\n"
    async with ingest_client(engine) as (client, _):
        response = await client.post("/api/appeals", data=lines, headers=bearer())
        assert response.status == 200
        assert await response.json() == {"received": 3, "new": 3, "duplicates": 0}
        array = [record(3), record(4, "c2"), record(4, "c2"), record(5, "c2")]
        response = await client.post("/api/appeals", json=array, headers=bearer())
        assert response.status == 200
        assert await response.json() == {"received": 4, "new": 2, "duplicates": 2}
    table = await appeals_table(engine)
    assert {r[0] for r in table} == {"a1", "a2", "a3", "a4", "a5"}
    assert {r[2] for r in table} == {"whatsapp"}
    assert await clients_table(engine) == {
        "c1": datetime(2026, 11, 30, 7, 0, tzinfo=UTC),
        "c2": datetime(2026, 11, 30, 7, 0, tzinfo=UTC),
    }


async def test_api_invalid_records_get_422_with_line_numbers_and_nothing_stored(
    engine: AsyncEngine,
) -> None:
    bad = [
        json.dumps(record(1)),
        json.dumps(record(2, created="2026-11-30T10:00:00")),
        "",
        json.dumps({**record(3), "name": "Anna Petrova"}),
        "{truncated",
        json.dumps(record(6)),
    ]
    before = await row_counts(engine, skip=DATA_TABLES_SKIP)
    async with ingest_client(engine) as (client, _):
        response = await client.post("/api/appeals", data="\n".join(bad), headers=bearer())
        assert response.status == 422
        errors = (await response.json())["errors"]
        array = await client.post(
            "/api/appeals", json=[record(1), {**record(2), "appeal_id": 5.5}], headers=bearer()
        )
        assert array.status == 422
        assert [e["line"] for e in (await array.json())["errors"]] == [2]
    assert [e["line"] for e in errors] == [2, 4, 5]
    assert "UTC offset" in errors[0]["reason"]
    assert await row_counts(engine, skip=DATA_TABLES_SKIP) == before


@pytest.mark.parametrize(
    "header",
    ["", f"Basic {TOKEN}", "Bearer", f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}", "Bearer  "],
)
async def test_api_bad_token_is_401(sqlite_engine: AsyncEngine, header: str) -> None:
    before = await row_counts(sqlite_engine, skip=DATA_TABLES_SKIP)
    async with ingest_client(sqlite_engine) as (client, _):
        response = await client.post(
            "/api/appeals", json=[record(1)], headers={"Authorization": header}
        )
        assert response.status == 401
        assert await response.json() == {"error": "unauthorized"}
    assert await row_counts(sqlite_engine, skip=DATA_TABLES_SKIP) == before


# --- tokens ------------------------------------------------------------------------------------


async def test_a_wrong_token_gets_the_same_401_on_every_path(sqlite_engine: AsyncEngine) -> None:
    async with ingest_client(sqlite_engine) as (client, _):
        answers = set()
        for path in (
            "/ingest/chatwoot/wrong",
            "/ingest/blinger/wrong",
            "/ingest/nonexistent/wrong",
            f"/ingest/chatwoot/{TOKEN[:-1]}",
            "/ingest/nonexistent/wrong/label",
        ):
            response = await client.post(path, data=raw("blinger_on_conversation_closed"))
            answers.add((response.status, response.content_type, await response.read()))
    assert answers == {(401, "application/json", b'{"error": "unauthorized"}')}


async def test_no_ingest_token_turns_the_endpoints_off(sqlite_engine: AsyncEngine) -> None:
    from bot.config import load_settings

    server = IngestServer(load_settings(_env_file=None), sqlite_engine)
    from aiohttp.test_utils import TestClient, TestServer

    async with TestClient(TestServer(server.application(), host="127.0.0.1")) as client:
        for path in ("/ingest/blinger/", "/ingest/blinger/-"):
            response = await client.post(path + "x" * 32, data=raw("blinger_on_new_client"))
            assert response.status == 401
        response = await client.post("/api/appeals", json=[], headers=bearer())
        assert response.status == 401


@pytest.fixture
async def running(sqlite_engine: AsyncEngine) -> AsyncIterator[tuple[str, IngestServer]]:
    server = IngestServer(settings(secret=SECRET), sqlite_engine)
    runner = await start_web(server, "127.0.0.1", 0)
    try:
        host, port = runner.addresses[0][:2]
        yield f"http://{host}:{port}", server
    finally:
        await runner.cleanup()


async def test_the_token_never_reaches_a_log_line(
    running: tuple[str, IngestServer], caplog: pytest.LogCaptureFixture
) -> None:
    base, server = running
    redact = RedactSecrets(server.settings.secrets)
    caplog.handler.addFilter(redact)
    try:
        await _log_some_requests(base, caplog)
    finally:
        caplog.handler.removeFilter(redact)


async def _log_some_requests(base: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    body = raw("chatwoot_message_incoming")
    async with aiohttp.ClientSession() as session:
        for path, headers in (
            (f"/ingest/chatwoot/{TOKEN}", sign(body, int(datetime.now(UTC).timestamp()))),
            (f"/ingest/chatwoot/{TOKEN}/shop", {"X-Chatwoot-Signature": "sha256=00"}),
            (f"/ingest/blinger/{TOKEN}", {}),
            (f"/ingest/nonexistent/{TOKEN}", {}),
            (f"/ingest/{TOKEN}", {}),
            (f"/api/appeals?token={TOKEN}", {"Authorization": f"Bearer {TOKEN}"}),
        ):
            async with session.post(base + path, data=body, headers=headers) as response:
                await response.read()
    access = [r for r in caplog.records if r.name == "aiohttp.access"]
    assert len(access) == 6
    assert sum(REDACTED in r.getMessage() for r in access) == 4
    assert TOKEN not in caplog.text
    assert SECRET not in caplog.text
    assert "Anna" not in caplog.text and "Hello" not in caplog.text


ENCODED_TOKEN = "".join(f"%{ord(char):02X}" for char in TOKEN)


@pytest.mark.parametrize(
    ("path", "status"),
    [
        (f"/ingest/blinger/{TOKEN}", 200),
        # aiohttp decodes the path, so the percent-encoded token is accepted ...
        (f"/ingest/blinger/{ENCODED_TOKEN}", 200),
        # ... and a near miss (a typo) is not the secret the redaction knows.
        (f"/ingest/blinger/{TOKEN[:-1]}X", 401),
        (f"/ingest/chatwoot/{TOKEN}/shop", 401),  # unsigned
        (f"/ingest/{TOKEN}", 404),
        (f"/ingest/{TOKEN}/{TOKEN}", 404),
        (f"/api/appeals?token={TOKEN}", 401),
    ],
)
async def test_the_access_log_never_carries_the_token_even_without_the_redaction(
    running: tuple[str, IngestServer], caplog: pytest.LogCaptureFixture, path: str, status: int
) -> None:
    # Regression: the access line quoted the request line, so an encoded token or a near miss
    # of it got past the redaction of secrets.
    base, _ = running
    caplog.set_level(logging.INFO)
    body = raw("blinger_on_incoming_message")
    async with (
        aiohttp.ClientSession() as session,
        session.post(yarl.URL(base + path, encoded=True), data=body) as response,
    ):
        await response.read()
        assert response.status == status
    lines = [r.getMessage() for r in caplog.records if r.name == "aiohttp.access"]
    assert len(lines) == 1
    assert TOKEN[:20] not in lines[0]
    assert ENCODED_TOKEN[:30] not in lines[0]
    assert lines[0].startswith('127.0.0.1 "POST /')
    assert f'HTTP/1.1" {status} ' in lines[0]
    assert TOKEN[:20] not in caplog.text


def test_logged_paths() -> None:
    from bot.web.server import logged_path

    assert logged_path(f"/ingest/chatwoot/{TOKEN}/shop-2") == "/ingest/chatwoot/<token>/shop-2"
    assert logged_path(f"/ingest/evil/{TOKEN}/a.b") == "/ingest/?/<token>/?"
    assert logged_path("/healthz?x=1") == "/healthz"
    assert logged_path("/api/appeals") == "/api/appeals"


# --- /healthz ----------------------------------------------------------------------------------


async def test_healthz_reports_the_newest_event_per_source(engine: AsyncEngine) -> None:
    clock = Clock()
    async with ingest_client(engine, clock=clock) as (client, _):
        response = await client.get("/healthz")
        assert response.status == 200
        assert await response.json() == {"status": "ok", "database": "ok", "newest_event": {}}
        await client.post(f"/ingest/chatwoot/{TOKEN}", data=raw("chatwoot_message_incoming"))
        clock.now = NOW + timedelta(minutes=3)
        await client.post(f"/ingest/blinger/{TOKEN}/b2", data=raw("blinger_on_incoming_message"))
        response = await client.get("/healthz")
        assert response.status == 200
        assert (await response.json())["newest_event"] == {
            "blinger:b2": (NOW + timedelta(minutes=3)).isoformat(),
            "chatwoot:main": NOW.isoformat(),
        }
        assert TOKEN not in await response.text()


@pytest.mark.parametrize("where", ["sqlite in a removed directory", "postgres on a closed port"])
async def test_healthz_is_503_when_the_database_is_unreachable(tmp_path: Path, where: str) -> None:
    if where.startswith("sqlite"):
        url = f"sqlite+aiosqlite:///{tmp_path / 'gone' / 'bot.db'}"
    else:
        url = "postgresql+asyncpg://postgres@127.0.0.1:9/test"
    engine = create_engine(url)
    try:
        async with ingest_client(engine) as (client, _):
            response = await client.get("/healthz")
            assert response.status == 503
            assert await response.json() == {"status": "unavailable", "database": "unreachable"}
    finally:
        await engine.dispose()


# --- limits ------------------------------------------------------------------------------------


async def test_more_than_20_requests_a_second_per_source_get_429(
    sqlite_engine: AsyncEngine,
) -> None:
    clock = Clock()
    ignored = raw("blinger_on_new_client")
    async with ingest_client(sqlite_engine, clock=clock) as (client, _):
        statuses = []
        for i in range(25):
            clock.mono = 1000.0 + i * 0.01
            response = await client.post(f"/ingest/blinger/{TOKEN}", data=ignored)
            statuses.append(response.status)
        assert statuses == [200] * 20 + [429] * 5
        # Another source has its own budget ...
        response = await client.post(f"/ingest/chatwoot/{TOKEN}", json={"event": "x"})
        assert response.status == 200
        # ... and a second later the first has its budget back.
        clock.mono = 1001.0
        assert (await client.post(f"/ingest/blinger/{TOKEN}", data=ignored)).status == 200
        clock.mono = 1001.5
        for _ in range(20):
            await client.post("/api/appeals", json=[], headers=bearer())
        limited = await client.post("/api/appeals", json=[], headers=bearer())
        assert limited.status == 429


async def chunks(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(data), 65536):
        yield data[start : start + 65536]


@pytest.mark.parametrize(
    "path", [f"/ingest/blinger/{TOKEN}", f"/ingest/chatwoot/{TOKEN}", "/api/appeals"]
)
@pytest.mark.parametrize("length", ["with Content-Length", "chunked"])
async def test_bodies_over_1_mb_get_413(
    sqlite_engine: AsyncEngine, path: str, length: str
) -> None:
    filler = " " * ((1 << 20) + 1 - len(raw("blinger_on_incoming_message")))
    body = raw("blinger_on_incoming_message") + filler.encode()
    assert len(body) == (1 << 20) + 1
    before = await row_counts(sqlite_engine, skip=DATA_TABLES_SKIP)
    async with ingest_client(sqlite_engine) as (client, _):
        data: Any = body if length == "with Content-Length" else chunks(body)
        response = await client.post(path, data=data, headers=bearer())
        assert response.status == 413
        assert await row_counts(sqlite_engine, skip=DATA_TABLES_SKIP) == before
        # Exactly 1 MB is read (and then judged on its content).
        data = body[:-1] if length == "with Content-Length" else chunks(body[:-1])
        response = await client.post(path, data=data, headers=bearer())
        assert response.status in (200, 400, 422)


@pytest.mark.parametrize(
    "body", [b"", b"{", b"not json", b'{"event": "message_created",}', b"\xff\xfe{}"]
)
async def test_a_body_that_is_not_json_is_400(sqlite_engine: AsyncEngine, body: bytes) -> None:
    async with ingest_client(sqlite_engine) as (client, _):
        for source in ("chatwoot", "blinger"):
            response = await client.post(f"/ingest/{source}/{TOKEN}", data=body)
            assert response.status == 400
            message = (await response.json())["error"]
            assert "\n" not in message and len(message) < 200


@pytest.mark.parametrize("where", ["sqlite in a removed directory", "postgres on a closed port"])
async def test_ingestion_is_503_and_refusals_keep_their_status_without_a_database(
    tmp_path: Path, where: str
) -> None:
    # Regression: asyncpg's ConnectionRefusedError (an OSError) escaped as a 500.
    if where.startswith("sqlite"):
        url = f"sqlite+aiosqlite:///{tmp_path / 'gone' / 'bot.db'}"
    else:
        url = "postgresql+asyncpg://postgres@127.0.0.1:9/test"
    engine = create_engine(url)
    try:
        async with ingest_client(engine) as (client, _):
            webhook = await client.post(
                f"/ingest/blinger/{TOKEN}", data=raw("blinger_on_incoming_message")
            )
            assert webhook.status == 503
            assert "retry" in (await webhook.json())["error"]
            api = await client.post("/api/appeals", json=[record(1)], headers=bearer())
            assert api.status == 503
            # A refusal is answered as such even when it cannot be recorded.
            wrong = await client.post("/ingest/blinger/wrong", data=b"{}")
            assert wrong.status == 401
            bad = await client.post(f"/ingest/blinger/{TOKEN}", data=b"{")
            assert bad.status == 400
    finally:
        await engine.dispose()


async def test_concurrent_writes_on_sqlite_take_turns_in_the_server(
    sqlite_engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Regression: concurrent requests queued in SQLite's busy handler, whose growing sleeps
    # starved some for seconds (the benchmark saw 4.5 s, past Chatwoot's 5 s timeout).
    import asyncio
    from contextlib import asynccontextmanager

    import bot.web.server as web_server

    real = web_server.write_transaction
    active = 0
    most = 0

    @asynccontextmanager
    async def counting(engine: AsyncEngine) -> AsyncIterator[Any]:
        # Counted from the moment a request asks for the write lock.
        nonlocal active, most
        active += 1
        most = max(most, active)
        try:
            async with real(engine) as connection:
                await asyncio.sleep(0)  # let the other requests run meanwhile
                yield connection
        finally:
            active -= 1

    monkeypatch.setattr(web_server, "write_transaction", counting)
    clock = Clock()
    async with ingest_client(sqlite_engine, clock=clock) as (client, server):
        server.rate.limit = 1000
        bodies = []
        for n in range(30):
            body = payload("blinger_on_incoming_message")
            body["conversation"]["id"] = 1000 + n
            bodies.append(body)
        responses = await asyncio.gather(
            *(client.post(f"/ingest/blinger/{TOKEN}", json=body) for body in bodies)
        )
        assert [r.status for r in responses] == [200] * 30
    assert most == 1
    assert len(await appeals_table(sqlite_engine)) == 30


async def test_a_flood_of_refused_requests_is_recorded_at_most_20_a_second(
    sqlite_engine: AsyncEngine,
) -> None:
    # Regression: every refused request (no token needed) was one more write to the database,
    # and the path's source, the sender's text, was stored as it came.
    clock = Clock()
    async with ingest_client(sqlite_engine, clock=clock) as (client, _):
        for n in range(60):
            path = ("/ingest/blinger/wrong", "/ingest/made-up-source/wrong")[n % 2]
            assert (await client.post(path, data=b"{}")).status == 401
        clock.mono += 1.0
        assert (await client.post("/ingest/blinger/wrong", data=b"{}")).status == 401
    async with sqlite_engine.connect() as connection:
        rows = (
            await connection.execute(select(ingest_refusals.c.source, ingest_refusals.c.reason))
        ).all()
    assert len(rows) == 21
    assert {source for source, _ in rows} == {"blinger", "unknown"}
    assert {reason for _, reason in rows} == {"bad token"}
