"""A fake Chatwoot REST API on 127.0.0.1: the conversation list, paged, rate-limited and failing.

It serves `GET /api/v1/accounts/{account_id}/conversations` the way Chatwoot's
`conversationList` does: `{"data": {"meta": {counts}, "payload": [...]}}`, 25 a page, ordered
by last activity (newest first), the `api_access_token` header checked. Faults are scheduled by
request number so each test says exactly what goes wrong, and when.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

PAGE_SIZE = 25
TOKEN = "fake-chatwoot-access-token-0123456789"
ACCOUNT_ID = 7
BASE_TIME = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
CHANNELS = ("Channel::Whatsapp", "Channel::Telegram", "Channel::WebWidget")


@dataclass
class FakeConversation:
    id: int
    contact_id: int
    inbox_id: int
    status: str
    created_at: datetime
    last_activity_at: datetime
    channel: str
    # Fields replaced in the answer, to serve a conversation the client cannot use.
    override: dict[str, Any] = field(default_factory=dict)

    def rest(self) -> dict[str, Any]:
        """The fields of Chatwoot's conversation partial that matter, plus some that do not."""
        return {
            "meta": {
                "sender": {"id": self.contact_id, "name": f"Client {self.contact_id}"},
                "channel": self.channel,
                "hmac_verified": False,
            },
            "id": self.id,
            "account_id": ACCOUNT_ID,
            "uuid": f"00000000-0000-0000-0000-{self.id:012d}",
            "inbox_id": self.inbox_id,
            "status": self.status,
            "created_at": int(self.created_at.timestamp()),
            "timestamp": int(self.last_activity_at.timestamp()),
            "last_activity_at": int(self.last_activity_at.timestamp()),
            "messages": [],
            "labels": [],
            "unread_count": 0,
        } | self.override


def generate(count: int, *, start: datetime = BASE_TIME) -> list[FakeConversation]:
    """`count` conversations an hour apart; every third resolved, the rest open or pending."""
    conversations = []
    for n in range(1, count + 1):
        created = start + timedelta(hours=n)
        status = ("resolved", "open", "pending")[n % 3]
        conversations.append(
            FakeConversation(
                id=n,
                contact_id=1000 + n % 17,
                inbox_id=1 + n % 3,
                status=status,
                created_at=created,
                last_activity_at=created + timedelta(minutes=30),
                channel=CHANNELS[n % 3],
            )
        )
    return conversations


@dataclass
class Request:
    page: int
    params: dict[str, str]
    status: int


@dataclass
class FakeChatwoot:
    conversations: list[FakeConversation] = field(default_factory=list)
    token: str = TOKEN
    account_id: int = ACCOUNT_ID
    # Request numbers (1-based, counting every request) answered 429 with this Retry-After.
    rate_limit_on: set[int] = field(default_factory=set)
    retry_after: str | None = "7"
    # Request numbers answered 500 once, and those whose connection drops mid-answer.
    fail_on: set[int] = field(default_factory=set)
    drop_on: set[int] = field(default_factory=set)
    # Every request for a page above this fails with 500, for as long as it is set.
    fail_after_page: int | None = None
    # Answer every page with the first one, as a server that ignores `page` would.
    ignore_page: bool = False
    # Answer with a redirect here (an http address in front of an https desk).
    redirect_to: str | None = None
    requests: list[Request] = field(default_factory=list)
    _runner: web.AppRunner | None = None
    port: int = 0

    async def __aenter__(self) -> FakeChatwoot:
        app = web.Application()
        app.router.add_get("/api/v1/accounts/{account_id}/conversations", self._list)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def pages_requested(self, status: int = 200) -> list[int]:
        return [request.page for request in self.requests if request.status == status]

    def add(self, conversation: FakeConversation) -> None:
        self.conversations.append(conversation)

    async def _list(self, request: web.Request) -> web.StreamResponse:
        number = len(self.requests) + 1
        params = dict(request.query)
        try:
            page = max(1, int(params.get("page", "1")))
        except ValueError:
            page = 1

        def answer(status: int, body: Any, headers: dict[str, str] | None = None) -> web.Response:
            self.requests.append(Request(page, params, status))
            return web.json_response(body, status=status, headers=headers)

        if self.redirect_to is not None:
            self.requests.append(Request(page, params, 301))
            raise web.HTTPMovedPermanently(self.redirect_to)
        if request.headers.get("api_access_token") != self.token:
            return answer(401, {"errors": ["Invalid Access Token"]})
        if request.match_info["account_id"] != str(self.account_id):
            return answer(404, {"error": "Resource could not be found"})
        if number in self.drop_on:
            # Cut off mid-body: a drop before any byte is retried by aiohttp on its own.
            self.requests.append(Request(page, params, 0))
            response = web.StreamResponse(status=200, headers={"Content-Length": "4096"})
            response.content_type = "application/json"
            await response.prepare(request)
            await response.write(b'{"data": {"payload": [')
            assert request.transport is not None
            request.transport.close()
            return response
        if number in self.rate_limit_on:
            headers = {"Retry-After": self.retry_after} if self.retry_after else {}
            return answer(429, {"error": "Too many requests"}, headers)
        if number in self.fail_on or (
            self.fail_after_page is not None and page > self.fail_after_page
        ):
            return answer(500, {"error": "Internal Server Error"})
        listed = self.conversations
        if params.get("status", "open") != "all":
            listed = [c for c in listed if c.status == params.get("status", "open")]
        ordered = sorted(listed, key=lambda c: (c.last_activity_at, c.id), reverse=True)
        shown = 1 if self.ignore_page else page
        chunk = ordered[(shown - 1) * PAGE_SIZE : shown * PAGE_SIZE]
        meta = {
            "mine_count": 0,
            "assigned_count": 0,
            "unassigned_count": len(listed),
            "all_count": len(listed),
        }
        return answer(200, {"data": {"meta": meta, "payload": [c.rest() for c in chunk]}})
