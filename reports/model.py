"""The report model: a period, its filter, and the DESIGN.md §4 metrics for it and the prior."""

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal
from zoneinfo import ZoneInfo


@dataclass(frozen=True, slots=True, kw_only=True)
class Period:
    """A half-open range [start, end) of aware datetimes in the report timezone."""

    start: datetime
    end: datetime
    tz: ZoneInfo
    # What the user asked for, normalised ("week", "7d", "2026-11-01..2026-11-15").
    label: str = ""
    # A to-date preset (today, week, month, quarter, year, Nd): it runs from its start to now
    # and compares with the same elapsed span of the previous unit.
    to_date: bool = False

    @property
    def tz_name(self) -> str:
        return self.tz.key


@dataclass(frozen=True, slots=True, kw_only=True)
class PeriodPair:
    current: Period
    previous: Period


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportFilter:
    """An optional channel and/or app, as the user typed them (matched case-insensitively)."""

    channel: str | None = None
    app: str | None = None

    @property
    def is_empty(self) -> bool:
        return self.channel is None and self.app is None


@dataclass(frozen=True, slots=True, kw_only=True)
class AppKey:
    channel: str
    name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Metrics:
    """Period metrics of DESIGN.md §4 (all_clients lives on Report: it is not a period metric)."""

    contacted_clients: int = 0
    new_clients: int = 0
    appeals: int = 0
    repeat_appeals: int = 0
    channel_clients: dict[str, int] = field(default_factory=dict)
    app_clients: dict[AppKey, int] = field(default_factory=dict)

    @property
    def returning_clients(self) -> int:
        return self.contacted_clients - self.new_clients

    @property
    def channels_overlap(self) -> bool:
        """True when some client wrote through two channels, so slices add up to more."""
        return sum(self.channel_clients.values()) > self.contacted_clients


TrendUnit = Literal["hour", "day", "week"]


@dataclass(frozen=True, slots=True, kw_only=True)
class TrendBucket:
    """One point of the trend: [start, end) in the report timezone and its §4 counts."""

    start: datetime
    end: datetime
    appeals: int = 0
    contacted_clients: int = 0
    new_clients: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Trend:
    """The series behind the trend chart; previous[i] is the same-index bucket of the prior."""

    unit: TrendUnit = "day"
    current: tuple[TrendBucket, ...] = ()
    previous: tuple[TrendBucket, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Report:
    period: Period
    previous_period: Period
    filter: ReportFilter
    all_clients: int
    current: Metrics
    previous: Metrics
    # How fresh the data is: the newest stored appeal or desk event, and when the report was
    # made; the shell fills them in (None: not shown).
    data_until: datetime | None = None
    as_of: datetime | None = None
    # The first appeal the database holds (any channel), read by build_report: a previous period
    # that starts before it has no data to compare with. None: unknown or no appeals at all
    # (then the current period is empty too, and nothing is compared).
    data_since: datetime | None = None
    # Desk sources (e.g. "chatwoot:main") that used to send and have been silent since then.
    silent_sources: tuple[tuple[str, datetime], ...] = ()
    # Filled by the shell (reports.trend.build_trend); empty: no trend chart, no daily rows.
    trend: Trend = field(default_factory=Trend)

    @property
    def is_empty(self) -> bool:
        return self.current.appeals == 0
