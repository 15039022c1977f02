"""Every stored appeal written in the import file's CSV format (moving to another database)."""

import csv
from datetime import UTC
from typing import Any, TextIO

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncEngine

from reports.schema import appeals, apps, clients

FIELDS = ("appeal_id", "client_id", "channel", "app", "created_at")


def appeal_records() -> Select[Any]:
    """Each stored appeal as the import file's fields: appeal, client, channel, app, time."""
    return (
        select(
            appeals.c.external_id,
            clients.c.external_id,
            apps.c.channel,
            apps.c.name,
            appeals.c.created_at,
        )
        .join(clients, clients.c.id == appeals.c.client_id)
        .join(apps, apps.c.id == appeals.c.app_id)
    )


async def export_appeals(engine: AsyncEngine, out: TextIO) -> int:
    """Write a header and one row per appeal, streamed; returns the number of appeals.

    In stored order: importing the file elsewhere stores them in the same order, so ties of a
    client's first appeal (broken by the smaller stored id) fall the same way.
    """
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(FIELDS)
    query = appeal_records().order_by(appeals.c.id)
    count = 0
    async with engine.connect() as connection:
        rows = await connection.stream(query.execution_options(yield_per=5_000))
        async for appeal_id, client_id, channel, app, created_at in rows:
            stamp = created_at if created_at.tzinfo else created_at.replace(tzinfo=UTC)
            writer.writerow(
                (appeal_id, client_id, channel, app, stamp.astimezone(UTC).isoformat())
            )
            count += 1
    return count
