"""Chatwoot history sync and reconciliation: read conversations from its REST API into desk events.

Webhooks carry only what happens from now on and Chatwoot sends each one once, so the bot also
reads the conversation list (`GET /api/v1/accounts/{id}/conversations`, `status=all`, 25 a page,
most recent activity first) and stores, per conversation, its start and its current status at its
last activity through the same write path as the webhooks.

What a sync can see: a conversation's start (`created_at`), its current status and the time of
its last activity (`timestamp`). What it cannot: the statuses in between. A conversation resolved
and reopened before the sync shows as one appeal until a webhook (or a later reconciliation that
sees it resolved, then open again) records the cycle; a conversation open now counts one appeal.

Resumable: each page is stored with the sweep's position in one transaction (the `sync_state`
row `<label>.resume`), so an interrupted sweep continues below the last stored page, then reads
the top of the list for what became active meanwhile. Idempotent: events are keyed by identity,
so reading a conversation again adds nothing unless its status or last activity changed. The
`<label>` row's `synced_until` is the watermark reconciliation reads from.

Limits: the list holds only the conversations of the token's inboxes (use an administrator's
token); a conversation deleted during a sweep shifts the pages below it up by one, so one
conversation may be missed until it next becomes active.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO

import aiohttp
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from yarl import URL

from bot.config import Settings
from bot.ingest.chatwoot import SOURCE, conversation_event
from bot.ingest.desk import DeskEvent, store_desk_events
from bot.ingest.payloads import PayloadError, instant
from bot.storage.engine import dialect_insert, write_transaction
from bot.storage.tables import sync_state

logger = logging.getLogger(__name__)

PAGE_SIZE = 25
# Chatwoot's clock and ours differ a little, and a conversation's activity is written a moment
# after it happens: each sweep re-reads this much before the previous one began.
OVERLAP = timedelta(minutes=5)
# Without any sync yet, reconciliation looks this far back (the history is `sync chatwoot`'s job).
FIRST_LOOKBACK = timedelta(days=1)
MAX_ATTEMPTS = 6
MAX_RATE_LIMITED = 20
BACKOFF_BASE = 1.0
BACKOFF_MAX = 60.0
RETRY_AFTER_MAX = 600.0
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=60, sock_connect=15)
# An unfinished sweep is kept under this suffix of the label; "." never occurs in a webhook
# label, so it cannot collide with a real desk account.
_RESUME_SUFFIX = ".resume"

Sleep = Callable[[float], Awaitable[Any]]
Clock = Callable[[], datetime]
Progress = Callable[[int, int | None], None]


class SyncError(Exception):
    """The sync cannot go on; the message is one line, safe to show (it never holds the token)."""


@dataclass(frozen=True, slots=True)
class SyncResult:
    conversations: int
    new_events: int
    pages: int
    # Conversations whose fields were not usable (logged by id), not stored.
    skipped: int = 0


def utc_now() -> datetime:
    return datetime.now(UTC)


async def sync_chatwoot(
    settings: Settings,
    engine: AsyncEngine,
    *,
    since: datetime,
    label: str = "main",
    progress: Progress | None = None,
    sleep: Sleep = asyncio.sleep,
    session_factory: Callable[[], aiohttp.ClientSession] | None = None,
    clock: Clock = utc_now,
) -> SyncResult:
    """Read every conversation active at or after `since` into the event table.

    An unfinished earlier sweep is continued first (below where it stopped), then the newest
    conversations down to where that sweep began are read, so nothing active in between is missed.
    """
    return await _sync(
        settings, engine, since, label, progress, sleep, session_factory, clock, resumable=True
    )


async def reconcile_forever(
    settings: Settings,
    engine: AsyncEngine,
    *,
    every: float = 600,
    label: str = "main",
    sleep: Sleep = asyncio.sleep,
    clock: Clock = utc_now,
    session_factory: Callable[[], aiohttp.ClientSession] | None = None,
) -> None:
    """Every `every` seconds, read the conversations updated since the last sync; never raises.

    A failed round is logged and the next one tries again from the same place, so an event
    lost while the bot (or Chatwoot) was down is recovered once both are back.
    """
    while True:
        try:
            state = await _read_state(engine, label)
            if state is not None and state.synced_until is not None:
                since = state.synced_until
            else:
                since = clock() - FIRST_LOOKBACK
            # A round keeps no mark of its own: interrupted, the next one starts again from the
            # watermark, which has not moved; a history sync's mark is left alone.
            result = await _sync(
                settings,
                engine,
                since,
                label,
                None,
                sleep,
                session_factory,
                clock,
                resumable=False,
            )
            logger.info(
                "chatwoot reconcile %s: %d conversations read since %s, %d new events, %d pages",
                label,
                result.conversations,
                since.isoformat(timespec="seconds"),
                result.new_events,
                result.pages,
            )
        except SyncError as exc:
            logger.warning("chatwoot reconcile %s failed: %s; next try in %gs", label, exc, every)
        except Exception as exc:  # noqa: BLE001 - a round must never end the loop
            # The database's first line says what went wrong; the log filter redacts secrets.
            detail = (str(exc).splitlines() or [""])[0][:200]
            logger.warning(
                "chatwoot reconcile %s failed: %s: %s; next try in %gs",
                label,
                type(exc).__name__,
                detail,
                every,
            )
        await sleep(every)


class TextProgress:
    """A one-line progress bar for the CLI: `synced 250/1,000 conversations` on stderr."""

    WIDTH = 24

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self._drawn = False

    def __call__(self, done: int, total: int | None) -> None:
        if total:
            filled = min(self.WIDTH, self.WIDTH * done // total)
            bar = "#" * filled + "." * (self.WIDTH - filled)
            text = f"[{bar}] synced {done:,}/{total:,} conversations"
        else:
            text = f"synced {done:,} conversations"
        # A terminal redraws one line; a log file gets one line per update.
        ending = "\r" if self.stream.isatty() else "\n"
        self.stream.write(("\r" if self._drawn and ending == "\r" else "") + text + ending)
        self.stream.flush()
        self._drawn = True

    def finish(self) -> None:
        if self._drawn and self.stream.isatty():
            self.stream.write("\n")
            self.stream.flush()
        self._drawn = False


# --- internals ---------------------------------------------------------------------------------


async def _sync(
    settings: Settings,
    engine: AsyncEngine,
    since: datetime,
    label: str,
    progress: Progress | None,
    sleep: Sleep,
    session_factory: Callable[[], aiohttp.ClientSession] | None,
    clock: Clock,
    *,
    resumable: bool,
) -> SyncResult:
    if not settings.chatwoot_sync_configured:
        raise SyncError(
            "Chatwoot sync needs CHATWOOT_API_URL, CHATWOOT_API_TOKEN and CHATWOOT_ACCOUNT_ID"
        )
    if since.tzinfo is None:
        raise ValueError("since must be timezone-aware")
    sweep = _Sweep(_Client(settings, sleep), engine, label, progress, clock, resumable)
    session = session_factory() if session_factory else aiohttp.ClientSession()
    async with session:
        sweep.session = session
        resume = await _read_state(engine, _resume_label(label)) if resumable else None
        if resume is not None and resume.synced_until is not None:
            logger.info(
                "chatwoot sync %s: continuing an unfinished sweep below %s",
                label,
                resume.synced_until.isoformat(timespec="seconds"),
            )
            await sweep.run(since, began=resume.updated_at, below=resume.synced_until)
            # What became active while that sweep was away is at the top of the list.
            since = max(since, resume.updated_at - OVERLAP)
        await sweep.run(since, began=clock(), below=None)
    totals = sweep.totals
    if progress is not None:
        progress(totals.conversations, totals.conversations)
    return SyncResult(totals.conversations, totals.new_events, totals.pages, totals.skipped)


@dataclass(slots=True)
class _Totals:
    conversations: int = 0
    new_events: int = 0
    pages: int = 0
    skipped: int = 0


@dataclass(frozen=True, slots=True)
class _Page:
    conversations: list[dict[str, Any]]
    total: int | None


class _Sweep:
    """Reads pages, most recent activity first, down to a lower bound, storing page by page."""

    def __init__(
        self,
        client: _Client,
        engine: AsyncEngine,
        label: str,
        progress: Progress | None,
        clock: Clock,
        resumable: bool,
    ) -> None:
        self.client = client
        self.engine = engine
        self.label = label
        self.progress = progress
        self.clock = clock
        self.resumable = resumable
        self.totals = _Totals()
        self.session: aiohttp.ClientSession | None = None

    async def run(self, since: datetime, *, began: datetime, below: datetime | None) -> None:
        """One sweep from the top (or from `below`, continuing one) down to `since`.

        Each stored page records, in its transaction, the oldest activity the sweep reached;
        when it reaches `since` the label's watermark becomes the sweep's start less the overlap.
        """
        assert self.session is not None
        number = 1
        if below is not None:
            number = await _first_page_at_or_below(self.client, self.session, below)
        previous: list[Any] | None = None
        while True:
            page = await self.client.page(self.session, number)
            ids = [conversation.get("id") for conversation in page.conversations]
            if ids and ids == previous:
                # A proxy or an old version that ignores `page` would loop here for ever.
                raise SyncError(
                    f"Chatwoot at {self.client.base} answered page {number} with the "
                    "conversations of the page before: is CHATWOOT_API_URL the desk itself?"
                )
            previous = ids
            oldest, events = self._events(page, since, below)
            # The list ends with an empty page; a page of unreadable conversations does not end it.
            done = not page.conversations or (oldest is not None and oldest < since)
            async with write_transaction(self.engine) as connection:
                stored = await store_desk_events(connection, events, received_at=self.clock())
                if done:
                    await self._finish(connection, began)
                elif self.resumable and oldest is not None:
                    # The mark's `updated_at` holds when its sweep began: the watermark to be.
                    await _write_state(connection, _resume_label(self.label), oldest, began)
            self.totals.new_events += stored.new
            self.totals.pages += 1
            if self.progress is not None:
                self.progress(self.totals.conversations, page.total)
            if done:
                return
            number += 1

    def _events(
        self, page: _Page, since: datetime, below: datetime | None
    ) -> tuple[datetime | None, list[DeskEvent]]:
        """The page's events to store and its oldest activity (None for an empty page)."""
        events: list[DeskEvent] = []
        oldest: datetime | None = None
        for conversation in page.conversations:
            try:
                active = instant(conversation.get("timestamp"), "timestamp")
                oldest = active if oldest is None else min(oldest, active)
                if active < since or (below is not None and active > below):
                    # Older than asked for, or read already by the sweep being continued.
                    continue
                events.extend(_conversation_events(conversation, self.label))
            except PayloadError as exc:
                self.totals.skipped += 1
                logger.warning(
                    "chatwoot sync %s: conversation %s skipped: %s",
                    self.label,
                    _safe_id(conversation),
                    exc,
                )
                continue
            self.totals.conversations += 1
        return oldest, events

    async def _finish(self, connection: AsyncConnection, began: datetime) -> None:
        await _write_state(connection, self.label, began - OVERLAP, self.clock())
        if self.resumable:
            await connection.execute(
                delete(sync_state).where(
                    sync_state.c.source == SOURCE,
                    sync_state.c.label == _resume_label(self.label),
                )
            )


async def _first_page_at_or_below(
    client: _Client, session: aiohttp.ClientSession, below: datetime
) -> int:
    """The first page holding a conversation last active at or before `below` (binary search).

    Conversations only move up the list (new activity), so pages above the answer hold nothing
    the continued sweep still needs; the few above `below` on the page itself are skipped.
    """
    first = await client.page(session, 1)
    if not first.conversations or _oldest(first) <= below:
        return 1
    if first.total is None:
        # No count to bisect on: walk down instead.
        number = 2
        while True:
            page = await client.page(session, number)
            if not page.conversations or _oldest(page) <= below:
                return number
            number += 1
    low, high = 2, max(2, -(-first.total // PAGE_SIZE))
    while low < high:
        middle = (low + high) // 2
        page = await client.page(session, middle)
        if not page.conversations or _oldest(page) <= below:
            high = middle
        else:
            low = middle + 1
    return low


def _oldest(page: _Page) -> datetime:
    times = []
    for conversation in page.conversations:
        try:
            times.append(instant(conversation.get("timestamp"), "timestamp"))
        except PayloadError:
            continue
    return min(times) if times else datetime.max.replace(tzinfo=UTC)


def _conversation_events(conversation: dict[str, Any], label: str) -> list[DeskEvent]:
    # The REST list names the channel under `meta.channel`; webhooks carry it at the top.
    meta = conversation.get("meta")
    if conversation.get("channel") is None and isinstance(meta, dict) and meta.get("channel"):
        conversation = {**conversation, "channel": meta["channel"]}
    events = []
    for name in ("conversation_created", "sync"):
        event = conversation_event(conversation, name, label)
        if event is not None:
            events.append(event)
    return events


def _safe_id(conversation: dict[str, Any]) -> str:
    value = conversation.get("id")
    return str(value)[:40] if isinstance(value, int | str) else "?"


def _resume_label(label: str) -> str:
    return label + _RESUME_SUFFIX


async def _read_state(engine: AsyncEngine, label: str) -> Any:
    async with engine.connect() as connection:
        return (
            await connection.execute(
                select(sync_state.c.synced_until, sync_state.c.updated_at).where(
                    sync_state.c.source == SOURCE, sync_state.c.label == label
                )
            )
        ).first()


async def _write_state(
    connection: AsyncConnection, label: str, synced_until: datetime | None, updated_at: datetime
) -> None:
    insert = dialect_insert(connection.dialect.name)
    statement = insert(sync_state).values(
        source=SOURCE, label=label, synced_until=synced_until, updated_at=updated_at
    )
    await connection.execute(
        statement.on_conflict_do_update(
            index_elements=[sync_state.c.source, sync_state.c.label],
            set_={"synced_until": synced_until, "updated_at": updated_at},
        )
    )


class _Client:
    """GET one page of the conversation list, waiting out 429s and retrying transient failures."""

    def __init__(self, settings: Settings, sleep: Sleep) -> None:
        assert settings.chatwoot_api_url and settings.chatwoot_api_token
        self.base = settings.chatwoot_api_url
        self.account = settings.chatwoot_account_id
        self.url = f"{self.base}/api/v1/accounts/{self.account}/conversations"
        self._token = settings.chatwoot_api_token.get_secret_value()
        self.sleep = sleep

    async def page(self, session: aiohttp.ClientSession, number: int) -> _Page:
        params = {
            "status": "all",
            "assignee_type": "all",
            "sort_by": "last_activity_at_desc",
            "page": str(number),
        }
        headers = {"api_access_token": self._token, "Accept": "application/json"}
        failures = 0
        limited = 0
        while True:
            try:
                # Not following redirects: the token header would go wherever they point.
                async with session.get(
                    self.url,
                    params=params,
                    headers=headers,
                    timeout=REQUEST_TIMEOUT,
                    allow_redirects=False,
                ) as response:
                    if response.status == 200:
                        return _parse_page(await response.json(content_type=None))
                    if response.status == 429:
                        limited += 1
                        if limited > MAX_RATE_LIMITED:
                            raise SyncError(
                                f"Chatwoot at {self.base} kept rate-limiting (429) page {number}"
                            )
                        delay = _retry_after(response.headers.get("Retry-After"))
                        await self.sleep(delay if delay is not None else _backoff(limited))
                        continue
                    if response.status in (401, 403):
                        raise SyncError(
                            f"Chatwoot at {self.base} refused the API token "
                            f"({response.status}): check CHATWOOT_API_TOKEN (an administrator's "
                            "access token, Profile settings → Access token)"
                        )
                    if 300 <= response.status < 400:
                        where = _origin(response.headers.get("Location"))
                        raise SyncError(
                            f"Chatwoot at {self.base} redirects the API ({response.status}"
                            f"{where}): set CHATWOOT_API_URL to the address it redirects to"
                        )
                    if response.status == 404:
                        raise SyncError(
                            f"Chatwoot at {self.base} has no account {self.account} (404): "
                            "check CHATWOOT_ACCOUNT_ID and CHATWOOT_API_URL"
                        )
                    if response.status < 500:
                        raise SyncError(
                            f"Chatwoot at {self.base} answered {response.status} to the "
                            "conversation list"
                        )
                    reason = f"HTTP {response.status}"
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                # ValueError: a 200 whose body is not JSON (a proxy's error page, a cut body).
                if isinstance(exc, aiohttp.InvalidURL):
                    raise SyncError(f"CHATWOOT_API_URL {self.base} is not a usable URL") from None
                if isinstance(exc, aiohttp.ClientConnectorError):
                    reason = "host unreachable"
                elif isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientOSError):
                    reason = "connection dropped"
                elif isinstance(exc, TimeoutError):
                    reason = "timed out"
                else:
                    reason = type(exc).__name__
            failures += 1
            if failures >= MAX_ATTEMPTS:
                raise SyncError(
                    f"cannot read conversations from Chatwoot at {self.base}: {reason} "
                    f"({failures} attempts, page {number})"
                )
            logger.info(
                "chatwoot page %d: %s, retry %d of %d", number, reason, failures, MAX_ATTEMPTS - 1
            )
            await self.sleep(_backoff(failures))


def _parse_page(body: Any) -> _Page:
    data = body.get("data") if isinstance(body, dict) else None
    payload = data.get("payload") if isinstance(data, dict) else None
    if not isinstance(data, dict) or not isinstance(payload, list):
        raise SyncError("Chatwoot's conversation list is not in the expected shape (data.payload)")
    meta = data.get("meta")
    total = meta.get("all_count") if isinstance(meta, dict) else None
    conversations = [item for item in payload if isinstance(item, dict)]
    return _Page(conversations, total if isinstance(total, int) and total >= 0 else None)


def _origin(location: str | None) -> str:
    """The text ` to <origin>` for an absolute redirect target (never its path), else ""."""
    try:
        url = URL(location or "")
    except ValueError:
        return ""
    return f" to {url.origin()}" if url.absolute and url.host else ""


def _retry_after(value: str | None) -> float | None:
    """Retry-After in seconds (Chatwoot's rack-attack sends seconds), bounded; None if unusable."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    if seconds != seconds or seconds < 0:
        return None
    return min(seconds, RETRY_AFTER_MAX)


def _backoff(attempt: int) -> float:
    return min(BACKOFF_MAX, BACKOFF_BASE * 2 ** (attempt - 1))
