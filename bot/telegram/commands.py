"""The command menu of each role (setMyCommands): everyone, leads and admins, in every language.

Telegram shows a private chat the menu of its own scope (BotCommandScopeChat, the chat id of a
private chat is its user's id) before the default one, so admins see the admin commands, leads
the report commands, and anyone else only /help and /lang. Group chats get the report commands.
"""

import logging
from collections.abc import Iterable

from aiogram import Bot
from aiogram.exceptions import ClientDecodeError, TelegramAPIError, TelegramBadRequest
from aiogram.types import (
    BotCommand,
    BotCommandScopeAllGroupChats,
    BotCommandScopeChat,
    BotCommandScopeDefault,
)
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.storage.engine import session_factory
from bot.storage.people import Role, list_people
from bot.telegram.i18n import SUPPORTED_LANGUAGES
from reports.errors import N_
from reports.i18n import translator

Scope = BotCommandScopeDefault | BotCommandScopeAllGroupChats | BotCommandScopeChat

_CLIENTS = ("clients", N_("Client report: /clients week, /clients month channel=whatsapp"))
_CHANNELS = ("channels", N_("Channels and apps with all-time client counts"))
_HELP = ("help", N_("Commands, periods and metric definitions"))
_LANG = ("lang", N_("Language: /lang ru or /lang en"))
PUBLIC_COMMANDS = [_HELP, _LANG]
LEAD_COMMANDS = [_CLIENTS, _CHANNELS, _HELP, _LANG]
ADMIN_COMMANDS = [
    _CLIENTS,
    _CHANNELS,
    ("digest", N_("Scheduled digests: /digest daily 09:00")),
    ("timezone", N_("Timezone of this chat: /timezone Europe/Moscow")),
    ("grant", N_("Give the lead role: /grant USER_ID")),
    ("revoke", N_("Take the lead role back: /revoke USER_ID")),
    ("users", N_("People and roles")),
    ("enable", N_("Let this group use the bot")),
    ("disable", N_("Stop the bot in this group")),
    ("sources", N_("Desk sources: newest event, events today, refused requests")),
    _HELP,
    _LANG,
]
MENUS: dict[Role | None, list[tuple[str, str]]] = {
    None: PUBLIC_COMMANDS,
    "lead": LEAD_COMMANDS,
    "admin": ADMIN_COMMANDS,
}

logger = logging.getLogger(__name__)


def command_menu(language: str, role: Role | None = None) -> list[BotCommand]:
    """The menu of a role (None: someone without one) in a language."""
    gettext = translator(language).gettext
    return [BotCommand(command=name, description=gettext(text)) for name, text in MENUS[role]]


async def _set_menu(bot: Bot, scope: Scope, role: Role | None, default_language: str) -> None:
    for language in SUPPORTED_LANGUAGES:
        await bot.set_my_commands(command_menu(language, role), scope, language)
    # Users whose Telegram language is neither get the LANGUAGE setting's menu.
    await bot.set_my_commands(command_menu(default_language, role), scope)


async def set_person_menu(
    bot: Bot, user_id: int, role: Role | None, default_language: str
) -> bool:
    """The menu of one person's private chat; without a role, the chat falls back to the
    default menu. False when it could not be set: Telegram knows no chat with them (they never
    wrote to the bot), or refused; a menu is a convenience, so that is logged, not raised."""
    scope = BotCommandScopeChat(chat_id=user_id)
    try:
        if role is None:
            for language in (*SUPPORTED_LANGUAGES, None):
                await bot.delete_my_commands(scope, language)
        else:
            await _set_menu(bot, scope, role, default_language)
    except TelegramBadRequest as exc:
        logger.info("command menu of user %s not set: %s", user_id, exc.message)
        return False
    except (TelegramAPIError, ClientDecodeError) as exc:
        logger.warning("command menu of user %s not set: %s", user_id, type(exc).__name__)
        return False
    return True


async def set_commands(
    bot: Bot, default_language: str, people: Iterable[tuple[int, Role]] = ()
) -> None:
    """Every menu: the default, group chats', and each admin's and lead's private chat."""
    await _set_menu(bot, BotCommandScopeDefault(), None, default_language)
    await _set_menu(bot, BotCommandScopeAllGroupChats(), "lead", default_language)
    for user_id, role in people:
        await set_person_menu(bot, user_id, role, default_language)


async def people_with_roles(
    engine: AsyncEngine, admin_ids: frozenset[int]
) -> list[tuple[int, Role]]:
    """Admins from ADMIN_IDS and the granted leads, as their menus are set."""
    async with session_factory(engine)() as session:
        return [(person.user_id, person.role) for person in await list_people(session, admin_ids)]
