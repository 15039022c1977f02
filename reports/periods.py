"""Period grammar (DESIGN.md §5): "week", "7d", "2026-11-05" to a current and a previous period."""

import re
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from reports.errors import N_, PeriodError, echo
from reports.model import Period, PeriodPair

__all__ = ["EXAMPLES", "MAX_DAYS", "MAX_YEARS", "last_complete_period", "parse_period"]

# One list so that translations and help texts stay in step with the grammar.
EXAMPLES = (
    "today, yesterday, week, month, last month, 7d, 2026-11-05, 2026-11, 2026-11-01..2026-11-15"
)
MAX_DAYS = 1830
MAX_YEARS = 5

CompleteKind = Literal["daily", "weekly", "monthly"]
_ToDateUnit = Literal["today", "week", "month", "quarter", "year"]

_TO_DATE: dict[str, _ToDateUnit] = {
    "today": "today",
    "сегодня": "today",
    "week": "week",
    "неделя": "week",
    "month": "month",
    "месяц": "month",
    "quarter": "quarter",
    "квартал": "quarter",
    "year": "year",
    "год": "year",
}
_COMPLETE: dict[str, CompleteKind] = {
    "yesterday": "daily",
    "вчера": "daily",
    "last week": "weekly",
    "прошлая неделя": "weekly",
    "last month": "monthly",
    "прошлый месяц": "monthly",
}
_COMPLETE_LABELS: dict[CompleteKind, str] = {
    "daily": "yesterday",
    "weekly": "last week",
    "monthly": "last month",
}

_DATE = r"\d{4}-\d{1,2}-\d{1,2}|\d{1,2}\.\d{1,2}\.\d{4}"
_DAYS_RE = re.compile(r"(\d+) ?[dд]")
_DAY_RE = re.compile(rf"({_DATE})")
_MONTH_RE = re.compile(r"(\d{4})-(\d{1,2})")
_RANGE_RE = re.compile(rf"({_DATE}) ?(?:\.\.|-|–|—) ?({_DATE})")


def parse_period(text: str, *, now: datetime, tz: ZoneInfo) -> PeriodPair:
    """Resolve what a user typed into the current period (clipped to now) and the one to compare.

    Raises PeriodError with a message fit for the user when the text is unknown or out of bounds.
    """
    now_local = _localize(now, tz)
    shown = " ".join(text.split())
    if not shown:
        raise PeriodError(N_("Empty period. Try: {examples}"), examples=EXAMPLES)
    key = shown.lower()
    try:
        pair = _parse(key, shown, now_local, tz)
        # Every bound must exist in UTC too (0001-01-01 00:00 at +03:00 does not): the
        # queries compare UTC instants.
        for period in (pair.current, pair.previous):
            period.start.astimezone(UTC), period.end.astimezone(UTC)
        return pair
    except (OverflowError, ValueError):
        # Only dates near year 1 or 9999 get here: their neighbours do not exist.
        raise _error(N_("Period “{value}” is out of range. Try: {examples}"), shown) from None


def last_complete_period(kind: CompleteKind, *, now: datetime, tz: ZoneInfo) -> PeriodPair:
    """Yesterday, the last ISO week or the last month, each vs the one before (for digests)."""
    if kind not in _COMPLETE_LABELS:
        raise ValueError(f"unknown digest period kind: {kind!r}")
    return _complete(kind, _localize(now, tz), tz)


def _parse(key: str, shown: str, now: datetime, tz: ZoneInfo) -> PeriodPair:
    if key in _TO_DATE:
        return _to_date(_TO_DATE[key], now, tz)
    if key in _COMPLETE:
        return _complete(_COMPLETE[key], now, tz)
    if match := _DAYS_RE.fullmatch(key):
        return _last_days(match.group(1), shown, now, tz)
    if match := _DAY_RE.fullmatch(key):
        day = _date(match.group(1), shown)
        return _day_range(day, day, day.isoformat(), shown, now, tz)
    if match := _MONTH_RE.fullmatch(key):
        return _month(int(match.group(1)), int(match.group(2)), shown, now, tz)
    if match := _RANGE_RE.fullmatch(key):
        first, last = _date(match.group(1), shown), _date(match.group(2), shown)
        label = f"{first.isoformat()}..{last.isoformat()}"
        return _day_range(first, last, label, shown, now, tz)
    raise _error(N_("Unknown period “{value}”. Try: {examples}"), shown)


def _to_date(unit: _ToDateUnit, now: datetime, tz: ZoneInfo) -> PeriodPair:
    """This unit so far vs the same wall-clock span from the start of the previous unit."""
    today = now.date()
    if unit == "today":
        first, previous_first = today, today - timedelta(days=1)
    elif unit == "week":
        first = today - timedelta(days=today.weekday())
        previous_first = first - timedelta(days=7)
    elif unit == "month":
        first = today.replace(day=1)
        previous_first = _add_months(first, -1)
    elif unit == "quarter":
        first = date(today.year, (today.month - 1) // 3 * 3 + 1, 1)
        previous_first = _add_months(first, -3)
    else:
        first = date(today.year, 1, 1)
        previous_first = date(today.year - 1, 1, 1)
    start = _midnight(first, tz)
    elapsed = _wall(now) - _wall(start)
    # A shorter previous unit (February after March 31) ends where that unit ends.
    previous_end = min(_wall(_midnight(previous_first, tz)) + elapsed, _wall(start))
    return PeriodPair(
        current=Period(start=start, end=now, tz=tz, label=unit, to_date=True),
        previous=Period(
            start=_midnight(previous_first, tz), end=previous_end.replace(tzinfo=tz), tz=tz
        ),
    )


def _complete(kind: CompleteKind, now: datetime, tz: ZoneInfo) -> PeriodPair:
    today = now.date()
    if kind == "daily":
        bounds = [today - timedelta(days=n) for n in (2, 1, 0)]
    elif kind == "weekly":
        monday = today - timedelta(days=today.weekday())
        bounds = [monday - timedelta(days=n) for n in (14, 7, 0)]
    else:
        first = today.replace(day=1)
        bounds = [_add_months(first, n) for n in (-2, -1, 0)]
    previous_start, start, end = (_midnight(day, tz) for day in bounds)
    return PeriodPair(
        current=Period(start=start, end=end, tz=tz, label=_COMPLETE_LABELS[kind]),
        previous=Period(start=previous_start, end=start, tz=tz),
    )


def _last_days(digits: str, shown: str, now: datetime, tz: ZoneInfo) -> PeriodPair:
    count = int(digits) if len(digits) <= 6 else MAX_DAYS + 1
    if not 1 <= count <= MAX_DAYS:
        raise _error(N_("Day count “{value}” must be from 1 to 1830. Try: {examples}"), shown)
    # A to-date preset whose unit is N days: the N days before it, up to the same wall time
    # (7d on Friday 14:35 vs the seven days before, to Friday 14:35), so both start at midnight.
    first = now.date() - timedelta(days=count - 1)
    previous_first = first - timedelta(days=count)
    elapsed = _wall(now) - _wall(_midnight(first, tz))
    return PeriodPair(
        current=Period(
            start=_midnight(first, tz), end=now, tz=tz, label=f"{count}d", to_date=True
        ),
        previous=Period(
            start=_midnight(previous_first, tz),
            end=(_wall(_midnight(previous_first, tz)) + elapsed).replace(tzinfo=tz),
            tz=tz,
        ),
    )


def _month(year: int, month: int, shown: str, now: datetime, tz: ZoneInfo) -> PeriodPair:
    try:
        first = date(year, month, 1)
    except ValueError:
        raise _error(N_("Invalid date “{value}”. Try: {examples}"), shown) from None
    start = _midnight(first, tz)
    if start > now:
        raise _error(N_("Period “{value}” starts in the future. Try: {examples}"), shown)
    label = f"{year:04d}-{month:02d}"
    next_first = _add_months(first, 1)
    if next_first > now.date():
        # The running month typed as a date means the same as "month".
        return _relabel(_to_date("month", now, tz), label)
    return PeriodPair(
        current=Period(start=start, end=_midnight(next_first, tz), tz=tz, label=label),
        previous=Period(start=_midnight(_add_months(first, -1), tz), end=start, tz=tz),
    )


def _day_range(
    first: date, last: date, label: str, shown: str, now: datetime, tz: ZoneInfo
) -> PeriodPair:
    """Inclusive dates as [first 00:00, (last + 1) 00:00), clipped to now."""
    if last < first:
        raise _error(N_("Period “{value}” ends before it starts. Try: {examples}"), shown)
    start = _midnight(first, tz)
    if start > now:
        raise _error(N_("Period “{value}” starts in the future. Try: {examples}"), shown)
    if first == last == now.date():
        # Today typed as a date means the same as "today".
        return _relabel(_to_date("today", now, tz), label)
    end = now if last >= now.date() else _midnight(last + timedelta(days=1), tz)
    if start < _minus_years(end, MAX_YEARS):
        raise _error(N_("Period “{value}” spans more than 5 years. Try: {examples}"), shown)
    return _pair(start, end, label, tz)


def _relabel(pair: PeriodPair, label: str) -> PeriodPair:
    return PeriodPair(current=replace(pair.current, label=label), previous=pair.previous)


def _pair(start: datetime, end: datetime, label: str, tz: ZoneInfo) -> PeriodPair:
    """The period and the range of equal wall-clock length right before it."""
    length = _wall(end) - _wall(start)
    return PeriodPair(
        current=Period(start=start, end=end, tz=tz, label=label),
        previous=Period(start=(_wall(start) - length).replace(tzinfo=tz), end=start, tz=tz),
    )


def _localize(now: datetime, tz: ZoneInfo) -> datetime:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be an aware datetime")
    return now.astimezone(tz)


def _wall(moment: datetime) -> datetime:
    """The local wall-clock reading, so that arithmetic counts calendar days, not elapsed hours."""
    return moment.replace(tzinfo=None)


def _midnight(day: date, tz: ZoneInfo) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=tz)


def _add_months(first: date, months: int) -> date:
    """The first of the month `months` away from `first` (which is a first of a month)."""
    index = first.year * 12 + first.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def _minus_years(moment: datetime, years: int) -> datetime:
    try:
        return moment.replace(year=moment.year - years)
    except ValueError:  # February 29 in a year that has none
        return moment.replace(year=moment.year - years, day=28)


def _date(value: str, shown: str) -> date:
    if "." in value:
        day, month, year = value.split(".")
    else:
        year, month, day = value.split("-")
    try:
        return date(int(year), int(month), int(day))
    except ValueError:
        raise _error(N_("Invalid date “{value}”. Try: {examples}"), shown) from None


def _error(template: str, shown: str) -> PeriodError:
    """A PeriodError quoting the input (shortened, see reports.errors.echo), then the examples."""
    # The template is the translatable message id; the echoed input and examples are values.
    return PeriodError(template, value=echo(shown), examples=EXAMPLES)
