"""Composition root: the Bot, the Dispatcher with its routers and middlewares, and polling."""

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from aiogram import Bot, Dispatcher
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.enums import ParseMode
from aiogram.types import BotCommand
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.config import Settings
from bot.db import session_factory
from bot.i18n import PeopleI18nMiddleware, build_i18n
from bot.middlewares import AdminOnlyMiddleware, DbSessionMiddleware
from bot.rendering import Renderer
from handlers import build_routers

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]

COMMANDS = {
    "en": [
        ("clients", "Client report: /clients week, /clients month channel=whatsapp"),
        ("channels", "Channels and apps with all-time client counts"),
        ("help", "Commands, periods and metric definitions"),
        ("lang", "Language: /lang ru or /lang en"),
    ],
    "ru": [
        ("clients", "Отчёт по клиентам: /clients неделя, /clients месяц channel=whatsapp"),
        ("channels", "Каналы и приложения с числом клиентов за всё время"),
        ("help", "Команды, периоды и определения метрик"),
        ("lang", "Язык: /lang ru или /lang en"),
    ],
}


def build_bot(settings: Settings) -> Bot:
    assert settings.bot_token is not None
    session = AiohttpSession()
    if settings.telegram_api_url:
        session = AiohttpSession(api=TelegramAPIServer.from_base(settings.telegram_api_url))
    return Bot(
        settings.bot_token.get_secret_value(),
        session=session,
        default=DefaultBotProperties(parse_mode=ParseMode.HTML),
    )


def build_dispatcher(
    settings: Settings, engine: AsyncEngine, *, clock: Clock | None = None
) -> Dispatcher:
    """A fresh Dispatcher (routers can be attached once, so tests build one each)."""
    renderer = Renderer()
    dispatcher = Dispatcher(
        settings=settings,
        engine=engine,
        renderer=renderer,
        clock=clock or (lambda: datetime.now(UTC)),
    )
    sessions = session_factory(engine)
    dispatcher.update.outer_middleware(DbSessionMiddleware(sessions))
    PeopleI18nMiddleware(build_i18n(settings.language), sessions).setup(dispatcher)
    admin_only = AdminOnlyMiddleware(settings.admin_ids)
    dispatcher.message.outer_middleware(admin_only)
    dispatcher.callback_query.outer_middleware(admin_only)
    dispatcher.include_routers(*build_routers())
    dispatcher.shutdown.register(renderer.close)
    return dispatcher


async def set_commands(bot: Bot) -> None:
    for language, commands in COMMANDS.items():
        await bot.set_my_commands(
            [BotCommand(command=name, description=text) for name, text in commands],
            language_code=language,
        )
    await bot.set_my_commands(
        [BotCommand(command=name, description=text) for name, text in COMMANDS["en"]]
    )


async def run_polling(settings: Settings, engine: AsyncEngine) -> int:
    if not settings.admin_ids:
        logger.warning("ADMIN_IDS is empty: the bot will refuse everyone until it is set")
    bot = build_bot(settings)
    dispatcher = build_dispatcher(settings, engine)
    try:
        me = await bot.get_me()
        logger.info("bot @%s starts, database %s", me.username, engine.url.render_as_string())
        await set_commands(bot)
        await dispatcher.start_polling(bot)
    finally:
        await bot.session.close()
    return 0
