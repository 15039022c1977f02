"""/channels: known channels and their apps with all-time client counts."""

from aiogram import Bot, Router
from aiogram.filters import Command
from aiogram.types import Message
from aiogram.utils.i18n import I18n
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.telegram.delivery import send_lines
from reports.directory import load_directory, render_directory


def build_router() -> Router:
    router = Router(name=__name__)

    @router.message(Command("channels"))
    async def channels_command(
        message: Message, bot: Bot, engine: AsyncEngine, i18n: I18n
    ) -> None:
        async with engine.connect() as connection:
            entries = await load_directory(connection)
        await send_lines(bot, message.chat.id, render_directory(entries, lang=i18n.current_locale))

    return router
