"""Charts of a report as PNG bytes (donuts by channel and app, the trend), drawn without pyplot."""

import colorsys
import hashlib
import io
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from babel.dates import format_date as babel_format_date
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, MaxNLocator

from reports.i18n import (
    format_number,
    format_range,
    format_share,
    format_time,
    normalize_language,
    translator,
)
from reports.model import AppKey, Metrics, Report, TrendBucket
from reports.text import APP_SEPARATOR, shorten

# 1200×900 px: sharp on a phone after Telegram's recompression, far inside its photo limits
# (width + height <= 10000, <= 10 MB).
WIDTH_PX = 1200
HEIGHT_PX = 900
DPI = 150
# Slices under 3% are unreadable as wedges; more than ten make the legend a list nobody reads.
MIN_SHARE = 0.03
MAX_SLICES = 10
LEGEND_NAME_LIMIT = 30
LEGEND_LEFT = 0.48
LEGEND_FONT_SIZE = 11.5
MIN_LEGEND_FONT_SIZE = 8.0
# Shipped with matplotlib and covers Cyrillic, so a local matplotlibrc cannot break the labels.
FONT = "DejaVu Sans"

OTHER_COLOR = "#9aa0a6"
# One colour per channel in every chart, close to each brand where brands don't collide.
CHANNEL_COLORS: Mapping[str, str] = {
    "whatsapp": "#25d366",
    "telegram": "#29a9eb",
    "vk": "#0052cc",
    "viber": "#7360f2",
    "email": "#f4b400",
    "webchat": "#ff7043",
    "instagram": "#e1306c",
    "avito": "#00b8a9",
    "ok": "#a0522d",
    "facebook": "#3b5998",
}
# How far each further app of a channel moves from the channel colour: + towards white,
# - towards black; the biggest app keeps the channel colour itself.
_SHADES = (0.0, 0.4, -0.3, 0.65, -0.5, 0.2, -0.15, 0.52, -0.4, 0.78, -0.6)

K = TypeVar("K", str, AppKey)


@dataclass(frozen=True, slots=True, kw_only=True)
class Slice:
    """One wedge: a channel, an app, or the folded rest (key None)."""

    label: str
    value: int
    share: float  # of the sum of all slices, which may exceed the clients who wrote
    key: str | AppKey | None


def _label(key: str | AppKey) -> str:
    return key if isinstance(key, str) else key.channel + APP_SEPARATOR + key.name


def pie_slices(
    counts: Mapping[K, int],
    *,
    other_label: str,
    min_share: float = MIN_SHARE,
    max_slices: int = MAX_SLICES,
) -> list[Slice]:
    """The wedges to draw, biggest first (ties by name), small ones folded into other_label.

    A slice is folded when under min_share of the total or beyond the max_slices biggest;
    a single such slice is kept, since an "Other" of one only hides its name.
    """
    items = sorted(
        ((key, value) for key, value in counts.items() if value > 0),
        key=lambda item: (-item[1], _label(item[0])),
    )
    total = sum(value for _, value in items)
    if total == 0:
        return []
    kept = [item for item in items[:max_slices] if item[1] / total >= min_share]
    rest = items[len(kept) :]
    if len(rest) == 1:
        kept, rest = items, []
    slices = [
        Slice(label=_label(key), value=value, share=value / total, key=key) for key, value in kept
    ]
    if rest:
        other = sum(value for _, value in rest)
        slices.append(Slice(label=other_label, value=other, share=other / total, key=None))
    return slices


def _hex(rgb: tuple[float, float, float]) -> str:
    return "#" + "".join(f"{round(part * 255):02x}" for part in rgb)


def _rgb(color: str) -> tuple[float, float, float]:
    return (int(color[1:3], 16) / 255, int(color[3:5], 16) / 255, int(color[5:7], 16) / 255)


def _hue(color: str) -> float:
    return colorsys.rgb_to_hsv(*_rgb(color))[0]


_KNOWN_HUES = tuple(_hue(color) for color in CHANNEL_COLORS.values())
_MIN_HUE_GAP = 0.06
_GOLDEN = 0.618033988749895


def channel_color(channel: str) -> str:
    """The channel's fixed colour, or one derived from its name (stable across runs)."""
    key = channel.strip().lower()
    known = CHANNEL_COLORS.get(key)
    if known is not None:
        return known
    # sha256, not hash(): Python salts str hashes per process, and colours must not change.
    digest = hashlib.sha256(key.encode()).digest()
    hue = int.from_bytes(digest[:2], "big") / 65536
    # Step away from the known channels' hues so an unknown one is not mistaken for them.
    for _ in range(12):
        gap = min(min(abs(hue - known), 1 - abs(hue - known)) for known in _KNOWN_HUES)
        if gap >= _MIN_HUE_GAP:
            break
        hue = (hue + _GOLDEN) % 1
    saturation = 0.5 + digest[2] / 255 * 0.25
    value = 0.5 + digest[3] / 255 * 0.35
    return _hex(colorsys.hsv_to_rgb(hue, saturation, value))


def shade(color: str, amount: float) -> str:
    """color moved towards white (amount > 0) or black (amount < 0) by |amount| in [0, 1]."""
    r, g, b = _rgb(color)
    if amount >= 0:
        return _hex((r + (1 - r) * amount, g + (1 - g) * amount, b + (1 - b) * amount))
    return _hex((r * (1 + amount), g * (1 + amount), b * (1 + amount)))


def slice_colors(slices: list[Slice]) -> list[str]:
    """A colour per slice: its channel's colour, a shade of it for each further app, grey rest."""
    colors: list[str] = []
    apps_seen: dict[str, int] = {}
    for item in slices:
        if item.key is None:
            colors.append(OTHER_COLOR)
        elif isinstance(item.key, str):
            colors.append(channel_color(item.key))
        else:
            index = apps_seen.get(item.key.channel, 0)
            apps_seen[item.key.channel] = index + 1
            amount = _SHADES[index % len(_SHADES)]
            colors.append(shade(channel_color(item.key.channel), amount))
    return colors


def channel_slices(metrics: Metrics, *, lang: str) -> list[Slice]:
    return pie_slices(metrics.channel_clients, other_label=translator(lang).gettext("Other"))


def app_slices(metrics: Metrics, *, lang: str) -> list[Slice]:
    return pie_slices(metrics.app_clients, other_label=translator(lang).gettext("Other"))


def render_channels_png(report: Report, *, lang: str) -> bytes | None:
    """Donut of clients by channel, or None when the period has no appeals."""
    if report.is_empty:
        return None
    _ = translator(lang).gettext
    slices = channel_slices(report.current, lang=lang)
    note = None
    if report.current.channels_overlap:
        note = _(
            "Shares are of the channel figures: a client who wrote through several channels "
            "is counted in each."
        )
    return _render(report, slices, title=_("Clients by channel"), note=note, lang=lang)


def render_apps_png(report: Report, *, lang: str) -> bytes | None:
    """Donut of clients by app, each a shade of its channel's colour, or None when empty."""
    if report.is_empty:
        return None
    _ = translator(lang).gettext
    slices = app_slices(report.current, lang=lang)
    note = None
    if sum(report.current.app_clients.values()) > report.current.contacted_clients:
        note = _(
            "Shares are of the app figures: a client who wrote through several apps "
            "is counted in each."
        )
    return _render(report, slices, title=_("Clients by app"), note=note, lang=lang)


def _literal(**kwargs: Any) -> dict[str, Any]:
    # Names are data: "$VIP$" must not become mathtext, nor a LaTeX run if usetex is set.
    return {"parse_math": False, "usetex": False, "fontfamily": FONT, **kwargs}


def _header(report: Report, lang: str) -> list[str]:
    """The lines under the title: the period, then the filter if there is one."""
    _ = translator(lang).gettext
    period = report.period
    lines = [format_range(period.start, period.end, lang) + f" ({period.tz_name})"]
    channel, app = report.filter.channel, report.filter.app
    if channel is not None and app is not None:
        lines.append(
            _("Filter: channel {channel}, app {app}").format(
                channel=shorten(channel, LEGEND_NAME_LIMIT), app=shorten(app, LEGEND_NAME_LIMIT)
            )
        )
    elif channel is not None:
        lines.append(
            _("Filter: channel {channel}").format(channel=shorten(channel, LEGEND_NAME_LIMIT))
        )
    elif app is not None:
        lines.append(_("Filter: app {app}").format(app=shorten(app, LEGEND_NAME_LIMIT)))
    return lines


def _legend_name(item: Slice) -> str:
    if isinstance(item.key, AppKey):
        # The app name is what tells two shades apart, so it gets most of the room.
        return shorten(item.key.channel, 12) + APP_SEPARATOR + shorten(item.key.name, 24)
    return shorten(item.label, LEGEND_NAME_LIMIT)


def _render(
    report: Report, slices: list[Slice], *, title: str, note: str | None, lang: str
) -> bytes | None:
    if not slices:
        return None
    t = translator(lang)
    total = sum(item.value for item in slices)
    figure = Figure(figsize=(WIDTH_PX / DPI, HEIGHT_PX / DPI), dpi=DPI, facecolor="white")
    canvas = FigureCanvasAgg(figure)

    figure.text(0.04, 0.955, title, **_literal(fontsize=18, fontweight="bold", va="top"))
    y = 0.885
    for line in _header(report, lang):
        figure.text(0.04, y, line, **_literal(fontsize=11, va="top"))
        y -= 0.042
    if note is not None:
        figure.text(0.04, y, note, **_literal(fontsize=9.5, va="top", color="#5f6368", wrap=True))

    axes = figure.add_axes((0.0, 0.02, 0.48, 0.78))
    wedges, _texts = axes.pie(
        [item.value for item in slices],
        colors=slice_colors(slices),
        startangle=90,
        counterclock=False,
        wedgeprops={"width": 0.4, "edgecolor": "white", "linewidth": 1.5},
    )
    axes.set_aspect("equal")
    contacted = report.current.contacted_clients
    axes.text(
        0,
        0.08,
        format_number(contacted, lang),
        **_literal(fontsize=20, fontweight="bold", ha="center", va="center"),
    )
    axes.text(
        0,
        -0.14,
        t.ngettext("client", "clients", contacted),
        **_literal(fontsize=11, ha="center", va="center", color="#5f6368"),
    )

    labels = [
        f"{_legend_name(item)} — {format_number(item.value, lang)}"
        f" ({format_share(item.value, total, lang)})"
        for item in slices
    ]
    _add_legend(figure, canvas, wedges, labels)

    buffer = io.BytesIO()
    # No "Software" tag: the same report gives the same bytes on one matplotlib version.
    figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()


def _add_legend(
    figure: Figure, canvas: FigureCanvasAgg, wedges: list[Any], labels: list[str]
) -> None:
    # Wide names (Cyrillic capitals, big counts) can overflow the right edge at the preferred
    # size, so the legend shrinks until it fits rather than being cut off.
    renderer = canvas.get_renderer()
    size = LEGEND_FONT_SIZE
    while True:
        legend = figure.legend(
            wedges,
            labels,
            loc="center left",
            bbox_to_anchor=(LEGEND_LEFT, 0.4),
            frameon=False,
            prop={"family": FONT, "size": size},
            handlelength=1.1,
            handleheight=1.1,
            labelspacing=0.7,
        )
        for text in legend.get_texts():
            text.set_parse_math(False)
            text.set_usetex(False)
        if size <= MIN_LEGEND_FONT_SIZE or legend.get_window_extent(renderer).x1 <= WIDTH_PX - 12:
            return
        legend.remove()
        size -= 0.5


# Lines of the trend chart: one fixed colour per metric, distinct from each other in greyscale.
TREND_COLORS = {"contacted": "#1a73e8", "new": "#188038", "appeals": "#e37400"}
WEEKEND_COLOR = "#eef0f2"
# Ten tick labels stay apart at phone width even as "15 нояб.", whatever the number of buckets.
MAX_TICKS = 10


def _tick_label(bucket: TrendBucket, unit: str, lang: str) -> str:
    if unit == "hour":
        return format_time(bucket.start)
    return babel_format_date(bucket.start.date(), "d MMM", locale=normalize_language(lang))


def render_trend_png(report: Report, *, lang: str) -> bytes | None:
    """Lines of clients who wrote, new clients and appeals per bucket, the previous period
    dashed behind; None when the period has no appeals."""
    trend = report.trend
    if report.is_empty or not trend.current:
        return None
    t = translator(lang)
    _ = t.gettext
    titles = {
        "hour": _("Clients and conversations by hour"),
        "day": _("Clients and conversations by day"),
        "week": _("Clients and conversations by week"),
    }
    x_labels = {"hour": _("Hour"), "day": _("Day"), "week": _("Week, from Monday")}
    figure = Figure(figsize=(WIDTH_PX / DPI, HEIGHT_PX / DPI), dpi=DPI, facecolor="white")
    FigureCanvasAgg(figure)  # attaches the Agg canvas that savefig draws with
    figure.text(
        0.04, 0.955, titles[trend.unit], **_literal(fontsize=18, fontweight="bold", va="top")
    )
    y = 0.885
    for line in _header(report, lang):
        figure.text(0.04, y, line, **_literal(fontsize=11, va="top"))
        y -= 0.042

    current = trend.current
    # Only buckets with a same-index partner are compared; a longer prior (a 25-hour day)
    # has nothing to line up with.
    previous = trend.previous[: len(current)]
    axes = figure.add_axes((0.08, 0.22, 0.89, y - 0.25))
    positions = range(len(current))
    if trend.unit == "day":
        for index, bucket in enumerate(current):
            if bucket.start.weekday() >= 5:
                axes.axvspan(index - 0.5, index + 0.5, color=WEEKEND_COLOR, lw=0, zorder=0)
    series = (
        ("contacted", _("Clients who wrote"), lambda b: b.contacted_clients),
        ("new", _("New clients"), lambda b: b.new_clients),
        ("appeals", _("Conversations"), lambda b: b.appeals),
    )
    handles: list[Any] = []
    labels: list[str] = []
    # Clients who wrote, the headline figure, is drawn last so no line hides it.
    for depth, (key, label, value) in zip((5, 3, 4), series, strict=True):
        color = TREND_COLORS[key]
        if previous:
            axes.plot(
                range(len(previous)),
                [value(b) for b in previous],
                color=shade(color, 0.55),
                linestyle=(0, (4, 3)),
                linewidth=1.6,
                zorder=2,
            )
        (plotted,) = axes.plot(
            positions,
            [value(b) for b in current],
            color=color,
            linewidth=2.4,
            marker="o" if len(current) <= 40 else None,
            markersize=3.5,
            zorder=depth,
        )
        handles.append(plotted)
        labels.append(label)
    # The three metrics on one row, what is only a reading aid (the prior, weekends) below it.
    extra_handles: list[Any] = []
    extra_labels: list[str] = []
    if previous:
        (prior,) = axes.plot([], [], color="#9aa0a6", linestyle=(0, (4, 3)), linewidth=1.6)
        prior_range = format_range(report.previous_period.start, report.previous_period.end, lang)
        extra_handles.append(prior)
        extra_labels.append(_("Previous period: {range}").format(range=prior_range))
    if trend.unit == "day" and any(b.start.weekday() >= 5 for b in current):
        extra_handles.append(Patch(facecolor=WEEKEND_COLOR, edgecolor="#c8ccd0", linewidth=0.6))
        extra_labels.append(_("Weekend"))

    step = max(1, -(-len(current) // MAX_TICKS))
    ticks = list(positions)[::step]
    axes.set_xticks(ticks, [_tick_label(current[i], trend.unit, lang) for i in ticks])
    axes.set_xlim(-0.5, len(current) - 0.5)
    axes.set_ylim(bottom=0)
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    axes.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: format_number(int(v), lang)))
    axes.grid(axis="y", color="#e0e3e7", linewidth=0.8, zorder=1)
    axes.set_axisbelow(True)
    for side in ("top", "right"):
        axes.spines[side].set_visible(False)
    axes.set_xlabel(x_labels[trend.unit] + f" ({report.period.tz_name})", **_literal(fontsize=10))
    for text in (*axes.get_xticklabels(), *axes.get_yticklabels()):
        text.set_fontfamily(FONT)
        text.set_fontsize(9.5)
    for row_handles, row_labels, bottom in (
        (handles, labels, 0.075),
        (extra_handles, extra_labels, 0.015),
    ):
        if not row_handles:
            continue
        legend = figure.legend(
            row_handles,
            row_labels,
            loc="lower left",
            bbox_to_anchor=(0.04, bottom),
            ncol=len(row_handles),
            frameon=False,
            prop={"family": FONT, "size": 10.5},
            handlelength=2.2,
            columnspacing=1.6,
        )
        for text in legend.get_texts():
            text.set_parse_math(False)
            text.set_usetex(False)

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()
