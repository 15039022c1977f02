"""Benchmark: realistic Chatwoot webhook traffic against the real IngestServer on SQLite.

Starts the server through bot.web.server.start_web on 127.0.0.1 over a fresh SQLite file, posts
signed Chatwoot webhooks (conversation created, incoming messages, resolves, reopens) for a few
thousand conversations from several concurrent senders (each conversation's events in order,
conversations interleaved), and prints sustained events/s and p50/p95 latency of the 200s. While
it runs, a lead's `/clients month` report (reports.metrics.build_report) is timed every second.
At the end the stored appeals are compared with those the pure derive_cycles gives for the
events that were answered 200.

The per-source limit of 20 requests a second would cap one desk at 20 events/s, so the
benchmark raises IngestServer.rate.limit (and says so).

Run: .venv/bin/python benchmarks/ingest_speed.py [--conversations 3000] [--senders 32]
"""

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import json
import multiprocessing
import random
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp  # noqa: E402
from sqlalchemy import select  # noqa: E402

from bot.config import load_settings  # noqa: E402
from bot.ingest import chatwoot  # noqa: E402
from bot.ingest.desk import appeal_id, derive_cycles  # noqa: E402
from bot.storage.checkpoints import checkpoint_forever  # noqa: E402
from bot.storage.engine import create_engine, migrate  # noqa: E402
from bot.web.server import IngestServer, start_web  # noqa: E402
from reports.metrics import build_report  # noqa: E402
from reports.model import ReportFilter  # noqa: E402
from reports.periods import parse_period  # noqa: E402
from reports.schema import appeals  # noqa: E402

TOKEN = "bench-ingest-token-0123456789abcdefghij"
SECRET = "bench-chatwoot-secret"
INBOXES = [
    (3, "Channel::Whatsapp", "Support WhatsApp"),
    (4, "Channel::Telegram", "Sales bot"),
    (5, "Channel::WebWidget", "Site chat"),
    (6, "Channel::Email", "help@shop.example"),
]
FIRST_NAMES = ["Anna", "Boris", "Olga", "Ivan", "Maria", "Pavel", "Elena", "Dmitry"]
LAST_NAMES = ["Petrova", "Ivanov", "Smirnova", "Kuznetsov", "Popova", "Sokolov"]
TEXTS = [
    "Hello, my order did not arrive",
    "Can I change the delivery address?",
    "The parcel came broken, please call me",
    "Is there a discount for a second purchase?",
    "Thanks, that helped",
]


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class Conversation:
    """One conversation's webhooks in the shapes Chatwoot sends, in the order it sends them."""

    def __init__(self, number: int, rng: random.Random, now: datetime) -> None:
        self.number = number
        self.contact = 10_000 + rng.randint(0, int(number * 0.8))
        inbox_id, channel, inbox_name = rng.choice(INBOXES)
        self.inbox = {"id": inbox_id, "name": inbox_name}
        name = f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"
        self.sender = {
            "id": self.contact,
            "name": name,
            "email": f"{name.lower().replace(' ', '.')}@example.com",
            "phone_number": f"+7916{rng.randint(1_000_000, 9_999_999)}",
            "type": "contact",
            "additional_attributes": {},
            "custom_attributes": {},
        }
        self.channel = channel
        self.created = now - timedelta(seconds=rng.randint(600, 10 * 3600))
        self.payloads: list[dict[str, Any]] = []
        self.message_id = number * 100
        at = self.created
        self._conversation_event("conversation_created", "open", at)
        for _cycle in range(1 + (rng.random() < 0.3) + (rng.random() < 0.1)):
            for _ in range(rng.randint(1, 3)):
                at += timedelta(seconds=rng.randint(5, 300))
                self._message(at, rng)
            at += timedelta(seconds=rng.randint(60, 1800))
            self._conversation_event("conversation_status_changed", "resolved", at)
            # The client writes again: Chatwoot reopens the conversation with the message.
            at += timedelta(seconds=rng.randint(60, 3600))
        if rng.random() < 0.5:
            self._message(min(at, now), rng)

    def _conversation(self, status: str, at: datetime) -> dict[str, Any]:
        stamp = int(at.timestamp())
        return {
            "additional_attributes": {"browser": {"browser_name": "Chrome"}},
            "can_reply": True,
            "channel": self.channel,
            "contact_inbox": {
                "contact_id": self.contact,
                "inbox_id": self.inbox["id"],
                "source_id": f"src-{self.contact}",
            },
            "id": self.number,
            "inbox_id": self.inbox["id"],
            "messages": [],
            "labels": [],
            "meta": {"sender": self.sender, "assignee": None, "team": None},
            "status": status,
            "custom_attributes": {},
            "snoozed_until": None,
            "unread_count": 0,
            "agent_last_seen_at": 0,
            "contact_last_seen_at": 0,
            "last_activity_at": stamp,
            "timestamp": stamp,
            "created_at": int(self.created.timestamp()),
            "updated_at": stamp + 0.25,
        }

    def _conversation_event(self, event: str, status: str, at: datetime) -> None:
        body = self._conversation(status, at)
        if event != "conversation_created":
            body["changed_attributes"] = [
                {"status": {"previous_value": "open", "current_value": status}}
            ]
        self.payloads.append({"event": event, **body})

    def _message(self, at: datetime, rng: random.Random) -> None:
        self.message_id += 1
        self.payloads.append(
            {
                "event": "message_created",
                "account": {"id": 1, "name": "Acme Shop"},
                "additional_attributes": {},
                "content_attributes": {},
                "content_type": "text",
                "content": rng.choice(TEXTS),
                "conversation": self._conversation("open", at),
                "created_at": iso(at),
                "id": self.message_id,
                "inbox": self.inbox,
                "message_type": "incoming",
                "private": False,
                "sender": {k: self.sender[k] for k in ("id", "name", "type")},
                "source_id": f"wamid.{self.message_id}",
            }
        )


def signed(body: bytes) -> dict[str, str]:
    stamp = str(int(time.time()))
    digest = hmac.new(SECRET.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    return {
        "Content-Type": "application/json",
        "X-Chatwoot-Timestamp": stamp,
        "X-Chatwoot-Signature": f"sha256={digest}",
    }


async def sender(
    session: aiohttp.ClientSession,
    url: str,
    queue: asyncio.Queue[Conversation],
    deadline: float,
    latencies: list[float],
    accepted: dict[int, list[int]],
    failures: list[int],
) -> None:
    while time.perf_counter() < deadline:
        try:
            conversation = queue.get_nowait()
        except asyncio.QueueEmpty:
            return
        for number, body in enumerate(conversation.payloads):
            if time.perf_counter() >= deadline:
                return
            data = json.dumps(body).encode()
            headers = signed(data)
            headers["X-Chatwoot-Delivery"] = f"{conversation.number}-{number}"
            started = time.perf_counter()
            async with session.post(url, data=data, headers=headers) as response:
                await response.read()
                status = response.status
            if status == 200:
                latencies.append(time.perf_counter() - started)
                accepted.setdefault(conversation.number, []).append(number)
            else:
                failures.append(status)


def conversations_for(count: int, seed: int, now: datetime) -> list[Conversation]:
    rng = random.Random(seed)
    return [Conversation(n, rng, now) for n in range(1, count + 1)]


def send_all(
    url: str, count: int, seed: int, now: float, senders: int, seconds: float
) -> tuple[list[float], list[int], dict[int, list[int]], float]:
    """In the senders' process: post every conversation's webhooks, `senders` at a time."""
    conversations = conversations_for(count, seed, datetime.fromtimestamp(now, UTC))

    async def run() -> tuple[list[float], list[int], dict[int, list[int]], float]:
        queue: asyncio.Queue[Conversation] = asyncio.Queue()
        for conversation in conversations:
            queue.put_nowait(conversation)
        latencies: list[float] = []
        failures: list[int] = []
        accepted: dict[int, list[int]] = {}
        connector = aiohttp.TCPConnector(limit=senders)
        async with aiohttp.ClientSession(connector=connector) as session:
            started = time.perf_counter()
            deadline = started + seconds
            await asyncio.gather(
                *(
                    sender(session, url, queue, deadline, latencies, accepted, failures)
                    for _ in range(senders)
                )
            )
            elapsed = time.perf_counter() - started
        return latencies, failures, accepted, elapsed

    return asyncio.run(run())


async def time_reports(engine: Any, stop: asyncio.Event, durations: list[float]) -> None:
    while not stop.is_set():
        periods = parse_period("month", now=datetime.now(UTC), tz=load_settings().zone)
        started = time.perf_counter()
        async with engine.connect() as connection:
            await build_report(connection, periods, ReportFilter())
        durations.append(time.perf_counter() - started)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=1.0)


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=3000)
    parser.add_argument("--senders", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=120.0, help="stop sending after this")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    now = datetime.now(UTC)
    conversations = conversations_for(args.conversations, args.seed, now)
    total = sum(len(c.payloads) for c in conversations)

    with tempfile.TemporaryDirectory() as tmp:
        # As the bot runs it: commits leave WAL checkpoints to a background task.
        engine = create_engine(
            f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}", background_checkpoints=True
        )
        checkpoints = asyncio.create_task(checkpoint_forever(engine))
        await migrate(engine)
        settings = load_settings(
            ingest_token=TOKEN, chatwoot_webhook_secret=SECRET, _env_file=None
        )
        server = IngestServer(settings, engine)
        default_limit = server.rate.limit
        server.rate.limit = 1_000_000
        runner = await start_web(server, "127.0.0.1", 0)
        host, port = runner.addresses[0][:2]
        url = f"http://{host}:{port}/ingest/chatwoot/{TOKEN}"
        print(
            f"ingest_speed: {len(conversations)} conversations, {total} Chatwoot webhooks, "
            f"{args.senders} concurrent senders in a separate process, SQLite file, signatures on"
        )
        print(
            f"rate limit: raised from {default_limit} to {server.rate.limit} requests/s per "
            "source for this benchmark (one desk's traffic is one source)"
        )
        reports: list[float] = []
        stop = asyncio.Event()
        timer = asyncio.create_task(time_reports(engine, stop, reports))
        loop = asyncio.get_running_loop()
        try:
            # The desk's senders run in a process of their own, as they would on the desk's
            # side: the bot's process only serves.
            with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
                latencies, failures, accepted, elapsed = await loop.run_in_executor(
                    pool,
                    send_all,
                    url,
                    args.conversations,
                    args.seed,
                    now.timestamp(),
                    args.senders,
                    args.seconds,
                )
        finally:
            stop.set()
            await timer
            await runner.cleanup()
            checkpoints.cancel()

        sent = len(latencies) + len(failures)
        quantiles = statistics.quantiles(latencies, n=100)
        print(
            f"sent {sent} events in {elapsed:.1f} s: {len(latencies) / elapsed:.0f} events/s "
            f"sustained (200s), {len(failures)} not 200 {sorted(set(failures))}"
        )
        print(
            f"latency of the 200: p50 {quantiles[49] * 1000:.1f} ms, "
            f"p95 {quantiles[94] * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms"
        )
        print(
            f"month report during ingestion: {len(reports)} runs, "
            f"max {max(reports) * 1000:.0f} ms, median {statistics.median(reports) * 1000:.0f} ms"
        )

        expected = set()
        by_number = {c.number: c for c in conversations}
        for number, indices in accepted.items():
            bodies = [by_number[number].payloads[i] for i in indices]
            events = [e for body in bodies for e in chatwoot.events_from_webhook(body, "main")]
            for cycle in derive_cycles(events):
                expected.add(
                    (appeal_id("chatwoot", "main", str(number), cycle.number), cycle.started_at)
                )
        async with engine.connect() as connection:
            rows = await connection.execute(select(appeals.c.external_id, appeals.c.created_at))
            stored = {(external, at) for external, at in rows}
        await engine.dispose()
    same = stored == expected
    print(f"appeals: {len(stored)} stored, {len(expected)} expected from derive_cycles")
    print(f"same appeals: {'yes' if same else 'no'}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
