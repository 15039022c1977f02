"""The re-run keyboard under a report: callback data built with aiogram's CallbackData factory."""

from collections.abc import Callable

from aiogram.filters.callback_data import CallbackData
from aiogram.types import InlineKeyboardMarkup
from aiogram.utils.keyboard import InlineKeyboardBuilder

from reports.errors import N_
from reports.model import ReportFilter

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


class ReportButton(CallbackData, prefix="rep"):
    period: str
    channel: str = ""
    app: str = ""


def report_keyboard(
    report_filter: ReportFilter, gettext: Callable[[str], str]
) -> InlineKeyboardMarkup | None:
    """Re-run buttons that keep the filter; none if the filter cannot fit in 64 bytes."""
    builder = InlineKeyboardBuilder()
    try:
        for code in BUTTON_PERIODS:
            data = ReportButton(
                period=code, channel=report_filter.channel or "", app=report_filter.app or ""
            ).pack()
            builder.button(text=gettext(BUTTON_LABELS[code]), callback_data=data)
    except ValueError:  # longer than 64 bytes, or a name holding the ':' separator
        return None
    builder.adjust(3, 2)
    return builder.as_markup()
