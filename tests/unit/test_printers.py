"""Printers on hand-built reports: i18n formatting, the text summary, the PNG charts, the CSV."""

import csv
import io
import pickle
import random
import re
import struct
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from babel.messages.extract import extract_from_file
from babel.messages.pofile import read_po

from reports.charts import (
    CHANNEL_COLORS,
    HEIGHT_PX,
    OTHER_COLOR,
    WIDTH_PX,
    Slice,
    app_slices,
    channel_color,
    chart_slices,
    render_apps_png,
    render_channels_png,
    render_trend_png,
    slice_colors,
)
from reports.csv_export import neutralize, render_csv
from reports.i18n import (
    LOCALES_DIR,
    format_date,
    format_number,
    format_percent_change,
    format_range,
    format_share,
    format_signed,
    normalize_language,
    translator,
)
from reports.model import AppKey, Metrics, Period, Report, ReportFilter, Trend, TrendBucket
from reports.text import TEXT_LIMIT, has_earlier_data, has_just_begun, render_text, shorten

MSK = ZoneInfo("Europe/Moscow")
ROOT = Path(__file__).resolve().parent.parent.parent
VIP = "Sales & Partners <VIP>"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def at(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=MSK)


def period(start: datetime, end: datetime) -> Period:
    return Period(start=start, end=end, tz=MSK)


def make_report(
    current: Metrics,
    previous: Metrics | None = None,
    *,
    all_clients: int = 1234,
    report_filter: ReportFilter | None = None,
    current_period: Period | None = None,
    previous_period: Period | None = None,
) -> Report:
    """November 1–27 to 14:35 (month to date) against the same span of October by default."""
    return Report(
        period=current_period or period(at(2026, 11, 1), at(2026, 11, 27, 14, 35)),
        previous_period=previous_period or period(at(2026, 10, 1), at(2026, 10, 27, 14, 35)),
        filter=report_filter or ReportFilter(),
        all_clients=all_clients,
        current=current,
        previous=previous or Metrics(),
    )


def sample_report(**kwargs: object) -> Report:
    current = Metrics(
        contacted_clients=120,
        new_clients=40,
        appeals=300,
        repeat_appeals=150,
        # 80 + 60 > 120: some clients wrote through both channels.
        channel_clients={"whatsapp": 80, "telegram": 60},
        app_clients={
            AppKey(channel="whatsapp", name=VIP): 70,
            AppKey(channel="whatsapp", name="Support"): 20,
            AppKey(channel="telegram", name="Bot"): 60,
        },
    )
    previous = Metrics(
        contacted_clients=108,
        new_clients=0,
        appeals=250,
        repeat_appeals=150,
        channel_clients={"whatsapp": 108},
        app_clients={AppKey(channel="whatsapp", name=VIP): 108},
    )
    return make_report(current, previous, **kwargs)  # type: ignore[arg-type]


def empty_report() -> Report:
    return make_report(Metrics(), Metrics(contacted_clients=3, appeals=5), all_clients=42)


# --- i18n --------------------------------------------------------------------------------------


def test_numbers_use_the_locale_grouping() -> None:
    assert format_number(1234, "ru") == "1\u00a0234"
    assert format_number(1234567, "ru") == "1\u00a0234\u00a0567"
    assert format_number(1234, "en") == "1,234"
    assert format_number(7, "en-US") == "7"


def test_signed_changes_and_percentages() -> None:
    assert format_signed(1234, "ru") == "+1\u00a0234"
    assert format_signed(-5, "en") == "-5"
    assert format_signed(0, "en") == "±0"
    assert format_percent_change(120, 108, "en") == "+11.1%"
    assert format_percent_change(120, 108, "ru") == "+11,1\u00a0%"
    assert format_percent_change(80, 108, "en") == "-25.9%"
    assert format_percent_change(300, 250, "en") == "+20%"
    assert format_percent_change(1250, 100, "en") == "+1,150%"
    assert format_percent_change(1000, 1001, "en") == "-0.1%"
    assert format_percent_change(100000, 100001, "en") == "0%"
    assert format_percent_change(5, 0, "en") == "—"
    assert format_percent_change(0, 0, "ru") == "—"
    assert format_share(1, 3, "en") == "33.3%"
    assert format_share(0, 0, "en") == "0%"


def test_dates_in_both_languages() -> None:
    assert format_date(date(2026, 11, 27), "ru") == "27 ноября"
    assert format_date(date(2026, 11, 27), "en") == "27 Nov"
    assert format_date(date(2026, 11, 27), "ru", year=True) == "27 ноября 2026"
    assert format_date(date(2026, 11, 27), "en", year=True) == "27 Nov 2026"


@pytest.mark.parametrize(
    ("start", "end", "lang", "expected"),
    [
        # Whole days: the exclusive end becomes the inclusive last day.
        (at(2026, 11, 1), at(2026, 11, 28), "en", "1–27 Nov 2026"),
        (at(2026, 11, 1), at(2026, 11, 28), "ru", "1–27 ноября 2026"),
        (at(2026, 11, 27), at(2026, 11, 28), "en", "27 Nov 2026"),
        (at(2026, 10, 26), at(2026, 11, 2), "en", "26 Oct – 1 Nov 2026"),
        (at(2025, 12, 29), at(2026, 1, 5), "ru", "29 декабря 2025 – 4 января 2026"),
        # To now: both instants, so "27 Nov" is not read as the whole day.
        (at(2026, 11, 1), at(2026, 11, 27, 14, 35), "en", "1 Nov, 00:00 → 27 Nov 2026, 14:35"),
        (at(2026, 11, 27), at(2026, 11, 27, 9, 5), "ru", "27 ноября 2026, 00:00 → 09:05"),
    ],
)
def test_ranges_show_the_exclusive_end_honestly(
    start: datetime, end: datetime, lang: str, expected: str
) -> None:
    assert format_range(start, end, lang) == expected


def test_languages_fall_back_to_english() -> None:
    assert normalize_language("ru-RU") == "ru"
    assert normalize_language("uk") == "en"
    assert normalize_language(None) == "en"
    assert translator("uk").gettext("Other") == "Other"
    assert translator("ru").gettext("Other") == "Другое"
    assert translator("ru") is translator("ru")


def _catalog(lang: str):  # type: ignore[no-untyped-def]
    with (LOCALES_DIR / lang / "LC_MESSAGES" / "messages.po").open("rb") as source:
        return read_po(source, locale=lang)


def test_every_report_string_has_a_russian_translation() -> None:
    catalog = _catalog("ru")
    missing = []
    for path in sorted((ROOT / "reports").glob("*.py")):
        for _line, message, _comments, _context in extract_from_file("python", path):
            msgid = message if isinstance(message, str) else message[0]
            entry = catalog.get(msgid)
            strings = () if entry is None else entry.string
            strings = strings if isinstance(strings, tuple) else (strings,)
            if not strings or not all(strings):
                missing.append(f"{path.name}: {message!r}")
    assert missing == [], "run pybabel extract/update (see babel.cfg) and translate"


def test_translations_keep_their_placeholders() -> None:
    # A renamed {placeholder} in a translation raises KeyError at render time, only in Russian.
    placeholder = re.compile(r"\{(\w*)\}")
    for message in _catalog("ru"):
        if not message.id or not message.string:
            continue
        ids = message.id if isinstance(message.id, tuple) else (message.id,)
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        expected = set(placeholder.findall(ids[-1]))
        for string in strings:
            assert set(placeholder.findall(string)) == expected, message.id


# --- text ---------------------------------------------------------------------------------------


class _TagChecker(HTMLParser):
    """Collects tags and checks nesting, as Telegram's HTML parser would refuse bad markup."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.tags: set[str] = set()
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack.pop() == tag, f"unbalanced </{tag}>"

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse_html(text: str) -> _TagChecker:
    checker = _TagChecker()
    checker.feed(text)
    checker.close()
    assert checker.stack == [], f"unclosed tags {checker.stack}"
    return checker


def test_english_plain_text() -> None:
    assert render_text(sample_report(), lang="en", html=False) == "\n".join(
        [
            "Clients report",
            "Period: 1 Nov, 00:00 → 27 Nov 2026, 14:35 (Europe/Moscow)",
            "Compared with 1 Oct, 00:00 → 27 Oct, 14:35",
            "",
            "All clients: 1,234",
            "Clients who wrote: 120 · +12 (+11.1%)",
            "New: 40 · +40 (—)",
            "Returning: 80 · -28 (-25.9%)",
            "Conversations: 300 · +50 (+20%)",
            "Repeat conversations: 150 · ±0 (0%)",
            "",
            "Clients by channel:",
            "whatsapp: 80 · -25.9%",
            "telegram: 60 · —",
            "Top apps by clients:",
            f"whatsapp · {VIP}: 70 · -35.2%",
            "telegram · Bot: 60 · —",
            "whatsapp · Support: 20 · —",
            "A client who wrote through several channels is counted in each of them, "
            "so channel figures add up to more than the clients who wrote.",
        ]
    )


def test_russian_html_text() -> None:
    text = render_text(sample_report(), lang="ru")
    lines = text.split("\n")
    assert lines[0] == "<b>Отчёт по клиентам</b>"
    assert lines[1] == "Период: 1 ноября, 00:00 → 27 ноября 2026, 14:35 (Europe/Moscow)"
    assert lines[2] == "Сравнение с <i>1 октября, 00:00 → 27 октября, 14:35</i>"
    assert "Клиенты всего: <b>1\u00a0234</b>" in lines
    assert "Написавшие клиенты: <b>120</b> · +12 (+11,1\u00a0%)" in lines
    assert "Новые: <b>40</b> · +40 (—)" in lines
    assert "Вернувшиеся: <b>80</b> · -28 (-25,9\u00a0%)" in lines
    assert "Обращения: <b>300</b> · +50 (+20\u00a0%)" in lines
    assert "Повторные обращения: <b>150</b> · ±0 (0\u00a0%)" in lines
    assert lines[-9:-1] == [
        "",
        "Клиенты по каналам:",
        "whatsapp: <b>80</b> · -25,9\u00a0%",
        "telegram: <b>60</b> · —",
        "Самые популярные приложения:",
        "whatsapp · Sales &amp; Partners &lt;VIP&gt;: <b>70</b> · -35,2\u00a0%",
        "telegram · Bot: <b>60</b> · —",
        "whatsapp · Support: <b>20</b> · —",
    ]
    assert lines[-1].startswith("<i>Клиент, писавший в несколько каналов")


def test_whole_days_and_a_previous_year() -> None:
    report = sample_report(
        current_period=period(at(2027, 1, 1), at(2027, 1, 8)),
        previous_period=period(at(2026, 12, 25), at(2027, 1, 1)),
    )
    lines = render_text(report, lang="ru", html=False).split("\n")
    assert lines[1] == "Период: 1–7 января 2027 (Europe/Moscow)"
    assert lines[2] == "Сравнение с 25–31 декабря 2026"


def test_data_is_escaped_in_html_and_literal_in_plain() -> None:
    report = sample_report(report_filter=ReportFilter(channel="whatsapp", app=VIP))
    rich = render_text(report, lang="en", title="<Weekly> & co")
    plain = render_text(report, lang="en", html=False, title="<Weekly> & co")
    assert "<b>&lt;Weekly&gt; &amp; co</b>" in rich
    assert "Filter: channel <i>whatsapp</i>, app <i>Sales &amp; Partners &lt;VIP&gt;</i>" in rich
    assert VIP not in rich
    assert f"Filter: channel whatsapp, app {VIP}" in plain
    assert "&amp;" not in plain
    assert "<b>" not in plain


@pytest.mark.parametrize("lang", ["ru", "en"])
@pytest.mark.parametrize(
    "report",
    [sample_report(), empty_report(), sample_report(report_filter=ReportFilter(app=VIP))],
    ids=["sample", "empty", "filtered"],
)
def test_html_uses_only_allowed_balanced_tags_and_reads_as_plain(
    lang: str, report: Report
) -> None:
    rich = render_text(report, lang=lang, title="A & <b>")
    checker = parse_html(rich)
    assert checker.tags <= {"b", "i"}
    # Telegram refuses a bare "&"; only the entities html.escape produces may appear.
    assert re.search(r"&(?!(?:amp|lt|gt);)", rich) is None
    # What Telegram shows from the HTML is exactly the plain rendering.
    assert "".join(checker.text) == render_text(report, lang=lang, html=False, title="A & <b>")


def test_percent_is_a_dash_when_the_previous_value_is_zero() -> None:
    report = make_report(
        Metrics(contacted_clients=3, new_clients=3, appeals=4, channel_clients={"vk": 3})
    )
    lines = render_text(report, lang="en", html=False).split("\n")
    assert "Clients who wrote: 3 · +3 (—)" in lines
    assert "Repeat conversations: 0 · ±0 (—)" in lines


def test_overlap_line_only_when_channel_slices_overlap() -> None:
    overlap = "counted in each of them"
    assert overlap in render_text(sample_report(), lang="en")
    disjoint = make_report(
        Metrics(contacted_clients=3, appeals=3, channel_clients={"vk": 1, "telegram": 2})
    )
    assert not disjoint.current.channels_overlap
    assert overlap not in render_text(disjoint, lang="en")
    assert "учтён в каждом" in render_text(sample_report(), lang="ru")


def test_empty_period_says_so_and_keeps_all_clients_and_range() -> None:
    text = render_text(empty_report(), lang="en", html=False)
    assert text == "\n".join(
        [
            "Clients report",
            "Period: 1 Nov, 00:00 → 27 Nov 2026, 14:35 (Europe/Moscow)",
            "",
            "All clients: 42",
            "No conversations in this period.",
            "Conversations in 1 Oct, 00:00 → 27 Oct, 14:35: 5",
        ]
    )
    ru = render_text(empty_report(), lang="ru", html=False)
    assert "За этот период обращений не было." in ru


def test_channel_and_app_ties_go_to_the_first_name() -> None:
    report = make_report(
        Metrics(
            contacted_clients=4,
            appeals=4,
            channel_clients={"vk": 2, "email": 2},
            app_clients={AppKey(channel="vk", name="b"): 2, AppKey(channel="vk", name="a"): 2},
        )
    )
    lines = render_text(report, lang="en", html=False).split("\n")
    assert lines[-6:] == [
        "Clients by channel:",
        "email: 2 · —",
        "vk: 2 · —",
        "Top apps by clients:",
        "vk · a: 2 · —",
        "vk · b: 2 · —",
    ]


def test_no_earlier_data_replaces_every_percentage_in_both_languages() -> None:
    # The data begins on 5 Oct 10:00, after the previous period's start (1 Oct): its numbers are
    # missing data, not a quieter October, so no percentage is shown; the absolute changes stay.
    report = replace(sample_report(), data_since=at(2026, 10, 5, 10).astimezone(UTC))
    assert not has_earlier_data(report)
    assert render_text(report, lang="en", html=False).split("\n")[2:] == [
        "Compared with 1 Oct, 00:00 → 27 Oct, 14:35",
        "No earlier data: the first conversation is from 5 Oct 2026.",
        "",
        "All clients: 1,234",
        "Clients who wrote: 120 · +12 (no earlier data)",
        "New: 40 · +40 (no earlier data)",
        "Returning: 80 · -28 (no earlier data)",
        "Conversations: 300 · +50 (no earlier data)",
        "Repeat conversations: 150 · ±0 (no earlier data)",
        "",
        "Clients by channel:",
        "whatsapp: 80 · no earlier data",
        "telegram: 60 · no earlier data",
        "Top apps by clients:",
        f"whatsapp · {VIP}: 70 · no earlier data",
        "telegram · Bot: 60 · no earlier data",
        "whatsapp · Support: 20 · no earlier data",
        "A client who wrote through several channels is counted in each of them, "
        "so channel figures add up to more than the clients who wrote.",
    ]
    ru = render_text(report, lang="ru").split("\n")
    assert ru[2:5] == [
        "Сравнение с <i>1 октября, 00:00 → 27 октября, 14:35</i>",
        "<i>Более ранних данных нет: первое обращение — 5 октября 2026.</i>",
        "",
    ]
    assert "Написавшие клиенты: <b>120</b> · +12 (нет более ранних данных)" in ru
    assert "whatsapp · Sales &amp; Partners &lt;VIP&gt;: <b>70</b> · нет более ранних данных" in ru


def test_data_from_the_previous_periods_first_instant_compares_as_usual() -> None:
    # Data that begins exactly at the previous period's start covers all of it; earlier data
    # too. Unknown (a hand-built report) compares as usual.
    for since in (at(2026, 10, 1), at(2023, 5, 1), None):
        report = replace(sample_report(), data_since=since)
        assert has_earlier_data(report)
        text = render_text(report, lang="en", html=False)
        assert "Clients who wrote: 120 · +12 (+11.1%)" in text
        assert "earlier data" not in text


def test_the_first_appeal_is_dated_in_the_report_zone() -> None:
    # 21:30 UTC on 4 Oct is already 5 Oct in Moscow.
    report = replace(sample_report(), data_since=datetime(2026, 10, 4, 21, 30, tzinfo=UTC))
    assert "the first conversation is from 5 Oct 2026." in render_text(report, lang="en")


@pytest.mark.parametrize(
    ("start", "end", "to_date", "begun"),
    [
        # month on the 1st at 09:00: nine hours of November vs nine of October.
        (at(2026, 11, 1), at(2026, 11, 1, 9), True, True),
        (at(2026, 11, 1), at(2026, 11, 1, 11, 59), True, True),
        (at(2026, 11, 1), at(2026, 11, 1, 12), True, False),
        (at(2026, 11, 1), at(2026, 11, 27, 14, 35), True, False),
        # A complete period (yesterday, a past day) is never "just begun", however short.
        (at(2026, 11, 1), at(2026, 11, 1, 9), False, False),
    ],
)
def test_a_to_date_period_in_its_first_hours_says_it_has_just_begun(
    start: datetime, end: datetime, to_date: bool, begun: bool
) -> None:
    current = Period(start=start, end=end, tz=MSK, label="month", to_date=to_date)
    previous = period(at(2026, 10, 1), at(2026, 10, 1) + (end - start))
    report = sample_report(current_period=current, previous_period=previous)
    assert has_just_begun(report) is begun
    en = render_text(report, lang="en", html=False).split("\n")[2]
    ru = render_text(report, lang="ru").split("\n")[2]
    if begun and end.hour == 9:
        assert en == "Compared with 1 Oct, 00:00 → 09:00 (the period has just begun)"
        assert ru == "Сравнение с <i>1 октября, 00:00 → 09:00</i> (период только начался)"
    assert ("just begun" in en) is begun
    assert ("только начался" in ru) is begun


def test_a_channel_gone_quiet_is_listed_with_its_fall() -> None:
    report = make_report(
        Metrics(contacted_clients=3, appeals=3, channel_clients={"whatsapp": 3}),
        Metrics(contacted_clients=6, appeals=6, channel_clients={"whatsapp": 2, "vk": 4}),
    )
    lines = render_text(report, lang="en", html=False).split("\n")
    assert lines[-3:] == ["Clients by channel:", "whatsapp: 3 · +50%", "vk: 0 · -100%"]


def test_channel_and_app_names_are_escaped_and_cyrillic_kept() -> None:
    weird = AppKey(channel="tg=<&>", name="Продажи & <VIP> =1+1")
    report = make_report(
        Metrics(
            contacted_clients=2,
            appeals=2,
            channel_clients={"tg=<&>": 2},
            app_clients={weird: 2},
        ),
        Metrics(
            contacted_clients=1, appeals=1, channel_clients={"tg=<&>": 1}, app_clients={weird: 1}
        ),
    )
    rich = render_text(report, lang="ru").split("\n")
    assert rich[-4:] == [
        "Клиенты по каналам:",
        "tg=&lt;&amp;&gt;: <b>2</b> · +100\u00a0%",
        "Самые популярные приложения:",
        "tg=&lt;&amp;&gt; · Продажи &amp; &lt;VIP&gt; =1+1: <b>2</b> · +100\u00a0%",
    ]
    plain = render_text(report, lang="en", html=False).split("\n")
    assert plain[-2:] == ["Top apps by clients:", "tg=<&> · Продажи & <VIP> =1+1: 2 · +100%"]


def test_only_the_top_three_apps_and_eight_channels_are_listed() -> None:
    channels = {f"ch{i:02d}": 20 - i for i in range(11)}
    apps = {AppKey(channel="vk", name=f"app{i}"): 10 - i for i in range(5)}
    report = make_report(
        Metrics(contacted_clients=20, appeals=20, channel_clients=channels, app_clients=apps)
    )
    lines = render_text(report, lang="en", html=False).split("\n")
    start = lines.index("Clients by channel:")
    assert lines[start + 1 : start + 9] == [f"ch{i:02d}: {20 - i} · —" for i in range(8)]
    assert lines[start + 9 :][:5] == [
        "… and 3 more channels",
        "Top apps by clients:",
        "vk · app0: 10 · —",
        "vk · app1: 9 · —",
        "vk · app2: 8 · —",
    ]
    ru = render_text(report, lang="ru", html=False)
    assert "… и ещё 3 канала" in ru
    one_more = make_report(
        Metrics(contacted_clients=20, appeals=20, channel_clients=dict(list(channels.items())[:9]))
    )
    assert "… and 1 more channel\n" in render_text(one_more, lang="en", html=False) + "\n"
    assert "… и ещё 1 канал\n" in render_text(one_more, lang="ru", html=False) + "\n"


def test_long_names_are_cut_and_the_text_stays_under_the_limit() -> None:
    long = "Ж" * 150 + "&<>" * 17
    assert len(long) >= 200
    apps = {AppKey(channel=f"{long}{i}", name=f"{long}{i}"): i + 1 for i in range(300)}
    report = make_report(
        Metrics(
            contacted_clients=10**9,
            new_clients=10**8,
            appeals=10**10,
            repeat_appeals=10**9,
            channel_clients={key.channel: value for key, value in apps.items()},
            app_clients=apps,
        ),
        report_filter=ReportFilter(channel=long, app=long),
    )
    for lang in ("ru", "en"):
        for html in (True, False):
            text = render_text(report, lang=lang, html=html, title=long)
            # Telegram counts UTF-16 code units; stay well below the limit either way.
            assert len(text.encode("utf-16-le")) // 2 < TEXT_LIMIT // 2
            assert long not in text
    assert shorten(long) == "Ж" * 63 + "…"
    assert shorten("a\n b\tc") == "a b c"


# --- charts -------------------------------------------------------------------------------------


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from the IHDR chunk, which the PNG format puts first."""
    assert data[:8] == PNG_SIGNATURE
    length, kind = struct.unpack(">I4s", data[8:16])
    assert (length, kind) == (13, b"IHDR")
    width, height = struct.unpack(">II", data[16:24])
    return width, height


@pytest.mark.parametrize("lang", ["ru", "en"])
@pytest.mark.parametrize("render", [render_channels_png, render_apps_png])
def test_charts_are_pngs_telegram_accepts(lang: str, render: object) -> None:
    data = render(sample_report(), lang=lang)  # type: ignore[operator]
    assert data is not None
    width, height = png_size(data)
    assert (width, height) == (WIDTH_PX, HEIGHT_PX)
    assert width + height <= 10000
    assert len(data) < 10 * 1024 * 1024


def test_no_charts_for_an_empty_period() -> None:
    assert render_channels_png(empty_report(), lang="en") is None
    assert render_apps_png(empty_report(), lang="ru") is None


def daily_trend(first: datetime, days: int, values: list[tuple[int, int, int]]) -> tuple:
    """Buckets of whole local days from first, with (appeals, contacted, new) per day."""
    return tuple(
        TrendBucket(
            start=first + timedelta(days=index),
            end=first + timedelta(days=index + 1),
            appeals=appeals,
            contacted_clients=contacted,
            new_clients=new,
        )
        for index, (appeals, contacted, new) in zip(range(days), values, strict=True)
    )


def trend_report() -> Report:
    """Month to date (27 days) with a trend; the previous month's series one day shorter."""
    current = [(10 + i % 7, 8 + i % 5, i % 3) for i in range(27)]
    previous = [(9 + i % 4, 7, 1) for i in range(26)]
    return replace(
        sample_report(),
        trend=Trend(
            unit="day",
            current=daily_trend(at(2026, 11, 1), 27, current),
            previous=daily_trend(at(2026, 10, 1), 26, previous),
        ),
    )


@pytest.mark.parametrize("lang", ["ru", "en"])
def test_trend_chart_is_a_png_telegram_accepts(lang: str) -> None:
    data = render_trend_png(trend_report(), lang=lang)
    assert data is not None
    assert png_size(data) == (WIDTH_PX, HEIGHT_PX)
    assert len(data) < 10 * 1024 * 1024
    # The same report gives the same bytes (no timestamps in the file).
    assert render_trend_png(trend_report(), lang=lang) == data


def test_trend_chart_draws_hours_and_weeks_and_nothing_for_no_data() -> None:
    day = period(at(2026, 11, 10), at(2026, 11, 11))
    hours = tuple(
        TrendBucket(start=at(2026, 11, 10, h), end=at(2026, 11, 10, h) + timedelta(hours=1))
        for h in range(24)
    )
    hourly = replace(
        sample_report(current_period=day, previous_period=period(at(2026, 11, 9), day.start)),
        trend=Trend(unit="hour", current=hours, previous=()),
    )
    assert png_size(render_trend_png(hourly, lang="ru") or b"") == (WIDTH_PX, HEIGHT_PX)
    weeks = Trend(unit="week", current=daily_trend(at(2026, 1, 5), 3, [(1, 1, 1)] * 3))
    weekly = replace(sample_report(), trend=weeks)
    assert png_size(render_trend_png(weekly, lang="en") or b"") == (WIDTH_PX, HEIGHT_PX)
    # No appeals, or a report whose trend was not computed: no chart.
    assert render_trend_png(replace(empty_report(), trend=weeks), lang="en") is None
    assert render_trend_png(sample_report(), lang="en") is None


def test_names_render_literally_with_cyrillic() -> None:
    # Paired "$" would start mathtext, and "\frac{" inside it is a parse error at draw time.
    odd = ["$VIP$", r"$\frac{$", VIP, "Продажи и партнёры"]
    report = make_report(
        Metrics(
            contacted_clients=4,
            appeals=4,
            channel_clients=dict.fromkeys(odd, 1),
            app_clients={AppKey(channel=name, name=name): 1 for name in odd},
        ),
    )
    for render in (render_channels_png, render_apps_png):
        data = render(report, lang="ru")
        assert data is not None
        assert png_size(data) == (WIDTH_PX, HEIGHT_PX)
    # The filter's name in the header line too.
    filtered = replace(report, filter=ReportFilter(channel=r"$\frac{$"))
    assert png_size(render_apps_png(filtered, lang="en") or b"") == (WIDTH_PX, HEIGHT_PX)


def test_up_to_eight_parts_are_all_shown_by_name() -> None:
    counts = {"whatsapp": 50, "telegram": 30, "vk": 14, "email": 2, "viber": 2, "ok": 1}
    slices = chart_slices(counts, other_label="Other")
    assert [(s.label, s.value) for s in slices] == [
        ("whatsapp", 50),
        ("telegram", 30),
        ("vk", 14),
        ("email", 2),
        ("viber", 2),
        ("ok", 1),
    ]
    assert sum(s.share for s in slices) == pytest.approx(1)
    assert slices[0].share == pytest.approx(50 / 99)
    assert chart_slices({"whatsapp": 98, "vk": 0}, other_label="Other")[0].value == 98
    assert chart_slices({}, other_label="Other") == []


def test_past_25_parts_the_rest_folds_only_while_no_larger_than_a_shown_one() -> None:
    many = {f"ch{i:02}": 100 for i in range(25)} | {f"z{i:02}": 2 for i in range(20)}
    slices = chart_slices(many, other_label="Other")
    assert [s.label for s in slices] == [f"ch{i:02}" for i in range(25)] + ["Other"]
    assert (slices[-1].key, slices[-1].value) == (None, 40)
    # The 26th part and the small rest would make an "Other" of 110 > 100: the 26th is shown.
    bigger = {f"ch{i:02}": 100 for i in range(26)} | {f"z{i}": 1 for i in range(10)}
    slices = chart_slices(bigger, other_label="Other")
    assert len(slices) == 27 and slices[-2].label == "ch25" and slices[-1].value == 10
    # Ties are ordered by name; a single leftover is shown rather than folded.
    one_more = {f"ch{i:02}": 10 for i in range(26)}
    assert [s.label for s in chart_slices(one_more, other_label="Other")] == sorted(one_more)


def test_other_is_never_larger_than_a_part_shown_by_name() -> None:
    rng = random.Random(7)
    for _ in range(300):
        counts = {f"app{i}": rng.choice([1, 2, 5, 40, 300]) for i in range(rng.randint(1, 60))}
        slices = chart_slices(counts, other_label="Other")
        named = [s.value for s in slices if s.key is not None]
        others = [s.value for s in slices if s.key is None]
        assert sum(named) + sum(others) == sum(counts.values())
        assert not others or others[0] <= min(named)
        assert len(slices) <= 8 or len(named) >= 25 or not others


def test_app_slices_are_labelled_and_shaded_by_channel() -> None:
    slices = app_slices(sample_report().current, lang="ru")
    assert [s.label for s in slices] == [
        f"whatsapp · {VIP}",
        "telegram · Bot",
        "whatsapp · Support",
    ]
    colors = slice_colors(slices)
    assert colors[0] == CHANNEL_COLORS["whatsapp"]
    assert colors[1] == CHANNEL_COLORS["telegram"]
    assert colors[2] not in (colors[0], OTHER_COLOR)
    assert colors[2].startswith("#") and len(colors[2]) == 7
    other = Slice(label="Другое", value=1, share=0.1, key=None)
    assert slice_colors([other]) == [OTHER_COLOR]


def test_channel_colours_are_fixed_or_derived_stably() -> None:
    assert channel_color("WhatsApp") == CHANNEL_COLORS["whatsapp"]
    unknown = channel_color("jivo")
    assert re.fullmatch(r"#[0-9a-f]{6}", unknown)
    assert unknown not in CHANNEL_COLORS.values()
    # Python's own hash() is salted per process: the colour must survive a restart.
    script = "from reports.charts import channel_color; print(channel_color('jivo'))"
    other_process = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert other_process.stdout.strip() == unknown


def test_reports_and_charts_cross_process_boundaries() -> None:
    report = sample_report()
    copy = pickle.loads(pickle.dumps(report))
    assert copy == report
    assert render_channels_png(copy, lang="en") == render_channels_png(report, lang="en")


# --- CSV ----------------------------------------------------------------------------------------


def csv_report() -> Report:
    current = Metrics(
        contacted_clients=3,
        new_clients=1,
        appeals=5,
        repeat_appeals=2,
        channel_clients={"whatsapp": 2, "telegram": 2},
        app_clients={
            AppKey(channel="whatsapp", name='=HYPERLINK("http://x","y")'): 1,
            AppKey(channel="whatsapp", name="Продажи"): 2,
            AppKey(channel="telegram", name="-1"): 2,
        },
    )
    previous = Metrics(
        contacted_clients=2,
        new_clients=2,
        appeals=2,
        channel_clients={"vk": 2},
        app_clients={AppKey(channel="vk", name="@group"): 2},
    )
    return make_report(
        current,
        previous,
        all_clients=10,
        current_period=period(at(2026, 11, 1), at(2026, 11, 28)),
        previous_period=period(at(2026, 10, 1), at(2026, 10, 28)),
    )


def test_csv_bytes_with_semicolons() -> None:
    p = "2026-11-01T00:00:00+03:00;2026-11-28T00:00:00+03:00;Europe/Moscow;"
    expected = "\r\n".join(
        [
            "period_start;period_end;timezone;metric;channel;app;value;previous_value",
            p + "all_clients;;;10;",
            p + "contacted_clients;;;3;2",
            p + "new_clients;;;1;2",
            p + "returning_clients;;;2;0",
            p + "appeals;;;5;2",
            p + "repeat_appeals;;;2;0",
            p + "channel_clients;telegram;;2;0",
            p + "channel_clients;vk;;0;2",
            p + "channel_clients;whatsapp;;2;0",
            p + "app_clients;telegram;'-1;2;0",
            p + "app_clients;vk;'@group;0;2",
            p + 'app_clients;whatsapp;"\'=HYPERLINK(""http://x"",""y"")";1;0',
            p + "app_clients;whatsapp;Продажи;2;0",
            "",
        ]
    )
    data = render_csv(csv_report(), delimiter=";")
    assert data.startswith(b"\xef\xbb\xbf")
    assert data == b"\xef\xbb\xbf" + expected.encode("utf-8")


def test_csv_bytes_with_commas() -> None:
    p = "2026-11-01T00:00:00+03:00,2026-11-28T00:00:00+03:00,Europe/Moscow,"
    expected = "\r\n".join(
        [
            "period_start,period_end,timezone,metric,channel,app,value,previous_value",
            p + "all_clients,,,10,",
            p + "contacted_clients,,,3,2",
            p + "new_clients,,,1,2",
            p + "returning_clients,,,2,0",
            p + "appeals,,,5,2",
            p + "repeat_appeals,,,2,0",
            p + "channel_clients,telegram,,2,0",
            p + "channel_clients,vk,,0,2",
            p + "channel_clients,whatsapp,,2,0",
            p + "app_clients,telegram,'-1,2,0",
            p + "app_clients,vk,'@group,0,2",
            p + 'app_clients,whatsapp,"\'=HYPERLINK(""http://x"",""y"")",1,0',
            p + "app_clients,whatsapp,Продажи,2,0",
            "",
        ]
    )
    assert render_csv(csv_report(), delimiter=",") == b"\xef\xbb\xbf" + expected.encode("utf-8")


def test_csv_lists_the_trend_after_the_metrics_with_each_bucket_bounds() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    days = [datetime(2026, 10, d, tzinfo=berlin) for d in (23, 24, 25, 26, 27)]
    current = (
        TrendBucket(start=days[2], end=days[3], appeals=5, contacted_clients=3, new_clients=1),
        TrendBucket(start=days[3], end=days[4], appeals=0, contacted_clients=0, new_clients=0),
    )
    # A prior with one bucket only: the second day has nothing to compare with.
    previous = (
        TrendBucket(start=days[0], end=days[1], appeals=2, contacted_clients=2, new_clients=2),
    )
    report = replace(
        make_report(
            Metrics(contacted_clients=3, new_clients=1, appeals=5, repeat_appeals=4),
            Metrics(contacted_clients=2, new_clients=2, appeals=2),
            all_clients=9,
            current_period=Period(start=days[2], end=days[4], tz=berlin),
            previous_period=Period(start=days[0], end=days[2], tz=berlin),
        ),
        trend=Trend(unit="day", current=current, previous=previous),
    )
    p = "2026-10-25T00:00:00+02:00,2026-10-27T00:00:00+01:00,Europe/Berlin,"
    # 25 October ends an hour later than it began, by the clock: summer time ended.
    d1 = "2026-10-25T00:00:00+02:00,2026-10-26T00:00:00+01:00,Europe/Berlin,"
    d2 = "2026-10-26T00:00:00+01:00,2026-10-27T00:00:00+01:00,Europe/Berlin,"
    expected = "\r\n".join(
        [
            "period_start,period_end,timezone,metric,channel,app,value,previous_value",
            p + "all_clients,,,9,",
            p + "contacted_clients,,,3,2",
            p + "new_clients,,,1,2",
            p + "returning_clients,,,2,0",
            p + "appeals,,,5,2",
            p + "repeat_appeals,,,4,0",
            d1 + "daily_appeals,,,5,2",
            d2 + "daily_appeals,,,0,",
            d1 + "daily_contacted_clients,,,3,2",
            d2 + "daily_contacted_clients,,,0,",
            d1 + "daily_new_clients,,,1,2",
            d2 + "daily_new_clients,,,0,",
            "",
        ]
    )
    assert render_csv(report, delimiter=",") == b"\xef\xbb\xbf" + expected.encode("utf-8")


def test_csv_reads_back_with_the_csv_module() -> None:
    text = render_csv(csv_report(), delimiter=";").decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=";"))
    assert rows[0][0] == "period_start"
    assert [row[5] for row in rows if row[3] == "app_clients"][2] == '\'=HYPERLINK("http://x","y")'
    assert len(rows) == 1 + 6 + 3 + 4


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("=1+1", "'=1+1"),
        ("+7 999", "'+7 999"),
        ("-1", "'-1"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("a=b", "a=b"),
        ("", ""),
        ("Продажи", "Продажи"),
    ],
)
def test_formula_cells_are_neutralized(cell: str, expected: str) -> None:
    assert neutralize(cell) == expected


@pytest.mark.parametrize("delimiter", ["", ";;", '"', "\n", "a"])
def test_bad_delimiters_are_refused(delimiter: str) -> None:
    with pytest.raises(ValueError, match="delimiter"):
        render_csv(csv_report(), delimiter=delimiter)


# --- layering -----------------------------------------------------------------------------------


def test_printers_do_not_import_aiogram() -> None:
    script = (
        "import sys, reports.i18n, reports.text, reports.charts, reports.csv_export; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'aiogram'))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
