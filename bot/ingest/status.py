"""How fresh the data is and how each source is doing: for reports, digests and /sources."""

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from bot.storage.tables import desk_events, ingest_refusals
from reports.schema import appeals


@dataclass(frozen=True, slots=True)
class SourceStatus:
    source: str
    label: str
    newest: datetime | None
    events_today: int
    refused_24h: int


async def newest_data(connection: AsyncConnection) -> datetime | None:
    """The newest stored appeal or desk event: what "data up to" means in a report."""
    newest_appeal = await connection.scalar(select(func.max(appeals.c.created_at)))
    newest_event = await connection.scalar(select(func.max(desk_events.c.occurred_at)))
    known = [moment for moment in (newest_appeal, newest_event) if moment is not None]
    return max(known) if known else None


async def newest_events(connection: AsyncConnection) -> dict[tuple[str, str], datetime]:
    """The newest event's arrival per (source, label): for /healthz, /sources and digests."""
    rows = await connection.execute(
        select(
            desk_events.c.source, desk_events.c.label, func.max(desk_events.c.received_at)
        ).group_by(desk_events.c.source, desk_events.c.label)
    )
    return {(source, label): at for source, label, at in rows}


async def source_statuses(
    connection: AsyncConnection, *, now: datetime, day_start: datetime
) -> list[SourceStatus]:
    """Each source and label that ever sent, plus sources that only had requests refused."""
    newest = await newest_events(connection)
    today = {
        (source, label): int(count)
        for source, label, count in await connection.execute(
            select(desk_events.c.source, desk_events.c.label, func.count())
            .where(desk_events.c.received_at >= day_start)
            .group_by(desk_events.c.source, desk_events.c.label)
        )
    }
    refused = {
        source: int(count)
        for source, count in await connection.execute(
            select(ingest_refusals.c.source, func.count())
            .where(ingest_refusals.c.at >= now - timedelta(hours=24))
            .group_by(ingest_refusals.c.source)
        )
    }
    # Refusals are counted per source: a bad token names no label.
    statuses = [
        SourceStatus(source, label, at, today.get((source, label), 0), refused.get(source, 0))
        for (source, label), at in sorted(newest.items())
    ]
    sources_seen = {source for source, _label in newest}
    statuses.extend(
        SourceStatus(source, "", None, 0, count)
        for source, count in sorted(refused.items())
        if source not in sources_seen
    )
    return statuses


async def silent_sources(
    connection: AsyncConnection, *, now: datetime, silent_after: timedelta
) -> list[tuple[str, str, datetime]]:
    """Sources that used to send but have been quiet longer than `silent_after`."""
    return [
        (source, label, at)
        for (source, label), at in (await newest_events(connection)).items()
        if at is not None and now - at > silent_after
    ]
