"""Group commit of webhooks: concurrent ones share a transaction, each still answered after it."""

import asyncio
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

import bot.web.server as server_module
from tests.ingest.support import TOKEN, appeals_table, ingest_client

URL = f"/ingest/chatwoot/{TOKEN}"


def created(conversation: int, contact: int) -> dict[str, Any]:
    return {
        "event": "conversation_created",
        "id": conversation,
        "inbox_id": 3,
        "channel": "Channel::Whatsapp",
        "status": "open",
        "created_at": 1764580000 + conversation,
        "timestamp": 1764580000 + conversation,
        "meta": {"sender": {"id": contact}},
    }


async def test_concurrent_webhooks_share_transactions_and_each_gets_its_count(
    engine: AsyncEngine,
) -> None:
    commits = 0

    def count(_connection: object) -> None:
        nonlocal commits
        commits += 1

    event.listen(engine.sync_engine, "commit", count)
    async with ingest_client(engine) as (client, server):
        server.rate.limit = 100  # 31 at once from one desk: above the 20 a second of the limit
        # Conversation 2 twice: the second is a repeat and reports nothing new.
        bodies = [created(n, 100 + n % 5) for n in range(1, 31)] + [created(2, 102)]
        answers = await asyncio.gather(*(client.post(URL, json=body) for body in bodies))
        results = [(answer.status, await answer.json()) for answer in answers]
    assert [status for status, _ in results] == [200] * 31
    assert sorted(result["new"] for _, result in results) == [0] + [1] * 30
    stored = await appeals_table(engine)
    assert {appeal for appeal, *_ in stored} == {f"chatwoot:main:{n}:1" for n in range(1, 31)}
    # 31 webhooks in fewer transactions than webhooks: they were stored in batches.
    assert 0 < commits < 31


async def test_one_webhook_that_fails_to_store_does_not_fail_its_batch(
    sqlite_engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = server_module.store_desk_events

    async def fails_for_conversation_13(connection: Any, events: Any, **kwargs: Any) -> Any:
        if any(e.conversation_id == "13" for e in events):
            raise RuntimeError("poisoned")
        return await real(connection, events, **kwargs)

    monkeypatch.setattr(server_module, "store_desk_events", fails_for_conversation_13)
    async with ingest_client(sqlite_engine) as (client, _server):
        bodies = [created(n, n) for n in range(10, 16)]
        answers = await asyncio.gather(*(client.post(URL, json=body) for body in bodies))
        statuses = [answer.status for answer in answers]
    assert statuses == [200, 200, 200, 500, 200, 200]
    stored = {appeal for appeal, *_ in await appeals_table(sqlite_engine)}
    assert stored == {f"chatwoot:main:{n}:1" for n in (10, 11, 12, 14, 15)}
