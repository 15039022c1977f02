"""Hostile input for every ingestion endpoint: each gets its status and nothing is stored."""

import copy
import json
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.ingest.support import (
    NOW,
    SECRET,
    TOKEN,
    ingest_client,
    payload,
    raw,
    row_counts,
    sign,
)

STAMP = int(NOW.timestamp())
SEEN_DELIVERY = "delivery-seen-before"


@dataclass(frozen=True)
class Case:
    name: str
    target: str  # chatwoot, blinger or api
    body: bytes
    status: int
    # Chatwoot: signed for the body at STAMP unless given.
    headers: dict[str, str] | None = None
    path: str = ""
    extra: dict[str, str] = field(default_factory=dict)
    # A known bug: the case is a strict xfail until its fix.
    bug: str | None = None


def dumps(data: Any) -> bytes:
    # ASCII-escaped, so that a lone surrogate arrives as valid UTF-8 "\\ud800".
    return json.dumps(data).encode()


def chatwoot_with(change: Any) -> bytes:
    data = copy.deepcopy(payload("chatwoot_message_incoming"))
    change(data)
    return dumps(data)


def blinger_with(change: Any) -> bytes:
    data = copy.deepcopy(payload("blinger_on_incoming_message"))
    change(data)
    return dumps(data)


def setter(*path: str | int, value: Any) -> Any:
    def change(data: Any) -> None:
        for key in path[:-1]:
            data = data[key]
        data[path[-1]] = value

    return change


def raw_value(base: bytes, field_name: str, literal: str) -> bytes:
    """The body with the first `"field": <number>` replaced by a raw JSON literal."""
    data = json.loads(base)
    marker = "@@RAW@@"
    target = data["conversation"] if field_name in data["conversation"] else data
    target[field_name] = marker
    return json.dumps(data).replace(f'"{marker}"', literal).encode()


CW = raw("chatwoot_message_incoming")
BL = raw("blinger_on_incoming_message")
DEEP = b"[" * 100_000 + b"]" * 100_000
DEEP_OBJECTS = b'{"a":' * 100_000 + b"1" + b"}" * 100_000
BIG_NUMBER = "9" * 5000
LONG = "x" * 201
LONE_SURROGATE = "\ud800"
API_RECORD = {
    "appeal_id": "a1",
    "client_id": "c1",
    "channel": "whatsapp",
    "app": "Shop",
    "created_at": "2026-11-30T10:00:00Z",
}


def api(*records: Any) -> bytes:
    return b"\n".join(dumps(record) for record in records)


CASES = [
    # --- Chatwoot: the JSON itself
    Case("cw truncated JSON", "chatwoot", CW[: len(CW) // 2], 400),
    Case("cw cut after the last brace", "chatwoot", CW.rstrip()[:-1], 400),
    Case("cw 100,000 nested brackets", "chatwoot", DEEP, 400),
    Case("cw 100,000 nested objects", "chatwoot", DEEP_OBJECTS, 400),
    Case("cw empty body", "chatwoot", b"", 400),
    Case("cw whitespace body", "chatwoot", b"  \n ", 400),
    Case("cw JSON array", "chatwoot", dumps([payload("chatwoot_message_incoming")]), 400),
    Case("cw JSON string", "chatwoot", b'"message_created"', 400),
    Case("cw JSON null", "chatwoot", b"null", 400),
    Case("cw non-UTF-8 body", "chatwoot", '{"event": "é"}'.encode("latin-1"), 400),
    Case("cw UTF-16 body", "chatwoot", CW.decode().encode("utf-16"), 400),
    Case("cw trailing garbage", "chatwoot", CW + b"}{", 400),
    Case("cw NaN id", "chatwoot", raw_value(CW, "id", "NaN"), 400),
    Case("cw Infinity created_at", "chatwoot", raw_value(CW, "created_at", "Infinity"), 400),
    Case("cw -Infinity created_at", "chatwoot", raw_value(CW, "created_at", "-Infinity"), 400),
    Case("cw 1e400 created_at", "chatwoot", raw_value(CW, "created_at", "1e400"), 400),
    Case("cw 5,000-digit id", "chatwoot", raw_value(CW, "id", BIG_NUMBER), 400),
    Case("cw 5,000-digit created_at", "chatwoot", raw_value(CW, "created_at", BIG_NUMBER), 400),
    Case("cw 19-digit id", "chatwoot", raw_value(CW, "id", "1" + "0" * 18), 400),
    # --- Chatwoot: wrong types and bad ids
    Case("cw event is a number", "chatwoot", chatwoot_with(setter("event", value=5)), 400),
    Case("cw no event", "chatwoot", dumps({"id": 1}), 400),
    Case("cw message id a list", "chatwoot", chatwoot_with(setter("id", value=[1])), 400),
    Case("cw message id an object", "chatwoot", chatwoot_with(setter("id", value={})), 400),
    Case("cw message id true", "chatwoot", chatwoot_with(setter("id", value=True)), 400),
    Case("cw message id null", "chatwoot", chatwoot_with(setter("id", value=None)), 400),
    Case("cw message id empty", "chatwoot", chatwoot_with(setter("id", value="  ")), 400),
    Case("cw message id 201 chars", "chatwoot", chatwoot_with(setter("id", value=LONG)), 400),
    Case("cw message id with ':'", "chatwoot", chatwoot_with(setter("id", value="1:2")), 400),
    Case("cw message id NUL", "chatwoot", chatwoot_with(setter("id", value="1\u0000")), 400),
    Case(
        "cw message id lone surrogate",
        "chatwoot",
        chatwoot_with(setter("id", value=f"m{LONE_SURROGATE}")),
        400,
    ),
    Case(
        "cw conversation id with ':'",
        "chatwoot",
        chatwoot_with(setter("conversation", "id", value="42:1")),
        400,
    ),
    Case(
        "cw conversation id 201 chars",
        "chatwoot",
        chatwoot_with(setter("conversation", "id", value=LONG)),
        400,
    ),
    Case(
        "cw conversation not an object",
        "chatwoot",
        chatwoot_with(setter("conversation", value=[42])),
        400,
    ),
    Case(
        "cw contact id with ':'",
        "chatwoot",
        chatwoot_with(setter("conversation", "meta", "sender", "id", value="chatwoot:main:1")),
        400,
    ),
    Case(
        "cw contact id a float",
        "chatwoot",
        chatwoot_with(setter("conversation", "meta", "sender", "id", value=7.5)),
        400,
    ),
    Case(
        "cw inbox id a list",
        "chatwoot",
        chatwoot_with(setter("conversation", "inbox_id", value=[3])),
        400,
    ),
    Case(
        "cw channel a number",
        "chatwoot",
        chatwoot_with(setter("conversation", "channel", value=7)),
        400,
    ),
    Case(
        "cw channel 201 chars",
        "chatwoot",
        chatwoot_with(setter("conversation", "channel", value="Channel::" + LONG)),
        400,
    ),
    Case(
        "cw inbox name lone surrogate",
        "chatwoot",
        chatwoot_with(setter("inbox", "name", value=f"Support {LONE_SURROGATE}")),
        400,
    ),
    Case(
        "cw channel lone surrogate",
        "chatwoot",
        chatwoot_with(setter("conversation", "channel", value=f"Channel::{LONE_SURROGATE}")),
        400,
    ),
    Case(
        "cw contact id lone surrogate",
        "chatwoot",
        chatwoot_with(setter("conversation", "meta", "sender", "id", value=LONE_SURROGATE)),
        400,
    ),
    # --- Chatwoot: timestamps
    Case(
        "cw created_at year 9999",
        "chatwoot",
        chatwoot_with(setter("created_at", value="9999-12-31T23:59:59Z")),
        400,
    ),
    Case(
        "cw created_at 1999",
        "chatwoot",
        chatwoot_with(setter("created_at", value="1999-12-31T23:59:59Z")),
        400,
    ),
    Case(
        "cw created_at year 1 at +14:00",
        "chatwoot",
        chatwoot_with(setter("created_at", value="0001-01-01T00:00:00+14:00")),
        400,
    ),
    Case(
        "cw created_at year 9999 at -14:00",
        "chatwoot",
        chatwoot_with(setter("created_at", value="9999-12-31T23:59:59-14:00")),
        400,
    ),
    Case("cw created_at zero", "chatwoot", chatwoot_with(setter("created_at", value=0)), 400),
    Case("cw created_at negative", "chatwoot", chatwoot_with(setter("created_at", value=-1)), 400),
    Case(
        "cw created_at year 10000 in seconds",
        "chatwoot",
        chatwoot_with(setter("created_at", value=253402300800)),
        400,
    ),
    Case(
        "cw created_at without offset",
        "chatwoot",
        chatwoot_with(setter("created_at", value="2026-11-30T09:00:10")),
        400,
    ),
    Case(
        "cw created_at a word",
        "chatwoot",
        chatwoot_with(setter("created_at", value="yesterday")),
        400,
    ),
    Case(
        "cw created_at 65 characters",
        "chatwoot",
        chatwoot_with(setter("created_at", value="2026-11-30T09:00:10Z" + " " * 45)),
        400,
    ),
    Case(
        "cw conversation timestamp in 2100",
        "chatwoot",
        dumps(payload("chatwoot_status_resolved") | {"timestamp": 4102444800}),
        400,
    ),
    # --- Chatwoot: signature, deliveries, token, label, size
    Case(
        "cw signature for another body",
        "chatwoot",
        CW,
        401,
        headers=sign(raw("chatwoot_status_resolved"), STAMP),
    ),
    Case("cw stale timestamp", "chatwoot", CW, 401, headers=sign(CW, STAMP - 600)),
    Case("cw timestamp far future", "chatwoot", CW, 401, headers=sign(CW, STAMP + 600)),
    Case("cw timestamp not digits", "chatwoot", CW, 401, headers=sign(CW, "17x")),
    Case("cw timestamp negative", "chatwoot", CW, 401, headers=sign(CW, "-5")),
    Case(
        "cw timestamp beyond year 9999",
        "chatwoot",
        CW,
        401,
        headers=sign(CW, 999999999999),
    ),
    Case("cw timestamp 13 digits", "chatwoot", CW, 401, headers=sign(CW, 1764590400000)),
    Case(
        "cw timestamp in arabic digits",
        "chatwoot",
        CW,
        401,
        headers=sign(CW, "١٧٦٤٥٩٠٤٠٠"),
    ),
    Case("cw no signature", "chatwoot", CW, 401, headers={"X-Chatwoot-Timestamp": str(STAMP)}),
    Case(
        "cw signature upper-case hex",
        "chatwoot",
        CW,
        401,
        headers={
            **sign(CW, STAMP),
            "X-Chatwoot-Signature": sign(CW, STAMP)["X-Chatwoot-Signature"].upper(),
        },
    ),
    Case("cw replayed delivery id", "chatwoot", CW, 200, extra={"delivery": SEEN_DELIVERY}),
    Case("cw wrong token", "chatwoot", CW, 401, path="/../wrong"),
    Case("cw label 65 characters", "chatwoot", CW, 400, path="/" + "l" * 65),
    Case("cw label 10,000 characters", "chatwoot", CW, 400, path="/" + "l" * 10_000),
    Case("cw label with a dot", "chatwoot", CW, 400, path="/shop.ru"),
    Case("cw label in cyrillic", "chatwoot", CW, 400, path="/%D0%BC%D0%B0%D0%B3"),
    Case("cw label with ':'", "chatwoot", CW, 400, path="/a:b"),
    Case("cw 1 MB + 1", "chatwoot", CW + b" " * ((1 << 20) + 1 - len(CW)), 413),
    # --- Chatwoot: answered 200 and ignored
    Case("cw unknown event", "chatwoot", dumps({"event": "contact_updated", "id": 7}), 200),
    Case(
        "cw unknown event, deep but allowed",
        "chatwoot",
        dumps({"event": "x", "a": [[[[[[[[[[1]]]]]]]]]]}),
        200,
    ),
    Case(
        "cw outgoing message with bad ids",
        "chatwoot",
        dumps(payload("chatwoot_message_outgoing") | {"id": LONG}),
        200,
    ),
    Case(
        "cw private note",
        "chatwoot",
        chatwoot_with(setter("private", value=True)),
        200,
    ),
    Case(
        "cw duplicate event key, the last wins",
        "chatwoot",
        CW[:-2] + b', "event": "message_updated"}',
        200,
    ),
    # --- Blinger
    Case("bl truncated JSON", "blinger", BL[:100], 400),
    Case("bl 100,000 nested brackets", "blinger", DEEP, 400),
    Case("bl empty body", "blinger", b"", 400),
    Case("bl JSON array", "blinger", dumps([payload("blinger_on_incoming_message")]), 400),
    Case("bl non-UTF-8 body", "blinger", b'{"webhook": "\xff"}', 400),
    Case("bl webhook a number", "blinger", blinger_with(setter("webhook", value=1)), 400),
    Case("bl no webhook", "blinger", dumps({"conversation": {}}), 400),
    Case(
        "bl conversation a string",
        "blinger",
        blinger_with(setter("conversation", value="181")),
        400,
    ),
    Case(
        "bl conversation id 201 chars",
        "blinger",
        blinger_with(setter("conversation", "id", value=LONG)),
        400,
    ),
    Case(
        "bl conversation id 5,000 digits",
        "blinger",
        raw_value(BL, "id", BIG_NUMBER),
        400,
    ),
    Case(
        "bl user id with ':'",
        "blinger",
        blinger_with(setter("conversation", "from_user", "user_id", value="374:1")),
        400,
    ),
    Case(
        "bl user id lone surrogate",
        "blinger",
        blinger_with(setter("conversation", "from_user", "user_id", value=LONE_SURROGATE)),
        400,
    ),
    Case(
        "bl no from_user",
        "blinger",
        blinger_with(setter("conversation", "from_user", value=None)),
        400,
    ),
    Case(
        "bl date_updated year 9999",
        "blinger",
        blinger_with(setter("conversation", "date_updated", value=253402300799)),
        400,
    ),
    Case(
        "bl date_created 1999",
        "blinger",
        blinger_with(setter("conversation", "date_created", value=946684799)),
        400,
    ),
    Case(
        "bl date_updated NaN",
        "blinger",
        raw_value(BL, "date_updated", "NaN"),
        400,
    ),
    Case(
        "bl date_updated a string",
        "blinger",
        blinger_with(setter("conversation", "date_updated", value="1513353161")),
        400,
    ),
    Case(
        "bl application a list",
        "blinger",
        blinger_with(setter("conversation", "application", value=["telegrambot"])),
        400,
    ),
    Case(
        "bl application empty",
        "blinger",
        blinger_with(setter("conversation", "application", value="")),
        400,
    ),
    Case(
        "bl account name lone surrogate",
        "blinger",
        blinger_with(setter("conversation", "account", value={"name": LONE_SURROGATE})),
        400,
    ),
    Case("bl wrong token", "blinger", BL, 401, path="/../nope"),
    Case("bl huge label", "blinger", BL, 400, path="/" + "b" * 300),
    Case("bl 1 MB + 1", "blinger", BL + b" " * ((1 << 20) + 1 - len(BL)), 413),
    Case("bl unknown webhook", "blinger", dumps({"webhook": "on_rating", "rating": 5}), 200),
    Case("bl new client", "blinger", raw("blinger_on_new_client"), 200),
    # --- /api/appeals
    Case("api no token", "api", api(API_RECORD), 401, headers={}),
    Case("api wrong token", "api", api(API_RECORD), 401, headers={"Authorization": "Bearer x"}),
    Case(
        "api token in the wrong scheme",
        "api",
        api(API_RECORD),
        401,
        headers={"Authorization": f"Token {TOKEN}"},
    ),
    Case("api truncated line", "api", api(API_RECORD) + b'\n{"appeal_id": "a2"', 422),
    Case("api truncated array", "api", b"[" + api(API_RECORD), 400),
    Case("api 100,000 nested brackets", "api", DEEP, 400),
    Case("api 100,000 nested objects", "api", DEEP_OBJECTS, 400),
    Case("api array of numbers", "api", b"[1, 2]", 422),
    Case("api object with an array inside", "api", b'{"a": []}', 422),
    Case(
        "api 5,000-digit id in a line",
        "api",
        api(API_RECORD).replace(b'"a1"', BIG_NUMBER.encode()),
        422,
    ),
    Case(
        "api 5,000-digit id in an array",
        "api",
        b"[" + api(API_RECORD).replace(b'"a1"', BIG_NUMBER.encode()) + b"]",
        400,
    ),
    Case("api NaN id", "api", api(API_RECORD).replace(b'"a1"', b"NaN"), 422),
    Case("api id a list", "api", api(API_RECORD | {"appeal_id": ["a1"]}), 422),
    Case("api id 201 chars", "api", api(API_RECORD | {"client_id": LONG}), 422),
    Case("api NUL in id", "api", api(API_RECORD | {"client_id": "c\u0000"}), 422),
    Case(
        "api created_at without offset",
        "api",
        api(API_RECORD | {"created_at": "2026-11-30T10:00:00"}),
        422,
    ),
    Case(
        "api created_at year 9999",
        "api",
        api(API_RECORD | {"created_at": "9999-12-31T00:00:00Z"}),
        422,
    ),
    Case(
        "api created_at 1970",
        "api",
        api(API_RECORD | {"created_at": "1970-01-01T00:00:00Z"}),
        422,
    ),
    Case("api created_at a number", "api", api(API_RECORD | {"created_at": 1764496800}), 422),
    Case("api a good line and a bad one", "api", api(API_RECORD, API_RECORD | {"x": 1}), 422),
    Case(
        "api lone surrogate in a line",
        "api",
        api(API_RECORD | {"client_id": LONE_SURROGATE}),
        422,
    ),
    Case(
        "api lone surrogate in an array",
        "api",
        b"[" + api(API_RECORD | {"app": LONE_SURROGATE}) + b"]",
        422,
    ),
    Case("api non-UTF-8 body", "api", b'{"appeal_id": "\xe9"}', 400),
    Case(
        "api 10,001 records",
        "api",
        b"\n".join([api(API_RECORD | {"appeal_id": f"a{n}"}) for n in range(10_001)]),
        413,
    ),
    Case(
        "api 1 MB + 1", "api", api(API_RECORD) + b" " * ((1 << 20) + 1 - len(api(API_RECORD))), 413
    ),
    Case("api empty body", "api", b"", 200),
    Case("api empty array", "api", b"[]", 200),
]


def test_the_table_is_large_and_names_are_unique() -> None:
    assert len(CASES) >= 60
    assert len({case.name for case in CASES}) == len(CASES)


def params() -> list[Any]:
    return [
        pytest.param(
            case,
            id=case.name,
            marks=[pytest.mark.xfail(strict=True, reason=case.bug)] if case.bug else [],
        )
        for case in CASES
    ]


@pytest.mark.parametrize("case", params())
async def test_hostile_input(sqlite_engine: AsyncEngine, case: Case) -> None:
    async with ingest_client(sqlite_engine, secret=SECRET) as (client, _):
        # One real delivery first, so that a replay has something to repeat.
        headers = sign(CW, STAMP) | {"X-Chatwoot-Delivery": SEEN_DELIVERY}
        seen = await client.post(f"/ingest/chatwoot/{TOKEN}", data=CW, headers=headers)
        assert seen.status == 200
        before = await row_counts(sqlite_engine, skip=("ingest_refusals",))
        if case.target == "api":
            headers = (
                case.headers if case.headers is not None else {"Authorization": f"Bearer {TOKEN}"}
            )
            response = await client.post("/api/appeals", data=case.body, headers=headers)
        else:
            headers = dict(case.headers) if case.headers is not None else {}
            if case.target == "chatwoot":
                if case.headers is None:
                    headers = sign(case.body, STAMP)
                headers["X-Chatwoot-Delivery"] = case.extra.get("delivery", f"d-{case.name}")
            url = f"/ingest/{case.target}/{TOKEN}{case.path}"
            if case.path.startswith("/.."):
                url = f"/ingest/{case.target}/{case.path.removeprefix('/../')}"
            response = await client.post(url, data=case.body, headers=headers)
        text = await response.text()
        assert response.status == case.status, text
        if case.status != 200:
            answer = json.loads(text) if text.startswith("{") else {"error": text}
            assert answer.get("error") or answer.get("errors"), text
        after = await row_counts(sqlite_engine, skip=("ingest_refusals",))
        if case.target == "chatwoot" and case.status == 200 and "delivery" not in case.extra:
            # An ignored event's delivery id is taken, so its retry is a replay too.
            before["desk_deliveries"] += 1
        assert after == before
