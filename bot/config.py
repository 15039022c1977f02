"""Settings from the environment or `.env` (DESIGN.md §6), validated once at start."""

import re
from datetime import UTC, datetime
from functools import cache
from typing import Annotated, Literal, Self
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, available_timezones

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from bot.errors import N_, AppError
from reports.errors import ReportError
from reports.periods import parse_period

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///data/bot.db"
MIN_INGEST_TOKEN = 24
CSV_DELIMITERS = frozenset(";,|:\t")
DATABASE_DRIVERS = {"sqlite+aiosqlite", "postgresql+asyncpg"}
# How long a stopping bot lets the reports and digests already being sent finish.
SHUTDOWN_GRACE = 30.0
# Telegram's rule for setWebhook's secret_token.
WEBHOOK_SECRET = re.compile(r"[A-Za-z0-9_-]{1,256}")


# Names the tz database ships that are no place: the host's own zone, a placeholder, aliases
# of the POSIX and leap-second trees.
_NOT_PLACES = frozenset({"localtime", "Factory", "posixrules"})


@cache
def _zone_names() -> frozenset[str]:
    return frozenset(
        name
        for name in available_timezones()
        if name not in _NOT_PLACES and not name.startswith(("posix/", "right/"))
    )


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
    # Web server for ingestion and health (DESIGN.md §10); port 0 turns it off.
    web_host: str = "127.0.0.1"
    web_port: int = Field(default=8080, ge=0, le=65535)
    ingest_token: SecretStr | None = None
    chatwoot_webhook_secret: SecretStr | None = None
    source_silent_hours: int = Field(default=24, ge=1, le=24 * 90)
    # Chatwoot's REST API for history sync and the 10-minute reconciliation.
    chatwoot_api_url: str | None = None
    chatwoot_api_token: SecretStr | None = None
    chatwoot_account_id: int | None = Field(default=None, ge=1)
    # How long a digest claim outlives its holder: another instance resumes a dead one's digests
    # after this (bot/digests/runner.py).
    digest_lease_seconds: int = Field(default=180, ge=10, le=3600)
    # Several instances (DESIGN §9): updates by webhook to POST /telegram, shared state in Redis.
    telegram_webhook_url: str | None = None
    telegram_webhook_secret: SecretStr | None = None
    redis_url: str | None = None

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

    @field_validator("default_period")
    @classmethod
    def _known_period(cls, value: str) -> str:
        # Checked now, not at the first bare /clients: a period that cannot be read today (or
        # that starts in the future) would fail every such report.
        try:
            parse_period(value, now=datetime.now(UTC), tz=ZoneInfo("UTC"))
        except ReportError as exc:
            raise ValueError(exc.message) from None
        return value

    @field_validator("csv_delimiter", mode="before")
    @classmethod
    def _one_char(cls, value: object) -> object:
        if value in (None, ""):
            return None
        if value == r"\t":
            return "\t"
        # A letter or digit would split values apart; quotes and line ends break the format.
        if not isinstance(value, str) or len(value) != 1 or value not in CSV_DELIMITERS:
            raise ValueError("must be one of ; , | : or \\t (a tab)")
        return value

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        try:
            driver = make_url(value).drivername
        except ArgumentError:
            raise ValueError(
                "not a database URL (try sqlite+aiosqlite:///data/bot.db or "
                "postgresql+asyncpg://user:password@host:5432/dbname)"
            ) from None
        if driver not in DATABASE_DRIVERS:
            hint = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg"}.get(
                driver.split("+")[0]
            )
            suggestion = f" (use {hint}://...)" if hint else ""
            raise ValueError(
                f"unsupported database {driver!r}: SQLite (sqlite+aiosqlite) or PostgreSQL "
                f"(postgresql+asyncpg) only{suggestion}"
            )
        return value

    @field_validator("ingest_token", mode="before")
    @classmethod
    def _long_secret(cls, value: object) -> object:
        if value in (None, ""):
            return None
        # The token is the only credential of the Blinger webhook URL: guessable is unsafe.
        if not isinstance(value, str) or len(value) < MIN_INGEST_TOKEN or not value.isascii():
            raise ValueError(
                f"must be a random ASCII secret of at least {MIN_INGEST_TOKEN} characters "
                "(for example: python -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )
        if not all(char.isalnum() or char in "-_." for char in value):
            raise ValueError(
                "may hold only letters, digits, '-', '_' and '.' (it is part of a URL)"
            )
        return value

    @field_validator("chatwoot_webhook_secret", "chatwoot_api_token", mode="before")
    @classmethod
    def _empty_secret(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("chatwoot_account_id", mode="before")
    @classmethod
    def _empty_number(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("telegram_api_url", "chatwoot_api_url", mode="before")
    @classmethod
    def _base_url(cls, value: object) -> object:
        if value in (None, ""):
            return None
        if not isinstance(value, str) or not value.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) base URL such as http://127.0.0.1:8081")
        return value.rstrip("/")

    @field_validator("telegram_webhook_url", mode="before")
    @classmethod
    def _https_url(cls, value: object) -> object:
        if value in (None, ""):
            return None
        # Telegram delivers webhooks over HTTPS only (a reverse proxy terminates TLS).
        if not isinstance(value, str) or not value.startswith("https://"):
            raise ValueError("must be the public https:// URL of /telegram")
        return value

    @field_validator("telegram_webhook_secret", mode="before")
    @classmethod
    def _webhook_secret(cls, value: object) -> object:
        if value in (None, ""):
            return None
        if not isinstance(value, str) or not WEBHOOK_SECRET.fullmatch(value):
            raise ValueError(
                "must be 1-256 characters of A-Z, a-z, 0-9, '_' and '-' (Telegram's rule; for "
                "example: python -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )
        return value

    @field_validator("redis_url", mode="before")
    @classmethod
    def _redis_url(cls, value: object) -> object:
        if value in (None, ""):
            return None
        if not isinstance(value, str) or not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a Redis URL such as redis://127.0.0.1:6379/0")
        return value

    @model_validator(mode="after")
    def _webhook_complete(self) -> Self:
        if self.telegram_webhook_url and self.telegram_webhook_secret is None:
            raise ValueError(
                "TELEGRAM_WEBHOOK_SECRET is required with TELEGRAM_WEBHOOK_URL: Telegram sends "
                "it with every update, and /telegram refuses requests without it"
            )
        if self.telegram_webhook_url and self.web_port == 0:
            raise ValueError("TELEGRAM_WEBHOOK_URL needs the web server: set WEB_PORT")
        return self

    @property
    def chatwoot_sync_configured(self) -> bool:
        return bool(self.chatwoot_api_url and self.chatwoot_api_token and self.chatwoot_account_id)

    @property
    def secrets(self) -> list[str]:
        """Every secret value, for the log redaction."""
        values = [self.bot_token, self.ingest_token, self.chatwoot_webhook_secret]
        values += [self.chatwoot_api_token, self.telegram_webhook_secret]
        if self.redis_url and (redis_password := urlsplit(self.redis_url).password):
            values.append(SecretStr(redis_password))
        return [value.get_secret_value() for value in values if value and value.get_secret_value()]

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
            message = error["msg"].removeprefix("Value error, ")
            # A rule over several settings names them itself.
            lines.append(f"{name}: {message}" if name else message)
        # Read before the language setting is known, and pydantic's words are English: shown as
        # they are.
        raise SettingsError(N_("bad setting: {problems}"), problems="; ".join(lines)) from None
