"""Settings refused at start with one line naming them: delimiters, database URLs, zones."""

import pytest

from bot.config import SettingsError, load_settings, zone_named


@pytest.mark.parametrize("value", ["a", "1", "Я", '"', "'", "ab", " "])
def test_a_csv_delimiter_that_would_break_the_file_is_refused(value: str) -> None:
    with pytest.raises(SettingsError) as refused:
        load_settings(_env_file=None, csv_delimiter=value)
    assert (
        str(refused.value) == "bad setting: CSV_DELIMITER: must be one of ; , | : or \\t (a tab)"
    )


@pytest.mark.parametrize(
    ("value", "expected"), [(";", ";"), (",", ","), ("|", "|"), (r"\t", "\t")]
)
def test_usual_csv_delimiters_are_accepted(value: str, expected: str) -> None:
    assert load_settings(_env_file=None, csv_delimiter=value).csv_delimiter == expected


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "mysql://user@host/db",
            "unsupported database 'mysql': SQLite (sqlite+aiosqlite) or PostgreSQL "
            "(postgresql+asyncpg) only",
        ),
        (
            "sqlite:///data/bot.db",
            "unsupported database 'sqlite': SQLite (sqlite+aiosqlite) or PostgreSQL "
            "(postgresql+asyncpg) only (use sqlite+aiosqlite://...)",
        ),
        (
            "postgresql://user@host/db",
            "unsupported database 'postgresql': SQLite (sqlite+aiosqlite) or PostgreSQL "
            "(postgresql+asyncpg) only (use postgresql+asyncpg://...)",
        ),
        (
            "not a url",
            "not a database URL (try sqlite+aiosqlite:///data/bot.db or "
            "postgresql+asyncpg://user:password@host:5432/dbname)",
        ),
    ],
)
def test_a_database_url_the_bot_cannot_use_is_refused(url: str, message: str) -> None:
    with pytest.raises(SettingsError) as refused:
        load_settings(_env_file=None, database_url=url)
    assert str(refused.value) == f"bad setting: DATABASE_URL: {message}"


@pytest.mark.parametrize("name", ["localtime", "Factory", "posixrules", "posix/Europe/Berlin"])
def test_names_that_are_no_place_are_not_zones(name: str) -> None:
    assert zone_named(name) is None
    with pytest.raises(SettingsError):
        load_settings(_env_file=None, timezone=name)


def test_real_zones_still_are() -> None:
    assert zone_named("Asia/Kathmandu") is not None
    assert zone_named("UTC") is not None


@pytest.mark.parametrize("token", ["short", "x" * 23, "x" * 30 + "/", "ж" * 30, "x" * 30 + " "])
def test_an_ingest_token_that_is_short_or_not_url_safe_is_refused(token: str) -> None:
    with pytest.raises(SettingsError) as refused:
        load_settings(_env_file=None, ingest_token=token)
    assert str(refused.value).startswith("bad setting: INGEST_TOKEN: ")


def test_every_secret_is_redacted_and_empty_ones_are_not_listed() -> None:
    settings = load_settings(
        _env_file=None,
        bot_token="123:abc",
        ingest_token="t" * 32,
        chatwoot_webhook_secret="",
        chatwoot_api_token="api-secret",
    )
    assert settings.secrets == ["123:abc", "t" * 32, "api-secret"]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            "blah",
            "bad setting: DEFAULT_PERIOD: Unknown period “blah”. Try: today, yesterday, week, "
            "month, last month, 7d, 2026-11-05, 2026-11, 2026-11-01..2026-11-15",
        ),
        (
            "week app=Sales",
            "bad setting: DEFAULT_PERIOD: Unknown period “week app=Sales”. Try: today, "
            "yesterday, week, month, last month, 7d, 2026-11-05, 2026-11, 2026-11-01..2026-11-15",
        ),
        (
            "0d",
            "bad setting: DEFAULT_PERIOD: Day count “0d” must be from 1 to 1830. Try: today, "
            "yesterday, week, month, last month, 7d, 2026-11-05, 2026-11, 2026-11-01..2026-11-15",
        ),
    ],
)
def test_a_default_period_the_bot_cannot_read_is_refused_at_start(
    value: str, message: str
) -> None:
    with pytest.raises(SettingsError) as refused:
        load_settings(_env_file=None, default_period=value)
    assert str(refused.value) == message


@pytest.mark.parametrize("value", ["week", "месяц", "last month", "30d", "2026-11"])
def test_periods_a_bare_clients_can_use_are_accepted(value: str) -> None:
    assert load_settings(_env_file=None, default_period=value).default_period == value
