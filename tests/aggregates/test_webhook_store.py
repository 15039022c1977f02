"""The metric store stays exact through the webhook path: cycles split and first appeals move."""

import random
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from bot.ingest.desk import DeskEvent, store_desk_events
from bot.storage.engine import write_transaction
from tests.aggregates.support import (
    assert_directory_same,
    assert_same,
    assert_store_current,
    filters,
    random_period,
)

T0 = datetime(2026, 11, 28, 21, 30, tzinfo=UTC)
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def random_events(rng: random.Random, stream: int) -> list[DeskEvent]:
    events = []
    for conversation in range(rng.randint(1, 3)):
        contact = str(rng.randint(1, 6))
        inbox = str(rng.randint(1, 2))
        channel = "whatsapp" if inbox == "1" else "telegram"
        for i in range(rng.randint(1, 8)):
            events.append(
                DeskEvent(
                    source="chatwoot",
                    label="main",
                    key=f"{stream}:{conversation}:{i}",
                    conversation_id=f"{stream}-{conversation}",
                    contact_id=contact,
                    kind=rng.choice(["open", "client", "client", "close"]),
                    # Across local midnights of the test zones and UTC hour edges.
                    occurred_at=T0 + timedelta(minutes=rng.randint(0, 72 * 4) * 15),
                    channel=channel,
                    app_key=inbox,
                    app_name=None,
                )
            )
    return events


async def test_the_store_equals_plain_sql_after_webhooks_in_random_order(
    engine: AsyncEngine,
) -> None:
    rng = random.Random(1201)
    for stream in range(40):
        events = random_events(rng, stream)
        arrivals = events + rng.choices(events, k=rng.randint(0, len(events)))
        rng.shuffle(arrivals)
        while arrivals:
            size = rng.randint(1, 3)
            batch, arrivals = arrivals[:size], arrivals[size:]
            async with write_transaction(engine) as connection:
                await store_desk_events(connection, batch, received_at=NOW)
        if stream % 10 == 9:
            # What the write path kept equals what a rebuild from the tables gives.
            await assert_store_current(engine)
    await assert_store_current(engine)
    # Webhooks move appeals between apps (an inbox renamed, a conversation re-derived).
    await assert_directory_same(engine)
    for _ in range(25):
        periods = random_period(rng, T0 - timedelta(days=1), T0 + timedelta(days=4))
        for flt in await filters(engine):
            await assert_same(engine, periods, flt)
