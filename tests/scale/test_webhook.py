"""Webhook mode of the real `python -m bot`: setWebhook at start, POST /telegram with the secret,
each update handled once, the webhook kept at stop, and answers while Redis is down."""

import re
import subprocess
import sys
from pathlib import Path

from tests.fake_telegram import FakeTelegram
from tests.support.process import ADMIN, ROOT, TOKEN, bot_env, bot_process, free_port, stop
from tests.support.redis import ThrowawayRedis

PUBLIC_URL = "https://bot.example.com/telegram"
SECRET = "webhook-Secret_0123456789"
HELP_FIRST_LINE = "Commands"


def webhook_env(tmp_path: Path, telegram_url: str, port: int, **settings: str) -> dict[str, str]:
    return bot_env(
        tmp_path,
        telegram_url,
        WEB_PORT=str(port),
        TELEGRAM_WEBHOOK_URL=PUBLIC_URL,
        TELEGRAM_WEBHOOK_SECRET=SECRET,
        **settings,
    )


def helps(tg: FakeTelegram) -> list[str]:
    texts = [call.result["text"] for call in tg.calls("sendMessage") if call.ok]
    return [text for text in texts if text.split("\n")[0] == HELP_FIRST_LINE]


async def test_updates_come_by_webhook_with_the_secret_and_each_is_handled_once(
    tmp_path: Path,
) -> None:
    port = free_port()
    instance = f"http://127.0.0.1:{port}/telegram"
    log = tmp_path / "bot.log"
    async with (
        FakeTelegram(token=TOKEN, enforce_rate_limits=True) as tg,
        bot_process(tmp_path, webhook_env(tmp_path, tg.base_url, port), log) as process,
    ):
        (registered,) = await tg.wait_for("setWebhook", timeout=90)
        assert registered.params["url"] == PUBLIC_URL
        assert registered.params["secret_token"] == SECRET
        assert registered.params["drop_pending_updates"] == "false"
        # The update types the handlers use, nothing else (not chat_member, not inline queries).
        assert sorted(registered.json("allowed_updates")) == [
            "callback_query",
            "message",
            "my_chat_member",
        ]
        assert not tg.calls("getUpdates")

        first = tg.send_message("/help", chat_id=ADMIN, user_id=ADMIN)
        assert await tg.post_update(first, instance, secret="wrong-secret") == 401
        assert await tg.post_update(first, instance, secret="") == 401  # no header at all
        assert await tg.post_update(first, instance) == 200
        await tg.wait_for("sendMessage", timeout=60)
        assert await tg.post_update(first, instance) == 200  # Telegram repeats a delivery
        second = tg.send_message("/help", chat_id=ADMIN, user_id=ADMIN)
        assert await tg.post_update(second, instance) == 200
        await tg.wait_for("sendMessage", count=2, timeout=60)
        code = await stop(process)
    output = log.read_text()
    assert code == 0, output
    # Two updates, two answers: neither the refused posts nor the repeat were handled.
    assert len(helps(tg)) == 2
    assert f"update {first} delivered again: skipped" in output
    assert output.count("refused telegram request from 127.0.0.1: bad secret token") == 2
    assert f"webhook mode: updates arrive at {PUBLIC_URL}" in output
    # Another instance goes on serving: the webhook stays.
    assert not tg.calls("deleteWebhook")
    assert "Traceback" not in output
    assert SECRET not in output


def test_a_webhook_without_its_secret_refuses_to_start(tmp_path: Path) -> None:
    env = bot_env(tmp_path, "http://127.0.0.1:9", WEB_PORT="8080", TELEGRAM_WEBHOOK_URL=PUBLIC_URL)
    done = subprocess.run(
        [sys.executable, "-m", "bot"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr == (
        "error: bad setting: TELEGRAM_WEBHOOK_SECRET is required with TELEGRAM_WEBHOOK_URL: "
        "Telegram sends it with every update, and /telegram refuses requests without it\n"
    )


async def test_the_bot_answers_while_redis_is_down_and_shares_again_when_it_returns(
    tmp_path: Path, throwaway: ThrowawayRedis
) -> None:
    port = free_port()
    instance = f"http://127.0.0.1:{port}/telegram"
    log = tmp_path / "bot.log"
    env = webhook_env(tmp_path, "", port, REDIS_URL=throwaway.url)
    async with FakeTelegram(token=TOKEN, enforce_rate_limits=True) as tg:
        env["TELEGRAM_API_URL"] = tg.base_url
        async with bot_process(tmp_path, env, log) as process:
            await tg.wait_for("setWebhook", timeout=90)

            async def ask_help(count: int) -> None:
                update = tg.send_message("/help", chat_id=ADMIN, user_id=ADMIN)
                assert await tg.post_update(update, instance) == 200
                await tg.wait_for("sendMessage", count=count, timeout=60)

            await ask_help(1)
            await throwaway.stop()
            for count in range(2, 6):
                await ask_help(count)
            await throwaway.start()
            # Redis is asked again a second after it last failed; the chat's pace (1.1 s a
            # message) lets that pass between two answers.
            for count in range(6, 10):
                await ask_help(count)
                if "Redis answers again" in log.read_text():
                    break
            code = await stop(process)
    output = log.read_text()
    assert code == 0, output
    assert len(helps(tg)) == count
    warnings = re.findall(r"Redis is unreachable \(\w+\)", output)
    assert len(warnings) == 1, output  # one a minute, not one a request
    assert "Redis answers again: limits are shared again" in output
    assert "Traceback" not in output
    assert tg.too_many_requests() == 0


def test_the_settings_table_lists_the_webhook_and_redis_settings() -> None:
    readme = (ROOT / "README.md").read_text()
    example = (ROOT / ".env.example").read_text()
    for name in ("TELEGRAM_WEBHOOK_URL", "TELEGRAM_WEBHOOK_SECRET", "REDIS_URL"):
        assert f"| `{name}` |" in readme
        assert f"\n{name}=" in example or f"\n# {name}=" in example
