"""A report's charts as PNG bytes (channels, apps, trend, hours heatmap), drawn without pyplot."""

import colorsys
import hashlib
import io
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, TypeVar

import matplotlib
from babel.dates import format_date as babel_format_date
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, MaxNLocator

from reports.heatmap import Heatmap
from reports.i18n import (
    format_number,
    format_range,
    format_share,
    format_time,
    normalize_language,
    translator,
)
from reports.model import AppKey, Metrics, Period, Report, ReportFilter, TrendBucket
from reports.text import APP_SEPARATOR, ELLIPSIS

# 1200×900 px: sharp on a phone after Telegram's recompression, far inside its photo limits
# (width + height <= 10000, <= 10 MB).
WIDTH_PX = 1200
HEIGHT_PX = 900
DPI = 150
# The folding rule (README "Using the bot" states it in the same words): up to 8 parts, a
# donut with every part; more than 8, horizontal bars largest first, every part up to 25, the
# rest folded into "Other" only as long as "Other" is no larger than the smallest bar shown
# (else more bars are shown), and a single leftover part is shown rather than folded.
MAX_PIE_SLICES = 8
MAX_BARS = 25
LEGEND_NAME_LIMIT = 30
BAR_NAME_LIMIT = 34
BAR_HEIGHT_PX = 34
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
# Apps of one channel: the biggest keeps the channel colour, each further one takes the
# lightness (CIE L*, perceptually even) farthest from those already taken, on this ladder, so
# two or three apps of a channel read as different colours rather than one blue.
SHADE_LIGHTNESS = tuple(range(22, 95, 2))

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


def chart_slices(counts: Mapping[K, int], *, other_label: str) -> list[Slice]:
    """The parts to draw, biggest first (ties by name), by the folding rule above."""
    items = sorted(
        ((key, value) for key, value in counts.items() if value > 0),
        key=lambda item: (-item[1], _label(item[0])),
    )
    total = sum(value for _, value in items)
    if total == 0:
        return []
    kept: list[tuple[K, int]] = items if len(items) <= MAX_PIE_SLICES else items[:MAX_BARS]
    rest = items[len(kept) :]
    # "Other" must never outweigh a part shown by name: show more parts until it does not.
    while rest and sum(value for _, value in rest) > kept[-1][1]:
        kept, rest = kept + rest[:1], rest[1:]
    if len(rest) == 1:
        kept, rest = items, []
    slices = [
        Slice(label=_label(key), value=value, share=value / total, key=key) for key, value in kept
    ]
    if rest:
        other = sum(value for _, value in rest)
        slices.append(Slice(label=other_label, value=other, share=other / total, key=None))
    return slices


def shorten_middle(name: str, limit: int) -> str:
    """name on one line, cut to limit characters in the middle so both ends stay ("Sal…VIP>")."""
    flat = " ".join(name.split())
    if len(flat) <= limit:
        return flat
    head = limit // 2
    tail = limit - 1 - head
    return flat[:head].rstrip() + ELLIPSIS + (flat[-tail:].lstrip() if tail else "")


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


_WHITE = (0.95047, 1.0, 1.08883)  # D65


def _to_lab(color: str) -> tuple[float, float, float]:
    def linear(c: float) -> float:
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (linear(c) for c in _rgb(color))
    xyz = (
        0.4124 * r + 0.3576 * g + 0.1805 * b,
        0.2126 * r + 0.7152 * g + 0.0722 * b,
        0.0193 * r + 0.1192 * g + 0.9505 * b,
    )
    fx, fy, fz = (
        t ** (1 / 3) if t > 0.008856 else 7.787 * t + 16 / 116
        for t in (v / w for v, w in zip(xyz, _WHITE, strict=True))
    )
    return 116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)


def _from_lab(lightness: float, a: float, b: float) -> str:
    fy = (lightness + 16) / 116
    fx, fz = fy + a / 500, fy - b / 200
    x, y, z = (
        w * (f**3 if f**3 > 0.008856 else (f - 16 / 116) / 7.787)
        for f, w in zip((fx, fy, fz), _WHITE, strict=True)
    )
    rgb = (
        3.2406 * x - 1.5372 * y - 0.4986 * z,
        -0.9689 * x + 1.8758 * y + 0.0415 * z,
        0.0557 * x - 0.2040 * y + 1.0570 * z,
    )

    def gamma(c: float) -> float:
        c = min(max(c, 0.0), 1.0)
        return 12.92 * c if c <= 0.0031308 else 1.055 * c ** (1 / 2.4) - 0.055

    return _hex((gamma(rgb[0]), gamma(rgb[1]), gamma(rgb[2])))


def app_shades(color: str, count: int) -> list[str]:
    """count colours for the apps of a channel, the first being the channel colour itself."""
    lightness, a, b = _to_lab(color)
    taken = [lightness]
    for _ in range(count - 1):
        taken.append(max(SHADE_LIGHTNESS, key=lambda level: min(abs(level - t) for t in taken)))
    # Very light and very dark shades keep less colour, so they do not turn garish.
    return [color] + [
        _from_lab(
            level, a * (1 - abs(level - lightness) / 150), b * (1 - abs(level - lightness) / 150)
        )
        for level in taken[1:]
    ]


def slice_colors(slices: list[Slice]) -> list[str]:
    """A colour per slice: its channel's colour, a shade of it for each further app, grey rest."""
    apps_per_channel: dict[str, int] = {}
    for item in slices:
        if isinstance(item.key, AppKey):
            apps_per_channel[item.key.channel] = apps_per_channel.get(item.key.channel, 0) + 1
    shades = {
        channel: app_shades(channel_color(channel), count)
        for channel, count in apps_per_channel.items()
    }
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
            colors.append(shades[item.key.channel][index])
    return colors


def channel_slices(metrics: Metrics, *, lang: str) -> list[Slice]:
    return chart_slices(metrics.channel_clients, other_label=translator(lang).gettext("Other"))


def app_slices(metrics: Metrics, *, lang: str) -> list[Slice]:
    return chart_slices(metrics.app_clients, other_label=translator(lang).gettext("Other"))


def render_channels_png(report: Report, *, lang: str) -> bytes | None:
    """Clients by channel, or None when the period has no appeals or the report is filtered
    to one channel or app (a single 100% ring says nothing)."""
    if report.is_empty or not report.filter.is_empty:
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
    """Clients by app, each a shade of its channel's colour (with a channel filter: that
    channel's apps); None when empty or filtered to one app."""
    if report.is_empty or report.filter.app is not None:
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


def header_lines(period: Period, report_filter: ReportFilter, lang: str) -> list[str]:
    """The lines under a chart's title: the period, then the filter if there is one."""
    _ = translator(lang).gettext
    lines = [format_range(period.start, period.end, lang) + f" ({period.tz_name})"]
    channel, app = report_filter.channel, report_filter.app
    if channel is not None and app is not None:
        lines.append(
            _("Filter: channel {channel}, app {app}").format(
                channel=shorten_middle(channel, LEGEND_NAME_LIMIT),
                app=shorten_middle(app, LEGEND_NAME_LIMIT),
            )
        )
    elif channel is not None:
        lines.append(
            _("Filter: channel {channel}").format(
                channel=shorten_middle(channel, LEGEND_NAME_LIMIT)
            )
        )
    elif app is not None:
        lines.append(_("Filter: app {app}").format(app=shorten_middle(app, LEGEND_NAME_LIMIT)))
    return lines


def _figure(height_px: int = HEIGHT_PX) -> Figure:
    figure = Figure(figsize=(WIDTH_PX / DPI, height_px / DPI), dpi=DPI, facecolor="white")
    FigureCanvasAgg(figure)  # attaches the Agg canvas that savefig draws with
    return figure


def _draw_heading(
    figure: Figure, title: str, lines: list[str], *, note: str | None = None
) -> float:
    """Title, header lines and an optional grey note at the top; the figure y under them."""
    # Positions in pixels from the top, so a taller figure (many bars) keeps the same heading.
    height = figure.get_figheight() * DPI
    top = 1 - 40 / height
    figure.text(0.04, top, title, **_literal(fontsize=18, fontweight="bold", va="top"))
    y = 1 - 103 / height
    for line in lines:
        figure.text(0.04, y, line, **_literal(fontsize=11, va="top"))
        y -= 38 / height
    if note is not None:
        figure.text(0.04, y, note, **_literal(fontsize=9.5, va="top", color="#5f6368", wrap=True))
        y -= 30 / height
    return y


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    # No "Software" tag: the same report gives the same bytes on one matplotlib version.
    figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()


def _legend_name(item: Slice, limit: int = LEGEND_NAME_LIMIT + 6) -> str:
    """The slice's name in at most `limit` characters, cut in the middle: "Sales & Partners
    <VIP>" and "Sales & Partners <Retail>" differ at their ends, which an end cut would hide."""
    if isinstance(item.key, AppKey):
        # The app name is what tells two shades apart, so it gets most of the room.
        channel = shorten_middle(item.key.channel, 12)
        name_room = limit - len(channel) - len(APP_SEPARATOR)
        return channel + APP_SEPARATOR + shorten_middle(item.key.name, name_room)
    return shorten_middle(item.label, min(limit, LEGEND_NAME_LIMIT))


def _render(
    report: Report, slices: list[Slice], *, title: str, note: str | None, lang: str
) -> bytes | None:
    if not slices:
        return None
    if len(slices) > MAX_PIE_SLICES:
        return _render_bars(report, slices, title=title, note=note, lang=lang)
    t = translator(lang)
    total = sum(item.value for item in slices)
    figure = _figure()
    canvas = figure.canvas
    assert isinstance(canvas, FigureCanvasAgg)
    _draw_heading(figure, title, header_lines(report.period, report.filter, lang), note=note)

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
    return _png(figure)


def _render_bars(
    report: Report, slices: list[Slice], *, title: str, note: str | None, lang: str
) -> bytes:
    """Horizontal bars, largest on top: many parts stay readable where a donut would not."""
    total = sum(item.value for item in slices)
    lines = header_lines(report.period, report.filter, lang)
    heading_px = 150 + (30 if note else 0) + 38 * (len(lines) - 1)
    height_px = max(HEIGHT_PX, heading_px + 60 + BAR_HEIGHT_PX * len(slices))
    figure = _figure(height_px)
    y = _draw_heading(figure, title, lines, note=note)
    bottom = 40 / height_px
    axes = figure.add_axes((0.40, bottom, 0.45, y - bottom - 20 / height_px))
    positions = range(len(slices))
    colors = slice_colors(slices)
    axes.barh(
        positions,
        [item.value for item in slices],
        color=colors,
        height=0.72,
        # A darker rim keeps the palest shades visible on white.
        edgecolor=[shade(color, -0.25) for color in colors],
        linewidth=0.6,
    )
    axes.set_ylim(len(slices) - 0.5, -0.5)
    names = [_legend_name(item, BAR_NAME_LIMIT) for item in slices]
    axes.set_yticks(list(positions), names)
    widest = max(item.value for item in slices)
    for index, item in enumerate(slices):
        axes.text(
            item.value + widest * 0.015,
            index,
            f"{format_number(item.value, lang)} ({format_share(item.value, total, lang)})",
            **_literal(fontsize=10, va="center"),
        )
    axes.set_xlim(0, widest * 1.02)
    axes.set_xticks([])
    for side in ("top", "right", "bottom"):
        axes.spines[side].set_visible(False)
    axes.tick_params(axis="y", length=0, pad=6)
    labels = axes.get_yticklabels()
    for text in labels:
        text.set_fontfamily(FONT)
        text.set_parse_math(False)
        text.set_usetex(False)
    # Wide names (Cyrillic capitals) shrink until they fit inside the left edge.
    renderer = figure.canvas.get_renderer()  # type: ignore[attr-defined]
    size = LEGEND_FONT_SIZE - 1
    while True:
        for text in labels:
            text.set_fontsize(size)
        left = min(text.get_window_extent(renderer).x0 for text in labels)
        if left >= 8 or size <= MIN_LEGEND_FONT_SIZE:
            return _png(figure)
        size -= 0.5


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
    figure = _figure()
    y = _draw_heading(figure, titles[trend.unit], header_lines(report.period, report.filter, lang))

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
    return _png(figure)


# Sequential, light to dark, readable in greyscale; empty cells are pale grey so "nobody
# wrote" differs from "a few wrote".
HEATMAP_COLORS = "YlOrRd"
EMPTY_CELL = "#eceef1"
HOUR_TICKS = range(0, 24, 3)


def _row_label(day: date, lang: str, *, with_date: bool) -> str:
    pattern = "EEE d MMM" if with_date else "EEE"
    label = babel_format_date(day, pattern, locale=normalize_language(lang))
    return label[:1].upper() + label[1:]


def render_heatmap_png(heatmap: Heatmap, *, lang: str) -> bytes | None:
    """Appeals per local weekday (a row per date for periods under a week) and hour, a colour
    scale beneath; None when the period has no appeals."""
    if heatmap.total == 0:
        return None
    _ = translator(lang).gettext
    days = heatmap.days()
    by_date = len(days) < 7
    if by_date:
        rows = [(day.weekday(), _row_label(day, lang, with_date=True)) for day in days]
    else:
        # 2026-11-02 is a Monday: the seven days from it name the weekdays in order.
        week = [date(2026, 11, 2) + timedelta(days=n) for n in range(7)]
        rows = [(day.weekday(), _row_label(day, lang, with_date=False)) for day in week]
    values = [[heatmap.cells.get((weekday, hour), 0) for hour in range(24)] for weekday, _ in rows]
    height_px = HEIGHT_PX if len(rows) >= 4 else 620
    figure = _figure(height_px)
    lines = header_lines(heatmap.period, heatmap.filter, lang)
    note = None
    if len(days) > 7:
        note = _("Each cell adds up that hour of every such weekday in the period.")
    y = _draw_heading(figure, _("Conversations by weekday and hour"), lines, note=note)
    bottom = 190 / height_px
    axes = figure.add_axes((0.13, bottom, 0.76, y - bottom - 25 / height_px))
    peak = max(max(row) for row in values)
    colormap = matplotlib.colormaps[HEATMAP_COLORS].with_extremes(under=EMPTY_CELL)
    image = axes.imshow(
        values,
        aspect="auto",
        cmap=colormap,
        norm=Normalize(vmin=0.5, vmax=max(peak, 1)),
        interpolation="nearest",
    )
    axes.set_xticks(list(HOUR_TICKS), [f"{hour:02}:00" for hour in HOUR_TICKS])
    axes.set_xticks([h - 0.5 for h in range(25)], minor=True)
    axes.set_yticks(range(len(rows)), [label for _, label in rows])
    axes.set_yticks([r - 0.5 for r in range(len(rows) + 1)], minor=True)
    axes.grid(which="minor", color="white", linewidth=1.2)
    axes.tick_params(which="minor", length=0)
    axes.tick_params(which="major", length=0, pad=5)
    for side in axes.spines.values():
        side.set_visible(False)
    axes.set_xlabel(_("Hour") + f" ({heatmap.period.tz_name})", **_literal(fontsize=10))
    for text in (*axes.get_xticklabels(), *axes.get_yticklabels()):
        text.set_fontfamily(FONT)
        text.set_fontsize(10)
    # The day's total at the end of each row: what the colours add up to.
    for index, row in enumerate(values):
        axes.text(
            24.0,
            index,
            format_number(sum(row), lang),
            **_literal(fontsize=10, va="center", ha="left", color="#3c4043"),
        )
    legend_axes = figure.add_axes((0.13, 55 / height_px, 0.6, 18 / height_px))
    colorbar = figure.colorbar(image, cax=legend_axes, orientation="horizontal")
    colorbar.outline.set_visible(False)
    colorbar.locator = MaxNLocator(nbins=5, integer=True)
    colorbar.formatter = FuncFormatter(lambda v, _pos: format_number(int(v), lang))
    colorbar.update_ticks()
    for text in legend_axes.get_xticklabels():
        text.set_fontfamily(FONT)
        text.set_fontsize(9.5)
    # Above the scale, where a long translation has the whole width.
    figure.text(
        0.13,
        80 / height_px,
        _("Conversations per hour; grey: none"),
        **_literal(fontsize=10, va="bottom", color="#3c4043"),
    )
    return _png(figure)
