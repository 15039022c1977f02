"""/clients and its re-run buttons: parse the request, then hand it to the report service."""

from aiogram import Bot, F, Router
from aiogram.filters import Command, CommandObject
from aiogram.types import CallbackQuery, Message
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _

from bot.telegram.delivery import ReportService
from bot.telegram.keyboards import BUTTON_PERIODS, ReportButton, stop_spinner
from reports.model import ReportFilter
from reports.request import ReportRequest, parse_request


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

    @router.callback_query(flags={"access": "public"})
    async def unknown_button(query: CallbackQuery) -> None:
        await query.answer(_("This button is no longer valid."), show_alert=True)

    return router
