"""The one place tests build Settings (no .env read, Moscow time, the test admin), and the
frozen clock most tests run at."""

from collections.abc import Iterable
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncEngine

from bot.config import Settings

ADMIN = 42
MSK = ZoneInfo("Europe/Moscow")
# "yesterday" is then the hand-counted local day 2026-11-10 of tests/datasets.py.
NOW = datetime(2026, 11, 11, 12, 0, tzinfo=MSK)


def make_settings(
    engine: AsyncEngine,
    *,
    token: str | None = None,
    api_url: str | None = None,
    admin_ids: Iterable[int] = (ADMIN,),
    language: str = "en",
) -> Settings:
    return Settings(
        _env_file=None,
        bot_token=token,
        telegram_api_url=api_url,
        database_url=engine.url.render_as_string(hide_password=False),
        admin_ids=",".join(str(user_id) for user_id in admin_ids),
        timezone="Europe/Moscow",
        language=language,
    )
