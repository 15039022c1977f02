"""Error router: a ReportError answers with its message; anything else gets an incident id."""

import html
import logging
import uuid

from aiogram import Bot, Router
from aiogram.filters import ExceptionTypeFilter
from aiogram.types import ErrorEvent
from aiogram.utils.i18n import gettext as _
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from bot.storage.engine import connection_lost, sqlite_defect
from reports.errors import ReportError

logger = logging.getLogger(__name__)

TEMPORARY_DATABASE_ERRORS = (OperationalError, InterfaceError, PoolTimeoutError, ConnectionError)


def database_temporarily_unavailable(event: ErrorEvent) -> bool:
    """A lock held too long, a full pool, or a connection the server ended (any DBAPIError
    that says so, not only OperationalError): worth a retry in a minute, not an incident.
    A statement SQLite refuses is an incident, though its driver calls it OperationalError."""
    if sqlite_defect(event.exception):
        return False
    return isinstance(event.exception, TEMPORARY_DATABASE_ERRORS) or connection_lost(
        event.exception
    )


async def reply_to_update(event: ErrorEvent, bot: Bot, text: str) -> None:
    update = event.update
    if update.message is not None:
        await bot.send_message(update.message.chat.id, text)
    elif update.callback_query is not None and update.callback_query.message is not None:
        # Not answered here: every button handler answers the press before it can fail, and
        # Telegram refuses a second answer.
        await bot.send_message(update.callback_query.message.chat.id, text)


def build_router() -> Router:
    router = Router(name=__name__)

    @router.error(ExceptionTypeFilter(ReportError))
    async def report_error(event: ErrorEvent, bot: Bot) -> None:
        assert isinstance(event.exception, ReportError)
        await reply_to_update(event, bot, html.escape(event.exception.localized(_), quote=False))

    @router.error(database_temporarily_unavailable)
    async def database_unavailable(event: ErrorEvent, bot: Bot) -> None:
        # A lock held longer than the busy timeout, or a lost PostgreSQL connection: the
        # transaction was rolled back, and the pool reconnects on the next command.
        cause = getattr(event.exception, "orig", None) or event.exception
        logger.warning(
            "database unavailable for update %s: %s: %s",
            event.update.update_id,
            type(cause).__name__,
            cause,
        )
        await reply_to_update(
            event, bot, _("Temporary problem with the database: please retry in a minute.")
        )

    @router.error()
    async def unexpected_error(event: ErrorEvent, bot: Bot) -> None:
        incident = uuid.uuid4().hex[:8]
        logger.error(
            "incident %s while handling update %s",
            incident,
            event.update.update_id,
            exc_info=event.exception,
        )
        await reply_to_update(
            event,
            bot,
            _(
                "Sorry, something went wrong on our side. Incident id: <code>{incident}</code>."
            ).format(incident=incident),
        )

    return router
