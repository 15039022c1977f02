"""Language of each update: the /lang choice, else the Telegram language, else LANGUAGE."""

from typing import Any

from aiogram.types import TelegramObject, User
from aiogram.utils.i18n import I18n, I18nMiddleware
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.storage.engine import session_read_retrying
from bot.storage.people import stored_language
from reports.i18n import DOMAIN, LANGUAGES, LOCALES_DIR

# The catalogs and languages are the ones reports/ translates with: one list for both.
SUPPORTED_LANGUAGES = LANGUAGES


def build_i18n(default_language: str) -> I18n:
    return I18n(path=LOCALES_DIR, default_locale=default_language, domain=DOMAIN)


def language_of(code: str | None) -> str | None:
    """`ru`, `en`, or None for a Telegram language code such as `en-US` or `uk`."""
    base = (code or "").split("-")[0].split("_")[0].lower()
    return base if base in SUPPORTED_LANGUAGES else None


class PeopleI18nMiddleware(I18nMiddleware):
    def __init__(self, i18n: I18n, sessions: async_sessionmaker[AsyncSession]) -> None:
        super().__init__(i18n)
        self.sessions = sessions

    async def get_locale(self, event: TelegramObject, data: dict[str, Any]) -> str:
        user: User | None = data.get("event_from_user")
        if user is None:
            return self.i18n.default_locale
        # Its own session: error handlers run after the update's session has closed.
        chosen = await session_read_retrying(
            self.sessions, lambda session: stored_language(session, user.id)
        )
        return chosen or language_of(user.language_code) or self.i18n.default_locale
