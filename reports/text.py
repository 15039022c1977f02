"""The text summary of a report: Telegram HTML or plain terminal text, in Russian or English."""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html import escape
from typing import TypeVar

from reports.i18n import (
    format_date,
    format_number,
    format_percent_change,
    format_range,
    format_signed,
    format_time,
    translator,
)
from reports.model import AppKey, Metrics, Report

# Telegram refuses longer messages; data strings are cut so the summary stays far below it.
TEXT_LIMIT = 4096
NAME_LIMIT = 64
ELLIPSIS = "…"
# What joins a channel and an app name wherever both are shown (text, legends).
APP_SEPARATOR = " · "
# Channels listed with their change; more are summed up in one line so the text stays short.
CHANNEL_LINES = 8
TOP_APPS = 3
# A to-date period younger than this says it has just begun: a few hours say little.
JUST_BEGUN = timedelta(hours=12)


def shorten(name: str, limit: int = NAME_LIMIT) -> str:
    """name on one line (whitespace runs collapsed), cut to limit characters ending in "…"."""
    flat = " ".join(name.split())
    if len(flat) <= limit:
        return flat
    return flat[: limit - 1].rstrip() + ELLIPSIS


def app_label(app: AppKey, limit: int = NAME_LIMIT) -> str:
    """The "channel · app" label, each name shortened on its own so neither hides the other."""
    return shorten(app.channel, limit) + APP_SEPARATOR + shorten(app.name, limit)


K = TypeVar("K", str, AppKey)


def _name_key(key: str | AppKey) -> tuple[str, ...]:
    return (key,) if isinstance(key, str) else (key.channel, key.name)


def ranked_entries(counts: Mapping[K, int], previous: Mapping[K, int] | None = None) -> list[K]:
    """Keys with clients now (or, given previous, then), most clients now first, then most
    clients before, then by name."""
    before = previous or {}
    keys = {key for key, value in counts.items() if value > 0}
    keys |= {key for key, value in before.items() if value > 0}
    return sorted(keys, key=lambda key: (-counts.get(key, 0), -before.get(key, 0), _name_key(key)))


def has_earlier_data(report: Report) -> bool:
    """False when the previous period starts before the first appeal the database holds: its
    numbers are (partly) missing data, not a quieter time, so no percentage is shown."""
    return report.data_since is None or report.previous_period.start >= report.data_since


def has_just_begun(report: Report) -> bool:
    """A to-date preset in its first hours (month on the 1st at 09:00)."""
    period = report.period
    return (
        period.to_date and period.end.astimezone(UTC) - period.start.astimezone(UTC) < JUST_BEGUN
    )


@dataclass(frozen=True, slots=True)
class _Markup:
    """Escapes data and adds tags in HTML mode; passes text through untouched in plain mode."""

    html: bool

    def text(self, value: str) -> str:
        return escape(value, quote=False) if self.html else value

    def bold(self, value: str) -> str:
        return f"<b>{self.text(value)}</b>" if self.html else value

    def italic(self, value: str) -> str:
        return f"<i>{self.text(value)}</i>" if self.html else value

    def line(self, template: str, **parts: str) -> str:
        # The template (a translation) is escaped too: a translator's "&" must not break HTML.
        # parts arrive already marked up, so they are substituted after escaping.
        return self.text(template).format(**parts)


def render_text(report: Report, *, lang: str, html: bool = True, title: str | None = None) -> str:
    """The summary of report for a Telegram message (html=True) or a terminal (html=False).

    Every data string (title, filter values, channel and app names) is shortened and, in HTML
    mode, escaped; the only tags used are <b> and <i>.
    """
    t = translator(lang)
    _ = t.gettext
    m = _Markup(html)
    now, before = report.current, report.previous

    lines: list[str] = []
    lines.append(m.bold(shorten(title, NAME_LIMIT * 2) if title else _("Clients report")))
    period_range = format_range(report.period.start, report.period.end, lang)
    lines.append(
        m.line(
            _("Period: {range} ({timezone})"),
            range=m.text(period_range),
            timezone=m.text(report.period.tz_name),
        )
    )
    lines.extend(_freshness(report, lang, m))
    if report.filter.channel is not None and report.filter.app is not None:
        lines.append(
            m.line(
                _("Filter: channel {channel}, app {app}"),
                channel=m.italic(shorten(report.filter.channel)),
                app=m.italic(shorten(report.filter.app)),
            )
        )
    elif report.filter.channel is not None:
        channel = m.italic(shorten(report.filter.channel))
        lines.append(m.line(_("Filter: channel {channel}"), channel=channel))
    elif report.filter.app is not None:
        lines.append(m.line(_("Filter: app {app}"), app=m.italic(shorten(report.filter.app))))

    # The previous period gets a year only when it is not the current one's, as people write it.
    previous_range = format_range(
        report.previous_period.start,
        report.previous_period.end,
        lang,
        year=report.previous_period.start.year != report.period.start.year
        or report.previous_period.end.year != report.period.end.year,
    )
    earlier = has_earlier_data(report)
    if not report.is_empty:
        if has_just_begun(report):
            template = _("Compared with {range} (the period has just begun)")
        else:
            template = _("Compared with {range}")
        lines.append(m.line(template, range=m.italic(previous_range)))
        if not earlier and report.data_since is not None:
            first = report.data_since.astimezone(report.period.tz).date()
            lines.append(
                m.italic(
                    _("No earlier data: the first conversation is from {date}.").format(
                        date=format_date(first, lang, year=True)
                    )
                )
            )

    lines.append("")
    # all_clients is all-time, so it has no previous value to compare with.
    lines.append(
        m.line(
            _("{label}: {value}"),
            label=m.text(_("All clients")),
            value=m.bold(format_number(report.all_clients, lang)),
        )
    )
    if report.is_empty:
        lines.append(m.text(_("No conversations in this period.")))
        if before.appeals:
            lines.append(
                m.line(
                    _("Conversations in {range}: {value}"),
                    range=m.text(previous_range),
                    value=m.text(format_number(before.appeals, lang)),
                )
            )
        return "\n".join(lines)

    rows: list[tuple[str, int, int]] = [
        (_("Clients who wrote"), now.contacted_clients, before.contacted_clients),
        (_("New"), now.new_clients, before.new_clients),
        (_("Returning"), now.returning_clients, before.returning_clients),
        (_("Conversations"), now.appeals, before.appeals),
        (_("Repeat conversations"), now.repeat_appeals, before.repeat_appeals),
    ]
    for label, value, previous in rows:
        lines.append(
            m.line(
                _("{label}: {value} · {delta} ({percent})"),
                label=m.text(label),
                value=m.bold(format_number(value, lang)),
                delta=m.text(format_signed(value - previous, lang)),
                percent=m.text(_change(value, previous, earlier, lang)),
            )
        )

    lines.extend(_slices(now, before, earlier, lang, m))
    return "\n".join(lines)


def _change(value: int, previous: int, earlier: bool, lang: str) -> str:
    """The percentage change, or why there is none to show."""
    if not earlier:
        return translator(lang).gettext("no earlier data")
    return format_percent_change(value, previous, lang)


def _slices(now: Metrics, before: Metrics, earlier: bool, lang: str, m: _Markup) -> list[str]:
    """Each channel's clients and the top apps', each with its change (whatsapp: 103 · +12%)."""
    t = translator(lang)
    _ = t.gettext
    lines: list[str] = []

    def entry(name: str, value: int, previous: int) -> str:
        return m.line(
            _("{name}: {value} · {change}"),
            name=m.text(name),
            value=m.bold(format_number(value, lang)),
            change=m.text(_change(value, previous, earlier, lang)),
        )

    channels = ranked_entries(now.channel_clients, before.channel_clients)
    if channels:
        lines.append("")
        lines.append(m.text(_("Clients by channel:")))
        for channel in channels[:CHANNEL_LINES]:
            lines.append(
                entry(
                    shorten(channel),
                    now.channel_clients.get(channel, 0),
                    before.channel_clients.get(channel, 0),
                )
            )
        hidden = len(channels) - CHANNEL_LINES
        if hidden > 0:
            lines.append(
                m.text(
                    t.ngettext(
                        "… and {count} more channel", "… and {count} more channels", hidden
                    ).format(count=format_number(hidden, lang))
                )
            )
    apps = ranked_entries(now.app_clients)
    if apps:
        lines.append(m.text(_("Top apps by clients:")))
        for app in apps[:TOP_APPS]:
            lines.append(
                entry(app_label(app), now.app_clients[app], before.app_clients.get(app, 0))
            )
    if now.channels_overlap:
        lines.append(
            m.italic(
                _(
                    "A client who wrote through several channels is counted in each of them, "
                    "so channel figures add up to more than the clients who wrote."
                )
            )
        )
    return lines


def _freshness(report: Report, lang: str, m: "_Markup") -> list[str]:
    """ "Data up to 14:32, 2 minutes ago", and a warning per desk source that went silent."""
    t = translator(lang)
    _ = t.gettext
    lines: list[str] = []
    if report.as_of is not None:
        if report.data_until is None:
            lines.append(m.italic(_("No data has been received yet.")))
        else:
            lines.append(
                m.line(
                    _("Data up to {moment} ({ago})"),
                    moment=m.text(_local_moment(report.data_until, report, lang)),
                    ago=m.text(_ago(report.as_of - report.data_until, lang)),
                )
            )
    for source, since in report.silent_sources:
        lines.append(
            m.line(
                _("⚠ No data from {source} since {moment}: check its webhook."),
                source=m.bold(shorten(source)),
                moment=m.text(_local_moment(since, report, lang)),
            )
        )
    return lines


def _local_moment(moment: datetime, report: Report, lang: str) -> str:
    local = moment.astimezone(report.period.tz)
    today = (report.as_of or moment).astimezone(report.period.tz).date()
    if local.date() == today:
        return format_time(local)
    return f"{format_date(local.date(), lang)}, {format_time(local)}"


def _ago(elapsed: timedelta, lang: str) -> str:
    t = translator(lang)
    minutes = max(0, int(elapsed.total_seconds() // 60))
    if minutes < 1:
        return t.gettext("just now")
    if minutes < 60:
        return t.ngettext("{count} minute ago", "{count} minutes ago", minutes).format(
            count=format_number(minutes, lang)
        )
    hours = minutes // 60
    if hours < 48:
        return t.ngettext("{count} hour ago", "{count} hours ago", hours).format(
            count=format_number(hours, lang)
        )
    days = hours // 24
    return t.ngettext("{count} day ago", "{count} days ago", days).format(
        count=format_number(days, lang)
    )
