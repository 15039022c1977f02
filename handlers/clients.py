"""/clients and its re-run buttons: parse the request, then hand it to bot.delivery."""

from collections.abc import Callable
from datetime import datetime

from aiogram import Bot, F, Router
from aiogram.filters import Command, CommandObject
from aiogram.filters.callback_data import CallbackData
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _
from aiogram.utils.keyboard import InlineKeyboardBuilder
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.config import Settings
from bot.delivery import send_report
from bot.rendering import Renderer
from reports.model import ReportFilter
from reports.periods import parse_period
from reports.request import parse_request

# Button code -> period text of the grammar.
BUTTON_PERIODS = {
    "today": "today",
    "yesterday": "yesterday",
    "week": "week",
    "month": "month",
    "last_month": "last month",
}


class ReportButton(CallbackData, prefix="rep"):
    period: str
    channel: str = ""
    app: str = ""


def report_keyboard(report_filter: ReportFilter) -> InlineKeyboardMarkup | None:
    """Re-run buttons that keep the filter; none if the filter cannot fit in 64 bytes."""
    labels = {
        "today": _("Today"),
        "yesterday": _("Yesterday"),
        "week": _("Week"),
        "month": _("Month"),
        "last_month": _("Last month"),
    }
    builder = InlineKeyboardBuilder()
    try:
        for code, label in labels.items():
            data = ReportButton(
                period=code, channel=report_filter.channel or "", app=report_filter.app or ""
            ).pack()
            builder.button(text=label, callback_data=data)
    except ValueError:  # longer than 64 bytes, or a name holding the ':' separator
        return None
    builder.adjust(3, 2)
    return builder.as_markup()


async def answer_report(
    bot: Bot,
    chat_id: int,
    *,
    period_text: str,
    report_filter: ReportFilter,
    settings: Settings,
    engine: AsyncEngine,
    renderer: Renderer,
    clock: Callable[[], datetime],
    lang: str,
) -> None:
    periods = parse_period(period_text, now=clock(), tz=settings.zone)
    await send_report(
        bot,
        chat_id,
        engine=engine,
        renderer=renderer,
        periods=periods,
        report_filter=report_filter,
        lang=lang,
        delimiter=settings.delimiter_for(lang),
        keyboard=report_keyboard(report_filter),
    )


def build_router() -> Router:
    router = Router(name=__name__)

    @router.message(Command("clients"))
    async def clients_command(
        message: Message,
        command: CommandObject,
        bot: Bot,
        settings: Settings,
        engine: AsyncEngine,
        renderer: Renderer,
        clock: Callable[[], datetime],
        i18n: I18n,
    ) -> None:
        request = parse_request(command.args or "", default_period=settings.default_period)
        await answer_report(
            bot,
            message.chat.id,
            period_text=request.period_text,
            report_filter=request.filter,
            settings=settings,
            engine=engine,
            renderer=renderer,
            clock=clock,
            lang=i18n.current_locale,
        )

    @router.callback_query(ReportButton.filter(F.period.in_(BUTTON_PERIODS)))
    async def report_button(
        query: CallbackQuery,
        callback_data: ReportButton,
        bot: Bot,
        settings: Settings,
        engine: AsyncEngine,
        renderer: Renderer,
        clock: Callable[[], datetime],
        i18n: I18n,
    ) -> None:
        await query.answer()
        if query.message is None:
            return
        await answer_report(
            bot,
            query.message.chat.id,
            period_text=BUTTON_PERIODS[callback_data.period],
            report_filter=ReportFilter(
                channel=callback_data.channel or None, app=callback_data.app or None
            ),
            settings=settings,
            engine=engine,
            renderer=renderer,
            clock=clock,
            lang=i18n.current_locale,
        )

    @router.callback_query()
    async def unknown_button(query: CallbackQuery) -> None:
        await query.answer(_("This button is no longer valid."), show_alert=True)

    return router
