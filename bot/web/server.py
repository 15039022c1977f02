"""The web server of the bot process: `/api/appeals`, the desk webhooks, `/healthz`, and in
webhook mode Telegram's `/telegram`.

Every ingestion endpoint answers 200 only after what it received is committed, so a desk that
retries on failure loses nothing; a refusal stores nothing. Secrets are compared in constant
time, and a wrong token gets the same 401 on every path, whether the endpoint exists or not.
"""

import asyncio
import hashlib
import hmac
import json
import logging
import re
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import accumulate
from typing import Any

from aiogram import Bot, Dispatcher
from aiogram.webhook.aiohttp_server import SimpleRequestHandler
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bot.config import Settings
from bot.ingest import blinger, chatwoot
from bot.ingest.desk import DeskEvent, store_desk_events
from bot.ingest.files import validate_json_lines
from bot.ingest.merge import create_staging, merge_staging, stage_rows
from bot.ingest.payloads import PayloadError
from bot.ingest.status import newest_events
from bot.logs import REDACTED
from bot.storage.engine import dialect_insert, write_transaction
from bot.storage.tables import LABEL_MAX, desk_deliveries, ingest_refusals

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]

MAX_BODY_BYTES = 1 << 20
MAX_API_RECORDS = 10_000
# Per source: a misbehaving desk (or someone with the token) cannot starve the bot's writes.
REQUESTS_PER_SECOND = 20
# Chatwoot signs `<timestamp>.<body>`; a delivery older (or newer) than this is a replay.
SIGNATURE_WINDOW = timedelta(minutes=5)
# Deeper JSON than any desk sends is refused before the parser recurses on it.
MAX_JSON_DEPTH = 64
TELEGRAM_PATH = "/telegram"
LABEL_PATTERN = re.compile(rf"[A-Za-z0-9_-]{{1,{LABEL_MAX}}}")
ADAPTERS: dict[str, Callable[[Any, str], list[DeskEvent]]] = {
    "chatwoot": chatwoot.events_from_webhook,
    "blinger": blinger.events_from_webhook,
}


class Refused(Exception):
    """A request answered with an error status; `reason` is stored for /sources."""

    def __init__(self, status: int, message: str, reason: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.reason = reason


@dataclass
class RateWindow:
    """At most `limit` requests in any one-second window, per source."""

    limit: int
    clock: Callable[[], float]

    def __post_init__(self) -> None:
        self._seen: dict[str, deque[float]] = {}

    def allow(self, source: str) -> bool:
        now = self.clock()
        seen = self._seen.setdefault(source, deque())
        while seen and now - seen[0] >= 1.0:
            seen.popleft()
        if len(seen) >= self.limit:
            return False
        seen.append(now)
        return True


class IngestServer:
    """Handlers of the web endpoints, sharing the engine, the settings and a clock."""

    def __init__(
        self,
        settings: Settings,
        engine: AsyncEngine,
        *,
        clock: Clock | None = None,
        monotonic: Callable[[], float] | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.clock = clock or (lambda: datetime.now(UTC))
        loop_time = monotonic or (lambda: asyncio.get_running_loop().time())
        self.rate = RateWindow(REQUESTS_PER_SECOND, loop_time)
        # Refused requests recorded for /sources, all sources together.
        self.refusal_rate = RateWindow(REQUESTS_PER_SECOND, loop_time)
        # SQLite has one writer: concurrent requests wait their turn here, in order, instead of
        # in SQLite's busy handler, whose sleeps (growing to 100 ms) can starve one request for
        # seconds, past Chatwoot's 5 s webhook timeout (it does not retry).
        self._sqlite_writes = asyncio.Lock() if engine.dialect.name == "sqlite" else None
        self.batches = WebhookBatches(self._writing, self.clock)

    @asynccontextmanager
    async def _writing(self) -> AsyncIterator[AsyncConnection]:
        if self._sqlite_writes is None:
            async with write_transaction(self.engine) as connection:
                yield connection
            return
        async with self._sqlite_writes, write_transaction(self.engine) as connection:
            yield connection

    def application(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[self._refusals])
        app.router.add_get("/healthz", self.healthz)
        app.router.add_post("/api/appeals", self.api_appeals)
        app.router.add_post("/ingest/{source}/{token}", self.webhook)
        app.router.add_post("/ingest/{source}/{token}/{label}", self.webhook)
        return app

    # --- endpoints ----------------------------------------------------------------------------

    async def healthz(self, request: web.Request) -> web.Response:
        try:
            async with self.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
                newest = await newest_events(connection)
        except (OperationalError, DBAPIError, OSError) as exc:
            logger.warning("health check: database unreachable (%s)", type(exc).__name__)
            return web.json_response(
                {"status": "unavailable", "database": "unreachable"}, status=503
            )
        sources = {
            f"{source}:{label}": at.isoformat() for (source, label), at in sorted(newest.items())
        }
        return web.json_response({"status": "ok", "database": "ok", "newest_event": sources})

    async def api_appeals(self, request: web.Request) -> web.Response:
        source = "api"
        self._check_rate(source)
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not self._token_ok(token.strip()):
            raise Refused(401, "unauthorized", "bad token")
        body = await self._body(request)
        lines = self._api_lines(body)
        if len(lines) > MAX_API_RECORDS:
            raise Refused(413, f"at most {MAX_API_RECORDS} records a request", "too many records")
        rows, problems = validate_json_lines(lines)
        if problems:
            await self._record_refusal(source, "invalid records")
            errors = [_line_problem(problem) for problem in problems]
            return web.json_response({"errors": errors}, status=422)
        async with self._writing() as connection:
            await create_staging(connection)
            if rows:
                await stage_rows(connection, rows)
            new = await merge_staging(connection)
        received = sum(1 for line in lines if line.strip())
        logger.info("api: %s appeals received, %s new", received, new)
        return web.json_response({"received": received, "new": new, "duplicates": received - new})

    async def webhook(self, request: web.Request) -> web.Response:
        source = request.match_info["source"]
        # The token is checked first and refused alike on every path, known source or not.
        if not self._token_ok(request.match_info["token"]):
            raise Refused(401, "unauthorized", "bad token")
        adapter = ADAPTERS.get(source)
        if adapter is None:
            raise web.HTTPNotFound(text="unknown source")
        self._check_rate(source)
        label = request.match_info.get("label", "main")
        if not LABEL_PATTERN.fullmatch(label):
            raise Refused(400, "the label may hold only letters, digits, '-' and '_'", "bad label")
        body = await self._body(request)
        if source == "chatwoot":
            self._check_chatwoot_signature(request, body)
        payload = _parse_json(body)
        try:
            events = adapter(payload, label)
        except PayloadError as exc:
            raise Refused(400, str(exc), "bad body") from None
        delivery = request.headers.get("X-Chatwoot-Delivery") if source == "chatwoot" else None
        stored = await self.batches.store(
            _Webhook(source=source, delivery=delivery[:200] if delivery else None, events=events)
        )
        if stored is None:
            return web.json_response({"received": len(events), "new": 0, "replayed": True})
        return web.json_response({"received": len(events), "new": stored})

    # --- checks -------------------------------------------------------------------------------

    def _token_ok(self, given: str) -> bool:
        expected = self.settings.ingest_token
        if expected is None:
            # Unset turns every ingestion endpoint off; still compare to keep the timing alike.
            hmac.compare_digest(given.encode(), b"-" * 32)
            return False
        return hmac.compare_digest(given.encode(), expected.get_secret_value().encode())

    def _check_rate(self, source: str) -> None:
        if not self.rate.allow(source):
            raise Refused(429, "too many requests: at most 20 a second", "rate limit")

    async def _body(self, request: web.Request) -> bytes:
        if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
            raise Refused(413, "the body is larger than 1 MB", "too large")
        try:
            # aiohttp stops reading at client_max_size, so a huge body is never held whole.
            return await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise Refused(413, "the body is larger than 1 MB", "too large") from None

    def _check_chatwoot_signature(self, request: web.Request, body: bytes) -> None:
        secret = self.settings.chatwoot_webhook_secret
        if secret is None:
            return
        stamp = request.headers.get("X-Chatwoot-Timestamp", "")
        signature = request.headers.get("X-Chatwoot-Signature", "")
        if not stamp.isascii() or not stamp.isdigit() or len(stamp) > 12:
            raise Refused(401, "unauthorized", "bad signature")
        expected = (
            "sha256="
            + hmac.new(
                secret.get_secret_value().encode(), stamp.encode() + b"." + body, hashlib.sha256
            ).hexdigest()
        )
        if not hmac.compare_digest(signature.encode(), expected.encode()):
            raise Refused(401, "unauthorized", "bad signature")
        # Compared as seconds: datetime.fromtimestamp overflows past year 9999 (12 digits).
        if abs(self.clock().timestamp() - int(stamp)) > SIGNATURE_WINDOW.total_seconds():
            raise Refused(401, "unauthorized", "stale signature")

    def _api_lines(self, body: bytes) -> list[str]:
        try:
            content = body.decode("utf-8").removeprefix("\ufeff")
        except UnicodeDecodeError:
            raise Refused(400, "the body is not UTF-8 text", "bad body") from None
        if content.lstrip().startswith("["):
            records = _parse_json(body)
            if not isinstance(records, list):
                raise Refused(400, "expected a JSON array or JSON Lines", "bad body")
            # One record a "line", numbered from 1 like the lines of JSON Lines.
            return [json.dumps(record, ensure_ascii=False) for record in records]
        _check_depth(content)
        return content.splitlines()

    @web.middleware
    async def _refusals(self, request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            response: web.StreamResponse = await handler(request)
            return response
        except Refused as exc:
            # The path may hold the token: log the route's name only, never the body.
            named = request.match_info.get("source", "api")
            # The path's source is the sender's text: only a known one is logged and stored.
            source = named if named in ADAPTERS or named == "api" else "unknown"
            logger.warning(
                "refused %s request from %s: %s (%s)",
                source,
                request.remote,
                exc.reason,
                exc.status,
            )
            if exc.status != 429:
                await self._record_refusal(source, exc.reason)
            return web.json_response({"error": exc.message}, status=exc.status)
        except (OperationalError, DBAPIError, OSError) as exc:
            # asyncpg raises a bare OSError (connection refused) when PostgreSQL is down.
            logger.error("ingestion: database problem (%s)", type(exc).__name__)
            return web.json_response(
                {"error": "temporary problem with the database: retry later"}, status=503
            )

    async def _record_refusal(self, source: str, reason: str) -> None:
        if not self.refusal_rate.allow("refusals"):
            # A flood of bad requests (no token needed) must not turn into as many writes,
            # each taking SQLite's one write lock from the desks' webhooks.
            return
        try:
            async with self._writing() as connection:
                await connection.execute(
                    ingest_refusals.insert().values(source=source, reason=reason, at=self.clock())
                )
        except (OperationalError, DBAPIError, OSError):
            logger.warning("could not record a refused request (database problem)")


@dataclass
class _Webhook:
    source: str
    delivery: str | None
    events: list[DeskEvent]
    # Set by the batch that stores it: new events, or None for a replayed delivery.
    done: asyncio.Future[int | None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class WebhookBatches:
    """Webhooks that arrive while a write is under way are stored together (group commit).

    Each webhook is answered only after the transaction holding it committed, so a 200 still
    means stored. One transaction and one pass through the write path for a batch is what lets
    SQLite keep up with a busy desk: the cost per webhook is mostly per transaction and per
    staging of new appeals, not per event. A batch that fails is retried one webhook at a time,
    so one bad webhook cannot take the others down with it.
    """

    MAX_BATCH = 200

    def __init__(
        self, writing: Callable[[], AbstractAsyncContextManager[AsyncConnection]], clock: Clock
    ) -> None:
        self._writing, self._clock = writing, clock
        self._pending: list[_Webhook] = []
        self._writer: asyncio.Task[None] | None = None

    async def store(self, webhook: _Webhook) -> int | None:
        self._pending.append(webhook)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._drain(), name="webhook-writer")
        # shield: a client that hangs up must not cancel the batch its webhook is part of.
        return await asyncio.shield(webhook.done)

    async def _drain(self) -> None:
        while self._pending:
            batch, self._pending = (
                self._pending[: self.MAX_BATCH],
                self._pending[self.MAX_BATCH :],
            )
            try:
                await self._store(batch)
            except Exception:  # noqa: BLE001 - each webhook is tried alone to find the bad one
                for webhook in batch:
                    try:
                        await self._store([webhook])
                    except Exception as exc:  # noqa: BLE001 - handed to its own request
                        if not webhook.done.done():
                            webhook.done.set_exception(exc)

    async def _store(self, batch: list[_Webhook]) -> None:
        now = self._clock()
        results: list[tuple[_Webhook, int | None]] = []
        async with self._writing() as connection:
            first = await _first_deliveries(connection, batch, now)
            taken: list[_Webhook] = []
            for webhook in batch:
                delivery = (webhook.source, webhook.delivery)
                if webhook.delivery and delivery not in first:
                    results.append((webhook, None))
                else:
                    # A delivery id twice in one batch: the first of them is taken.
                    first.discard(delivery)
                    taken.append(webhook)
            stored = await store_desk_events(
                connection, [e for webhook in taken for e in webhook.events], received_at=now
            )
            # An event two webhooks of the batch both carry (a conversation's start) is new
            # for the first of them only, as if they had come one after the other.
            unclaimed = set(stored.new_keys)
            for webhook in taken:
                keys = {(e.source, e.label, e.key) for e in webhook.events} & unclaimed
                unclaimed -= keys
                results.append((webhook, len(keys)))
        # Only after the commit: a 200 is a promise that the event is stored.
        for webhook, result in results:
            if not webhook.done.done():
                webhook.done.set_result(result)


async def _first_deliveries(
    connection: Any, batch: list[_Webhook], now: datetime
) -> set[tuple[str, str | None]]:
    """Record the batch's webhook delivery ids; those taken before (replays) are not returned."""
    rows = [
        {"source": webhook.source, "delivery_id": webhook.delivery, "received_at": now}
        for webhook in batch
        if webhook.delivery
    ]
    if not rows:
        return set()
    insert = dialect_insert(connection.dialect.name)
    # A delivery id repeated inside the batch is one row; the caller gives it to the first.
    unique = list({(row["source"], row["delivery_id"]): row for row in rows}.values())
    result = await connection.execute(
        insert(desk_deliveries)
        .on_conflict_do_nothing()
        .returning(desk_deliveries.c.source, desk_deliveries.c.delivery_id),
        unique,
    )
    return {(row.source, row.delivery_id) for row in result}


# Strings (their brackets do not nest) and everything that is not a bracket, removed in C
# before the brackets left are counted: a per-character loop cost more than the parse. An
# unterminated string runs to the end, and nothing backtracks, so hostile bodies stay linear.
_JSON_STRING = re.compile(r'"[^"\\]*+(?:\\.[^"\\]*+)*+(?:"|\\?\Z)', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


def _check_depth(content: str) -> None:
    """Refuse JSON nested deeper than any desk sends before the parser recurses into it."""
    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub("", content))
    if max(accumulate(1 if char in "[{" else -1 for char in brackets), default=0) > MAX_JSON_DEPTH:
        raise Refused(400, "the JSON is nested too deeply", "bad body")


def _parse_json(body: bytes) -> Any:
    try:
        content = body.decode("utf-8")
    except UnicodeDecodeError:
        raise Refused(400, "the body is not UTF-8 text", "bad body") from None
    _check_depth(content)
    try:
        return json.loads(content, parse_int=_bounded_int, parse_constant=_no_constant)
    except (json.JSONDecodeError, ValueError) as exc:
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
        raise Refused(400, f"the body is not valid JSON: {reason}", "bad body") from None


def _bounded_int(digits: str) -> int:
    # int() of a 5,000-digit number is refused by Python itself; anything this long is no id.
    if len(digits) > 20:
        raise ValueError("a number has too many digits")
    return int(digits)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _line_problem(problem: str) -> dict[str, Any]:
    """{"line": N, "reason": "..."} from the importer's "line N: reason"."""
    head, _, reason = problem.partition(": ")
    number = head.removeprefix("line ")
    if number.isdigit():
        return {"line": int(number), "reason": reason}
    return {"line": None, "reason": problem}


def logged_path(raw_path: str) -> str:
    """The request's path for the access log: never a token, however it is spelled.

    The redaction of secrets in log lines only knows the token as written; a percent-encoded
    token (which aiohttp decodes and accepts) or a near miss of it (a typo) would be logged as
    sent. So the token's segment of /ingest/... is always replaced, an unknown source or a bad
    label shown as "?", and the query string (where a client may put anything) dropped.
    """
    path = raw_path.partition("?")[0]
    parts = path.split("/")
    if len(parts) < 3 or parts[1] != "ingest":
        return path
    shown = ["", "ingest", parts[2] if parts[2] in ADAPTERS else "?"]
    if len(parts) > 3:
        shown.append(REDACTED)
    for part in parts[4:]:
        shown.append(part if LABEL_PATTERN.fullmatch(part) else "?")
    return "/".join(shown)


class AccessLogger(AbstractAccessLogger):
    """aiohttp's access line (`%a "%r" %s %b %Tfs`) with the path from `logged_path`."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        version = request.version
        self.logger.info(
            '%s "%s %s HTTP/%s.%s" %s %s %.6fs',
            request.remote,
            request.method,
            logged_path(request.raw_path),
            version.major,
            version.minor,
            response.status,
            response.body_length,
            time,
        )


def serve_telegram(app: web.Application, dispatcher: Dispatcher, bot: Bot, secret: str) -> None:
    """POST /telegram: answered 200 at once and the update handled in the background (Telegram
    delivers again what is not answered soon); without the right X-Telegram-Bot-Api-Secret-Token
    a request gets 401 and is not handled."""
    handler = SimpleRequestHandler(dispatcher, bot, secret_token=secret, handle_in_background=True)

    # Not handler.register(): its shutdown hook closes the bot's session, which the updates
    # still being handled need; the application closes it last.
    async def telegram(request: web.Request) -> web.Response:
        response = await handler.handle(request)
        if response.status == 401:
            logger.warning("refused telegram request from %s: bad secret token", request.remote)
        return response

    app.router.add_post(TELEGRAM_PATH, telegram)


async def start_web(
    server: IngestServer,
    host: str,
    port: int,
    *,
    telegram: tuple[Dispatcher, Bot, str] | None = None,
) -> web.AppRunner:
    """Start serving, with /telegram when `telegram` (dispatcher, bot, secret) is given; a port
    already in use raises OSError for the caller to report."""
    app = server.application()
    if telegram is not None:
        serve_telegram(app, *telegram)
    runner = web.AppRunner(app, access_log_class=AccessLogger)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError:
        await runner.cleanup()
        raise
    return runner
