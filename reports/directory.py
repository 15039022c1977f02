"""The channel directory behind /channels: every channel and app with all-time distinct clients."""

import html
from dataclasses import dataclass

from pyroaring import BitMap
from sqlalchemy import distinct, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from reports.aggregates import all_time_clients_by_app, store_ready
from reports.i18n import format_number, translator
from reports.schema import appeals, apps


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelEntry:
    channel: str
    clients: int
    apps: list[tuple[str, int]]


async def load_directory(connection: AsyncConnection) -> list[ChannelEntry]:
    """Channels by name, each with its apps by name; counts are distinct clients, all time."""
    if await store_ready(connection):
        return await _directory_from_store(connection)
    return await directory_sql(connection)


async def _directory_from_store(connection: AsyncConnection) -> list[ChannelEntry]:
    """The directory from the store's month bitmaps: a client on two apps of a channel counts
    once for the channel (a union, not a sum)."""
    by_app = await all_time_clients_by_app(connection)
    entries: dict[str, list[tuple[str, int]]] = {}
    channel_clients: dict[str, BitMap] = {}
    for app_id, channel, name in await connection.execute(
        select(apps.c.id, apps.c.channel, apps.c.name).order_by(apps.c.channel, apps.c.name)
    ):
        clients = by_app.get(app_id, BitMap())
        entries.setdefault(channel, []).append((name, len(clients)))
        channel_clients[channel] = channel_clients.get(channel, BitMap()) | clients
    return [
        ChannelEntry(channel=channel, clients=len(channel_clients[channel]), apps=app_list)
        for channel, app_list in entries.items()
    ]


async def directory_sql(connection: AsyncConnection) -> list[ChannelEntry]:
    """The directory in plain SQL over appeals: the reference, and the answer while the store
    is being built."""
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
