"""Several `python -m bot` processes in webhook mode on one PostgreSQL database and one Redis, and
a load of many users whose updates the fake Bot API posts to them in turn (the load balancer).

Shared by tests/scale/test_two_instances.py and benchmarks/webhook_load.py. Every user is an
admin; "flooders" ask for more reports than the flood limit allows in a minute, the others ask
for /help. Some updates are posted a second time to the next instance, as Telegram repeats a
delivery it thinks failed.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from redis.asyncio import Redis

from tests.fake_telegram import FakeTelegram
from tests.support.process import bot_env, bot_process, free_port, stop

PUBLIC_URL = "https://bot.example.com/telegram"
SECRET = "load-test_secret-0123456789"
FIRST_USER = 50_001
# A past day without appeals: a report is its text and its CSV (no pies to draw).
REPORT = "/clients 2026-11-05"
HELP = "/help"
FLOOD_LIMIT = 10
SLOW_DOWN = "Too many reports at once: please slow down a little."
# Posts in flight at once, as Telegram's max_connections (40 by default) would allow.
CONCURRENT_POSTS = 40


@dataclass(frozen=True)
class Load:
    users: int = 100
    flooders: int = 20
    reports_each: int = 14
    helps_each: int = 9
    repeats: int = 50

    @property
    def updates(self) -> int:
        return self.flooders * self.reports_each + (self.users - self.flooders) * self.helps_each

    def user_ids(self) -> list[int]:
        return list(range(FIRST_USER, FIRST_USER + self.users))

    def is_flooder(self, user_id: int) -> bool:
        return user_id - FIRST_USER < self.flooders

    def script(self) -> list[tuple[int, str]]:
        """(user, command) in posting order: round after round, each user's next command."""
        queues = {
            user: [REPORT] * self.reports_each
            if self.is_flooder(user)
            else [HELP] * self.helps_each
            for user in self.user_ids()
        }
        order: list[tuple[int, str]] = []
        while any(queues.values()):
            for user, commands in queues.items():
                if commands:
                    order.append((user, commands.pop()))
        return order

    def expected_sends(self) -> tuple[int, int]:
        """(sendMessage, sendDocument) once every update is answered."""
        accepted = min(self.reports_each, FLOOD_LIMIT)
        warned = 1 if self.reports_each > FLOOD_LIMIT else 0
        messages = self.flooders * (accepted + warned) + (self.users - self.flooders) * (
            self.helps_each
        )
        return messages, self.flooders * accepted


@dataclass
class Run:
    """What one load run did, by the fake's clock."""

    instances: int
    updates: int
    posted_at: dict[int, list[float]] = field(default_factory=lambda: defaultdict(list))
    started: float = 0.0
    finished: float = 0.0
    first_reply: list[float] = field(default_factory=list)
    last_part: list[float] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return self.finished - self.started

    @property
    def updates_per_second(self) -> float:
        return self.updates / self.seconds


def fresh_token() -> str:
    """A bot id of the run's own: the instances' Redis keys are named after it, so runs (and
    the update ids each fake starts again from 1) never meet."""
    return f"{random.randrange(10**9, 10**10)}:LOAD-token"


async def forget(redis_url: str, token: str) -> None:
    """Delete the run's keys from Redis."""
    client = Redis.from_url(redis_url)
    try:
        keys = [key async for key in client.scan_iter(match=f"bot{token.partition(':')[0]}:*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@asynccontextmanager
async def instances(
    tmp_path: Path,
    tg: FakeTelegram,
    *,
    count: int,
    database_url: str,
    redis_url: str,
    admins: list[int],
) -> AsyncIterator[list[str]]:
    """`count` bot processes in webhook mode; yields the URL of each one's /telegram. On the way
    out each is stopped with SIGTERM and must exit 0 without a traceback."""
    ports = [free_port() for _ in range(count)]
    logs = [tmp_path / f"bot-{index}.log" for index in range(count)]
    async with AsyncExitStack() as stack:
        processes = []
        for index, port in enumerate(ports):
            workdir = tmp_path / f"instance-{index}"
            workdir.mkdir(exist_ok=True)
            env = bot_env(
                workdir,
                tg.base_url,
                BOT_TOKEN=tg.token,
                DATABASE_URL=database_url,
                REDIS_URL=redis_url,
                ADMIN_IDS=",".join(str(user) for user in admins),
                WEB_PORT=str(port),
                TELEGRAM_WEBHOOK_URL=PUBLIC_URL,
                TELEGRAM_WEBHOOK_SECRET=SECRET,
            )
            processes.append(
                await stack.enter_async_context(bot_process(workdir, env, logs[index]))
            )
        # Each instance serves /telegram before it calls setWebhook.
        await tg.wait_for("setWebhook", count=count, timeout=120)
        yield [f"http://127.0.0.1:{port}/telegram" for port in ports]
        codes = [await stop(process) for process in processes]
    outputs = [log.read_text() for log in logs]
    for code, output in zip(codes, outputs, strict=True):
        assert code == 0, output
        assert "Traceback" not in output, output


def instance_logs(tmp_path: Path) -> list[str]:
    return [log.read_text() for log in sorted(tmp_path.glob("bot-*.log"))]


async def run_load(tg: FakeTelegram, targets: list[str], load: Load) -> Run:
    """Post the load's updates to the targets in turn (and the repeats to the next target), then
    wait until every expected answer arrived."""
    run = Run(instances=len(targets), updates=load.updates)
    script = load.script()
    update_ids = [tg.send_message(text, chat_id=user, user_id=user) for user, text in script]
    user_of = {update: user for update, (user, _) in zip(update_ids, script, strict=True)}
    every = max(1, len(update_ids) // load.repeats) if load.repeats else 0
    repeated = set(update_ids[::every][: load.repeats]) if every else set()
    slots = asyncio.Semaphore(CONCURRENT_POSTS)

    async def post(index: int, update: int) -> None:
        async with slots:
            run.posted_at[user_of[update]].append(time.monotonic())
            assert await tg.post_update(update, targets[index % len(targets)]) == 200
        if update in repeated:
            async with slots:
                assert await tg.post_update(update, targets[(index + 1) % len(targets)]) == 200

    run.started = time.monotonic()
    await asyncio.gather(*(post(index, update) for index, update in enumerate(update_ids)))
    messages, documents = load.expected_sends()
    # Well past what Telegram's pace needs for the answers (about 1.6 messages an update).
    timeout = 120 + load.updates / 4
    await tg.wait_for("sendDocument", count=documents, timeout=timeout)
    await tg.wait_for("sendMessage", count=messages, timeout=timeout)
    run.finished = max(call.at for call in tg.calls() if call.ok)
    _reply_times(tg, load, run)
    return run


def _reply_times(tg: FakeTelegram, load: Load, run: Run) -> None:
    """Each answered update's time to its first reply and to its last part. A user's answers
    are matched to their updates in posting order; a flooder's first `FLOOD_LIMIT` updates are
    the reports (text, then CSV)."""
    sends: dict[int, list[tuple[str, float]]] = defaultdict(list)
    for call in tg.calls():
        answer = call.ok and call.method in ("sendMessage", "sendDocument")
        if answer and call.params.get("text") != SLOW_DOWN:
            sends[int(call.params["chat_id"])].append((call.method, call.at))
    for user in load.user_ids():
        posted = run.posted_at[user]
        if load.is_flooder(user):
            texts = [at for method, at in sends[user] if method == "sendMessage"]
            documents = [at for method, at in sends[user] if method == "sendDocument"]
            for sent, text, document in zip(posted, texts, documents, strict=False):
                run.first_reply.append(text - sent)
                run.last_part.append(document - sent)
        else:
            for sent, (_, at) in zip(posted, sends[user], strict=False):
                run.first_reply.append(at - sent)
                run.last_part.append(at - sent)


def percentile(values: list[float], share: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[round(share * 100) - 1]
