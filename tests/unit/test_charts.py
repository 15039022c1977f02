"""Charts that stay useful: filtered reports, bars past 8 parts, app shades, the heatmap, captions.

The number of bars, wedges and heatmap rows is read from the figure just before it is saved.
"""

import struct
from collections.abc import Iterator
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from matplotlib.figure import Figure

import reports.charts
from reports.bundle import render_bundle, render_charts
from reports.charts import (
    CHANNEL_COLORS,
    HEIGHT_PX,
    MAX_PIE_SLICES,
    WIDTH_PX,
    Slice,
    render_apps_png,
    render_heatmap_png,
    shorten_middle,
    slice_colors,
)
from reports.heatmap import Heatmap
from reports.model import AppKey, Metrics, Period, Report, ReportFilter, Trend, TrendBucket

MSK = ZoneInfo("Europe/Moscow")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
VIP = "Sales & Partners <VIP>"


def png_size(data: bytes | None) -> tuple[int, int]:
    assert data is not None and data[:8] == PNG_SIGNATURE
    return struct.unpack(">II", data[16:24])


@pytest.fixture
def figures(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Figure]]:
    """Every figure the charts save, in order."""
    saved: list[Figure] = []
    original = reports.charts._png

    def capture(figure: Figure) -> bytes:
        saved.append(figure)
        return original(figure)

    monkeypatch.setattr(reports.charts, "_png", capture)
    yield saved


def day(d: int) -> datetime:
    return datetime(2026, 11, d, tzinfo=MSK)


def report(apps: dict[AppKey, int], flt: ReportFilter | None = None) -> Report:
    channels: dict[str, int] = {}
    for key, value in apps.items():
        channels[key.channel] = channels.get(key.channel, 0) + value
    metrics = Metrics(
        contacted_clients=sum(apps.values()),
        appeals=sum(apps.values()) * 2,
        channel_clients=channels,
        app_clients=apps,
    )
    trend = Trend(
        unit="day",
        current=tuple(
            TrendBucket(start=day(d), end=day(d + 1), appeals=5, contacted_clients=3)
            for d in range(1, 8)
        ),
    )
    span = Period(start=day(1), end=day(8), tz=MSK)
    return Report(
        period=span,
        previous_period=Period(start=datetime(2026, 10, 25, tzinfo=MSK), end=day(1), tz=MSK),
        filter=flt or ReportFilter(),
        all_clients=1000,
        current=metrics,
        previous=Metrics(),
        trend=trend,
    )


TWO_CHANNELS = {
    AppKey(channel="telegram", name="Support bot"): 60,
    AppKey(channel="telegram", name=VIP): 40,
    AppKey(channel="whatsapp", name="Sales"): 80,
}


def test_a_channel_filter_drops_the_channel_ring_and_keeps_its_apps(
    figures: list[Figure],
) -> None:
    telegram = {key: value for key, value in TWO_CHANNELS.items() if key.channel == "telegram"}
    filtered = report(telegram, ReportFilter(channel="telegram"))
    channels, apps, trend = render_charts(filtered, "en")
    assert channels is None
    assert png_size(apps) == png_size(trend) == (WIDTH_PX, HEIGHT_PX)
    assert len(figures[0].axes[0].patches) == 2


def test_an_app_filter_keeps_only_the_trend() -> None:
    one = {AppKey(channel="telegram", name=VIP): 40}
    channels, apps, trend = render_charts(report(one, ReportFilter(app=VIP)), "ru")
    assert (channels, apps) == (None, None)
    assert png_size(trend) == (WIDTH_PX, HEIGHT_PX)


@pytest.mark.parametrize("lang", ["ru", "en"])
def test_more_than_eight_apps_become_sorted_bars(lang: str, figures: list[Figure]) -> None:
    names = [f"App {i}" for i in range(12)]
    apps = {AppKey(channel="vk", name=name): 100 - i for i, name in enumerate(names)}
    png = render_apps_png(report(apps), lang=lang)
    assert png_size(png) == (WIDTH_PX, HEIGHT_PX)
    (axes,) = figures[0].axes
    bars = axes.patches
    assert len(bars) == 12
    assert [bar.get_width() for bar in bars] == sorted(
        (bar.get_width() for bar in bars), reverse=True
    )
    assert [label.get_text() for label in axes.get_yticklabels()] == [f"vk · {n}" for n in names]


def test_thirty_apps_are_all_drawn_and_the_figure_grows(figures: list[Figure]) -> None:
    apps = {AppKey(channel="whatsapp", name=f"Number {i}"): 300 // (i + 1) for i in range(30)}
    png = render_apps_png(report(apps), lang="ru")
    width, height = png_size(png)
    assert width == WIDTH_PX and height > HEIGHT_PX and width + height <= 10000
    assert len(figures[0].axes[0].patches) == 30
    assert len(png or b"") < 300 * 1024


def test_up_to_eight_apps_stay_a_donut(figures: list[Figure]) -> None:
    apps = {AppKey(channel="vk", name=f"App {i}"): 10 + i for i in range(MAX_PIE_SLICES)}
    render_apps_png(report(apps), lang="en")
    assert len(figures[0].axes[0].patches) == MAX_PIE_SLICES


def lab(color: str) -> tuple[float, float, float]:
    """CIE L*a*b* (D65) of an sRGB hex colour."""

    def linear(c: float) -> float:
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (linear(int(color[i : i + 2], 16) / 255) for i in (1, 3, 5))
    x = (0.4124 * r + 0.3576 * g + 0.1805 * b) / 0.95047
    y = 0.2126 * r + 0.7152 * g + 0.0722 * b
    z = (0.0193 * r + 0.1192 * g + 0.9505 * b) / 1.08883

    def f(t: float) -> float:
        return t ** (1 / 3) if t > 0.008856 else 7.787 * t + 16 / 116

    return 116 * f(y) - 16, 500 * (f(x) - f(y)), 200 * (f(y) - f(z))


def delta_e(first: str, second: str) -> float:
    return sum((p - q) ** 2 for p, q in zip(lab(first), lab(second), strict=True)) ** 0.5


@pytest.mark.parametrize("channel", sorted(CHANNEL_COLORS))
def test_apps_of_one_channel_get_shades_a_person_tells_apart(channel: str) -> None:
    # CIE76 ΔE: over 15 is a difference seen at a glance (the first four apps of a channel),
    # over 10 still plainly visible (five).
    for count, least in ((2, 30), (3, 20), (4, 15), (5, 10)):
        slices = [
            Slice(label=str(i), value=10 - i, share=0.1, key=AppKey(channel=channel, name=str(i)))
            for i in range(count)
        ]
        colors = slice_colors(slices)
        closest = min(delta_e(a, b) for i, a in enumerate(colors) for b in colors[i + 1 :])
        assert closest > least, (channel, colors)


def test_long_names_are_shortened_in_the_middle_keeping_both_ends() -> None:
    assert shorten_middle("Sales & Partners <VIP>", 12) == "Sales…<VIP>"
    assert shorten_middle("Sales & Partners <Retail>", 12) == "Sales…tail>"
    assert shorten_middle("short", 12) == "short"
    assert shorten_middle("  many   spaces  inside ", 30) == "many spaces inside"
    assert len(shorten_middle("x" * 100, 30)) == 30


def heatmap(start: datetime, end: datetime, cells: dict[tuple[int, int], int]) -> Heatmap:
    return Heatmap(period=Period(start=start, end=end, tz=MSK), filter=ReportFilter(), cells=cells)


@pytest.mark.parametrize(
    ("lang", "weekdays"),
    [
        ("en", ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]),
        ("ru", ["Пн", "Вт", "Ср", "Чт", "Пт", "Сб", "Вс"]),
    ],
)
def test_heatmap_of_a_month_has_a_row_per_weekday_and_a_colour_scale(
    lang: str, weekdays: list[str], figures: list[Figure]
) -> None:
    cells = {(weekday, hour): weekday * 10 + hour for weekday in range(7) for hour in range(8, 20)}
    png = render_heatmap_png(heatmap(day(1), datetime(2026, 12, 1, tzinfo=MSK), cells), lang=lang)
    assert png_size(png) == (WIDTH_PX, HEIGHT_PX)
    main, scale = figures[0].axes
    (image,) = main.get_images()
    values = image.get_array()
    assert values.shape == (7, 24)
    assert values[2][10] == 30 and values[0][3] == 0
    assert [label.get_text() for label in main.get_yticklabels()] == weekdays
    assert scale.get_xlim()[1] == 79  # the scale ends at the busiest cell
    # Row totals at the right end of each row.
    totals = [text.get_text() for text in main.texts]
    assert totals[2] == str(sum(20 + hour for hour in range(8, 20)))


@pytest.mark.parametrize(("lang", "label"), [("en", "Tue 10 Nov"), ("ru", "Вт 10 нояб.")])
def test_heatmap_of_a_single_day_is_one_dated_row(
    lang: str, label: str, figures: list[Figure]
) -> None:
    png = render_heatmap_png(
        heatmap(day(10), day(10) + timedelta(hours=15), {(1, 9): 4}), lang=lang
    )
    width, height = png_size(png)
    assert width == WIDTH_PX and height < HEIGHT_PX
    main = figures[0].axes[0]
    assert main.get_images()[0].get_array().shape == (1, 24)
    assert [text.get_text() for text in main.get_yticklabels()] == [label]
    assert render_heatmap_png(heatmap(day(10), day(11), {}), lang=lang) is None


@pytest.mark.parametrize(
    ("lang", "charts", "csv"),
    [
        (
            "en",
            "Report charts · 1–7 Nov 2026 (Europe/Moscow) · Filter: channel telegram",
            "Report data for spreadsheets · 1–7 Nov 2026 (Europe/Moscow) · "
            "Filter: channel telegram",
        ),
        (
            "ru",
            "Диаграммы отчёта · 1–7 ноября 2026 (Europe/Moscow) · Фильтр: канал telegram",
            "Данные отчёта для таблиц · 1–7 ноября 2026 (Europe/Moscow) · Фильтр: канал telegram",
        ),
    ],
)
def test_album_and_csv_carry_a_one_line_caption(lang: str, charts: str, csv: str) -> None:
    bundle = render_bundle(
        report(TWO_CHANNELS, ReportFilter(channel="telegram")),
        lang=lang,
        delimiter=",",
        charts=(None, None, None),
    )
    assert (bundle.charts_caption, bundle.csv_caption) == (charts, csv)


def test_a_caption_escapes_names_and_stays_one_line_within_the_limit() -> None:
    flt = ReportFilter(channel="telegram", app="A&B <x>\\n" + "long " * 300)
    bundle = render_bundle(report(TWO_CHANNELS, flt), lang="en", delimiter=",", charts=(None,) * 3)
    assert "A&amp;B &lt;x&gt;" in bundle.charts_caption
    assert "\n" not in bundle.charts_caption and len(bundle.charts_caption) < 1024


