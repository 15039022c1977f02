"""Settings from the environment or `.env` (DESIGN.md §6), validated once at start."""

from functools import cache
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, available_timezones

from pydantic import SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from bot.errors import N_, AppError

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///data/bot.db"
# How long a stopping bot lets the reports and digests already being sent finish.
SHUTDOWN_GRACE = 30.0


@cache
def _zone_names() -> frozenset[str]:
    return frozenset(available_timezones())


def zone_named(name: str) -> ZoneInfo | None:
    """The IANA zone of that exact name, or None (ZoneInfo itself also opens "Europe", the
    folder, and fails with OS errors on odd input)."""
    return ZoneInfo(name) if name in _zone_names() else None


class SettingsError(AppError):
    """A setting has a value the bot cannot use; the message names it."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    bot_token: SecretStr | None = None
    database_url: str = DEFAULT_DATABASE_URL
    telegram_api_url: str | None = None
    admin_ids: Annotated[frozenset[int], NoDecode] = frozenset()
    timezone: str = "Europe/Moscow"
    language: Literal["ru", "en"] = "ru"
    csv_delimiter: str | None = None
    default_period: str = "week"

    @field_validator("admin_ids", mode="before")
    @classmethod
    def _split_ids(cls, value: object) -> object:
        if isinstance(value, str):
            parts = [part.strip() for part in value.split(",") if part.strip()]
            try:
                return frozenset(int(part) for part in parts)
            except ValueError:
                raise ValueError("must be comma-separated numeric Telegram user ids") from None
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        if zone_named(value) is None:
            raise ValueError(f"unknown IANA timezone {value!r} (try Europe/Moscow)")
        return value

    @field_validator("csv_delimiter", mode="before")
    @classmethod
    def _one_char(cls, value: object) -> object:
        if value in (None, ""):
            return None
        if value == r"\t":
            return "\t"
        if not isinstance(value, str) or len(value) != 1 or value in "\"'\r\n":
            raise ValueError("must be a single character such as ; or ,")
        return value

    @field_validator("telegram_api_url", mode="before")
    @classmethod
    def _base_url(cls, value: object) -> object:
        if value in (None, ""):
            return None
        if not isinstance(value, str) or not value.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) base URL such as http://127.0.0.1:8081")
        return value.rstrip("/")

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def delimiter_for(self, language: str) -> str:
        """`;` for Russian (what Russian-locale Excel splits on), `,` otherwise, unless set."""
        if self.csv_delimiter:
            return self.csv_delimiter
        return ";" if language == "ru" else ","


def load_settings(**overrides: object) -> Settings:
    """Read settings, turning pydantic's report into one line per bad setting."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            name = ".".join(str(part) for part in error["loc"]).upper()
            lines.append(f"{name}: {error['msg'].removeprefix('Value error, ')}")
        # Read before the language setting is known, and pydantic's words are English: shown as
        # they are.
        raise SettingsError(N_("bad setting: {problems}"), problems="; ".join(lines)) from None
