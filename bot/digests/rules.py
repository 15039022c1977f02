"""Digest rules: parse `/digest daily 09:00`; due slots as pure functions of (rule, now)."""

import gettext
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from reports.errors import N_, ReportError, echo, is_number
from reports.periods import last_complete_period
from reports.request import parse_request

Kind = Literal["daily", "weekly", "monthly"]
KINDS: dict[str, Kind] = {
    "daily": "daily",
    "ежедневно": "daily",
    "weekly": "weekly",
    "еженедельно": "weekly",
    "monthly": "monthly",
    "ежемесячно": "monthly",
}
WEEKDAYS = {
    name: number
    for number, names in enumerate(
        [
            ("mon", "monday", "пн", "понедельник"),
            ("tue", "tuesday", "вт", "вторник"),
            ("wed", "wednesday", "ср", "среда"),
            ("thu", "thursday", "чт", "четверг"),
            ("fri", "friday", "пт", "пятница"),
            ("sat", "saturday", "сб", "суббота"),
            ("sun", "sunday", "вс", "воскресенье"),
        ]
    )
    for name in names
}
# Weekly schedules in words; each language has its own form of the weekday ("по понедельникам").
WEEKLY_AT = (
    N_("every Monday at {time}"),
    N_("every Tuesday at {time}"),
    N_("every Wednesday at {time}"),
    N_("every Thursday at {time}"),
    N_("every Friday at {time}"),
    N_("every Saturday at {time}"),
    N_("every Sunday at {time}"),
)
# What each kind of digest reports on (reports.periods.last_complete_period).
COVERAGE = {
    "daily": N_("yesterday's report"),
    "weekly": N_("last week's report"),
    "monthly": N_("last month's report"),
}
# Digits first, so "25:00" is told that the hour is out of range rather than that the format is.
TIME_RE = re.compile(r"^(\d{1,2}):(\d{2})$")
# A slot later than this after its time is not sent any more, only recorded as skipped.
MAX_LATENESS = timedelta(hours=6)
UNKNOWN_RULE = N_(
    "Unknown digest “{text}”. Try: /digest daily 09:00, /digest weekly mon 09:00, "
    "/digest monthly 1 09:00 (optionally channel=NAME app=NAME)."
)


class DigestRuleError(ReportError):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class DigestRule:
    kind: Kind
    at: time
    # ISO weekday index 0 (Monday) .. 6 for weekly rules.
    weekday: int | None = None
    # 1..31 for monthly rules; a shorter month fires on its last day.
    day_of_month: int | None = None
    channel: str | None = None
    app: str | None = None

    def schedule(self, translations: gettext.NullTranslations) -> str:
        """When it is sent, in words: "every day at 09:00", "ежедневно в 09:00"."""
        _ = translations.gettext
        at = f"{self.at:%H:%M}"
        if self.kind == "weekly" and self.weekday is not None:
            return _(WEEKLY_AT[self.weekday]).format(time=at)
        if self.kind == "monthly" and self.day_of_month is not None:
            return _("on day {day} of every month at {time}").format(
                day=self.day_of_month, time=at
            )
        return _("every day at {time}").format(time=at)

    def scope(self, translations: gettext.NullTranslations) -> str:
        """The filter in words ("channel whatsapp, app “Sales”"), empty without one."""
        _ = translations.gettext
        parts = []
        if self.channel:
            parts.append(_("channel {channel}").format(channel=self.channel))
        if self.app:
            parts.append(_("app “{app}”").format(app=self.app))
        return ", ".join(parts)

    def describe(self, translations: gettext.NullTranslations) -> str:
        """The schedule and the filter: "every day at 09:00 (channel whatsapp)"."""
        scope = self.scope(translations)
        schedule = self.schedule(translations)
        return f"{schedule} ({scope})" if scope else schedule

    def coverage(self, translations: gettext.NullTranslations) -> str:
        """What each digest holds: "yesterday's report (channel whatsapp)"."""
        scope = self.scope(translations)
        report = translations.gettext(COVERAGE[self.kind])
        return f"{report} ({scope})" if scope else report

    def same_as(self, other: "DigestRule") -> bool:
        """The same schedule and the same filter (names compared as filters match them)."""
        return (self.kind, self.at, self.weekday, self.day_of_month) == (
            other.kind,
            other.at,
            other.weekday,
            other.day_of_month,
        ) and (_folded(self.channel), _folded(self.app)) == (
            _folded(other.channel),
            _folded(other.app),
        )


def _folded(name: str | None) -> str:
    return (name or "").casefold()


def parse_rule(arguments: str) -> DigestRule:
    """`daily 09:00`, `weekly mon 09:00`, `monthly 1 09:00`, each with optional filters."""
    request = parse_request(arguments, default_period="")
    words = request.period_text.split()
    if not words or words[0].casefold() not in KINDS:
        raise DigestRuleError(UNKNOWN_RULE, text=echo(arguments))
    kind = KINDS[words[0].casefold()]
    expected = {"daily": 2, "weekly": 3, "monthly": 3}[kind]
    if len(words) != expected:
        raise DigestRuleError(UNKNOWN_RULE, text=echo(arguments))
    at = _time(words[-1])
    weekday = day_of_month = None
    if kind == "weekly":
        weekday = WEEKDAYS.get(words[1].casefold())
        if weekday is None:
            raise DigestRuleError(
                N_("Unknown weekday “{text}”: use mon..sun."), text=echo(words[1])
            )
    elif kind == "monthly":
        if not is_number(words[1]) or not 1 <= int(words[1]) <= 31:
            raise DigestRuleError(N_("Day of month “{text}” must be 1..31."), text=echo(words[1]))
        day_of_month = int(words[1])
    return DigestRule(
        kind=kind,
        at=at,
        weekday=weekday,
        day_of_month=day_of_month,
        channel=request.filter.channel,
        app=request.filter.app,
    )


def _time(text: str) -> time:
    match = TIME_RE.match(text) if text.isascii() else None
    if match is None:
        raise DigestRuleError(N_("Time “{text}” must look like 09:00."), text=echo(text))
    hour, minute = int(match.group(1)), int(match.group(2))
    if hour > 23:
        raise DigestRuleError(
            N_("Hour {hour} in “{text}” is out of range: use 00 to 23."), hour=hour, text=text
        )
    if minute > 59:
        raise DigestRuleError(
            N_("Minute {minute} in “{text}” is out of range: use 00 to 59."),
            minute=minute,
            text=text,
        )
    return time(hour, minute)


def local_instant(day: date, at: time, tz: ZoneInfo) -> datetime:
    """The UTC instant of a local wall time; a time skipped by a DST change moves to the first
    valid instant after the gap, a repeated one takes its first occurrence.

    Results are UTC because aware datetimes inside a repeated hour never compare equal across
    zones (PEP 495), which would break ordering of slots.
    """
    naive = datetime.combine(day, at)
    candidate = naive.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if candidate.astimezone(tz).replace(tzinfo=None) == naive:
        return candidate
    # In a gap: walk from the earliest reading of this wall time to the end of the gap.
    instant = naive.replace(tzinfo=tz, fold=1).astimezone(UTC)
    while instant.astimezone(tz).replace(tzinfo=None) < naive:
        instant += timedelta(minutes=1)
    return instant


def _slot_day(rule: DigestRule, day: date) -> bool:
    if rule.kind == "daily":
        return True
    if rule.kind == "weekly":
        return day.weekday() == rule.weekday
    assert rule.day_of_month is not None
    next_month = (day.replace(day=28) + timedelta(days=4)).replace(day=1)
    last_day = (next_month - timedelta(days=1)).day
    return day.day == min(rule.day_of_month, last_day)


def slot_days(rule: DigestRule, around: date) -> list[date]:
    """Local dates on which the rule fires, from ~32 days before to ~32 days after `around`."""
    return [
        day
        for day in (around + timedelta(days=offset) for offset in range(-32, 33))
        if _slot_day(rule, day)
    ]


def past_slots(rule: DigestRule, tz: ZoneInfo, now: datetime) -> list[datetime]:
    """Instants at or before now, within about a month, at which the rule fired; oldest first."""
    slots = (local_instant(day, rule.at, tz) for day in slot_days(rule, now.astimezone(tz).date()))
    return sorted(slot for slot in slots if slot <= now)


def latest_slot(rule: DigestRule, tz: ZoneInfo, now: datetime) -> datetime | None:
    """The most recent instant at or before now at which the rule fired."""
    past = past_slots(rule, tz, now)
    return past[-1] if past else None


@dataclass(frozen=True, slots=True)
class Recorded:
    """The newest slot in a subscription's delivery ledger and the period it stood for."""

    slot: datetime
    period_key: str
    # Sent, skipped or failed; False while a claim is unfinished (its missing parts are owed).
    settled: bool


def period_key(kind: Kind, slot: datetime, tz: ZoneInfo) -> str:
    """The ledger's key of the period a slot reports on: the first local day of that period."""
    return last_complete_period(kind, now=slot, tz=tz).current.start.date().isoformat()


def owed(
    rule: DigestRule, tz: ZoneInfo, slot: datetime, *, since: datetime, recorded: Recorded | None
) -> bool:
    """Whether a slot is to be delivered: the one rule of the digest runner, its clock and the
    `/digest` listing.

    Not before `since` (created or resumed), not before the newest recorded slot, and never
    for a period already settled or older: after a westward /timezone change the same period's
    slot comes again later that day, and it was delivered already.
    """
    if slot < since:
        return False
    if recorded is None:
        return True
    if slot < recorded.slot:
        return False
    key = period_key(rule.kind, slot, tz)
    return key > recorded.period_key or (key == recorded.period_key and not recorded.settled)


def next_owed_slot(
    rule: DigestRule, tz: ZoneInfo, now: datetime, *, since: datetime, recorded: Recorded | None
) -> datetime:
    """The first instant after now at which the digest will be delivered."""
    around = now.astimezone(tz).date()
    while True:
        slots = sorted(local_instant(day, rule.at, tz) for day in slot_days(rule, around))
        for slot in slots:
            if slot > now and owed(rule, tz, slot, since=since, recorded=recorded):
                return slot
        # Every slot of these two months was settled (a period delivered before a zone change).
        around += timedelta(days=32)


def next_slot(rule: DigestRule, tz: ZoneInfo, now: datetime) -> datetime:
    """The first instant after now at which the rule fires."""
    return min(
        slot
        for slot in (
            local_instant(day, rule.at, tz) for day in slot_days(rule, now.astimezone(tz).date())
        )
        if slot > now
    )
