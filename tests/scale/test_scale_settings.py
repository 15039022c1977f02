"""The webhook and Redis settings: refused at start with one line, secrets kept out of logs."""

import pytest

from bot.config import SettingsError, load_settings

URL = "https://bot.example.com/telegram"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            {"telegram_webhook_url": URL},
            "TELEGRAM_WEBHOOK_SECRET is required with TELEGRAM_WEBHOOK_URL: Telegram sends it "
            "with every update, and /telegram refuses requests without it",
        ),
        (
            {"telegram_webhook_url": "http://bot.example.com/telegram"},
            "TELEGRAM_WEBHOOK_URL: must be the public https:// URL of /telegram",
        ),
        (
            {"telegram_webhook_url": URL, "telegram_webhook_secret": "ab", "web_port": 0},
            "TELEGRAM_WEBHOOK_URL needs the web server: set WEB_PORT",
        ),
        (
            {"redis_url": "127.0.0.1:6379"},
            "REDIS_URL: must be a Redis URL such as redis://127.0.0.1:6379/0",
        ),
    ],
)
def test_an_incomplete_webhook_or_a_bad_redis_url_is_refused(
    settings: dict[str, object], message: str
) -> None:
    with pytest.raises(SettingsError) as refused:
        load_settings(_env_file=None, **settings)
    assert str(refused.value) == f"bad setting: {message}"


@pytest.mark.parametrize("secret", ["has space", "dot.ted", "ключ", "x" * 257])
def test_a_secret_telegram_would_refuse_is_refused(secret: str) -> None:
    with pytest.raises(SettingsError) as refused:
        load_settings(_env_file=None, telegram_webhook_url=URL, telegram_webhook_secret=secret)
    assert str(refused.value) == (
        "bad setting: TELEGRAM_WEBHOOK_SECRET: must be 1-256 characters of A-Z, a-z, 0-9, '_' "
        "and '-' (Telegram's rule; for example: python -c 'import secrets; "
        "print(secrets.token_urlsafe(32))')"
    )


@pytest.mark.parametrize("secret", ["a", "A-z_09", "x" * 256])
def test_a_secret_by_telegram_s_rule_is_accepted(secret: str) -> None:
    settings = load_settings(
        _env_file=None, telegram_webhook_url=URL, telegram_webhook_secret=secret
    )
    assert settings.telegram_webhook_secret is not None
    assert settings.telegram_webhook_secret.get_secret_value() == secret


def test_without_the_settings_the_bot_polls_alone() -> None:
    settings = load_settings(_env_file=None, telegram_webhook_url="", redis_url="")
    assert settings.telegram_webhook_url is None
    assert settings.redis_url is None


def test_the_webhook_secret_and_the_redis_password_are_redacted() -> None:
    settings = load_settings(
        _env_file=None,
        telegram_webhook_url=URL,
        telegram_webhook_secret="hook-secret",
        redis_url="redis://:redis-pass@127.0.0.1:6379/0",
    )
    assert settings.secrets == ["hook-secret", "redis-pass"]
