"""The metric queries of DESIGN.md §4: SQL aggregation over the appeals index, no Python loops."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC

from sqlalchemy import ColumnElement, and_, case, distinct, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

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
    """Every period metric of DESIGN.md §4 for one period, in three aggregate queries."""
    where = _in_period(period, app_ids)
    start, end = period.start.astimezone(UTC), period.end.astimezone(UTC)
    first_in_period = and_(clients.c.first_appeal_at >= start, clients.c.first_appeal_at < end)
    totals = (
        await connection.execute(
            select(
                func.count().label("appeals"),
                func.count(distinct(appeals.c.client_id)).label("contacted"),
                func.count(distinct(case((first_in_period, appeals.c.client_id)))).label("new"),
                func.coalesce(
                    func.sum(case((appeals.c.id == clients.c.first_appeal_id, 0), else_=1)), 0
                ).label("repeat"),
            )
            .select_from(appeals.join(clients, clients.c.id == appeals.c.client_id))
            .where(where)
        )
    ).one()

    by_channel = await connection.execute(
        select(apps.c.channel, func.count(distinct(appeals.c.client_id)))
        .select_from(appeals.join(apps, apps.c.id == appeals.c.app_id))
        .where(where)
        .group_by(apps.c.channel)
    )
    by_app = await connection.execute(
        select(appeals.c.app_id, func.count(distinct(appeals.c.client_id)))
        .where(where)
        .group_by(appeals.c.app_id)
    )
    return Metrics(
        contacted_clients=totals.contacted,
        new_clients=totals.new,
        appeals=totals.appeals,
        repeat_appeals=int(totals.repeat),
        channel_clients=dict(by_channel.all()),
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


async def build_report(
    connection: AsyncConnection, periods: PeriodPair, flt: ReportFilter
) -> Report:
    """The full report for a period and its previous period; FilterError for unknown names."""
    catalog = await load_catalog(connection)
    app_ids = catalog.resolve(flt)
    return Report(
        period=periods.current,
        previous_period=periods.previous,
        filter=flt,
        all_clients=await all_time_clients(connection, app_ids),
        current=await period_metrics(connection, periods.current, app_ids, catalog),
        previous=await period_metrics(connection, periods.previous, app_ids, catalog),
    )
