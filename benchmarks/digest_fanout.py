"""Benchmark: one digest run fanning out to N chats through the real limiter, against the fake.

Run: .venv/bin/python benchmarks/digest_fanout.py [--chats 300]
The fake Bot API server (tests/fake_telegram.py) answers 429 to anything over Telegram's limits,
so the figures include every wait the limiter imposes.
"""

import argparse
import asyncio
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.app import build_bot  # noqa: E402
from bot.config import Settings  # noqa: E402
from bot.digests.rules import parse_rule  # noqa: E402
from bot.digests.runner import DigestRunner  # noqa: E402
from bot.digests.subscriptions import add_subscription
from bot.ingest.demo import load_demo  # noqa: E402
from bot.rendering import Renderer  # noqa: E402
from bot.storage.chats import save_chat  # noqa: E402
from bot.storage.engine import create_engine, migrate, session_factory  # noqa: E402
from bot.telegram import outbound  # noqa: E402
from bot.telegram.outbound import OutboundLimiter  # noqa: E402
from tests.fake_telegram import FakeTelegram  # noqa: E402

ZONE = ZoneInfo("Europe/Moscow")


async def run(chats: int) -> None:
    slot = datetime(2026, 11, 27, 9, 0, tzinfo=ZONE)
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{Path(tmp) / 'fanout.db'}"
        engine = create_engine(url)
        await migrate(engine)
        await load_demo(engine, now=slot)
        async with session_factory(engine)() as session:
            for chat in range(10_000, 10_000 + chats):
                await save_chat(session, chat, language="ru")
                await add_subscription(
                    session, chat, parse_rule("daily 09:00"), now=slot - timedelta(hours=1)
                )
            await session.commit()
        async with FakeTelegram(enforce_rate_limits=True) as tg:
            settings = Settings(
                _env_file=None,
                bot_token=tg.token,
                telegram_api_url=tg.base_url,
                database_url=url,
                timezone="Europe/Moscow",
                language="ru",
            )
            bot = build_bot(settings)
            outbound.install(bot, OutboundLimiter())
            renderer = Renderer()
            runner = DigestRunner(bot, engine, renderer, settings, clock=lambda: slot)
            started = time.perf_counter()
            summary = await runner.run()
            elapsed = time.perf_counter() - started
            sends = [c for c in tg.calls() if c.ok and c.method.startswith("send")]
            # Telegram counts each photo of an album as a message.
            messages = sum(
                len(c.json("media")) if c.method == "sendMediaGroup" else 1 for c in sends
            )
            rejected = [c for c in tg.calls() if c.status == 429]
            print(
                f"chats: {chats}, digests sent: {summary.sent}, failed: {summary.failed}, "
                f"rendered: {summary.rendered}"
            )
            print(f"time to deliver all: {elapsed:.1f} s")
            print(
                f"messages: {messages} ({messages / elapsed:.1f}/s); "
                f"send requests: {len(sends)} ({len(sends) / elapsed:.1f}/s), "
                f"429 answers: {len(rejected)}, rate violations: {len(tg.rate_violations())}"
            )
            await bot.session.close()
            renderer.close()
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chats", type=int, default=300)
    asyncio.run(run(parser.parse_args().chats))


if __name__ == "__main__":
    main()
