"""The real bot process: polling and the web server together, a webhook counted by /clients."""

import asyncio
import socket
import sys
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path

import aiohttp

from tests.fake_telegram import FakeTelegram
from tests.support.process import ADMIN, TOKEN, bot_env, bot_process, stop

INGEST_TOKEN = "ingest-" + "x" * 30


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def web_env(tmp_path: Path, telegram_url: str, port: int) -> dict[str, str]:
    return bot_env(
        tmp_path, telegram_url, WEB_HOST="127.0.0.1", WEB_PORT=str(port), INGEST_TOKEN=INGEST_TOKEN
    )


async def health(base: str) -> dict[str, object]:
    # The bot starts its web server before it polls, so once it polls the port is open.
    async with aiohttp.ClientSession() as client, client.get(f"{base}/healthz") as response:
        assert response.status == 200
        return dict(await response.json())


async def test_a_chatwoot_webhook_is_counted_by_the_next_clients_today(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "bot.log"
    async with (
        FakeTelegram(token=TOKEN) as tg,
        bot_process(tmp_path, web_env(tmp_path, tg.base_url, port), log) as process,
    ):
        await tg.wait_polling(timeout=90)
        assert await health(base) == {"status": "ok", "database": "ok", "newest_event": {}}
        now = int(datetime.now(UTC).timestamp())
        created = {
            "event": "conversation_created",
            "id": 12,
            "inbox_id": 4,
            "channel": "Channel::Whatsapp",
            "status": "open",
            "created_at": now - 60,
            "timestamp": now - 60,
            "meta": {"sender": {"id": 901, "name": "Анна <Ivanova>", "email": "a@b.c"}},
        }
        async with aiohttp.ClientSession() as client:
            async with client.post(
                f"{base}/ingest/chatwoot/{INGEST_TOKEN}", json=created
            ) as response:
                assert response.status == 200
                assert await response.json() == {"received": 1, "new": 1}
            async with client.post(f"{base}/ingest/chatwoot/wrong", json=created) as response:
                assert response.status == 401
        tg.send_message("/clients today", chat_id=ADMIN, user_id=ADMIN)
        (answer,) = await tg.wait_for("sendMessage", timeout=60)
        text = answer.result["text"]
        assert "\nClients who wrote: 1 · +1 (" in text, log.read_text()
        assert "\nNew: 1 · +1 (" in text
        # The only appeal is the first one the bot holds: nothing earlier to compare with.
        assert "\nClients by channel:\nwhatsapp: 1 · no earlier data\n" in text
        assert "\nwhatsapp · inbox 4: 1 · no earlier data" in text
        await tg.wait_for("sendDocument", timeout=60)
        code = await stop(process)
    output = log.read_text()
    assert code == 0, output
    assert "Traceback" not in output
    assert INGEST_TOKEN not in output
    assert f"web server on http://127.0.0.1:{port}" in output


async def test_a_port_in_use_stops_the_start_with_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = int(taken.getsockname()[1])
        async with FakeTelegram(token=TOKEN) as tg:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bot",
                cwd=tmp_path,
                env=web_env(tmp_path, tg.base_url, port),
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
            try:
                out, _ = await asyncio.wait_for(process.communicate(), 90)
            finally:
                if process.returncode is None:
                    process.kill()
                    with suppress(ProcessLookupError):
                        await process.wait()
    text = out.decode()
    assert process.returncode == 2, text
    assert "Traceback" not in text
    errors = [line for line in text.splitlines() if " ERROR " in line]
    assert len(errors) == 1, text
    assert f"cannot serve on WEB_HOST:WEB_PORT 127.0.0.1:{port}" in errors[0]
