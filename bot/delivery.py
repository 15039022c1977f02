"""The one path that sends a report to a chat: text, then the pies, then the CSV."""

import logging
import time

from aiogram import Bot
from aiogram.types import BufferedInputFile, InlineKeyboardMarkup, InputMediaPhoto
from aiogram.utils.chat_action import ChatActionSender
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.rendering import Renderer
from reports.bundle import ReportBundle
from reports.metrics import build_report
from reports.model import PeriodPair, ReportFilter

logger = logging.getLogger(__name__)


async def deliver_bundle(
    bot: Bot, chat_id: int, bundle: ReportBundle, *, keyboard: InlineKeyboardMarkup | None = None
) -> None:
    await bot.send_message(chat_id, bundle.text, reply_markup=keyboard)
    charts = bundle.charts
    if len(charts) == 1:
        name, data = charts[0]
        await bot.send_photo(chat_id, BufferedInputFile(data, name))
    elif charts:
        await bot.send_media_group(
            chat_id,
            [InputMediaPhoto(media=BufferedInputFile(data, name)) for name, data in charts],
        )
    await bot.send_document(chat_id, BufferedInputFile(bundle.csv, bundle.csv_name))


async def send_report(
    bot: Bot,
    chat_id: int,
    *,
    engine: AsyncEngine,
    renderer: Renderer,
    periods: PeriodPair,
    report_filter: ReportFilter,
    lang: str,
    delimiter: str,
    title: str | None = None,
    keyboard: InlineKeyboardMarkup | None = None,
) -> ReportBundle:
    """Compute, render and send one report; commands and digests both come through here."""
    started = time.perf_counter()
    # The chat sees "sending photo" while the numbers are computed and the pies drawn.
    async with ChatActionSender.upload_photo(bot=bot, chat_id=chat_id):
        async with engine.connect() as connection:
            report = await build_report(connection, periods, report_filter)
        bundle = await renderer.render(report, lang=lang, delimiter=delimiter, title=title)
    await deliver_bundle(bot, chat_id, bundle, keyboard=keyboard)
    logger.info(
        "report %s %s sent to chat %s in %.3f s",
        periods.current.label,
        report_filter,
        chat_id,
        time.perf_counter() - started,
    )
    return bundle


# Telegram's limit on one message; raw HTML is never shorter than the parsed text it becomes.
MESSAGE_LIMIT = 4096


def split_lines(lines: list[str], limit: int = MESSAGE_LIMIT) -> list[str]:
    """Group whole lines into messages under the limit; each line must be balanced HTML."""
    messages: list[str] = []
    current: list[str] = []
    size = 0
    for line in lines:
        if size + len(line) + 1 > limit and current:
            messages.append("\n".join(current))
            current, size = [], 0
        current.append(line)
        size += len(line) + 1
    if current:
        messages.append("\n".join(current))
    return messages


async def send_lines(bot: Bot, chat_id: int, lines: list[str]) -> None:
    for text in split_lines(lines):
        await bot.send_message(chat_id, text)
