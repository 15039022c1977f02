"""The re-run keyboard under a report: callback data built with aiogram's CallbackData factory."""

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


async def stop_spinner(query: CallbackQuery) -> None:
    """Answer a press, best effort: the report it asks for is the point, so a failed answer
    (Telegram down, or the query too old) only leaves the button spinning a while longer."""
    try:
        await query.answer()
    except (*UNDELIVERABLE, *REJECTED) as exc:
        logger.warning("answering button press %s failed: %s", query.id, type(exc).__name__)
