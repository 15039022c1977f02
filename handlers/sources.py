"""/sources (admins): each desk source with its newest event, events today and refusals."""

import html
from collections.abc import Callable
from datetime import datetime
from zoneinfo import ZoneInfo

from aiogram import Bot, Router
from aiogram.filters import Command
from aiogram.types import Message
from aiogram.utils.i18n import I18n, ngettext
from aiogram.utils.i18n import gettext as _
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from bot.config import Settings
from bot.ingest.status import SourceStatus, source_statuses
from bot.storage.chats import chat_zone
from bot.telegram.delivery import send_lines
from reports.i18n import format_date, format_number
from reports.text import shorten

Clock = Callable[[], datetime]


def build_router() -> Router:
    router = Router(name=__name__)

    @router.message(Command("sources"), flags={"access": "admin"})
    async def sources_command(
        message: Message,
        bot: Bot,
        session: AsyncSession,
        engine: AsyncEngine,
        settings: Settings,
        clock: Clock,
        i18n: I18n,
    ) -> None:
        zone = await chat_zone(session, message.chat.id, settings.timezone)
        now = clock()
        day_start = now.astimezone(zone).replace(hour=0, minute=0, second=0, microsecond=0)
        async with engine.connect() as connection:
            statuses = await source_statuses(connection, now=now, day_start=day_start)
        lang = i18n.current_locale
        lines = [_("<b>Desk sources</b>")]
        if not statuses:
            lines.append(
                _("Nothing has arrived from a desk yet. See “Connecting your desk” in README.")
            )
        for status in statuses:
            lines.append(_source_line(status, zone, lang))
        await send_lines(bot, message.chat.id, lines)

    return router


def _source_line(status: SourceStatus, zone: ZoneInfo, lang: str) -> str:
    name = status.source if not status.label else f"{status.source} · {status.label}"
    if status.newest is None:
        newest = _("no events yet")
    else:
        local = status.newest.astimezone(zone)
        newest = _("newest event {moment}").format(
            moment=f"{format_date(local.date(), lang)}, {local:%H:%M}"
        )
    today = ngettext("{count} event today", "{count} events today", status.events_today).format(
        count=format_number(status.events_today, lang)
    )
    refused = ngettext(
        "{count} request refused in 24 h", "{count} requests refused in 24 h", status.refused_24h
    ).format(count=format_number(status.refused_24h, lang))
    # Source names come from URLs: escaped like every data string.
    return f"<b>{html.escape(shorten(name))}</b>: {newest} · {today} · {refused}"
