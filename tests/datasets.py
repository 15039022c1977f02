"""Small hand-counted data sets shared by metric, handler and end-to-end tests."""

import json
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from bot.ingest.files import import_file

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
