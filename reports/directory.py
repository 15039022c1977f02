"""The channel directory behind /channels: every channel and app with all-time distinct clients."""

import html
from dataclasses import dataclass

from sqlalchemy import distinct, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from reports.i18n import format_number, translator
from reports.schema import appeals, apps


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelEntry:
    channel: str
    clients: int
    apps: list[tuple[str, int]]


async def load_directory(connection: AsyncConnection) -> list[ChannelEntry]:
    """Channels by name, each with its apps by name; counts are distinct clients, all time."""
    per_channel: dict[str, int] = dict(
        (
            await connection.execute(
                select(apps.c.channel, func.count(distinct(appeals.c.client_id)))
                .select_from(appeals.join(apps, apps.c.id == appeals.c.app_id))
                .group_by(apps.c.channel)
            )
        ).all()
    )
    per_app = (
        await connection.execute(
            select(apps.c.channel, apps.c.name, func.count(distinct(appeals.c.client_id)))
            .select_from(apps.outerjoin(appeals, appeals.c.app_id == apps.c.id))
            .group_by(apps.c.id, apps.c.channel, apps.c.name)
            .order_by(apps.c.channel, apps.c.name)
        )
    ).all()
    entries: dict[str, list[tuple[str, int]]] = {}
    for channel, name, count in per_app:
        entries.setdefault(channel, []).append((name, count))
    return [
        ChannelEntry(channel=channel, clients=per_channel.get(channel, 0), apps=app_list)
        for channel, app_list in entries.items()
    ]


def render_directory(entries: list[ChannelEntry], *, lang: str) -> list[str]:
    """HTML lines, one per channel and one per app; the caller splits them into messages."""
    _ = translator(lang).gettext
    if not entries:
        return [_("No data yet: import appeals with python -m bot import FILE.")]
    lines = [_("<b>Channels and apps</b> (clients, all time)")]
    for entry in entries:
        lines.append(
            f"<b>{html.escape(entry.channel, quote=False)}</b>: "
            f"{format_number(entry.clients, lang)}"
        )
        lines.extend(
            # No-break spaces: Telegram trims ordinary leading spaces off a split message.
            f"\u00a0\u00a0• {html.escape(name, quote=False)}: {format_number(count, lang)}"
            for name, count in entry.apps
        )
    return lines
