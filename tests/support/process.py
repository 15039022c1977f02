"""The real `python -m bot` process for end-to-end tests: its environment, start and stop."""

import asyncio
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "123456:TEST-token"
ADMIN = 42
# Settings of the developer's shell that would change what the process does.
_OWN_SETTINGS = (
    "BOT_",
    "DATABASE_",
    "TELEGRAM_",
    "ADMIN_",
    "CSV_",
    "WEB_",
    "INGEST_",
    "CHATWOOT_",
    "REDIS_",
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def bot_env(tmp_path: Path, telegram_url: str, **settings: str) -> dict[str, str]:
    """The environment of a bot on a fresh SQLite file polling the fake Bot API; the web
    server is off unless `WEB_PORT` is given."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_OWN_SETTINGS)}
    env.update(
        BOT_TOKEN=TOKEN,
        TELEGRAM_API_URL=telegram_url,
        DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}",
        ADMIN_IDS=str(ADMIN),
        TIMEZONE="Europe/Moscow",
        LANGUAGE="en",
        WEB_PORT="0",
        PYTHONUNBUFFERED="1",
        PYTHONPATH=str(ROOT),
    )
    env.update(settings)
    return env


@asynccontextmanager
async def bot_process(
    tmp_path: Path, env: dict[str, str], log: Path
) -> AsyncIterator[asyncio.subprocess.Process]:
    """The bot writing stdout and stderr to `log`; killed on the way out if still running."""
    with log.open("wb") as sink:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", cwd=tmp_path, env=env, stdout=sink, stderr=sink
        )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def stop(process: asyncio.subprocess.Process, timeout: float = 60) -> int:  # noqa: ASYNC109
    """SIGTERM, then the exit code once the bot has stopped by itself."""
    process.send_signal(signal.SIGTERM)
    return await asyncio.wait_for(process.wait(), timeout)
