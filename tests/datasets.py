"""Small hand-counted data sets shared by metric, handler and end-to-end tests."""

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from bot.ingest.export import appeal_records
from bot.ingest.files import import_file
from reports.schema import appeals

VIP = "Sales & Partners <VIP>"
VK_GROUP = "Группа ВК"

ROWS_IN_AND_AROUND_P = [
    ("a2", "A", "whatsapp", "Sales", "2026-11-10T10:00:00+03:00"),
    ("a3", "A", "telegram", VIP, "2026-11-10T08:00:00Z"),  # 11:00 local
    ("b1", "B", "vk", VK_GROUP, "2026-11-10T00:00:00+03:00"),
    ("b2", "B", "vk", VK_GROUP, "2026-11-10T15:00:00+03:00"),
    ("c1", "C", "whatsapp", "Support", "2026-11-09T23:59:59+03:00"),
    ("c2", "C", "whatsapp", "Support", "2026-11-10T20:59:59Z"),  # 23:59:59 local
    ("c3", "C", "whatsapp", "Support", "2026-11-11T00:00:00+03:00"),
    ("d1", "D", "telegram", VIP, "2026-11-10T12:00:00+03:00"),
    ("d2", "D", "WhatsApp", "Sales", "2026-11-10T05:00:00-05:00"),  # 13:00 local
]
OLD_ROWS = [
    ("a1", "A", "whatsapp", "Sales", "2023-05-01T09:00:00+03:00"),
    ("e1", "E", "email", "Inbox", "2025-03-01T09:00:00+03:00"),
]


async def load(
    engine: AsyncEngine, tmp_path: Path, rows: list[tuple[str, ...]], name: str
) -> None:
    path = tmp_path / f"{name}.jsonl"
    fields = ("appeal_id", "client_id", "channel", "app", "created_at")
    path.write_text(
        "\n".join(json.dumps(dict(zip(fields, row, strict=True))) for row in rows), "utf-8"
    )
    await import_file(engine, path)


async def stored_appeals(
    engine: AsyncEngine, *, order_by: Any = appeals.c.id
) -> list[tuple[str, str, str, str, datetime]]:
    """(appeal, client, channel, app, created_at), in internal id order unless told."""
    query = appeal_records().order_by(order_by)
    async with engine.connect() as connection:
        rows = (await connection.execute(query)).all()
    return [(row[0], row[1], row[2], row[3], row[4]) for row in rows]
