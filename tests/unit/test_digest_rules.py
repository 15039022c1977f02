"""Digest rules: parsing, and due slots with a fixed now across DST, month ends and ISO week 53."""

from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

import pytest

from bot.digests.rules import (
    DigestRule,
    Recorded,
    latest_slot,
    local_instant,
    next_owed_slot,
    next_slot,
    parse_rule,
)
from reports.errors import ReportError
from reports.i18n import translator
from reports.periods import last_complete_period

BERLIN = ZoneInfo("Europe/Berlin")
MSK = ZoneInfo("Europe/Moscow")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("daily 09:00", DigestRule(kind="daily", at=time(9, 0))),
        ("DAILY 9:05", DigestRule(kind="daily", at=time(9, 5))),
        ("weekly mon 09:00", DigestRule(kind="weekly", at=time(9), weekday=0)),
        ("еженедельно пт 18:30", DigestRule(kind="weekly", at=time(18, 30), weekday=4)),
        ("monthly 1 09:00", DigestRule(kind="monthly", at=time(9), day_of_month=1)),
        ("monthly 31 23:59", DigestRule(kind="monthly", at=time(23, 59), day_of_month=31)),
        (
            'daily 09:00 channel=whatsapp app="Sales & Partners <VIP>"',
            DigestRule(kind="daily", at=time(9), channel="whatsapp", app="Sales & Partners <VIP>"),
        ),
    ],
)
def test_parse_rule(text: str, rule: DigestRule) -> None:
    assert parse_rule(text) == rule


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "Unknown digest “”."),
        ("hourly 09:00", "Unknown digest “hourly 09:00”."),
        ("daily", "Unknown digest “daily”."),
        ("daily 24:00", "Hour 24 in “24:00” is out of range: use 00 to 23."),
        ("daily 25:00", "Hour 25 in “25:00” is out of range: use 00 to 23."),
        ("daily 09:60", "Minute 60 in “09:60” is out of range: use 00 to 59."),
        ("daily 9:5", "Time “9:5” must look like 09:00."),
        ("daily ２５:００", "Time “２５:００” must look like 09:00."),
        ("daily 9am", "Time “9am” must look like 09:00."),
        ("weekly funday 09:00", "Unknown weekday “funday”: use mon..sun."),
        ("monthly 32 09:00", "Day of month “32” must be 1..31."),
        ("monthly 0 09:00", "Day of month “0” must be 1..31."),
        ("daily 09:00 channel=a channel=b", "channel= is given twice."),
        (
            "daily 09:00 app=R&D <beta>",
            'A name with spaces goes in quotes: app="R&D <beta>"',
        ),
    ],
)
def test_bad_rules_are_explained(text: str, message: str) -> None:
    with pytest.raises(ReportError) as error:
        parse_rule(text)
    assert error.value.message.startswith(message)


DAILY_9 = DigestRule(kind="daily", at=time(9))


def test_daily_fires_at_nine_local_on_both_sides_of_spring_forward() -> None:
    # 2026-03-29: Berlin moves from +01:00 to +02:00 at 02:00 local.
    assert next_slot(DAILY_9, BERLIN, utc(2026, 3, 28, 8, 0)) == utc(2026, 3, 29, 7, 0)
    assert latest_slot(DAILY_9, BERLIN, utc(2026, 3, 28, 8, 0)) == utc(2026, 3, 28, 8, 0)
    assert latest_slot(DAILY_9, BERLIN, utc(2026, 3, 29, 6, 59)) == utc(2026, 3, 28, 8, 0)
    assert next_slot(DAILY_9, BERLIN, utc(2026, 3, 29, 7, 0)) == utc(2026, 3, 30, 7, 0)


def test_daily_fires_at_nine_local_across_fall_back() -> None:
    # 2026-10-25: Berlin moves from +02:00 back to +01:00 at 03:00 local.
    assert next_slot(DAILY_9, BERLIN, utc(2026, 10, 24, 7, 0)) == utc(2026, 10, 25, 8, 0)
    assert next_slot(DAILY_9, BERLIN, utc(2026, 10, 25, 8, 0)) == utc(2026, 10, 26, 8, 0)


def test_a_skipped_local_time_fires_once_at_the_end_of_the_gap() -> None:
    rule = DigestRule(kind="daily", at=time(2, 30))
    # 02:30 does not exist on 2026-03-29: the first valid instant after it is 03:00 CEST.
    assert local_instant(date(2026, 3, 29), time(2, 30), BERLIN) == utc(2026, 3, 29, 1, 0)
    assert next_slot(rule, BERLIN, utc(2026, 3, 28, 12, 0)) == utc(2026, 3, 29, 1, 0)
    assert next_slot(rule, BERLIN, utc(2026, 3, 29, 1, 0)) == utc(2026, 3, 30, 0, 30)


def test_a_repeated_local_time_fires_once_on_its_first_occurrence() -> None:
    rule = DigestRule(kind="daily", at=time(2, 30))
    # 02:30 happens twice on 2026-10-25 (00:30Z in CEST, 01:30Z in CET): only the first counts.
    assert next_slot(rule, BERLIN, utc(2026, 10, 24, 12, 0)) == utc(2026, 10, 25, 0, 30)
    assert next_slot(rule, BERLIN, utc(2026, 10, 25, 0, 30)) == utc(2026, 10, 26, 1, 30)


def test_monthly_on_the_31st_fires_on_the_last_day_of_short_months() -> None:
    rule = DigestRule(kind="monthly", at=time(9), day_of_month=31)
    assert next_slot(rule, MSK, utc(2026, 2, 1)) == utc(2026, 2, 28, 6, 0)
    assert next_slot(rule, MSK, utc(2026, 2, 28, 6, 0)) == utc(2026, 3, 31, 6, 0)
    assert next_slot(rule, MSK, utc(2026, 4, 1)) == utc(2026, 4, 30, 6, 0)
    leap = next_slot(rule, MSK, utc(2028, 2, 1))
    assert leap == utc(2028, 2, 29, 6, 0)


def test_weekly_monday_around_iso_week_53() -> None:
    rule = DigestRule(kind="weekly", at=time(9), weekday=0)
    now = datetime(2027, 1, 1, 12, tzinfo=MSK)
    assert latest_slot(rule, MSK, now) == datetime(2026, 12, 28, 9, tzinfo=MSK)
    slot = next_slot(rule, MSK, now)
    assert slot == datetime(2027, 1, 4, 9, tzinfo=MSK)
    # The digest sent then covers ISO week 2026-W53, Monday 2026-12-28 to 2027-01-04.
    week = last_complete_period("weekly", now=slot, tz=MSK).current
    assert (week.start, week.end) == (
        datetime(2026, 12, 28, tzinfo=MSK),
        datetime(2027, 1, 4, tzinfo=MSK),
    )


def test_monthly_first_covers_the_previous_month() -> None:
    rule = DigestRule(kind="monthly", at=time(9), day_of_month=1)
    slot = next_slot(rule, MSK, utc(2026, 12, 15))
    assert slot == datetime(2027, 1, 1, 9, tzinfo=MSK)
    month = last_complete_period("monthly", now=slot, tz=MSK)
    assert month.current.start == datetime(2026, 12, 1, tzinfo=MSK)
    assert month.previous.start == datetime(2026, 11, 1, tzinfo=MSK)


KATHMANDU = ZoneInfo("Asia/Kathmandu")
KOLKATA = ZoneInfo("Asia/Kolkata")
DAILY_1524 = DigestRule(kind="daily", at=time(15, 24))
# The 2026-11-11 digest (period 2026-11-10) went out at 15:24 in Kathmandu.
SENT_IN_KATHMANDU = Recorded(slot=utc(2026, 11, 11, 9, 39), period_key="2026-11-10", settled=True)


@pytest.mark.parametrize(
    ("zone", "now", "recorded", "expected"),
    [
        # Nothing recorded: the next slot, as next_slot says.
        (KOLKATA, utc(2026, 11, 11, 9, 45), None, utc(2026, 11, 11, 9, 54)),
        # Westward after today's period was delivered: not 15:24 today again, but tomorrow.
        (KOLKATA, utc(2026, 11, 11, 9, 45), SENT_IN_KATHMANDU, utc(2026, 11, 12, 9, 54)),
        # The same period still claimed (parts missing): it is owed today.
        (
            KOLKATA,
            utc(2026, 11, 11, 9, 45),
            Recorded(slot=utc(2026, 11, 11, 9, 39), period_key="2026-11-10", settled=False),
            utc(2026, 11, 11, 9, 54),
        ),
        # No zone change: tomorrow's slot, as always.
        (KATHMANDU, utc(2026, 11, 11, 9, 45), SENT_IN_KATHMANDU, utc(2026, 11, 12, 9, 39)),
    ],
)
def test_the_next_owed_slot_skips_a_period_already_delivered(
    zone: ZoneInfo, now: datetime, recorded: Recorded | None, expected: datetime
) -> None:
    since = utc(2026, 11, 1)
    assert next_owed_slot(DAILY_1524, zone, now, since=since, recorded=recorded) == expected


@pytest.mark.parametrize(
    ("text", "english", "russian"),
    [
        ("daily 09:00", "every day at 09:00", "ежедневно в 09:00"),
        (
            "weekly mon 09:00",
            "every Monday at 09:00",
            "еженедельно по понедельникам в 09:00",
        ),
        ("weekly ср 18:30", "every Wednesday at 18:30", "еженедельно по средам в 18:30"),
        ("weekly sun 07:05", "every Sunday at 07:05", "еженедельно по воскресеньям в 07:05"),
        ("monthly 1 09:00", "on day 1 of every month at 09:00", "ежемесячно 1-го числа в 09:00"),
        (
            'daily 09:00 channel=whatsapp app="Sales & Partners"',
            "every day at 09:00 (channel whatsapp, app “Sales & Partners”)",
            "ежедневно в 09:00 (канал whatsapp, приложение «Sales & Partners»)",
        ),
    ],
)
def test_a_rule_is_described_in_words_of_each_language(
    text: str, english: str, russian: str
) -> None:
    rule = parse_rule(text)
    assert rule.describe(translator("en")) == english
    assert rule.describe(translator("ru")) == russian


@pytest.mark.parametrize(
    ("text", "english", "russian"),
    [
        ("daily 09:00", "yesterday's report", "отчёт за вчера"),
        ("weekly mon 09:00", "last week's report", "отчёт за прошлую неделю"),
        (
            "monthly 1 09:00 channel=vk",
            "last month's report (channel vk)",
            "отчёт за прошлый месяц (канал vk)",
        ),
    ],
)
def test_a_rule_says_what_its_digest_covers(text: str, english: str, russian: str) -> None:
    rule = parse_rule(text)
    assert rule.coverage(translator("en")) == english
    assert rule.coverage(translator("ru")) == russian


def test_the_same_rule_is_the_same_schedule_and_filter_whatever_the_case() -> None:
    rule = parse_rule('daily 09:00 channel=WhatsApp app="Sales"')
    assert rule.same_as(parse_rule('ежедневно 09:00 channel=whatsapp app="sales"'))
    assert not rule.same_as(parse_rule('daily 09:01 channel=whatsapp app="Sales"'))
    assert not rule.same_as(parse_rule("daily 09:00 channel=whatsapp"))
    assert not parse_rule("weekly mon 09:00").same_as(parse_rule("weekly tue 09:00"))
    assert not parse_rule("monthly 1 09:00").same_as(parse_rule("monthly 2 09:00"))
