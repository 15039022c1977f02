"""The metric queries of DESIGN.md §4: SQL aggregation over the appeals index, no Python loops.

This plain SQL is the reference; build_report answers from the pre-aggregated store when it is
complete (reports.aggregates), and tests compare the two.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import ColumnElement, and_, case, distinct, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from reports.aggregates import (
    all_time_clients_from_store,
    period_metrics_from_store,
    store_ready,
)
from reports.errors import FilterError
from reports.model import AppKey, Metrics, Period, PeriodPair, Report, ReportFilter
from reports.schema import appeals, apps, clients


@dataclass(frozen=True, slots=True)
class AppCatalog:
    """Every app, by id; small (one row per connected account), so it is read whole."""

    by_id: dict[int, AppKey]

    def channels(self) -> list[str]:
        return sorted({key.channel for key in self.by_id.values()})

    def resolve(self, flt: ReportFilter) -> list[int] | None:
        """App ids matching the filter (case-insensitive), None for no filter.

        Raises FilterError naming the known channels or apps when nothing matches.
        """
        if flt.is_empty:
            return None
        candidates = self.by_id
        if flt.channel is not None:
            wanted = flt.channel.strip().casefold()
            candidates = {i: k for i, k in candidates.items() if k.channel.casefold() == wanted}
            if not candidates:
                raise FilterError.unknown("channel", flt.channel, self.channels())
        if flt.app is not None:
            wanted = flt.app.strip().casefold()
            matching = {i: k for i, k in candidates.items() if k.name.casefold() == wanted}
            if not matching:
                known = sorted({key.name for key in candidates.values()})
                raise FilterError.unknown("app", flt.app, known)
            candidates = matching
        return sorted(candidates)


async def load_catalog(connection: AsyncConnection) -> AppCatalog:
    rows = await connection.execute(select(apps.c.id, apps.c.channel, apps.c.name))
    return AppCatalog({row.id: AppKey(channel=row.channel, name=row.name) for row in rows})


def _in_period(period: Period, app_ids: Sequence[int] | None) -> ColumnElement[bool]:
    conditions = [
        appeals.c.created_at >= period.start.astimezone(UTC),
        appeals.c.created_at < period.end.astimezone(UTC),
    ]
    if app_ids is not None:
        conditions.append(appeals.c.app_id.in_(app_ids))
    return and_(*conditions)


async def period_metrics(
    connection: AsyncConnection,
    period: Period,
    app_ids: Sequence[int] | None,
    catalog: AppCatalog,
) -> Metrics:
    """Every period metric of DESIGN.md §4 for one period.

    Appeals and clients who wrote come from one pass over the period's index range; new clients
    and first appeals come from the (much smaller) clients whose first appeal lies in the period,
    so no appeal row is joined to its client.
    """
    where = _in_period(period, app_ids)
    start, end = period.start.astimezone(UTC), period.end.astimezone(UTC)
    first_in_period = and_(clients.c.first_appeal_at >= start, clients.c.first_appeal_at < end)
    appeal_count, contacted = (
        await connection.execute(
            select(func.count(), func.count(distinct(appeals.c.client_id))).where(where)
        )
    ).one()
    if app_ids is None:
        # Every client whose first appeal is in P wrote in P, through its first appeal.
        new = firsts = int(
            (
                await connection.execute(
                    select(func.count()).select_from(clients).where(first_in_period)
                )
            ).scalar_one()
        )
    else:
        first_appeal = appeals.alias("first_appeal")
        firsts = int(
            (
                await connection.execute(
                    select(func.count())
                    .select_from(
                        clients.join(first_appeal, first_appeal.c.id == clients.c.first_appeal_id)
                    )
                    .where(first_in_period, first_appeal.c.app_id.in_(app_ids))
                )
            ).scalar_one()
        )
        # New by the first appeal on any channel, but only if the client wrote through F in P.
        wrote_through_filter = (
            select(appeals.c.id).where(appeals.c.client_id == clients.c.id, where).exists()
        )
        new = int(
            (
                await connection.execute(
                    select(func.count())
                    .select_from(clients)
                    .where(first_in_period, wrote_through_filter)
                )
            ).scalar_one()
        )

    # The app -> channel map is inlined as a CASE: joining apps made SQLite scan the period
    # once per app.
    channel_of = case(
        {app_id: key.channel for app_id, key in catalog.by_id.items()}, value=appeals.c.app_id
    ).label("channel")
    by_channel = (
        await connection.execute(
            select(channel_of, func.count(distinct(appeals.c.client_id)))
            .where(where)
            .group_by(channel_of)
        )
        if catalog.by_id
        else None
    )
    by_app = await connection.execute(
        select(appeals.c.app_id, func.count(distinct(appeals.c.client_id)))
        .where(where)
        .group_by(appeals.c.app_id)
    )
    return Metrics(
        contacted_clients=contacted,
        new_clients=new,
        appeals=appeal_count,
        repeat_appeals=appeal_count - firsts,
        channel_clients=dict(by_channel.all()) if by_channel is not None else {},
        app_clients={catalog.by_id[app_id]: count for app_id, count in by_app},
    )


async def all_time_clients(connection: AsyncConnection, app_ids: Sequence[int] | None) -> int:
    """Distinct clients with at least one appeal matching the filter, ever."""
    if app_ids is None:
        # Every client row exists because of an appeal, so the table size is the answer.
        query = select(func.count()).select_from(clients)
    else:
        query = select(func.count(distinct(appeals.c.client_id))).where(
            appeals.c.app_id.in_(app_ids)
        )
    return int((await connection.execute(query)).scalar_one())


# One lookup at the low end of the period index (created_at leads it), not a scan.
FIRST_APPEAL_AT = select(func.min(appeals.c.created_at))


async def first_appeal_at(connection: AsyncConnection) -> datetime | None:
    """When the first appeal the database holds was made (any channel); None without appeals."""
    return (await connection.execute(FIRST_APPEAL_AT)).scalar_one()


async def build_report(
    connection: AsyncConnection, periods: PeriodPair, flt: ReportFilter
) -> Report:
    """The full report for a period and its previous period; FilterError for unknown names.

    Answered from the pre-aggregated store (reports.aggregates) when it is complete, else by
    the plain SQL of build_report_sql; both give the same numbers.
    """
    return await _build(connection, periods, flt, use_store=await store_ready(connection))


async def build_report_sql(
    connection: AsyncConnection, periods: PeriodPair, flt: ReportFilter
) -> Report:
    """The report by the plain SQL of this module: the reference the store is checked against."""
    return await _build(connection, periods, flt, use_store=False)


async def build_report_from_store(
    connection: AsyncConnection, periods: PeriodPair, flt: ReportFilter
) -> Report:
    """The report from the store alone (the caller knows it is complete)."""
    return await _build(connection, periods, flt, use_store=True)


async def _build(
    connection: AsyncConnection, periods: PeriodPair, flt: ReportFilter, *, use_store: bool
) -> Report:
    catalog = await load_catalog(connection)
    app_ids = catalog.resolve(flt)
    if use_store:
        all_clients = await all_time_clients_from_store(connection, app_ids)
        current = await period_metrics_from_store(connection, periods.current, app_ids, catalog)
        previous = await period_metrics_from_store(connection, periods.previous, app_ids, catalog)
    else:
        all_clients = await all_time_clients(connection, app_ids)
        current = await period_metrics(connection, periods.current, app_ids, catalog)
        previous = await period_metrics(connection, periods.previous, app_ids, catalog)
    return Report(
        period=periods.current,
        previous_period=periods.previous,
        filter=flt,
        all_clients=all_clients,
        current=current,
        previous=previous,
        data_since=await first_appeal_at(connection),
    )
