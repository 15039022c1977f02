"""Period grammar and boundaries (DESIGN.md §5) against a fixed now, in several zones.

Tables give bounds as local wall-clock strings ("2026-11-27 14:35") in the zone of the test.
"""

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from reports.errors import PeriodError
from reports.model import Period
from reports.periods import EXAMPLES, last_complete_period, parse_period

MSK = ZoneInfo("Europe/Moscow")
BER = ZoneInfo("Europe/Berlin")
NYC = ZoneInfo("America/New_York")


def at(local: str, tz: ZoneInfo = MSK) -> datetime:
    """A wall-clock reading in `tz`, e.g. at("2026-11-27 14:35")."""
    return datetime.fromisoformat(local).replace(tzinfo=tz)


def utc(local: str) -> datetime:
    return datetime.fromisoformat(local).replace(tzinfo=UTC)


def assert_period(period: Period, start: str, end: str) -> None:
    """Both bounds are the given wall-clock readings in the period's zone, as the same instants."""
    for actual, local in ((period.start, start), (period.end, end)):
        expected = at(local, period.tz)
        assert actual.tzinfo is period.tz
        assert actual.replace(tzinfo=None) == expected.replace(tzinfo=None)
        assert actual.astimezone(UTC) == expected.astimezone(UTC)


# A Friday of ISO week 2026-W48, in Moscow (UTC+3, no DST).
N = "2026-11-27 14:35"
NOW = at(N)

# text, label, current start, current end, previous start, previous end (now = NOW in Moscow)
GRAMMAR = [
    *[
        (text, "today", "2026-11-27", N, "2026-11-26", "2026-11-26 14:35")
        for text in ("today", "сегодня", "TODAY", "Сегодня", "  today  ")
    ],
    *[
        (text, "yesterday", "2026-11-26", "2026-11-27", "2026-11-25", "2026-11-26")
        for text in ("yesterday", "вчера", "ВЧЕРА", "Yesterday")
    ],
    *[
        (text, "week", "2026-11-23", N, "2026-11-16", "2026-11-20 14:35")
        for text in ("week", "неделя", "WEEK", "Неделя")
    ],
    *[
        (text, "month", "2026-11-01", N, "2026-10-01", "2026-10-27 14:35")
        for text in ("month", "месяц", "Month", "МЕСЯЦ")
    ],
    *[
        (text, "quarter", "2026-10-01", N, "2026-07-01", "2026-08-27 14:35")
        for text in ("quarter", "квартал", "Quarter")
    ],
    *[
        (text, "year", "2026-01-01", N, "2025-01-01", "2025-11-27 14:35")
        for text in ("year", "год", "YEAR")
    ],
    *[
        (text, "last week", "2026-11-16", "2026-11-23", "2026-11-09", "2026-11-16")
        for text in (
            "last week", "прошлая неделя", "Last Week", " last   week ", "ПРОШЛАЯ\tНЕДЕЛЯ"
        )
    ],
    *[
        (text, "last month", "2026-10-01", "2026-11-01", "2026-09-01", "2026-10-01")
        for text in ("last month", "прошлый месяц", "LAST MONTH", "Прошлый Месяц")
    ],
    # Nd: N calendar days including today, clipped to now; previous = the N days before it, to
    # the same wall time (a to-date preset whose unit is N days), so it starts at midnight too.
    *[
        (text, "7d", "2026-11-21", N, "2026-11-14", "2026-11-20 14:35")
        for text in ("7d", "7д", "7D", "7 d", "007d")
    ],
    ("1d", "1d", "2026-11-27", N, "2026-11-26", "2026-11-26 14:35"),
    ("30d", "30d", "2026-10-29", N, "2026-09-29", "2026-10-28 14:35"),
    ("1830d", "1830d", "2021-11-24", N, "2016-11-20", "2021-11-23 14:35"),
    # One day, inclusive; previous = the day before.
    *[
        (text, "2026-11-05", "2026-11-05", "2026-11-06", "2026-11-04", "2026-11-05")
        for text in ("2026-11-05", "05.11.2026", "5.11.2026")
    ],
    # Today or the running month typed as dates compare like "today" and "month".
    ("2026-11-27", "2026-11-27", "2026-11-27", N, "2026-11-26", "2026-11-26 14:35"),
    # A past month vs the previous calendar month.
    ("2026-10", "2026-10", "2026-10-01", "2026-11-01", "2026-09-01", "2026-10-01"),
    ("2026-03", "2026-03", "2026-03-01", "2026-04-01", "2026-02-01", "2026-03-01"),
    ("2026-3", "2026-03", "2026-03-01", "2026-04-01", "2026-02-01", "2026-03-01"),
    ("2026-01", "2026-01", "2026-01-01", "2026-02-01", "2025-12-01", "2026-01-01"),
    ("2026-11", "2026-11", "2026-11-01", N, "2026-10-01", "2026-10-27 14:35"),
    # Inclusive ranges: [first 00:00, (last + 1) 00:00); previous = as many days right before.
    *[
        (text, "2026-11-01..2026-11-15", "2026-11-01", "2026-11-16", "2026-10-17", "2026-11-01")
        for text in (
            "2026-11-01..2026-11-15",
            "01.11.2026-15.11.2026",
            "01.11.2026..15.11.2026",
            "2026-11-01 .. 2026-11-15",
            "01.11.2026 - 15.11.2026",
            "01.11.2026–15.11.2026",
        )
    ],
    ("2026-11-05..2026-11-05", "2026-11-05..2026-11-05", *("2026-11-05", "2026-11-06"),
     *("2026-11-04", "2026-11-05")),
    # A range reaching past now is clipped to now; previous = equal length right before.
    ("2026-11-20..2026-12-31", "2026-11-20..2026-12-31", *("2026-11-20", N),
     *("2026-11-12 09:25", "2026-11-20")),
    # Exactly five years is allowed.
    ("2021-11-27..2026-11-26", "2021-11-27..2026-11-26", *("2021-11-27", "2026-11-27"),
     *("2016-11-27", "2021-11-27")),
]  # fmt: skip


@pytest.mark.parametrize(("text", "label", "start", "end", "prev_start", "prev_end"), GRAMMAR)
def test_grammar(
    text: str, label: str, start: str, end: str, prev_start: str, prev_end: str
) -> None:
    pair = parse_period(text, now=NOW, tz=MSK)
    assert pair.current.label == label
    assert pair.current.tz is MSK
    assert pair.previous.tz is MSK
    assert_period(pair.current, start, end)
    assert_period(pair.previous, prev_start, prev_end)


def test_now_in_another_zone_is_converted() -> None:
    pair = parse_period("today", now=utc("2026-11-27 11:35"), tz=MSK)
    assert_period(pair.current, "2026-11-27", N)
    assert pair.current.end.utcoffset() == timedelta(hours=3)


@pytest.mark.parametrize(
    ("now_utc", "text", "start", "end"),
    [
        # 30 s after Moscow midnight: the UTC date is still the 26th.
        ("2026-11-26 21:00:30", "today", "2026-11-27", "2026-11-27 00:00:30"),
        ("2026-11-26 21:00:30", "yesterday", "2026-11-26", "2026-11-27"),
        ("2026-11-26 21:00:30", "1d", "2026-11-27", "2026-11-27 00:00:30"),
        # One second before Moscow midnight.
        ("2026-11-27 20:59:59", "today", "2026-11-27", "2026-11-27 23:59:59"),
        ("2026-11-27 20:59:59", "yesterday", "2026-11-26", "2026-11-27"),
        ("2026-11-27 20:59:59", "week", "2026-11-23", "2026-11-27 23:59:59"),
        # Monday 00:00:30 in Moscow is still Sunday in UTC: the week is the new one.
        ("2026-11-29 21:00:30", "week", "2026-11-30", "2026-11-30 00:00:30"),
        ("2026-11-29 21:00:30", "last week", "2026-11-23", "2026-11-30"),
        # The 1st of the month 00:00:30 in Moscow is still the 30th in UTC.
        ("2026-11-30 21:00:30", "month", "2026-12-01", "2026-12-01 00:00:30"),
        ("2026-11-30 21:00:30", "last month", "2026-11-01", "2026-12-01"),
    ],
)
def test_moscow_local_midnight(now_utc: str, text: str, start: str, end: str) -> None:
    assert_period(parse_period(text, now=utc(now_utc), tz=MSK).current, start, end)


def test_today_starts_at_moscow_midnight_in_utc() -> None:
    pair = parse_period("today", now=at("2026-11-27 00:00:30"), tz=MSK)
    assert pair.current.start == datetime(2026, 11, 26, 21, 0, tzinfo=UTC)
    assert pair.current.start.utcoffset() == timedelta(hours=3)
    assert_period(pair.current, "2026-11-27", "2026-11-27 00:00:30")
    assert_period(pair.previous, "2026-11-26", "2026-11-26 00:00:30")


def test_today_at_moscow_23_59_59() -> None:
    pair = parse_period("today", now=at("2026-11-27 23:59:59"), tz=MSK)
    assert pair.current.start == datetime(2026, 11, 26, 21, 0, tzinfo=UTC)
    assert pair.current.end == datetime(2026, 11, 27, 20, 59, 59, tzinfo=UTC)
    assert_period(pair.previous, "2026-11-26", "2026-11-26 23:59:59")


def test_today_west_of_utc() -> None:
    # 01:00 UTC on the 27th is still the evening of the 26th in New York (UTC-5).
    pair = parse_period("today", now=utc("2026-11-27 01:00"), tz=NYC)
    assert_period(pair.current, "2026-11-26", "2026-11-26 20:00")
    assert pair.current.start == utc("2026-11-26 05:00")


def test_a_date_starting_exactly_now_is_empty_not_future() -> None:
    pair = parse_period("2026-11-27", now=at("2026-11-27"), tz=MSK)
    assert_period(pair.current, "2026-11-27", "2026-11-27")


# 2027-01-01 is a Friday of ISO week 2026-W53.
NY = "2027-01-01 12:00"


@pytest.mark.parametrize(
    ("text", "start", "end", "prev_start", "prev_end"),
    [
        ("week", "2026-12-28", NY, "2026-12-21", "2026-12-25 12:00"),
        ("last week", "2026-12-21", "2026-12-28", "2026-12-14", "2026-12-21"),
        ("today", "2027-01-01", NY, "2026-12-31", "2026-12-31 12:00"),
        ("yesterday", "2026-12-31", "2027-01-01", "2026-12-30", "2026-12-31"),
        ("month", "2027-01-01", NY, "2026-12-01", "2026-12-01 12:00"),
        ("last month", "2026-12-01", "2027-01-01", "2026-11-01", "2026-12-01"),
        ("quarter", "2027-01-01", NY, "2026-10-01", "2026-10-01 12:00"),
        ("year", "2027-01-01", NY, "2026-01-01", "2026-01-01 12:00"),
        ("7d", "2026-12-26", NY, "2026-12-19", "2026-12-25 12:00"),
        ("2026-12", "2026-12-01", "2027-01-01", "2026-11-01", "2026-12-01"),
    ],
)
def test_new_year_and_iso_week_53(
    text: str, start: str, end: str, prev_start: str, prev_end: str
) -> None:
    pair = parse_period(text, now=at(NY), tz=MSK)
    assert_period(pair.current, start, end)
    assert_period(pair.previous, prev_start, prev_end)


def test_week_of_new_year_is_iso_2026_w53() -> None:
    pair = parse_period("week", now=at(NY), tz=MSK)
    assert tuple(pair.current.start.isocalendar()) == (2026, 53, 1)
    assert tuple(pair.previous.start.isocalendar()) == (2026, 52, 1)


@pytest.mark.parametrize(
    ("text", "start", "end", "real_length", "start_offset", "end_offset"),
    [
        # Spring forward on Sunday 2026-03-29: the week is 6 days 23 hours of real time.
        ("2026-03-23..2026-03-29", "2026-03-23", "2026-03-30", timedelta(days=6, hours=23), 1, 2),
        ("2026-03-29", "2026-03-29", "2026-03-30", timedelta(hours=23), 1, 2),
        ("2026-03", "2026-03-01", "2026-04-01", timedelta(days=30, hours=23), 1, 2),
        # Fall back on Sunday 2026-10-25: 7 days 1 hour, and a 25-hour day.
        ("2026-10-19..2026-10-25", "2026-10-19", "2026-10-26", timedelta(days=7, hours=1), 2, 1),
        ("25.10.2026", "2026-10-25", "2026-10-26", timedelta(hours=25), 2, 1),
        ("2026-10", "2026-10-01", "2026-11-01", timedelta(days=31, hours=1), 2, 1),
    ],
)
def test_berlin_dst(
    text: str, start: str, end: str, real_length: timedelta, start_offset: int, end_offset: int
) -> None:
    period = parse_period(text, now=at("2026-11-27 14:35", BER), tz=BER).current
    assert_period(period, start, end)
    assert period.end.astimezone(UTC) - period.start.astimezone(UTC) == real_length
    assert period.start.utcoffset() == timedelta(hours=start_offset)
    assert period.end.utcoffset() == timedelta(hours=end_offset)


def test_berlin_last_week_across_spring_forward() -> None:
    pair = parse_period("last week", now=at("2026-04-01 09:00", BER), tz=BER)
    assert_period(pair.current, "2026-03-23", "2026-03-30")
    assert_period(pair.previous, "2026-03-16", "2026-03-23")
    real = pair.current.end.astimezone(UTC) - pair.current.start.astimezone(UTC)
    assert real == timedelta(days=6, hours=23)


def test_berlin_week_to_date_across_fall_back() -> None:
    pair = parse_period("week", now=at("2026-10-25 12:00", BER), tz=BER)
    assert_period(pair.current, "2026-10-19", "2026-10-25 12:00")
    assert_period(pair.previous, "2026-10-12", "2026-10-18 12:00")
    assert pair.current.start.utcoffset() == timedelta(hours=2)
    assert pair.current.end.utcoffset() == timedelta(hours=1)


def test_berlin_7d_across_spring_forward_compares_wall_clock() -> None:
    # Both periods start at midnight and run 6 days 12 hours of wall clock; the current one is
    # an hour shorter in real time because it contains the spring-forward night.
    pair = parse_period("7d", now=at("2026-04-01 12:00", BER), tz=BER)
    assert_period(pair.current, "2026-03-26", "2026-04-01 12:00")
    assert_period(pair.previous, "2026-03-19", "2026-03-25 12:00")


def test_to_date_presets_are_marked() -> None:
    to_date = ("today", "week", "month", "quarter", "year", "7d", "1d", "2026-11", "2026-11-27")
    for text in to_date:
        assert parse_period(text, now=NOW, tz=MSK).current.to_date, text
    others = (
        "yesterday",
        "last week",
        "last month",
        "2026-10",
        "2026-11-26",
        "2026-11-20..2026-12-31",
    )
    for text in others:
        assert not parse_period(text, now=NOW, tz=MSK).current.to_date, text
        assert not parse_period(text, now=NOW, tz=MSK).previous.to_date, text
    for kind in ("daily", "weekly", "monthly"):
        assert not last_complete_period(kind, now=NOW, tz=MSK).current.to_date  # type: ignore[arg-type]


def test_berlin_today_on_dst_day_compares_wall_clock() -> None:
    # 12:00 on the spring-forward day is 11 real hours after midnight; yesterday gets 12:00 too.
    now = at("2026-03-29 12:00", BER)
    pair = parse_period("today", now=now, tz=BER)
    assert_period(pair.current, "2026-03-29", "2026-03-29 12:00")
    assert_period(pair.previous, "2026-03-28", "2026-03-28 12:00")
    assert now - pair.current.start.astimezone(UTC) == timedelta(hours=11)


@pytest.mark.parametrize(
    ("now", "text", "start", "prev_start", "prev_end"),
    [
        # Nov 1-27 vs Oct 1-27.
        (N, "month", "2026-11-01", "2026-10-01", "2026-10-27 14:35"),
        # February has no 31st or 30th: the previous period stops at the end of February.
        ("2026-03-31 15:00", "month", "2026-03-01", "2026-02-01", "2026-03-01"),
        ("2026-03-30 15:00", "month", "2026-03-01", "2026-02-01", "2026-03-01"),
        ("2026-03-28 15:00", "month", "2026-03-01", "2026-02-01", "2026-02-28 15:00"),
        # A leap February has a 29th.
        ("2028-03-30 15:00", "month", "2028-03-01", "2028-02-01", "2028-03-01"),
        ("2028-03-29 15:00", "month", "2028-03-01", "2028-02-01", "2028-02-29 15:00"),
        ("2026-05-31 10:00", "month", "2026-05-01", "2026-04-01", "2026-05-01"),
        # Quarter: the same elapsed wall-clock span from the start of the previous quarter.
        (N, "quarter", "2026-10-01", "2026-07-01", "2026-08-27 14:35"),
        ("2026-05-31 10:00", "quarter", "2026-04-01", "2026-01-01", "2026-03-02 10:00"),
        ("2026-09-30 12:00", "quarter", "2026-07-01", "2026-04-01", "2026-07-01"),
        ("2026-02-14 08:00", "quarter", "2026-01-01", "2025-10-01", "2025-11-14 08:00"),
        # Year: a leap year's December 31 clips to the end of the shorter previous year.
        (N, "year", "2026-01-01", "2025-01-01", "2025-11-27 14:35"),
        ("2028-12-31 12:00", "year", "2028-01-01", "2027-01-01", "2028-01-01"),
        # Week to date: Mon..Fri 14:35 vs the previous Mon..Fri 14:35; Sunday evening too.
        (N, "week", "2026-11-23", "2026-11-16", "2026-11-20 14:35"),
        ("2026-11-29 22:00", "week", "2026-11-23", "2026-11-16", "2026-11-22 22:00"),
        # Today: yesterday from midnight to the same wall time.
        (N, "today", "2026-11-27", "2026-11-26", "2026-11-26 14:35"),
        # Nd: the N whole days before it, up to the same wall time; 1d is today.
        (N, "7d", "2026-11-21", "2026-11-14", "2026-11-20 14:35"),
        (N, "1d", "2026-11-27", "2026-11-26", "2026-11-26 14:35"),
        ("2026-11-27 00:00", "7d", "2026-11-21", "2026-11-14", "2026-11-20"),
        ("2026-03-02 08:00", "3d", "2026-02-28", "2026-02-25", "2026-02-27 08:00"),
    ],
)
def test_previous_of_to_date_presets(
    now: str, text: str, start: str, prev_start: str, prev_end: str
) -> None:
    pair = parse_period(text, now=at(now), tz=MSK)
    assert_period(pair.current, start, now)
    assert_period(pair.previous, prev_start, prev_end)


@pytest.mark.parametrize(
    ("text", "start", "end", "prev_start", "prev_end"),
    [
        # Whole days: as many calendar days right before.
        ("yesterday", "2026-11-26", "2026-11-27", "2026-11-25", "2026-11-26"),
        ("2026-11-01..2026-11-15", "2026-11-01", "2026-11-16", "2026-10-17", "2026-11-01"),
        ("2026-02-01..2026-03-31", "2026-02-01", "2026-04-01", "2025-12-04", "2026-02-01"),
        # Calendar months compare with the calendar month before, whatever their lengths.
        ("2026-03", "2026-03-01", "2026-04-01", "2026-02-01", "2026-03-01"),
        ("last month", "2026-10-01", "2026-11-01", "2026-09-01", "2026-10-01"),
        ("last week", "2026-11-16", "2026-11-23", "2026-11-09", "2026-11-16"),
    ],
)
def test_previous_of_other_periods(
    text: str, start: str, end: str, prev_start: str, prev_end: str
) -> None:
    pair = parse_period(text, now=NOW, tz=MSK)
    assert_period(pair.current, start, end)
    assert_period(pair.previous, prev_start, prev_end)


@pytest.mark.parametrize(
    ("now", "text", "start", "end"),
    [
        (N, "2026-11-27", "2026-11-27", N),
        (N, "2026-11", "2026-11-01", N),
        (N, "2026-11-01..2027-06-30", "2026-11-01", N),
        (N, "20.11.2026-31.12.2026", "2026-11-20", N),
        (N, "2021-11-28..2030-01-01", "2021-11-28", N),
        # Presets end at now too.
        (N, "week", "2026-11-23", N),
        ("2026-11-30 23:59:59", "2026-11", "2026-11-01", "2026-11-30 23:59:59"),
    ],
)
def test_clipped_to_now(now: str, text: str, start: str, end: str) -> None:
    assert_period(parse_period(text, now=at(now), tz=MSK).current, start, end)


# Nows across zones, year ends and DST switches, for invariants of every form of period.
INVARIANT_NOWS = [
    (NOW, MSK),
    (at(NY), MSK),
    (at("2026-11-27 00:00:30"), MSK),
    (at("2026-03-29 03:30", BER), BER),
    (at("2026-10-25 02:30", BER), BER),
    (at("2028-02-29 23:00", NYC), NYC),
]
INVARIANT_TEXTS = [
    *("today", "yesterday", "week", "month", "quarter", "year", "last week", "last month"),
    *("1d", "7d", "30d", "365d", "2026-01-01..2026-01-31", "2024-02-29", "2026-02"),
]


@pytest.mark.parametrize(("now", "tz"), INVARIANT_NOWS)
def test_invariants(now: datetime, tz: ZoneInfo) -> None:
    local_now = now.astimezone(tz)
    for text in INVARIANT_TEXTS:
        pair = parse_period(text, now=now, tz=tz)
        current, previous = pair.current, pair.previous
        assert current.start <= current.end <= local_now, text
        assert previous.start < previous.end <= current.start, text
        assert current.start.time() == time(0), text
        for moment in (current.start, current.end, previous.start, previous.end):
            assert moment.tzinfo is tz, text


BAD = [
    ("", "Empty period"),
    ("   ", "Empty period"),
    ("xyz", 'Unknown period “xyz”'),
    ("next week", 'Unknown period “next week”'),
    ("-7d", 'Unknown period “-7d”'),
    ("7 days", 'Unknown period “7 days”'),
    ("2026/11/05", 'Unknown period “2026/11/05”'),
    ("week\n\nplease", 'Unknown period “week please”'),
    ("2026-02-30", 'Invalid date “2026-02-30”'),
    ("30.02.2026", 'Invalid date “30.02.2026”'),
    ("2025-02-29", 'Invalid date “2025-02-29”'),
    ("2026-13", 'Invalid date “2026-13”'),
    ("2026-00", 'Invalid date “2026-00”'),
    ("0000-01-01", 'Invalid date “0000-01-01”'),
    ("2026-11-01..2026-02-30", 'Invalid date “2026-11-01..2026-02-30”'),
    ("2026-11-15..2026-11-01", 'Period “2026-11-15..2026-11-01” ends before it starts'),
    ("15.11.2026-01.11.2026", 'Period “15.11.2026-01.11.2026” ends before it starts'),
    ("2026-11-28", 'Period “2026-11-28” starts in the future'),
    ("28.11.2026", 'Period “28.11.2026” starts in the future'),
    ("2026-12", 'Period “2026-12” starts in the future'),
    ("2027-01-01..2027-01-05", 'Period “2027-01-01..2027-01-05” starts in the future'),
    ("9999-12-31", 'Period “9999-12-31” starts in the future'),
    ("1900-01-01..2100-01-01", 'Period “1900-01-01..2100-01-01” spans more than 5 years'),
    ("2021-11-26..2026-11-26", 'Period “2021-11-26..2026-11-26” spans more than 5 years'),
    # The span is measured after clipping to now: 2021-11-27 00:00 < now - 5 years.
    ("2021-11-27..2030-01-01", 'Period “2021-11-27..2030-01-01” spans more than 5 years'),
    ("0d", 'Day count “0d” must be from 1 to 1830'),
    ("0д", 'Day count “0д” must be from 1 to 1830'),
    ("1831d", 'Day count “1831d” must be from 1 to 1830'),
    ("99999999999999999999d", 'Day count “99999999999999999999d” must be from 1 to 1830'),
    ("0001-01-01", 'Period “0001-01-01” is out of range'),
]


@pytest.mark.parametrize(("text", "message"), BAD)
def test_bad_input(text: str, message: str) -> None:
    with pytest.raises(PeriodError) as caught:
        parse_period(text, now=NOW, tz=MSK)
    assert caught.value.message == f"{message}. Try: {EXAMPLES}"
    assert str(caught.value) == caught.value.message


def test_examples_constant_lists_parseable_periods() -> None:
    assert EXAMPLES == (
        "today, yesterday, week, month, last month, 7d, 2026-11-05, 2026-11, "
        "2026-11-01..2026-11-15"
    )
    for example in EXAMPLES.split(", "):
        parse_period(example, now=NOW, tz=MSK)


def test_long_input_is_echoed_truncated() -> None:
    with pytest.raises(PeriodError) as caught:
        parse_period("ы" * 4000, now=NOW, tz=MSK)
    message = caught.value.message
    echoed = message.split("“")[1].split("”")[0]
    assert len(echoed) <= 50
    assert echoed == "ы" * 49 + "…"
    assert message == f'Unknown period “{echoed}”. Try: {EXAMPLES}'


def test_long_bad_date_range_is_echoed_truncated() -> None:
    text = "2026-11-15..2026-11-01" + " " * 3000 + "x" * 978
    with pytest.raises(PeriodError) as caught:
        parse_period(text, now=NOW, tz=MSK)
    assert len(caught.value.message.split("“")[1].split("”")[0]) == 50


def test_control_characters_are_not_echoed() -> None:
    with pytest.raises(PeriodError) as caught:
        parse_period("we\x00ek\x1b[31m", now=NOW, tz=MSK)
    assert caught.value.message.startswith('Unknown period “we?ek?[31m”. Try: ')


def test_naive_now_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="aware"):
        parse_period("today", now=datetime.fromisoformat(N), tz=MSK)


@pytest.mark.parametrize(
    ("kind", "now", "label", "start", "end", "prev_start", "prev_end"),
    [
        ("daily", N, "yesterday", "2026-11-26", "2026-11-27", "2026-11-25", "2026-11-26"),
        # Just after Moscow midnight, while the UTC date is still the day before.
        ("daily", "2026-11-27 00:00:30", "yesterday", *("2026-11-26", "2026-11-27"),
         *("2026-11-25", "2026-11-26")),
        # Month end, year end, February.
        ("daily", "2026-12-01 09:00", "yesterday", *("2026-11-30", "2026-12-01"),
         *("2026-11-29", "2026-11-30")),
        ("daily", "2027-01-01 09:00", "yesterday", *("2026-12-31", "2027-01-01"),
         *("2026-12-30", "2026-12-31")),
        ("daily", "2026-03-01 09:00", "yesterday", *("2026-02-28", "2026-03-01"),
         *("2026-02-27", "2026-02-28")),
        ("weekly", N, "last week", "2026-11-16", "2026-11-23", "2026-11-09", "2026-11-16"),
        # Monday 2027-01-04 (2027-W01): the last complete week is 2026-W53.
        ("weekly", "2027-01-04 09:00", "last week", *("2026-12-28", "2027-01-04"),
         *("2026-12-21", "2026-12-28")),
        # Friday 2027-01-01 is inside 2026-W53, so the last complete week is 2026-W52.
        ("weekly", NY, "last week", "2026-12-21", "2026-12-28", "2026-12-14", "2026-12-21"),
        # Monday just after Moscow midnight (still Sunday in UTC).
        ("weekly", "2026-11-30 00:00:30", "last week", *("2026-11-23", "2026-11-30"),
         *("2026-11-16", "2026-11-23")),
        ("monthly", "2026-12-01 00:05", "last month", *("2026-11-01", "2026-12-01"),
         *("2026-10-01", "2026-11-01")),
        ("monthly", "2027-01-15 09:00", "last month", *("2026-12-01", "2027-01-01"),
         *("2026-11-01", "2026-12-01")),
        ("monthly", "2026-03-31 23:00", "last month", *("2026-02-01", "2026-03-01"),
         *("2026-01-01", "2026-02-01")),
        ("monthly", "2026-11-30 23:59:59", "last month", *("2026-10-01", "2026-11-01"),
         *("2026-09-01", "2026-10-01")),
    ],
)  # fmt: skip
def test_last_complete_period(
    kind: str, now: str, label: str, start: str, end: str, prev_start: str, prev_end: str
) -> None:
    # The scheduler's clock is UTC; the chat's zone decides the day.
    now_utc = at(now).astimezone(UTC)
    pair = last_complete_period(kind, now=now_utc, tz=MSK)  # type: ignore[arg-type]
    assert pair.current.label == label
    assert_period(pair.current, start, end)
    assert_period(pair.previous, prev_start, prev_end)


def test_last_complete_week_53_is_iso_labelled() -> None:
    pair = last_complete_period("weekly", now=at("2027-01-04 09:00"), tz=MSK)
    assert tuple(pair.current.start.isocalendar()) == (2026, 53, 1)


@pytest.mark.parametrize(
    ("kind", "text"), [("daily", "вчера"), ("weekly", "last week"), ("monthly", "прошлый месяц")]
)
def test_last_complete_period_matches_the_grammar(kind: str, text: str) -> None:
    digest = last_complete_period(kind, now=NOW, tz=MSK)  # type: ignore[arg-type]
    assert digest == parse_period(text, now=NOW, tz=MSK)


def test_last_complete_month_across_berlin_dst() -> None:
    pair = last_complete_period("monthly", now=at("2026-04-01 08:00", BER), tz=BER)
    assert_period(pair.current, "2026-03-01", "2026-04-01")
    real = pair.current.end.astimezone(UTC) - pair.current.start.astimezone(UTC)
    assert real == timedelta(days=30, hours=23)


def test_last_complete_period_unknown_kind() -> None:
    with pytest.raises(ValueError, match="hourly"):
        last_complete_period("hourly", now=NOW, tz=MSK)  # type: ignore[arg-type]
