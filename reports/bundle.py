"""Everything one report sends, rendered once: text, three charts and the CSV, for any channel."""

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from reports.charts import render_apps_png, render_channels_png, render_trend_png
from reports.csv_export import render_csv
from reports.model import Report
from reports.text import render_text


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

    @property
    def charts(self) -> list[tuple[str, bytes]]:
        named = [
            ("channels.png", self.channels_png),
            ("apps.png", self.apps_png),
            ("trend.png", self.trend_png),
        ]
        return [(name, data) for name, data in named if data is not None]

    def write_to(self, directory: Path) -> list[Path]:
        """Write channels.png, apps.png, trend.png (when the period has data) and clients.csv."""
        written = []
        for name, data in [*self.charts, ("clients.csv", self.csv)]:
            path = directory / name
            path.write_bytes(data)
            written.append(path)
        return written


def csv_file_name(report: Report) -> str:
    period = report.period
    # The end is exclusive: the last day covered is the one just before it.
    last_day = (period.end - timedelta(microseconds=1)).date()
    return f"clients_{period.start.date().isoformat()}_{last_day.isoformat()}.csv"


Charts = tuple[bytes | None, bytes | None, bytes | None]


def render_charts(report: Report, lang: str) -> Charts:
    """Both pies and the trend; a module-level function so a process pool can run it."""
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
    )
