"""Everything one report sends, rendered once: text, up to three charts and the CSV, captions."""

import html as html_text
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from reports.charts import header_lines, render_apps_png, render_channels_png, render_trend_png
from reports.csv_export import render_csv
from reports.errors import N_
from reports.i18n import translator
from reports.model import Period, Report, ReportFilter
from reports.text import render_text

# Telegram's limit on a caption (a media group shows the first item's caption for the album).
CAPTION_LIMIT = 1024
CHARTS_CAPTION = N_("Report charts")
CSV_CAPTION = N_("Report data for spreadsheets")
HEATMAP_CAPTION = N_("Conversations by weekday and hour")


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportBundle:
    text: str
    channels_png: bytes | None
    apps_png: bytes | None
    trend_png: bytes | None
    csv: bytes
    # clients_<first day>_<last day>.csv, the name a lead sees in Telegram.
    csv_name: str
    # The language the bundle is written in; notes about its delivery use it too.
    lang: str
    # One line each under the album and the CSV: what they are, the period, the filter.
    charts_caption: str = ""
    csv_caption: str = ""
    # The stored view behind the report's buttons (bot.storage.report_views); None: none stored.
    view_key: str | None = None
    # The period has no appeals: no charts, and nothing to show by hour.
    empty: bool = False

    @property
    def charts(self) -> list[tuple[str, bytes]]:
        named = [
            ("channels.png", self.channels_png),
            ("apps.png", self.apps_png),
            ("trend.png", self.trend_png),
        ]
        return [(name, data) for name, data in named if data is not None]

    def write_to(self, directory: Path, *, heatmap_png: bytes | None = None) -> list[Path]:
        """Write channels.png, apps.png, trend.png and heatmap.png (those the report has) and
        clients.csv."""
        written = []
        heatmap = [("heatmap.png", heatmap_png)] if heatmap_png is not None else []
        for name, data in [*self.charts, *heatmap, ("clients.csv", self.csv)]:
            path = directory / name
            path.write_bytes(data)
            written.append(path)
        return written


def csv_file_name(report: Report) -> str:
    period = report.period
    # The end is exclusive: the last day covered is the one just before it.
    last_day = (period.end - timedelta(microseconds=1)).date()
    return f"clients_{period.start.date().isoformat()}_{last_day.isoformat()}.csv"


def caption_line(what: str, period: Period, report_filter: ReportFilter, *, lang: str) -> str:
    """ "<what> · <period (zone)> · <filter>" in the reader's language, as HTML (names
    escaped), one line within Telegram's caption limit."""
    gettext = translator(lang).gettext
    line = " · ".join([gettext(what), *header_lines(period, report_filter, lang)])
    return html_text.escape(line[:CAPTION_LIMIT], quote=False)


Charts = tuple[bytes | None, bytes | None, bytes | None]


def render_charts(report: Report, lang: str) -> Charts:
    """The channel and app charts (those the filter leaves useful) and the trend; a
    module-level function so a process pool can run it."""
    return (
        render_channels_png(report, lang=lang),
        render_apps_png(report, lang=lang),
        render_trend_png(report, lang=lang),
    )


def render_bundle(
    report: Report,
    *,
    lang: str,
    delimiter: str,
    html: bool = True,
    title: str | None = None,
    charts: Charts | None = None,
    note: str | None = None,
) -> ReportBundle:
    """The whole bundle; pass `charts` already rendered elsewhere, and a `note` to append."""
    channels_png, apps_png, trend_png = (
        charts if charts is not None else render_charts(report, lang)
    )
    text = render_text(report, lang=lang, html=html, title=title)
    return ReportBundle(
        text=f"{text}\n\n{note}" if note else text,
        channels_png=channels_png,
        apps_png=apps_png,
        trend_png=trend_png,
        csv=render_csv(report, delimiter=delimiter),
        csv_name=csv_file_name(report),
        lang=lang,
        charts_caption=caption_line(CHARTS_CAPTION, report.period, report.filter, lang=lang),
        csv_caption=caption_line(CSV_CAPTION, report.period, report.filter, lang=lang),
        empty=report.is_empty,
    )
