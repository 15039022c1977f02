"""A command menu Telegram refuses at start is retried later; the bot starts and no token leaks."""

import asyncio
import logging
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.app import CommandMenu, build_application, build_bot
from bot.config import load_settings
from bot.telegram.commands import command_menu
from tests.fake_telegram import FakeTelegram
from tests.support.polling import polling
from tests.support.process import ADMIN, TOKEN, bot_env, bot_process, stop
from tests.support.settings import NOW, make_settings

LEAD = 500


@pytest.mark.parametrize(
    ("status", "description"),
    [
        (500, f"Internal error at /bot{TOKEN}/setMyCommands"),
        (400, f"Bad Request: bad path /bot{TOKEN}/setMyCommands"),
    ],
)
async def test_the_bot_starts_serving_when_set_my_commands_keeps_failing(
    tmp_path: Path, status: int, description: str
) -> None:
    log = tmp_path / "bot.log"
    async with FakeTelegram(token=TOKEN) as tg:
        tg.fail_next("setMyCommands", status, description=description, times=3)
        env = bot_env(tmp_path, tg.base_url)
        async with bot_process(tmp_path, env, log) as process:
            await tg.wait_polling(timeout=90)
            tg.send_message("/help", chat_id=ADMIN, user_id=ADMIN)
            await tg.wait_for("sendMessage", timeout=60)
            code = await stop(process)
    output = log.read_text()
    assert code == 0, output
    assert "Traceback" not in output
    assert TOKEN not in output
    assert "command menu not set" in output


async def test_a_refused_menu_is_retried_in_the_background_until_it_is_set(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with FakeTelegram(token=TOKEN) as tg:
        bot = build_bot(
            load_settings(_env_file=None, bot_token=TOKEN, telegram_api_url=tg.base_url)
        )
        # 4 failed requests: the first attempt (no retry middleware here) and 3 retries.
        tg.fail_next("setMyCommands", 500, times=4)
        delays: list[float] = []

        async def record(delay: float) -> None:
            delays.append(delay)

        menu = CommandMenu(bot, "en", first_delay=60, max_delay=200, sleep=record)
        caplog.set_level(logging.INFO, logger="bot.app")
        try:
            await menu.set_or_retry_later()
            assert menu._retry is not None
            await menu._retry
        finally:
            await bot.session.close()
    assert delays == [60, 120, 200, 200]
    assert tg.commands(language_code="en") != []
    assert "command menu set" in caplog.text


async def test_a_menu_that_waits_too_long_at_start_is_left_to_the_background() -> None:
    async with FakeTelegram(token=TOKEN) as tg:
        bot = build_bot(
            load_settings(_env_file=None, bot_token=TOKEN, telegram_api_url=tg.base_url)
        )
        started = asyncio.Event()
        release = asyncio.Event()

        async def hang(delay: float) -> None:
            started.set()
            await release.wait()

        async def never_answers(*_args: object, **_kwargs: object) -> None:
            await asyncio.Event().wait()

        bot.set_my_commands = never_answers  # type: ignore[method-assign]
        menu = CommandMenu(bot, "en", start_timeout=0.01, sleep=hang)
        try:
            await menu.set_or_retry_later()
            await started.wait()
            assert menu._retry is not None and not menu._retry.done()
            await menu.stop()
            assert menu._retry.cancelled()
        finally:
            await bot.session.close()


async def test_grant_and_revoke_change_the_menu_of_the_persons_own_chat(
    sqlite_engine: AsyncEngine,
) -> None:
    lead_chat = {"type": "chat", "chat_id": LEAD}
    async with FakeTelegram(token=TOKEN, strict_chats=True) as tg:
        tg.add_chat(ADMIN, "private")
        settings = make_settings(sqlite_engine, token=TOKEN, api_url=tg.base_url)
        app = build_application(settings, sqlite_engine, clock=lambda: NOW)
        async with polling(tg, app.bot, app.dispatcher) as live:
            # Someone who never wrote to the bot has no chat to give a menu to: the grant
            # still works, and says so as usual.
            await live.settle(live.command(f"/grant {LEAD}"))
            assert (
                tg.sent_messages(ADMIN)[-1]["text"]
                == f"{LEAD} is now a lead: they can see reports."
            )
            assert tg.commands(lead_chat, "en") == []

            tg.add_chat(LEAD, "private")
            await live.settle(live.command(f"/grant {LEAD}"))
            for language in ("ru", "en"):
                assert tg.commands(lead_chat, language) == [
                    {"command": c.command, "description": c.description}
                    for c in command_menu(language, "lead")
                ]
            assert [c["command"] for c in tg.commands(lead_chat)] == [
                "clients",
                "channels",
                "help",
                "lang",
            ]

            await live.settle(live.command(f"/revoke {LEAD}"))
            assert tg.sent_messages(ADMIN)[-1]["text"] == f"{LEAD} is no longer a lead."
            # Back to the default menu, the one of people without a role.
            for language in ("ru", "en", ""):
                assert tg.commands(lead_chat, language) == []
            assert [c["command"] for c in tg.commands()] == ["help", "lang"]
            # The one refusal: the menu of the chat that did not exist yet.
            assert [call.method for call in tg.errors()] == ["setMyCommands"]
