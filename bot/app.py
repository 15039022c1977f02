"""Composition root: the Bot, the Dispatcher with its routers and middlewares, and the way
updates come in: long polling, or Telegram's webhook (TELEGRAM_WEBHOOK_URL)."""

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

from aiogram import Bot, Dispatcher
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.enums import ParseMode
from aiogram.exceptions import (
    ClientDecodeError,
    TelegramAPIError,
    TelegramBadRequest,
    TelegramUnauthorizedError,
)
from aiogram.types import User
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.config import SHUTDOWN_GRACE, Settings
from bot.digests.clock import DigestClock
from bot.digests.runner import DigestRunner
from bot.ingest.chatwoot_sync import reconcile_forever
from bot.rendering import Renderer
from bot.shared_state import RedisState, connect
from bot.storage.checkpoints import checkpoints_in_background
from bot.storage.engine import session_factory
from bot.storage.people import Role
from bot.storage.resident import resident_in_background
from bot.telegram import outbound
from bot.telegram.commands import people_with_roles, set_commands
from bot.telegram.delivery import ReportService
from bot.telegram.i18n import PeopleI18nMiddleware, build_i18n
from bot.telegram.middlewares import (
    AccessMiddleware,
    DbSessionMiddleware,
    InFlightMiddleware,
    ReportFloodMiddleware,
    UpdateOnceMiddleware,
)
from bot.telegram.outbound import OutboundLimiter, Pacer, backoff_delays, retry
from bot.web.server import IngestServer, start_web
from handlers import build_routers

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]


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


@dataclass(frozen=True, slots=True)
class Application:
    bot: Bot
    dispatcher: Dispatcher
    digests: DigestRunner
    digest_clock: DigestClock
    # What the instances share, with REDIS_URL.
    shared: RedisState | None = None


def build_dispatcher(
    settings: Settings,
    engine: AsyncEngine,
    *,
    clock: Clock | None = None,
    renderer: Renderer | None = None,
    shared_state: RedisState | None = None,
    **workflow_data: Any,
) -> Dispatcher:
    """A fresh Dispatcher (routers can be attached once, so tests build one each); its limits
    live in `shared_state`, or in this process without it."""
    renderer = renderer or Renderer()
    clock = clock or (lambda: datetime.now(UTC))
    dispatcher = Dispatcher(
        settings=settings,
        engine=engine,
        renderer=renderer,
        clock=clock,
        report_service=ReportService(
            engine=engine, renderer=renderer, settings=settings, clock=clock
        ),
        **workflow_data,
    )
    sessions = session_factory(engine)
    in_flight = InFlightMiddleware()
    dispatcher.update.outer_middleware(in_flight)
    if settings.telegram_webhook_url:
        dispatcher.update.outer_middleware(UpdateOnceMiddleware(shared_state))
    PeopleI18nMiddleware(build_i18n(settings.language), sessions).setup(dispatcher)
    # Inner: only updates a handler matched are judged (group chatter passes unanswered), and
    # only they get the update's session, after access was checked in reads of its own.
    access = AccessMiddleware(settings.admin_ids, sessions, state=shared_state)
    flood = ReportFloodMiddleware(state=shared_state)
    db_session = DbSessionMiddleware(engine)
    for observer in (dispatcher.message, dispatcher.callback_query):
        observer.middleware(access)
        observer.middleware(flood)
    for observer in (dispatcher.message, dispatcher.callback_query, dispatcher.my_chat_member):
        observer.middleware(db_session)
    dispatcher.include_routers(*build_routers())

    async def on_shutdown() -> None:
        # In-flight reports finish their sends before the renderer and the session close.
        await in_flight.wait_idle(SHUTDOWN_GRACE)
        renderer.close()

    dispatcher.shutdown.register(on_shutdown)
    return dispatcher


def build_application(
    settings: Settings,
    engine: AsyncEngine,
    *,
    clock: Clock | None = None,
    limiter: Pacer | None = None,
) -> Application:
    """Everything `python -m bot` runs, wired once; tests build the same with a fake server."""
    clock = clock or (lambda: datetime.now(UTC))
    bot = build_bot(settings)
    # Keys carry the bot's id: bots sharing one Redis keep apart.
    shared = (
        RedisState(connect(settings.redis_url), prefix=f"bot{bot.id}:")
        if settings.redis_url
        else None
    )
    outbound.install(bot, limiter or (shared.pacer() if shared else OutboundLimiter()))
    renderer = Renderer()
    runner = DigestRunner(bot, engine, renderer, settings, clock=clock)
    digest_clock = DigestClock(runner, engine, settings.timezone, clock)
    dispatcher = build_dispatcher(
        settings,
        engine,
        clock=clock,
        renderer=renderer,
        shared_state=shared,
        digest_clock=digest_clock,
    )

    menu = CommandMenu(
        bot, settings.language, people=partial(people_with_roles, engine, settings.admin_ids)
    )

    async def on_startup(bot: Bot) -> None:
        await menu.set_or_retry_later()
        await renderer.warm_up()
        await digest_clock.start()

    dispatcher.startup.register(on_startup)
    dispatcher.shutdown.register(menu.stop)
    dispatcher.shutdown.register(digest_clock.shutdown)
    if shared is not None:
        # Last: the sends that finish during the shutdown still pace through it.
        dispatcher.shutdown.register(shared.close)
    return Application(
        bot=bot, dispatcher=dispatcher, digests=runner, digest_clock=digest_clock, shared=shared
    )


class CommandMenu:
    """Sets the command menu at start; if Telegram refuses, the bot serves anyway and retries.

    The menu is a convenience: a 500 or a long 429 on setMyCommands must not stop the start.
    """

    def __init__(
        self,
        bot: Bot,
        language: str,
        *,
        start_timeout: float = 10.0,
        first_delay: float = 60.0,
        max_delay: float = 3600.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        people: Callable[[], Awaitable[list[tuple[int, Role]]]] | None = None,
    ) -> None:
        self.bot, self.language = bot, language
        # Whose private chats get a menu of their role (admins, leads); None: nobody's.
        self.people = people
        # A 429 with a long retry_after is waited out by the retry middleware: at start the
        # menu gets this long, then the rest of the wait happens in the background.
        self.start_timeout = start_timeout
        self.first_delay, self.max_delay, self._sleep = first_delay, max_delay, sleep
        self._retry: asyncio.Task[None] | None = None

    async def set_or_retry_later(self) -> None:
        try:
            async with asyncio.timeout(self.start_timeout):
                await self._set()
        except (TelegramAPIError, ClientDecodeError, TimeoutError) as exc:
            logger.warning(
                "command menu not set (%s: %s); the bot serves without it and retries",
                type(exc).__name__,
                exc,
            )
            self._retry = asyncio.create_task(self._keep_trying(), name="command-menu")

    async def _keep_trying(self) -> None:
        delay = self.first_delay
        while True:
            await self._sleep(delay)
            try:
                await self._set()
            except (TelegramAPIError, ClientDecodeError) as exc:
                delay = min(delay * 2, self.max_delay)
                logger.warning("command menu still not set (%s); next try in %.0f s", exc, delay)
                continue
            logger.info("command menu set")
            return

    async def _set(self) -> None:
        people = await self.people() if self.people is not None else []
        await set_commands(self.bot, self.language, people)

    async def stop(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retry


async def wait_for_telegram(
    bot: Bot,
    *,
    max_delay: float = 30.0,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> User:
    """getMe until Telegram answers: aiogram's polling would otherwise crash at start-up.

    A rejected token (TelegramUnauthorizedError) is not retried: it will not get better.
    """

    def log(exc: Exception, _failures: int, delay: float) -> None:
        logger.warning(
            "Telegram is not reachable (%s); retrying in %.0f s", type(exc).__name__, delay
        )

    return await retry(
        bot.me, delays=backoff_delays(1.0, limit=max_delay), on_retry=log, sleep=sleep
    )


async def serve(settings: Settings, engine: AsyncEngine) -> int:
    """Run the bot until SIGTERM or SIGINT: long polling, or with TELEGRAM_WEBHOOK_URL the
    webhook on the web server. Returns the exit code."""
    if not settings.admin_ids:
        logger.warning("ADMIN_IDS is empty: the bot will refuse everyone until it is set")
    app = build_application(settings, engine)
    try:
        try:
            me = await wait_for_telegram(app.bot)
        except TelegramUnauthorizedError:
            logger.error("Telegram rejected BOT_TOKEN: check the token from @BotFather")
            return 2
        logger.info("bot @%s starts, database %s", me.username, engine.url.render_as_string())
        webhook = settings.telegram_webhook_secret if settings.telegram_webhook_url else None
        try:
            web_runner = await _start_web(
                settings,
                engine,
                telegram=None
                if webhook is None
                else (app.dispatcher, app.bot, webhook.get_secret_value()),
            )
        except OSError as exc:
            logger.error(
                "cannot serve on WEB_HOST:WEB_PORT %s:%s: %s (set another WEB_PORT, or 0 for "
                "none)",
                settings.web_host,
                settings.web_port,
                exc.strerror or exc,
            )
            return 2
        # History reconciliation recovers what a missed webhook would have told (DESIGN §10).
        reconcile = (
            asyncio.create_task(reconcile_forever(settings, engine), name="chatwoot-reconcile")
            if settings.chatwoot_sync_configured
            else None
        )
        try:
            async with checkpoints_in_background(engine), resident_in_background(engine):
                if web_runner is not None and webhook is not None:
                    return await _serve_webhook(app, settings, web_runner)
                await app.dispatcher.start_polling(app.bot)
        finally:
            if reconcile is not None:
                reconcile.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reconcile
            if web_runner is not None and webhook is None:
                await web_runner.cleanup()
    finally:
        await app.bot.session.close()
    return 0


async def set_webhook(bot: Bot, dispatcher: Dispatcher, settings: Settings) -> None:
    """Point Telegram at TELEGRAM_WEBHOOK_URL; retried while Telegram cannot be reached.

    Every instance sets the same webhook at start and none deletes it at shutdown: the others
    go on serving. Pending updates are kept (drop_pending_updates=False): they are users'
    commands.
    """
    url, secret = settings.telegram_webhook_url, settings.telegram_webhook_secret
    assert url and secret

    def log(exc: Exception, _failures: int, delay: float) -> None:
        logger.warning("setWebhook failed (%s); retrying in %.0f s", type(exc).__name__, delay)

    await retry(
        lambda: bot.set_webhook(
            url,
            secret_token=secret.get_secret_value(),
            allowed_updates=dispatcher.resolve_used_update_types(),
            drop_pending_updates=False,
        ),
        delays=backoff_delays(1.0, limit=30.0),
        on_retry=log,
    )


async def _serve_webhook(app: Application, settings: Settings, web_runner: web.AppRunner) -> int:
    dispatcher, bot = app.dispatcher, app.bot
    workflow = {"dispatcher": dispatcher, "bots": [bot], **dispatcher.workflow_data}
    await dispatcher.emit_startup(bot=bot, **workflow)
    try:
        try:
            await set_webhook(bot, dispatcher, settings)
        except TelegramBadRequest as exc:
            logger.error("Telegram refused TELEGRAM_WEBHOOK_URL: %s", exc.message)
            return 2
        logger.info("webhook mode: updates arrive at %s", settings.telegram_webhook_url)
        await _stop_requested()
        logger.info("stopping: no new updates; the ones being handled finish")
    finally:
        # Updates stop coming first; the shutdown hooks then wait for those under way.
        await web_runner.cleanup()
        await dispatcher.emit_shutdown(bot=bot, **workflow)
    return 0


async def _stop_requested() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(number, stop.set)
    try:
        await stop.wait()
    finally:
        for number in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(number)


async def _start_web(
    settings: Settings, engine: AsyncEngine, *, telegram: tuple[Dispatcher, Bot, str] | None
) -> web.AppRunner | None:
    """The ingestion and health server on WEB_HOST:WEB_PORT, with /telegram in webhook mode;
    None when WEB_PORT=0. A port that cannot be had raises OSError."""
    if settings.web_port == 0:
        logger.info("web server off (WEB_PORT=0)")
        return None
    runner = await start_web(
        IngestServer(settings, engine), settings.web_host, settings.web_port, telegram=telegram
    )
    if settings.ingest_token is None:
        logger.info("INGEST_TOKEN is not set: ingestion endpoints answer 401")
    logger.info("web server on http://%s:%s", settings.web_host, settings.web_port)
    return runner
