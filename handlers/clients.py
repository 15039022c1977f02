"""/clients and its re-run buttons: parse the request, then hand it to bot.delivery."""

from collections.abc import Callable
from datetime import datetime
from zoneinfo import ZoneInfo

from aiogram import Bot, F, Router
from aiogram.filters import Command, CommandObject
from aiogram.types import CallbackQuery, Message
from aiogram.utils.i18n import I18n
from aiogram.utils.i18n import gettext as _
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from bot.config import Settings
from bot.rendering import Renderer
from bot.storage.chats import chat_zone
from bot.telegram.delivery import send_report
from bot.telegram.keyboards import BUTTON_PERIODS, ReportButton, report_keyboard
from reports.model import ReportFilter
from reports.periods import parse_period
from reports.request import parse_request


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
    zone: ZoneInfo,
) -> None:
    now = clock()
    periods = parse_period(period_text, now=now, tz=zone)
    await send_report(
        bot,
        chat_id,
        engine=engine,
        renderer=renderer,
        periods=periods,
        report_filter=report_filter,
        lang=lang,
        delimiter=settings.delimiter_for(lang),
        keyboard=report_keyboard(report_filter, _),
        now=now,
    )


def build_router() -> Router:
    router = Router(name=__name__)

    @router.message(Command("clients"), flags={"report": True})
    async def clients_command(
        message: Message,
        command: CommandObject,
        bot: Bot,
        settings: Settings,
        engine: AsyncEngine,
        renderer: Renderer,
        clock: Callable[[], datetime],
        i18n: I18n,
        session: AsyncSession,
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
            zone=await chat_zone(session, message.chat.id, settings.timezone),
        )

    @router.callback_query(
        ReportButton.filter(F.period.in_(BUTTON_PERIODS)), flags={"report": True}
    )
    async def report_button(
        query: CallbackQuery,
        callback_data: ReportButton,
        bot: Bot,
        settings: Settings,
        engine: AsyncEngine,
        renderer: Renderer,
        clock: Callable[[], datetime],
        i18n: I18n,
        session: AsyncSession,
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
            zone=await chat_zone(session, query.message.chat.id, settings.timezone),
        )

    @router.callback_query(flags={"access": "public"})
    async def unknown_button(query: CallbackQuery) -> None:
        await query.answer(_("This button is no longer valid."), show_alert=True)

    return router
