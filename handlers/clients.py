"""/clients and the buttons under a report: parse the request, hand it to the report service."""

from aiogram import Bot, F, Router
from aiogram.filters import Command, CommandObject
from aiogram.types import CallbackQuery, Message
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _

from bot.telegram.delivery import ReportService
from bot.telegram.keyboards import (
    BUTTON_PERIODS,
    VIEW_EXPIRED,
    HeatmapButton,
    ReportButton,
    ViewReportButton,
    stop_spinner,
)
from reports.model import Period, ReportFilter
from reports.request import ReportRequest, parse_request


async def _pressed_view(
    query: CallbackQuery, report_service: ReportService, key: str
) -> tuple[int, tuple[Period, ReportFilter]] | None:
    """The chat and the stored view a button names; an expired one is answered in an alert."""
    view = await report_service.view(key)
    if view is None:
        await query.answer(_(VIEW_EXPIRED), show_alert=True)
        return None
    await stop_spinner(query)
    if query.message is None:
        return None
    return query.message.chat.id, view


def build_router() -> Router:
    router = Router(name=__name__)

    @router.message(Command("clients"), flags={"report": True})
    async def clients_command(
        message: Message,
        command: CommandObject,
        bot: Bot,
        report_service: ReportService,
        i18n: I18n,
    ) -> None:
        default_period = report_service.settings.default_period
        request = parse_request(command.args or "", default_period=default_period)
        await report_service.send(bot, message.chat.id, request, lang=i18n.current_locale)

    @router.callback_query(
        ReportButton.filter(F.period.in_(BUTTON_PERIODS)), flags={"report": True}
    )
    async def report_button(
        query: CallbackQuery,
        callback_data: ReportButton,
        bot: Bot,
        report_service: ReportService,
        i18n: I18n,
    ) -> None:
        await stop_spinner(query)
        if query.message is None:
            return
        request = ReportRequest(
            period_text=BUTTON_PERIODS[callback_data.period],
            filter=ReportFilter(
                channel=callback_data.channel or None, app=callback_data.app or None
            ),
        )
        await report_service.send(bot, query.message.chat.id, request, lang=i18n.current_locale)

    @router.callback_query(
        ViewReportButton.filter(F.period.in_(BUTTON_PERIODS)), flags={"report": True}
    )
    async def view_report_button(
        query: CallbackQuery,
        callback_data: ViewReportButton,
        bot: Bot,
        report_service: ReportService,
        i18n: I18n,
    ) -> None:
        # A filter too long for callback_data: the button names the stored view holding it.
        pressed = await _pressed_view(query, report_service, callback_data.key)
        if pressed is not None:
            chat_id, (_period, report_filter) = pressed
            period_text = BUTTON_PERIODS[callback_data.period]
            request = ReportRequest(period_text=period_text, filter=report_filter)
            await report_service.send(bot, chat_id, request, lang=i18n.current_locale)

    @router.callback_query(HeatmapButton.filter(), flags={"report": True})
    async def heatmap_button(
        query: CallbackQuery,
        callback_data: HeatmapButton,
        bot: Bot,
        report_service: ReportService,
        i18n: I18n,
    ) -> None:
        pressed = await _pressed_view(query, report_service, callback_data.key)
        if pressed is not None:
            chat_id, (period, report_filter) = pressed
            await report_service.send_heatmap(
                bot, chat_id, period, report_filter, lang=i18n.current_locale
            )

    @router.callback_query(flags={"access": "public"})
    async def unknown_button(query: CallbackQuery) -> None:
        await query.answer(_("This button is no longer valid."), show_alert=True)

    return router
