"""The keyboard under a report (re-run periods, "By hour"): aiogram CallbackData factories."""

import logging
from collections.abc import Callable

from aiogram.filters.callback_data import CallbackData
from aiogram.types import CallbackQuery, InlineKeyboardMarkup
from aiogram.utils.keyboard import InlineKeyboardBuilder

from bot.telegram.outbound import REJECTED, UNDELIVERABLE
from reports.errors import N_
from reports.model import ReportFilter

logger = logging.getLogger(__name__)

# Button code -> period text of the grammar, in keyboard order.
BUTTON_PERIODS = {
    "today": "today",
    "yesterday": "yesterday",
    "week": "week",
    "month": "month",
    "last_month": "last month",
}
BUTTON_LABELS = {
    "today": N_("Today"),
    "yesterday": N_("Yesterday"),
    "week": N_("Week"),
    "month": N_("Month"),
    "last_month": N_("Last month"),
}


BY_HOUR_LABEL = N_("By hour")
VIEW_EXPIRED = N_("This button has expired: please send /clients again.")


class ReportButton(CallbackData, prefix="rep"):
    """Re-run with another period; the filter travels in the data itself."""

    period: str
    channel: str = ""
    app: str = ""


class ViewReportButton(CallbackData, prefix="rv"):
    """Re-run with another period; the filter is the stored view's (bot.storage.report_views),
    for a filter too long for the 64 bytes of callback_data or holding its ':' separator."""

    period: str
    key: str


class HeatmapButton(CallbackData, prefix="hm"):
    """The hours heatmap of exactly the report's period, zone and filter (a stored view)."""

    key: str


def _rerun_data(code: str, report_filter: ReportFilter, view_key: str | None) -> str | None:
    try:
        return ReportButton(
            period=code, channel=report_filter.channel or "", app=report_filter.app or ""
        ).pack()
    except ValueError:  # longer than 64 bytes, or a name holding the ':' separator
        return ViewReportButton(period=code, key=view_key).pack() if view_key else None


def report_keyboard(
    report_filter: ReportFilter,
    gettext: Callable[[str], str],
    *,
    view_key: str | None = None,
    by_hour: bool = False,
) -> InlineKeyboardMarkup | None:
    """Re-run buttons that keep the filter, then "By hour" when asked (it needs view_key).

    A filter that does not fit in callback_data is kept server-side behind view_key; without
    a key such a filter gets no re-run buttons.
    """
    builder = InlineKeyboardBuilder()
    rows: list[int] = []
    rerun = [(code, _rerun_data(code, report_filter, view_key)) for code in BUTTON_PERIODS]
    if all(data is not None for _, data in rerun):
        for code, data in rerun:
            builder.button(text=gettext(BUTTON_LABELS[code]), callback_data=data)
        rows += [3, 2]
    if by_hour and view_key is not None:
        builder.button(text=gettext(BY_HOUR_LABEL), callback_data=HeatmapButton(key=view_key))
        rows.append(1)
    if not rows:
        return None
    builder.adjust(*rows)
    return builder.as_markup()


async def stop_spinner(query: CallbackQuery) -> None:
    """Answer a press, best effort: the report it asks for is the point, so a failed answer
    (Telegram down, or the query too old) only leaves the button spinning a while longer."""
    try:
        await query.answer()
    except (*UNDELIVERABLE, *REJECTED) as exc:
        logger.warning("answering button press %s failed: %s", query.id, type(exc).__name__)
