"""Several real bot processes on one database: the fake Bot API they share, ledger events."""

import asyncio
import contextlib
import inspect
import sys
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
from aiohttp import web
from sqlalchemy.engine import make_url

from tests.fake_telegram import SEND_METHODS, ApiError, Call, FakeTelegram
from tests.support.process import bot_env

# The request that carries each digest part (bot/telegram/delivery.py PARTS).
PART_OF = {"sendMessage": "text", "sendMediaGroup": "charts", "sendDocument": "csv"}


async def run_command(tmp_path: Path, database_url: str, *args: str) -> tuple[int, str]:
    """`python -m bot ARGS` on that database (no Telegram): its exit code and output."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        *args,
        cwd=tmp_path,
        env=bot_env(tmp_path, "http://127.0.0.1:9", DATABASE_URL=database_url),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return process.returncode, output.decode()


class SharedTelegram(FakeTelegram):
    """The fake Bot API of one bot that several processes of it talk to at once.

    getUpdates answers empty at the end of its long poll to every process: real Telegram
    terminates all but one concurrent poller with a 409, which is why production runs several
    instances on webhooks. These tests are about what the instances share through the
    database (the digest ledger), not about receiving updates, so the fake leaves polling out of
    the way instead of making the processes fight over it.

    The first getMe of each of `together` processes is answered once all of them have asked, so
    the processes start serving (and catch up on due digests) at the same moment.

    `refusing` answers every send with a 429 (retry after 1 s) without delivering it: Telegram
    accepts nothing while it is set, so a test can reach a moment when every part Telegram
    accepted is known to the processes' ledger.
    """

    def __init__(self, *args: Any, together: int = 1, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._handlers["getUpdates"] = self._idle_poll
        self._handlers["getMe"] = self._get_me_together
        self.together = together
        self._asked_me = 0
        self.polls_started = 0
        self.refusing = False

    async def _get_me_together(self, call: Call) -> dict[str, Any]:
        self._asked_me += 1
        self._signal.fire()
        await self._signal.wait_until(lambda: self._closing or self._asked_me >= self.together)
        return self._get_me(call)

    async def _idle_poll(self, call: Call) -> list[dict[str, Any]]:
        self.polls_started += 1
        self._signal.fire()
        timeout = max(int(call.params.get("timeout", "0") or 0), 0)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._signal.wait_until(lambda: self._closing)
        return []

    async def _serve(self, request: web.Request, call: Call) -> web.StreamResponse:
        if self.refusing and call.method in SEND_METHODS:
            refusal = ApiError(429, "Too Many Requests: retry after 1", {"retry_after": 1})
            return self._answer(call, refusal)
        return await super()._serve(request, call)

    def delivered_parts(self) -> dict[int, Counter[str]]:
        """chat id -> how many times Telegram accepted each digest part there."""
        parts: dict[int, Counter[str]] = {}
        for call in self.calls():
            if call.ok and call.method in PART_OF:
                chat_id = int(call.params["chat_id"])
                parts.setdefault(chat_id, Counter())[PART_OF[call.method]] += 1
        return parts

    def changed(self) -> asyncio.Event:
        """An event set at the fake's next change (a request answered, a poll begun)."""
        return self._signal._event  # the signal swaps in a fresh event at every fire


class LedgerEvents:
    """Wakes a waiter at every commit that changes the digest ledger (LISTEN/NOTIFY, with a
    trigger the test installs in its own database)."""

    CHANNEL = "digest_ledger"
    TRIGGER = """
        CREATE FUNCTION notify_digest_ledger() RETURNS trigger AS $$
        BEGIN PERFORM pg_notify('digest_ledger', ''); RETURN NULL; END $$ LANGUAGE plpgsql;
        CREATE TRIGGER digest_ledger_changed AFTER INSERT OR UPDATE ON digest_deliveries
        FOR EACH STATEMENT EXECUTE FUNCTION notify_digest_ledger();
    """

    def __init__(self, connection: asyncpg.Connection) -> None:
        self.connection = connection
        self._event = asyncio.Event()

    def _notified(self, *_: object) -> None:
        self._event.set()

    def changed(self) -> asyncio.Event:
        self._event = asyncio.Event()
        return self._event


@asynccontextmanager
async def ledger_events(database_url: str) -> AsyncIterator[LedgerEvents]:
    """Install the notifying trigger in that (migrated) database and listen to it."""
    url = make_url(database_url).set(drivername="postgresql")
    connection = await asyncpg.connect(url.render_as_string(hide_password=False))
    try:
        await connection.execute(LedgerEvents.TRIGGER)
        events = LedgerEvents(connection)
        await connection.add_listener(LedgerEvents.CHANNEL, events._notified)
        yield events
    finally:
        await connection.close()


async def wait_until(
    condition: Callable[[], bool | Awaitable[bool]],
    *wakers: Callable[[], asyncio.Event],
    timeout: float,  # noqa: ASYNC109 - the helpers' contract
    what: str,
) -> None:
    """Check `condition` now and again whenever one of the `wakers`' events is set."""
    try:
        async with asyncio.timeout(timeout):
            while True:
                events = [waker() for waker in wakers]
                met = condition()
                if await met if inspect.isawaitable(met) else met:
                    return
                waits = [asyncio.create_task(event.wait()) for event in events]
                try:
                    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for wait in waits:
                        wait.cancel()
    except TimeoutError:
        raise TimeoutError(f"waited {timeout} s for {what}") from None
