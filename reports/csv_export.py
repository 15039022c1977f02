"""The report as CSV bytes for spreadsheets (DESIGN.md §6): UTF-8 with BOM, formula-safe cells."""

import csv
import io
from collections.abc import Iterator

from reports.model import AppKey, Report

HEADER = (
    "period_start",
    "period_end",
    "timezone",
    "metric",
    "channel",
    "app",
    "value",
    "previous_value",
)
# A spreadsheet runs a cell starting with one of these as a formula (OWASP CSV injection).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")

Cell = str | int


def neutralize(cell: str) -> str:
    """cell with a leading ' when a spreadsheet would otherwise evaluate it."""
    return "'" + cell if cell.startswith(FORMULA_PREFIXES) else cell


def csv_rows(report: Report) -> Iterator[tuple[Cell, ...]]:
    """The data rows, header excluded, in the order of DESIGN.md §4 (values unneutralized)."""
    tz = report.period.tz
    start = report.period.start.astimezone(tz).isoformat(timespec="seconds")
    end = report.period.end.astimezone(tz).isoformat(timespec="seconds")
    bounds = (start, end, report.period.tz_name)
    now, before = report.current, report.previous

    # all_clients is all-time: the previous period has no value of its own for it.
    yield (*bounds, "all_clients", "", "", report.all_clients, "")
    for metric, value, previous in (
        ("contacted_clients", now.contacted_clients, before.contacted_clients),
        ("new_clients", now.new_clients, before.new_clients),
        ("returning_clients", now.returning_clients, before.returning_clients),
        ("appeals", now.appeals, before.appeals),
        ("repeat_appeals", now.repeat_appeals, before.repeat_appeals),
    ):
        yield (*bounds, metric, "", "", value, previous)
    # A channel or app seen in only one of the periods still gets a row, with 0 for the other.
    for channel in sorted(now.channel_clients.keys() | before.channel_clients.keys()):
        yield (
            *bounds,
            "channel_clients",
            channel,
            "",
            now.channel_clients.get(channel, 0),
            before.channel_clients.get(channel, 0),
        )
    apps: set[AppKey] = now.app_clients.keys() | before.app_clients.keys()
    for app in sorted(apps, key=lambda key: (key.channel, key.name)):
        yield (
            *bounds,
            "app_clients",
            app.channel,
            app.name,
            now.app_clients.get(app, 0),
            before.app_clients.get(app, 0),
        )
    yield from trend_rows(report)


# The series behind the trend chart; named "daily" by DESIGN.md §6 whatever the bucket size
# (hours of a single day, ISO weeks beyond 92 days): each row's bounds say which it is.
TREND_METRICS = (
    ("daily_appeals", "appeals"),
    ("daily_contacted_clients", "contacted_clients"),
    ("daily_new_clients", "new_clients"),
)


def trend_rows(report: Report) -> Iterator[tuple[Cell, ...]]:
    """One row per metric and bucket; previous_value is the same-index bucket of the prior,
    empty where the prior has no such bucket."""
    tz = report.period.tz
    trend = report.trend
    for metric, attribute in TREND_METRICS:
        for index, bucket in enumerate(trend.current):
            previous: Cell = ""
            if index < len(trend.previous):
                previous = getattr(trend.previous[index], attribute)
            yield (
                bucket.start.astimezone(tz).isoformat(timespec="seconds"),
                bucket.end.astimezone(tz).isoformat(timespec="seconds"),
                report.period.tz_name,
                metric,
                "",
                "",
                getattr(bucket, attribute),
                previous,
            )


def render_csv(report: Report, *, delimiter: str) -> bytes:
    """clients.csv for report: header, one row per metric, channel and app, then the trend.

    Text cells are neutralized against formula injection; counts stay plain integers so a
    spreadsheet sums them. Raises ValueError for a delimiter that is not one safe character.
    """
    if len(delimiter) != 1 or delimiter in "\"'\r\n" or delimiter.isalnum():
        raise ValueError(
            f"CSV delimiter must be one punctuation or space character: {delimiter!r}"
        )
    buffer = io.StringIO()
    writer = csv.writer(
        buffer, delimiter=delimiter, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n"
    )
    writer.writerow(HEADER)
    for row in csv_rows(report):
        writer.writerow([neutralize(cell) if isinstance(cell, str) else cell for cell in row])
    # utf-8-sig writes the BOM that Excel needs to read Cyrillic as UTF-8 (reliability §5.4).
    return buffer.getvalue().encode("utf-8-sig")
