"""Helpers of the ingestion tests: settings, a test client, signatures, fixtures, table dumps."""

import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import String, Text, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.config import Settings, load_settings
from bot.storage.tables import metadata
from bot.web.server import IngestServer

PAYLOADS = Path(__file__).parent / "payloads"
TOKEN = "ingest-token-0123456789abcdefghijklmnopqrstuv"
SECRET = "chatwoot-webhook-secret-5f2e"
# "Now" of the tests: a day after the fixtures' conversations.
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
# Personal data in the fixtures that must never reach the database.
PERSONAL = [
    "Anna",
    "Petrova",
    "anna.petrova@example.com",
    "+79161234567",
    "79161234567",
    "order 5531",
    "broken",
    "Boris",
    "boris.agent",
    "Sorry",
    "Romashka",
    "Kazan",
    "Yuri",
    "Dzabaev",
    "svetlana",
    "Svetlana",
    "parcel",
    "RA123456789RU",
    "+79035556677",
    "yuri_dz",
    "no-user.png",
    "Acme Shop",
    "wamid",
    "xq7Lh2",
]


def settings(*, secret: str | None = None) -> Settings:
    return load_settings(ingest_token=TOKEN, chatwoot_webhook_secret=secret, _env_file=None)


def payload(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((PAYLOADS / f"{name}.json").read_text("utf-8"))
    return data


def raw(name: str) -> bytes:
    return (PAYLOADS / f"{name}.json").read_bytes()


def sign(body: bytes, stamp: int | str, secret: str = SECRET) -> dict[str, str]:
    digest = hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    return {
        "X-Chatwoot-Timestamp": str(stamp),
        "X-Chatwoot-Signature": f"sha256={digest}",
        "Content-Type": "application/json",
    }


class Clock:
    """A settable wall clock and a settable monotonic clock for IngestServer."""

    def __init__(self) -> None:
        self.now = NOW
        self.mono = 1000.0

    def wall(self) -> datetime:
        return self.now

    def monotonic(self) -> float:
        return self.mono


@asynccontextmanager
async def ingest_client(
    engine: AsyncEngine, *, secret: str | None = None, clock: Clock | None = None
) -> AsyncIterator[tuple[TestClient[Any, Any], IngestServer]]:
    clock = clock or Clock()
    server = IngestServer(
        settings(secret=secret), engine, clock=clock.wall, monotonic=clock.monotonic
    )
    client = TestClient(TestServer(server.application(), host="127.0.0.1"))
    await client.start_server()
    try:
        yield client, server
    finally:
        await client.close()


async def row_counts(engine: AsyncEngine, *, skip: tuple[str, ...] = ()) -> dict[str, int]:
    """Rows of every table of the schema."""
    counts = {}
    async with engine.connect() as connection:
        for table in metadata.sorted_tables:
            if table.name in skip:
                continue
            rows = await connection.execute(select(table))
            counts[table.name] = len(rows.all())
    return counts


async def text_values(engine: AsyncEngine) -> list[str]:
    """Every text value stored in any table."""
    values: list[str] = []
    async with engine.connect() as connection:
        for table in metadata.sorted_tables:
            columns = [c for c in table.columns if isinstance(c.type, String | Text)]
            if not columns:
                continue
            for row in await connection.execute(select(*columns)):
                values.extend(str(value) for value in row if value is not None)
    return values


async def appeals_table(engine: AsyncEngine) -> set[tuple[str, str, str, str, datetime]]:
    """(appeal id, client id, channel, app, created_at) of every stored appeal."""
    from bot.ingest.export import appeal_records

    async with engine.connect() as connection:
        rows = await connection.execute(appeal_records())
        return {tuple(row) for row in rows}  # type: ignore[misc]


async def clients_table(engine: AsyncEngine) -> dict[str, datetime]:
    from reports.schema import clients

    async with engine.connect() as connection:
        rows = await connection.execute(select(clients.c.external_id, clients.c.first_appeal_at))
        return dict(rows.all())  # type: ignore[arg-type]


async def apps_table(engine: AsyncEngine) -> set[tuple[str, str]]:
    from reports.schema import apps

    async with engine.connect() as connection:
        rows = await connection.execute(select(apps.c.channel, apps.c.name))
        return {tuple(row) for row in rows}  # type: ignore[misc]
