"""A fake Telegram Bot API server on 127.0.0.1 that the real aiogram client talks to in tests."""

from __future__ import annotations

import asyncio
import json
import math
import re
import struct
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from aiogram import Bot
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiohttp import ClientSession, web


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


BOT_USERNAME = "fake_analytics_bot"
BOT_FIRST_NAME = "Fake Analytics"

MAX_TEXT = 4096
MAX_CAPTION = 1024
MAX_CALLBACK_DATA_BYTES = 64
MAX_CALLBACK_ANSWER = 200
MAX_MEDIA_GROUP = 10
MAX_COMMANDS = 100
MAX_PHOTO_BYTES = 10 * 1024 * 1024
MAX_UPLOAD_BYTES = 50 * 1024 * 1024
MAX_PHOTO_SIDES = 10_000
MAX_PHOTO_RATIO = 20

CONFLICT_POLL = (
    "Conflict: terminated by other getUpdates request; "
    "make sure that only one bot instance is running"
)
CONFLICT_WEBHOOK = (
    "Conflict: can't use getUpdates method while webhook is active; "
    "use deleteWebhook to delete the webhook first"
)
NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup are "
    "exactly the same as a current content and reply markup of the message"
)
BLOCKED = "Forbidden: bot was blocked by the user"
WEBHOOK_NOT_HTTPS = "Bad Request: bad webhook: An HTTPS URL must be provided for webhook"
SECRET_NOT_ALLOWED = "Bad Request: secret token contains unallowed characters"
_WEBHOOK_SECRET = re.compile(r"[A-Za-z0-9_-]{1,256}")

# Telegram matches method names case-insensitively; the fake records the canonical spelling.
_METHODS = _words(
    "getMe deleteWebhook setWebhook getWebhookInfo getUpdates sendMessage sendPhoto sendDocument "
    "sendMediaGroup sendChatAction answerCallbackQuery editMessageText editMessageReplyMarkup "
    "deleteMessage setMyCommands deleteMyCommands getMyCommands leaveChat getChat getChatMember "
    "getFile"
)
_CANONICAL = {name.lower(): name for name in _METHODS}
SEND_METHODS = frozenset({"sendMessage", "sendPhoto", "sendDocument", "sendMediaGroup"})
CHAT_WRITE_METHODS = SEND_METHODS | {
    "sendChatAction",
    "editMessageText",
    "editMessageReplyMarkup",
    "deleteMessage",
}
# Without allowed_updates Telegram delivers every type except these three.
_OPT_IN_UPDATES = frozenset({"chat_member", "message_reaction", "message_reaction_count"})
_CHAT_ACTIONS = frozenset(
    _words(
        "typing upload_photo record_video upload_video record_voice upload_voice upload_document "
        "choose_sticker find_location record_video_note upload_video_note"
    )
)
_ADMIN_RIGHTS = _words(
    "can_be_edited is_anonymous can_manage_chat can_delete_messages can_manage_video_chats "
    "can_restrict_members can_promote_members can_change_info can_invite_users can_post_stories "
    "can_edit_stories can_delete_stories can_send_welcome_messages"
)
_RESTRICTED_RIGHTS = _words(
    "can_send_messages can_send_audios can_send_documents can_send_photos can_send_videos "
    "can_send_video_notes can_send_voice_notes can_send_polls can_send_other_messages "
    "can_add_web_page_previews can_react_to_messages can_edit_tag can_change_info "
    "can_invite_users can_pin_messages can_manage_topics"
)
_BUTTON_ACTIONS = _words(
    "url callback_data web_app login_url switch_inline_query switch_inline_query_current_chat "
    "switch_inline_query_chosen_chat copy_text callback_game pay"
)
_GIFT_TYPES = _words(
    "unlimited_gifts limited_gifts unique_gifts premium_subscription gifts_from_channels"
)
# What Telegram's refusal calls each permission (can_send_messages is about text messages).
_RIGHT_NAMES = {"messages": "text messages", "photos": "photos", "documents": "documents"}
_COMMAND_NAME = re.compile(r"[a-z0-9_]{1,32}")
_COMMAND_WORD = re.compile(r"/[A-Za-z0-9_]{1,64}(?:@[A-Za-z0-9_]{3,32})?")
_USERNAME_REF = re.compile(r"@[A-Za-z0-9_]{1,64}")


@dataclass(frozen=True)
class UploadedFile:
    filename: str
    content_type: str
    data: bytes

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass
class Call:
    """One request as the fake received and answered it.

    `response` is the JSON body sent back, or None when no JSON answer went out: the connection
    was dropped (`drop_next`) or the client went away during a long poll.
    """

    method: str
    params: dict[str, str]
    files: dict[str, UploadedFile]
    response: dict[str, Any] | None = None
    status: int = 0
    raw_body: str | None = None
    at: float = field(default_factory=time.monotonic)

    @property
    def ok(self) -> bool:
        return bool(self.response and self.response.get("ok"))

    @property
    def result(self) -> Any:
        assert self.response is not None and self.response.get("ok"), self.response
        return self.response["result"]

    @property
    def description(self) -> str | None:
        return None if self.response is None else self.response.get("description")

    def json(self, name: str) -> Any:
        return json.loads(self.params[name])

    def file(self, name: str) -> UploadedFile | None:
        """The upload a field refers to: `attach://<part>` or a part named like the field."""
        ref = self.params.get(name, "")
        if ref.startswith("attach://"):
            return self.files.get(ref.removeprefix("attach://"))
        return self.files.get(name)

    def media_files(self) -> list[UploadedFile | None]:
        """Uploads of a sendMediaGroup `media` array, in album order."""
        refs = [item.get("media", "") for item in self.json("media")]
        return [self.files.get(ref.removeprefix("attach://")) for ref in refs]


@dataclass(frozen=True)
class RateViolation:
    kind: Literal["per_chat", "global", "group"]
    chat_id: int | None
    at: float
    count: int
    limit: int


@dataclass
class _Fault:
    status: int = 0
    description: str | None = None
    retry_after: int | None = None
    raw_body: str | None = None
    drop: bool = False
    drop_after_processing: bool = False
    stall: asyncio.Event | None = None


@dataclass
class _Send:
    at: float
    chat_id: int
    chat_type: str


@dataclass
class _Poll:
    terminated_by: str = ""


@dataclass
class _OpenTag:
    tag: str
    argument: str
    offset: int
    expandable: bool


class ApiError(Exception):
    """A Telegram error answer: the status and body the fake sends back."""

    def __init__(
        self, status: int, description: str, parameters: dict[str, Any] | None = None
    ) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.parameters = parameters

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "ok": False,
            "error_code": self.status,
            "description": self.description,
        }
        if self.parameters:
            body["parameters"] = self.parameters
        return body


def _bad(description: str) -> ApiError:
    return ApiError(400, f"Bad Request: {description}")


class _Signal:
    """Broadcast wake-up: every waiter re-checks its condition after each change."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def fire(self) -> None:
        event, self._event = self._event, asyncio.Event()
        event.set()

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        while not predicate():
            await self._event.wait()


# ----------------------------------------------------------------------------------------------
# Text: Telegram's HTML parser (a port of TDLib's parse_html) and length accounting.


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _byte_offset(text: str, index: int) -> int:
    return len(text[:index].encode("utf-8", "surrogatepass"))


_NAMED_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_SPACES = frozenset(" \t\r\n\v\f\0")


def _decode_html_entity(text: str, pos: int) -> tuple[str | None, int]:
    """TDLib's decode_html_entity: (character, index after the entity) or (None, pos)."""
    n = len(text)
    end = pos + 1
    if end < n and text[end] == "#":
        end += 1
        code = 0
        if end < n and text[end] == "x":
            end += 1
            while end < n and text[end] in "0123456789abcdefABCDEF":
                code = code * 16 + int(text[end], 16)
                end += 1
        else:
            while end < n and text[end] in "0123456789":
                code = code * 10 + int(text[end])
                end += 1
        if code == 0 or code >= 0x10FFFF or end - pos >= 10:
            return None, pos
        if 0xD800 <= code <= 0xDFFF:
            raise ValueError(
                "Text contains invalid Unicode characters after decoding HTML entities, "
                "check for unmatched surrogate code units"
            )
        char = chr(code)
    else:
        while end < n and text[end].isascii() and text[end].isalpha():
            end += 1
        decoded = _NAMED_ENTITIES.get(text[pos + 1 : end])
        if decoded is None:
            return None, pos
        char = decoded
    if end < n and text[end] == ";":
        end += 1
    return char, end


_HTML_TAGS = frozenset(
    _words("a b strong i em s strike del u ins tg-spoiler tg-emoji span pre code blockquote")
)
_SIMPLE_ENTITY = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "tg-spoiler": "spoiler",
    "span": "spoiler",
}


def parse_html(text: str, *, strict: bool = True) -> tuple[str, list[dict[str, Any]]]:
    """Visible text and entities of an HTML-formatted text, or ValueError with TDLib's message.

    With `strict`, an `&` that starts no entity is an error; Telegram keeps it as a character,
    but its documentation says it must be escaped, and an unescaped `&` betrays unescaped data.
    """
    n = len(text)
    out: list[str] = []
    utf16 = 0
    entities: list[dict[str, Any]] = []
    stack: list[_OpenTag] = []

    def at(k: int) -> str:
        return text[k] if k < n else "\0"

    i = 0
    while i < n:
        c = text[i]
        if c == "&":
            decoded, end = _decode_html_entity(text, i)
            if decoded is not None:
                out.append(decoded)
                utf16 += utf16_len(decoded)
                i = end
                continue
            if strict:
                raise ValueError(
                    f'Unescaped "&" at byte offset {_byte_offset(text, i)} '
                    "(the fake is strict: escape data with html.escape)"
                )
        if c != "<":
            out.append(c)
            utf16 += utf16_len(c)
            i += 1
            continue

        begin = i
        where = f"at byte offset {_byte_offset(text, begin)}"
        i += 1
        if at(i) != "/":
            while at(i) not in _SPACES and at(i) != ">":
                i += 1
            if i >= n:
                raise ValueError(f"Unclosed start tag {where}")
            tag = text[begin + 1 : i].lower()
            if tag not in _HTML_TAGS:
                raise ValueError(f'Unsupported start tag "{tag}" {where}')
            argument, expandable = "", False
            while at(i) != ">":
                while i < n and at(i) in _SPACES:
                    i += 1
                if at(i) == ">":
                    break
                name_start = i
                while at(i) not in _SPACES and at(i) not in "=>":
                    i += 1
                name = text[name_start:i]
                if not name:
                    raise ValueError(f'Empty attribute name in the tag "{tag}" {where}')
                while i < n and at(i) in _SPACES:
                    i += 1
                if at(i) != "=":
                    if tag == "blockquote" and name.lower() == "expandable":
                        expandable = True
                        continue
                    raise ValueError(
                        f'Expected equal sign in declaration of an attribute of the tag "{tag}" '
                        f"{where}"
                    )
                i += 1
                while i < n and at(i) in _SPACES:
                    i += 1
                if i >= n:
                    raise ValueError(f'Unclosed start tag "{tag}" {where}')
                if at(i) not in "'\"":
                    token_start = i
                    while at(i).isascii() and (at(i).isalnum() or at(i) in ".-"):
                        i += 1
                    value = text[token_start:i].lower()
                    if at(i) not in _SPACES and at(i) != ">":
                        raise ValueError(
                            "Unexpected end of name token at byte offset "
                            f"{_byte_offset(text, token_start)}"
                        )
                else:
                    quote = text[i]
                    i += 1
                    chars: list[str] = []
                    while i < n and text[i] != quote:
                        if text[i] == "&":
                            decoded, end = _decode_html_entity(text, i)
                            if decoded is not None:
                                chars.append(decoded)
                                i = end
                                continue
                        chars.append(text[i])
                        i += 1
                    if i < n:
                        i += 1
                    value = "".join(chars)
                if i >= n:
                    raise ValueError(f"Unclosed start tag {where}")
                if tag == "a" and name == "href":
                    argument = value
                elif tag == "code" and name == "class" and value.startswith("language-"):
                    argument = value.removeprefix("language-")
                elif tag == "span" and name == "class" and value.startswith("tg-"):
                    argument = value.removeprefix("tg-")
                elif tag == "tg-emoji" and name == "emoji-id":
                    argument = value
            if tag == "span" and argument != "spoiler":
                raise ValueError(f'Tag "span" must have class "tg-spoiler" {where}')
            stack.append(_OpenTag(tag, argument, utf16, expandable))
            i += 1
            continue

        if not stack:
            raise ValueError(f"Unexpected end tag {where}")
        i += 1
        name_start = i
        while at(i) not in _SPACES and at(i) != ">":
            i += 1
        end_tag = text[name_start:i].lower()
        while i < n and at(i) in _SPACES:
            i += 1
        if at(i) != ">":
            raise ValueError(f"Unclosed end tag {where}")
        top = stack.pop()
        if end_tag and end_tag != top.tag:
            raise ValueError(
                f'Unmatched end tag {where}, expected "</{top.tag}>", found "</{end_tag}>"'
            )
        if utf16 > top.offset:
            _close_entity(top, utf16, "".join(out), entities)
        i += 1
    if stack:
        raise ValueError(f"Can't find end tag corresponding to start tag {stack[-1].tag}")
    for entity in entities:  # a code entity keeps a language only inside <pre>
        if entity["type"] == "code":
            entity.pop("language", None)
    entities.sort(key=lambda e: (e["offset"], -e["length"]))
    return "".join(out), entities


def _close_entity(top: _OpenTag, end: int, visible: str, entities: list[dict[str, Any]]) -> None:
    span = {"offset": top.offset, "length": end - top.offset}
    last = entities[-1] if entities else None
    same_range = last is not None and (last["offset"], last["length"]) == (
        span["offset"],
        span["length"],
    )
    if top.tag in _SIMPLE_ENTITY:
        entities.append({"type": _SIMPLE_ENTITY[top.tag], **span})
    elif top.tag == "tg-emoji":
        if not top.argument.isdigit() or int(top.argument) == 0:
            raise ValueError("Invalid custom emoji identifier specified")
        entities.append({"type": "custom_emoji", **span, "custom_emoji_id": top.argument})
    elif top.tag == "a":
        url = top.argument or _utf16_slice(visible, top.offset, end)
        if match := re.fullmatch(r"tg://user\?id=(\d+)", url):
            user = {"id": int(match[1]), "is_bot": False, "first_name": "User"}
            entities.append({"type": "text_mention", **span, "user": user})
        elif url:
            if "://" not in url:
                url = f"http://{url}"
            entities.append({"type": "text_link", **span, "url": url})
    elif top.tag == "pre":
        if last is not None and same_range and last["type"] == "code" and last.get("language"):
            last["type"] = "pre"
        else:
            entities.append({"type": "pre", **span})
    elif top.tag == "code":
        if last is not None and same_range and last["type"] == "pre" and top.argument:
            last["language"] = top.argument
        else:
            entity = {"type": "code", **span}
            if top.argument:
                entity["language"] = top.argument  # kept only if a <pre> wraps it
            entities.append(entity)
    elif top.tag == "blockquote":
        kind = "expandable_blockquote" if top.expandable else "blockquote"
        entities.append({"type": kind, **span})


def _utf16_slice(text: str, start: int, end: int) -> str:
    units = text.encode("utf-16-le")
    return units[start * 2 : end * 2].decode("utf-16-le", "surrogatepass")


def _strip_formatted(text: str, entities: list[dict[str, Any]]) -> tuple[str, list[dict]]:
    """Telegram trims surrounding whitespace after parsing; entities follow the trim."""
    stripped = text.strip()
    if stripped == text:
        return text, entities
    lead = utf16_len(text[: len(text) - len(text.lstrip())])
    total = utf16_len(stripped)
    kept = []
    for entity in entities:
        start = max(entity["offset"] - lead, 0)
        end = min(entity["offset"] + entity["length"] - lead, total)
        if end > start:
            kept.append({**entity, "offset": start, "length": end - start})
    return stripped, kept


# ----------------------------------------------------------------------------------------------
# Images: just enough header parsing to apply Telegram's photo limits.


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) of a PNG or JPEG, or None when the bytes are neither."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        if len(data) < 24 or data[12:16] != b"IHDR":
            return None
        width, height = struct.unpack(">II", data[16:24])
        return width, height
    if data.startswith(b"\xff\xd8"):
        return _jpeg_size(data)
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if i + 9 > len(data):
                return None
            height, width = struct.unpack(">HH", data[i + 5 : i + 9])
            return width, height
        i += 2 + length
    return None


# ----------------------------------------------------------------------------------------------


class FakeTelegram:
    """The fake Bot API: `async with FakeTelegram() as tg:` then point aiogram at `tg.base_url`.

    Options: `strict` also rejects what Telegram tolerates but documents as wrong (a bare `&` in
    HTML, a one-item album); `length_unit` counts text limits in UTF-16 code units (default) or
    code points; `strict_chats` refuses chats the fake was never told about instead of inferring
    them from the id; `enforce_rate_limits` answers 429 to sends that break the rate limits;
    `poll_conflict` chooses who gets the 409 when two getUpdates overlap: Telegram terminates
    the "previous" long poll, "new" refuses the newcomer instead.
    """

    def __init__(
        self,
        token: str = "123456:TEST-token",
        *,
        strict: bool = True,
        length_unit: Literal["utf16", "codepoints"] = "utf16",
        strict_chats: bool = False,
        default_member_status: str = "member",
        enforce_rate_limits: bool = False,
        rate_limits: tuple[int, int, int] = (1, 30, 20),
        poll_conflict: Literal["previous", "new"] = "previous",
        max_photo_bytes: int = MAX_PHOTO_BYTES,
        max_upload_bytes: int = MAX_UPLOAD_BYTES,
    ) -> None:
        bot_id, _, secret = token.partition(":")
        if not bot_id.isdigit() or not secret:
            raise ValueError("token must look like <digits>:<secret>")
        self.token = token
        self.bot_id = int(bot_id)
        self.strict = strict
        self.length_unit = length_unit
        self.strict_chats = strict_chats
        self.default_member_status = default_member_status
        self.enforce_rate_limits = enforce_rate_limits
        self.rate_limits = rate_limits
        self.poll_conflict = poll_conflict
        self.max_photo_bytes = max_photo_bytes
        self.max_upload_bytes = max_upload_bytes
        self.bot_user: dict[str, Any] = {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": BOT_FIRST_NAME,
            "username": BOT_USERNAME,
        }
        self.port = 0

        self._runner: web.AppRunner | None = None
        self._signal = _Signal()
        self._closing = False
        self._calls: list[Call] = []
        self._updates: list[dict[str, Any]] = []
        self._next_update_id = 1
        self._confirmed = 0
        self._allowed_updates: frozenset[str] | None = None
        self._poll: _Poll | None = None
        self._webhook_url = ""
        self._webhook_secret = ""
        self._webhook_client: ClientSession | None = None
        # (update_id, target URL, HTTP status) of every webhook delivery, in order.
        self.webhook_deliveries: list[tuple[int, str, int]] = []
        # Sends answered 429 by `enforce_rate_limits`, by the limit they broke.
        self.refused_by_limit: Counter[str] = Counter()
        self._posted: dict[int, dict[str, Any]] = {}
        self._users: dict[int, dict[str, Any]] = {self.bot_id: dict(self.bot_user)}
        self._chats: dict[int, dict[str, Any]] = {}
        self._members: dict[tuple[int, int], str] = {}
        self._blocked: dict[int, str] = {}
        self._migrated: dict[int, int] = {}
        self._messages: dict[tuple[int, int], dict[str, Any]] = {}
        self._next_message_id: dict[int, int] = defaultdict(lambda: 1)
        self._sent: list[dict[str, Any]] = []
        self._sends: list[_Send] = []
        self._callbacks: dict[str, bool] = {}
        self._next_callback = 1
        self._commands: dict[tuple[str, str], list[dict[str, str]]] = {}
        self._files: dict[str, tuple[str, UploadedFile]] = {}
        self._file_paths: dict[str, str] = {}
        self._next_file = 1
        self._next_media_group = 1
        self._faults: dict[str, deque[_Fault]] = defaultdict(deque)
        self._stalls: list[asyncio.Event] = []
        self._handlers: dict[str, Callable[[Call], Any]] = {
            "getMe": self._get_me,
            "deleteWebhook": self._delete_webhook,
            "setWebhook": self._set_webhook,
            "getWebhookInfo": self._get_webhook_info,
            "getUpdates": self._get_updates,
            "sendMessage": self._send_message,
            "sendPhoto": self._send_photo,
            "sendDocument": self._send_document,
            "sendMediaGroup": self._send_media_group,
            "sendChatAction": self._send_chat_action,
            "answerCallbackQuery": self._answer_callback_query,
            "editMessageText": self._edit_message_text,
            "editMessageReplyMarkup": self._edit_message_reply_markup,
            "deleteMessage": self._delete_message,
            "setMyCommands": self._set_my_commands,
            "deleteMyCommands": self._delete_my_commands,
            "getMyCommands": self._get_my_commands,
            "leaveChat": self._leave_chat,
            "getChat": self._get_chat,
            "getChatMember": self._get_chat_member,
            "getFile": self._get_file,
        }

    # -- lifecycle --------------------------------------------------------------------------

    async def __aenter__(self) -> FakeTelegram:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def start(self) -> None:
        app = web.Application(client_max_size=max(self.max_upload_bytes, MAX_UPLOAD_BYTES) * 2)
        app.router.add_route("*", "/bot{token}/{method}", self._handle_api)
        app.router.add_route("GET", "/file/bot{token}/{path:.+}", self._handle_file)
        # handler_cancellation: a long poll whose client went away ends at once.
        self._runner = web.AppRunner(
            app, access_log=None, handler_cancellation=True, shutdown_timeout=2.0
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def close(self) -> None:
        self._closing = True
        if self._webhook_client is not None:
            await self._webhook_client.close()
        for stall in self._stalls:
            stall.set()
        self._signal.fire()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def create_bot(self, token: str | None = None, parse_mode: str | None = "HTML") -> Bot:
        """An aiogram Bot whose AiohttpSession talks to this fake; close its session after use."""
        session = AiohttpSession(api=TelegramAPIServer.from_base(self.base_url))
        return Bot(
            token or self.token,
            session=session,
            default=DefaultBotProperties(parse_mode=parse_mode),
        )

    # -- inspection -------------------------------------------------------------------------

    def calls(self, method: str | None = None) -> list[Call]:
        """Finished requests (answered, refused or dropped) in order; `method` in any case."""
        if method is None:
            return list(self._calls)
        name = _CANONICAL.get(method.lower(), method)
        return [call for call in self._calls if call.method == name]

    def errors(self) -> list[Call]:
        """Requests answered with ok=false (or a non-JSON error page)."""
        return [call for call in self._calls if call.response is not None and not call.ok]

    def sent_messages(self, chat_id: int | None = None) -> list[dict[str, Any]]:
        """Messages the bot sent successfully, in order; an album contributes each item."""
        return [m for m in self._sent if chat_id is None or m["chat"]["id"] == chat_id]

    def message(self, chat_id: int, message_id: int) -> dict[str, Any] | None:
        """The current state of a message (after edits), as the fake stores it."""
        return self._messages.get((chat_id, message_id))

    def commands(
        self, scope: dict[str, Any] | None = None, language_code: str = ""
    ) -> list[dict[str, str]]:
        """The command list stored for a scope (default scope when None) and language."""
        return list(self._commands.get((_scope_key(scope), language_code), []))

    @property
    def pending_updates(self) -> list[dict[str, Any]]:
        return list(self._updates)

    async def wait_for(
        self,
        method: str,
        count: int = 1,
        timeout: float = 10,  # noqa: ASYNC109 - the helpers' contract, as in the brief
    ) -> list[Call]:
        """Wait until `count` requests of `method` have been answered; returns them all."""
        try:
            async with asyncio.timeout(timeout):
                await self._signal.wait_until(lambda: len(self.calls(method)) >= count)
        except TimeoutError:
            seen = ", ".join(call.method for call in self._calls[-20:]) or "nothing"
            msg = (
                f"waited {timeout}s for {count} {method} call(s), got "
                f"{len(self.calls(method))}; last calls: {seen}"
            )
            raise TimeoutError(msg) from None
        return self.calls(method)

    async def wait_confirmed(self, update_id: int, timeout: float = 10) -> None:  # noqa: ASYNC109
        """Wait until a getUpdates with offset > update_id arrived: the bot consumed it."""
        try:
            async with asyncio.timeout(timeout):
                await self._signal.wait_until(lambda: self._confirmed >= update_id)
        except TimeoutError:
            msg = (
                f"update {update_id} not confirmed within {timeout}s (confirmed {self._confirmed})"
            )
            raise TimeoutError(msg) from None

    async def wait_polling(self, timeout: float = 10) -> None:  # noqa: ASYNC109
        """Wait until a getUpdates request is long-polling."""
        try:
            async with asyncio.timeout(timeout):
                await self._signal.wait_until(lambda: self._poll is not None)
        except TimeoutError:
            raise TimeoutError(f"no getUpdates long poll within {timeout}s") from None

    def rate_violations(
        self, per_chat_per_sec: int = 1, global_per_sec: int = 30, group_per_min: int = 20
    ) -> list[RateViolation]:
        """Sends that broke a limit, judged over sliding windows of the recorded send times.

        Each successful send request counts once (an album is one request).
        """
        sends = self._sends
        groups = [s for s in sends if s.chat_type in ("group", "supergroup")]
        return [
            *_window_violations(sends, 1.0, per_chat_per_sec, "per_chat", by_chat=True),
            *_window_violations(sends, 1.0, global_per_sec, "global", by_chat=False),
            *_window_violations(groups, 60.0, group_per_min, "group", by_chat=True),
        ]

    def send_peaks(self, window: float = 1.0) -> tuple[int, int]:
        """The most successful send requests in any `window` seconds: over all chats, and in
        any one chat."""
        overall = _peak((send.at for send in self._sends), window)
        by_chat: dict[int, list[float]] = defaultdict(list)
        for send in self._sends:
            by_chat[send.chat_id].append(send.at)
        return overall, max((_peak(times, window) for times in by_chat.values()), default=0)

    def too_many_requests(self) -> int:
        """How many requests were answered 429."""
        return sum(1 for call in self._calls if call.status == 429)

    @property
    def webhook_secret(self) -> str:
        return self._webhook_secret

    # -- injecting updates ------------------------------------------------------------------

    def add_chat(
        self,
        chat_id: int,
        chat_type: str = "private",
        *,
        title: str | None = None,
        username: str | None = None,
        first_name: str | None = None,
    ) -> dict[str, Any]:
        chat: dict[str, Any] = {"id": chat_id, "type": chat_type}
        if chat_type == "private":
            chat["first_name"] = first_name or f"User {chat_id}"
        else:
            chat["title"] = title or f"{chat_type.title()} {chat_id}"
        if username:
            chat["username"] = username
        self._chats[chat_id] = chat
        return chat

    def add_user(
        self,
        user_id: int,
        *,
        first_name: str = "Test",
        last_name: str | None = None,
        username: str | None = None,
        language_code: str | None = "en",
    ) -> dict[str, Any]:
        user: dict[str, Any] = {"id": user_id, "is_bot": False, "first_name": first_name}
        if last_name:
            user["last_name"] = last_name
        if username:
            user["username"] = username
        if language_code:
            user["language_code"] = language_code
        self._users[user_id] = user
        return user

    def set_member(self, chat_id: int, user_id: int, status: str) -> None:
        """getChatMember answers `status` (creator, administrator, member, restricted, left,
        kicked) for this user; others get `default_member_status`."""
        self._members[(chat_id, user_id)] = status

    def queue_update(self, raw: dict[str, Any]) -> int:
        """Queue any update; an update_id is assigned unless given. Returns the update_id."""
        update = _snapshot(raw)
        if "update_id" in update:
            self._next_update_id = max(self._next_update_id, update["update_id"] + 1)
        else:
            update = {"update_id": self._next_update_id, **update}
            self._next_update_id += 1
        self._updates.append(update)
        self._signal.fire()
        return update["update_id"]

    async def post_update(self, update_id: int, url: str, *, secret: str | None = None) -> int:
        """POST a queued update to a webhook, as Telegram does once setWebhook was called: with
        the registered secret token (or `secret`). `url` is where it goes (an instance behind the
        load balancer). A 200 takes the update off the queue; posting it again afterwards is a
        repeated delivery. Returns the HTTP status."""
        if not self._webhook_url:
            raise AssertionError("no webhook set: Telegram would not post updates")
        update = next((u for u in self._updates if u["update_id"] == update_id), None)
        update = update or self._posted.get(update_id)
        if update is None:
            raise ValueError(f"no update {update_id} to post")
        if self._webhook_client is None:
            self._webhook_client = ClientSession()
        token = self._webhook_secret if secret is None else secret
        headers = {"X-Telegram-Bot-Api-Secret-Token": token} if token else {}
        async with self._webhook_client.post(url, json=update, headers=headers) as response:
            await response.read()
            status = response.status
        self.webhook_deliveries.append((update_id, url, status))
        if status == 200 and update_id not in self._posted:
            self._posted[update_id] = update
            self._updates = [u for u in self._updates if u["update_id"] != update_id]
            self._confirmed = max(self._confirmed, update_id)
        self._signal.fire()
        return status

    def send_message(
        self,
        text: str,
        *,
        chat_id: int,
        user_id: int,
        chat_type: str | None = None,
        language_code: str = "en",
        first_name: str = "Test",
        last_name: str | None = None,
        username: str | None = None,
        chat_title: str | None = None,
        reply_to: int | dict[str, Any] | None = None,
        **extra: Any,
    ) -> int:
        """Queue a message from a user; a leading /command gets its bot_command entity.

        `chat_type` defaults to what the chat id implies (private, group, or -100... supergroup);
        `reply_to` is a message id in this chat or a whole message object; `extra` fields are
        merged into the message.
        """
        chat_type = chat_type or _type_from_id(chat_id)
        user = self.add_user(
            user_id,
            first_name=first_name,
            last_name=last_name,
            username=username,
            language_code=language_code,
        )
        chat = self._chats.get(chat_id)
        if chat is None or chat["type"] != chat_type or chat_type == "private" or chat_title:
            private = chat_type == "private"
            chat = self.add_chat(
                chat_id,
                chat_type,
                title=chat_title or (chat or {}).get("title"),
                first_name=first_name if private else None,
                username=username if private else (chat or {}).get("username"),
            )
        message: dict[str, Any] = {
            "message_id": self._alloc_message_id(chat_id),
            "date": int(time.time()),
            "chat": dict(chat),
            "from": user,
            "text": text,
        }
        command = _COMMAND_WORD.match(text)
        if command and (command.end() == len(text) or text[command.end()].isspace()):
            message["entities"] = [
                {"type": "bot_command", "offset": 0, "length": utf16_len(command.group())}
            ]
        if isinstance(reply_to, int):
            original = self._messages.get((chat_id, reply_to))
            if original is None:
                raise ValueError(f"no message {reply_to} in chat {chat_id} to reply to")
            reply_to = original
        if reply_to is not None:
            message["reply_to_message"] = _snapshot(reply_to)
        message.update(extra)
        self._messages[(chat_id, message["message_id"])] = message
        return self.queue_update({"message": message})

    def press_button(
        self,
        data: str,
        *,
        chat_id: int,
        user_id: int,
        message_id: int,
        first_name: str = "Test",
        language_code: str = "en",
        check_button: bool = True,
    ) -> int:
        """Queue a callback_query for a button of a message the bot sent.

        Telegram only delivers data that a button of the message carries; with `check_button`
        pressing anything else is a test error.
        """
        user = self._users.get(user_id) or self.add_user(
            user_id, first_name=first_name, language_code=language_code
        )
        message = self._messages.get((chat_id, message_id))
        if message is None:
            chat = self._chats.get(chat_id) or self._infer_chat(chat_id)
            message = {
                "message_id": message_id,
                "date": int(time.time()),
                "chat": chat,
                "from": self.bot_user,
                "text": "",
            }
        elif check_button:
            rows = message.get("reply_markup", {}).get("inline_keyboard", [])
            datas = [button.get("callback_data") for row in rows for button in row]
            if data not in datas:
                msg = f"message {message_id} in chat {chat_id} has no button {data!r}: {datas}"
                raise ValueError(msg)
        callback_id = f"cbq-{self._next_callback}"
        self._next_callback += 1
        self._callbacks[callback_id] = False
        query = {
            "id": callback_id,
            "from": user,
            "chat_instance": f"instance-{chat_id}",
            "data": data,
            "message": message,
        }
        return self.queue_update({"callback_query": query})

    def my_chat_member(
        self,
        chat_id: int,
        *,
        user_id: int,
        new_status: str,
        old_status: str = "left",
        chat_type: str | None = None,
        title: str | None = None,
    ) -> int:
        """Queue the bot's own membership change (added to a group, promoted, blocked...).

        The fake follows it: "left"/"kicked" makes sends to the chat fail with 403.
        """
        chat = self._chats.get(chat_id) or self.add_chat(
            chat_id, chat_type or _type_from_id(chat_id), title=title
        )
        user = self._users.get(user_id) or self.add_user(user_id)
        self.set_member(chat_id, self.bot_id, new_status)
        if new_status in ("left", "kicked"):
            self.block_chat(chat_id)
        else:
            self._blocked.pop(chat_id, None)
        update = {
            "chat": chat,
            "from": user,
            "date": int(time.time()),
            "old_chat_member": self._member_json(old_status, self.bot_user),
            "new_chat_member": self._member_json(new_status, self.bot_user),
        }
        return self.queue_update({"my_chat_member": update})

    def add_file(self, data: bytes, filename: str = "file.bin", content_type: str = "") -> str:
        """Store a file as if a user had sent it; returns its file_id for getFile/download."""
        return self._store_file(UploadedFile(filename, content_type, data), "documents")

    # -- fault injection --------------------------------------------------------------------

    def fail_next(
        self,
        method: str,
        status: int = 429,
        *,
        retry_after: int | None = None,
        description: str | None = None,
        raw_body: str | None = None,
        times: int = 1,
    ) -> None:
        """Answer the next `times` requests of `method` ("*" for any) with an error.

        A 429 carries `parameters.retry_after` (1 s unless given); `raw_body` sends that text
        as an HTML page instead of JSON (a proxy's 502). Faults apply before any validation.
        """
        if status == 429 and retry_after is None:
            retry_after = 1
        for _ in range(times):
            self._add_fault(
                method,
                _Fault(
                    status=status,
                    description=description,
                    retry_after=retry_after,
                    raw_body=raw_body,
                ),
            )

    def drop_next(self, method: str, *, after_processing: bool = False, times: int = 1) -> None:
        """Close the connection instead of answering; `after_processing` executes the request
        first (the message is sent, only the answer is lost)."""
        for _ in range(times):
            self._add_fault(
                method, _Fault(drop=not after_processing, drop_after_processing=after_processing)
            )

    def stall_next(self, method: str) -> asyncio.Event:
        """Hold the next request of `method` until the returned event is set (or the client
        gives up: use it to drive client timeouts)."""
        event = asyncio.Event()
        self._stalls.append(event)
        self._add_fault(method, _Fault(stall=event))
        return event

    def block_chat(self, chat_id: int, description: str | None = None) -> None:
        """Sends to this chat get 403: blocked by the user, or kicked from the group."""
        chat_type = self._chats.get(chat_id, {}).get("type") or _type_from_id(chat_id)
        if description is None:
            description = (
                BLOCKED
                if chat_type == "private"
                else f"Forbidden: bot was kicked from the {chat_type} chat"
            )
        self._blocked[chat_id] = description

    def restrict_chat(
        self,
        chat_id: int,
        *,
        messages: bool = True,
        photos: bool = True,
        documents: bool = True,
    ) -> None:
        """The chat's default permissions forbid members (the bot included) to send these:
        Telegram answers such a send with 400 "not enough rights to send ... to the chat"."""
        chat = self._chats.get(chat_id) or self._infer_chat(chat_id)
        chat["permissions"] = {
            "can_send_messages": messages,
            "can_send_photos": photos,
            "can_send_documents": documents,
        }

    def unblock_chat(self, chat_id: int) -> None:
        self._blocked.pop(chat_id, None)

    def migrate_chat(self, old_id: int, new_id: int) -> None:
        """The group became a supergroup: requests naming old_id get 400 with
        parameters.migrate_to_chat_id (aiogram raises TelegramMigrateToChat)."""
        old = self._chats.get(old_id) or self._infer_chat(old_id)
        self._migrated[old_id] = new_id
        self.add_chat(new_id, "supergroup", title=old.get("title"))

    # -- HTTP -------------------------------------------------------------------------------

    async def _handle_file(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["token"] != self.token:
            return web.json_response(_unauthorized(), status=401)
        file_id = self._file_paths.get(request.match_info["path"])
        if file_id is None:
            return web.json_response(
                {"ok": False, "error_code": 404, "description": "Not Found"}, status=404
            )
        upload = self._files[file_id][1]
        return web.Response(body=upload.data, content_type="application/octet-stream")

    async def _handle_api(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["method"]
        call = Call(method=_CANONICAL.get(name.lower(), name), params={}, files={})
        try:
            call.params, call.files = await _read_form(request)
        except web.HTTPRequestEntityTooLarge:
            return self._answer(call, ApiError(413, "Request Entity Too Large"))
        try:
            return await self._serve(request, call)
        except asyncio.CancelledError:
            self._record(call)  # the client went away; nothing was answered
            raise

    async def _serve(self, request: web.Request, call: Call) -> web.StreamResponse:
        if request.match_info["token"] != self.token:
            return self._answer(call, ApiError(401, "Unauthorized"))
        fault = self._take_fault(call.method)
        if fault is not None and fault.stall is not None:
            await fault.stall.wait()
            fault = None
        if fault is not None and fault.drop:
            return self._drop(request, call)
        if fault is not None and fault.raw_body is not None:
            call.status, call.raw_body = fault.status, fault.raw_body
            call.response = {"ok": False, "error_code": fault.status, "raw_body": fault.raw_body}
            self._record(call)
            return web.Response(status=fault.status, text=fault.raw_body, content_type="text/html")
        if fault is not None and not fault.drop_after_processing:
            return self._answer(call, _fault_error(fault))

        handler = self._handlers.get(call.method)
        outcome: dict[str, Any] | ApiError
        if handler is None:
            outcome = ApiError(404, "Not Found")
        else:
            try:
                self._check_chat_access(call)
                result = handler(call)
                if asyncio.iscoroutine(result):
                    result = await result
                outcome = {"ok": True, "result": result}
            except ApiError as error:
                outcome = error
        if fault is not None:  # drop_after_processing: executed, but the answer is lost
            return self._drop(request, call)
        return self._answer(call, outcome)

    def _answer(self, call: Call, outcome: dict[str, Any] | ApiError) -> web.Response:
        if isinstance(outcome, ApiError):
            call.status, call.response = outcome.status, outcome.body()
        else:  # a snapshot: later edits of a stored message must not rewrite history
            call.status, call.response = 200, _snapshot(outcome)
        self._record(call)
        return web.json_response(call.response, status=call.status)

    def _drop(self, request: web.Request, call: Call) -> web.Response:
        self._record(call)
        if request.transport is not None:
            request.transport.close()
        # aiohttp ignores the failed write of this response to the closed connection.
        return web.Response(status=204)

    def _record(self, call: Call) -> None:
        self._calls.append(call)
        self._signal.fire()

    def _add_fault(self, method: str, fault: _Fault) -> None:
        key = "*" if method == "*" else method.lower()
        self._faults[key].append(fault)

    def _take_fault(self, method: str) -> _Fault | None:
        for key in (method.lower(), "*"):
            if self._faults[key]:
                return self._faults[key].popleft()
        return None

    # -- chats ------------------------------------------------------------------------------

    def _chat_id(self, call: Call, name: str = "chat_id") -> int:
        value = call.params.get(name, "")
        if not value:
            raise _bad(f"{name} is empty")
        if re.fullmatch(r"-?\d+", value):
            return int(value)
        if _USERNAME_REF.fullmatch(value):
            wanted = value[1:].lower()
            for chat in self._chats.values():
                if chat.get("username", "").lower() == wanted:
                    return int(chat["id"])
        raise _bad("chat not found")

    def _chat(self, chat_id: int) -> dict[str, Any]:
        chat = self._chats.get(chat_id)
        if chat is not None:
            return chat
        if self.strict_chats:
            if chat_id > 0:
                raise ApiError(403, "Forbidden: bot can't initiate conversation with a user")
            raise _bad("chat not found")
        return self._infer_chat(chat_id)

    def _infer_chat(self, chat_id: int) -> dict[str, Any]:
        return self.add_chat(chat_id, _type_from_id(chat_id))

    def _check_chat_access(self, call: Call) -> None:
        value = call.params.get("chat_id", "")
        if not re.fullmatch(r"-?\d+", value):
            return
        chat_id = int(value)
        if chat_id in self._migrated:
            raise ApiError(
                400,
                "Bad Request: group chat was upgraded to a supergroup chat",
                {"migrate_to_chat_id": self._migrated[chat_id]},
            )
        if call.method in CHAT_WRITE_METHODS and chat_id in self._blocked:
            raise ApiError(403, self._blocked[chat_id])

    def _check_rights(self, chat: dict[str, Any], kind: str) -> None:
        """A chat whose permissions forbid this kind of message refuses it for good."""
        if not chat.get("permissions", {}).get(f"can_send_{kind}", True):
            raise _bad(f"not enough rights to send {_RIGHT_NAMES[kind]} to the chat")

    def _alloc_message_id(self, chat_id: int) -> int:
        message_id = self._next_message_id[chat_id]
        self._next_message_id[chat_id] += 1
        return message_id

    def _member_json(self, status: str, user: dict[str, Any]) -> dict[str, Any]:
        member: dict[str, Any] = {"status": status, "user": user}
        if status == "creator":
            member["is_anonymous"] = False
        elif status == "administrator":
            member.update(dict.fromkeys(_ADMIN_RIGHTS, False))
            member["can_manage_chat"] = True
        elif status == "restricted":
            member.update(dict.fromkeys(_RESTRICTED_RIGHTS, False))
            member.update(is_member=True, until_date=0)
        elif status == "kicked":
            member["until_date"] = 0
        return member

    # -- validation helpers -----------------------------------------------------------------

    def _length(self, text: str) -> int:
        return utf16_len(text) if self.length_unit == "utf16" else len(text)

    def _formatted(
        self, call: Call, text: str, parse_mode: str, entities_field: str
    ) -> tuple[str, list[dict[str, Any]]]:
        mode = parse_mode.lower()
        if mode == "html":
            try:
                visible, entities = parse_html(text, strict=self.strict)
            except ValueError as error:
                raise _bad(f"can't parse entities: {error}") from None
        elif mode in ("", "none"):
            visible = text
            entities = _json_param(call, entities_field, "entities") or []
        elif mode in ("markdown", "markdownv2"):
            raise _bad("the fake server parses parse_mode HTML only")
        else:
            raise _bad("unsupported parse_mode")
        return _strip_formatted(visible, entities)

    def _text(self, call: Call) -> tuple[str, list[dict[str, Any]]]:
        text = call.params.get("text", "")
        if not text:
            raise _bad("message text is empty")
        parse_mode = call.params.get("parse_mode", "")
        visible, entities = self._formatted(call, text, parse_mode, "entities")
        if not visible:
            raise _bad("message text is empty")
        if self._length(visible) > MAX_TEXT:
            raise _bad("message is too long")
        return visible, entities

    def _caption(
        self, call: Call, caption: str, parse_mode: str, entities_field: str = "caption_entities"
    ) -> dict[str, Any]:
        if not caption:
            return {}
        visible, entities = self._formatted(call, caption, parse_mode, entities_field)
        if self._length(visible) > MAX_CAPTION:
            raise _bad("message caption is too long")
        content: dict[str, Any] = {"caption": visible} if visible else {}
        if entities:
            content["caption_entities"] = entities
        return content

    def _reply_markup(self, call: Call) -> dict[str, Any] | None:
        raw = call.params.get("reply_markup")
        if not raw:
            return None
        try:
            markup = json.loads(raw)
        except ValueError:
            raise _bad("can't parse reply keyboard markup JSON object") from None
        if not isinstance(markup, dict):
            raise _bad("object expected as reply markup")
        if "inline_keyboard" not in markup:
            return None  # reply keyboards are not part of the returned message
        rows = markup["inline_keyboard"]
        field_name = 'field "inline_keyboard" of the InlineKeyboardMarkup'
        if not isinstance(rows, list):
            raise _bad(f"{field_name} must be an Array")
        for row in rows:
            if not isinstance(row, list):
                raise _bad(f"{field_name} must be an Array of Arrays")
            for button in row:
                _check_inline_button(button)
        return {"inline_keyboard": rows}

    def _reply_to(self, call: Call, chat_id: int) -> dict[str, Any]:
        reply: dict[str, Any] = {}
        if "reply_parameters" in call.params:
            reply = _json_param(call, "reply_parameters", "reply parameters") or {}
        elif "reply_to_message_id" in call.params:
            reply = {
                "message_id": int(call.params["reply_to_message_id"]),
                "allow_sending_without_reply": call.params.get("allow_sending_without_reply")
                == "true",
            }
        if not reply.get("message_id"):
            return {}
        original = self._messages.get((int(reply.get("chat_id", chat_id)), reply["message_id"]))
        if original is None:
            if reply.get("allow_sending_without_reply"):
                return {}
            raise _bad("message to be replied not found")
        return {"reply_to_message": _snapshot(original)}

    def _upload(self, call: Call, name: str, kind: Literal["photo", "document"]) -> UploadedFile:
        ref = call.params.get(name, "")
        upload = call.file(name)
        if upload is None:
            if ref and not ref.startswith("attach://"):
                stored = self._files.get(ref)
                if stored is None:
                    raise _bad("wrong file identifier/HTTP URL specified")
                return stored[1]
            if ref:
                raise _bad(f"can't parse InputMedia: media not found ({ref})")
            raise _bad(f"there is no {kind} in the request")
        return upload

    def _check_photo(self, upload: UploadedFile) -> tuple[int, int]:
        if not upload.data:
            raise _bad("file must be non-empty")
        if upload.size > self.max_upload_bytes:
            raise ApiError(413, "Request Entity Too Large")
        if upload.size > self.max_photo_bytes:
            raise _bad(
                f"file of size {upload.size} bytes is too big for a photo; "
                f"the maximum size is {self.max_photo_bytes} bytes"
            )
        size = image_size(upload.data)
        if size is None or 0 in size:
            raise _bad("IMAGE_PROCESS_FAILED")
        width, height = size
        if width + height > MAX_PHOTO_SIDES or max(size) > MAX_PHOTO_RATIO * min(size):
            raise _bad("PHOTO_INVALID_DIMENSIONS")
        return size

    def _check_document(self, upload: UploadedFile) -> None:
        if not upload.data:
            raise _bad("file must be non-empty")
        if upload.size > self.max_upload_bytes:
            raise ApiError(413, "Request Entity Too Large")

    def _store_file(self, upload: UploadedFile, folder: str) -> str:
        number = self._next_file
        self._next_file += 1
        file_id = f"fake-file-{number}"
        suffix = upload.filename.rpartition(".")[2] if "." in upload.filename else "bin"
        path = f"{folder}/file_{number}.{suffix}"
        self._files[file_id] = (path, upload)
        self._file_paths[path] = file_id
        return file_id

    def _photo_json(self, upload: UploadedFile, size: tuple[int, int]) -> list[dict[str, Any]]:
        file_id = self._store_file(upload, "photos")
        return [
            {
                "file_id": file_id,
                "file_unique_id": f"u{file_id}",
                "width": size[0],
                "height": size[1],
                "file_size": upload.size,
            }
        ]

    def _document_json(self, upload: UploadedFile) -> dict[str, Any]:
        file_id = self._store_file(upload, "documents")
        document: dict[str, Any] = {
            "file_id": file_id,
            "file_unique_id": f"u{file_id}",
            "file_name": upload.filename,
            "file_size": upload.size,
        }
        if upload.content_type:
            document["mime_type"] = upload.content_type
        return document

    def _rate_check(self, chat: dict[str, Any]) -> None:
        if not self.enforce_rate_limits:
            return
        now = time.monotonic()
        per_chat, overall, per_group = self.rate_limits
        windows = [
            ("per_chat", 1.0, per_chat, [s for s in self._sends if s.chat_id == chat["id"]]),
            ("global", 1.0, overall, self._sends),
        ]
        if chat["type"] in ("group", "supergroup"):
            in_chat = [s for s in self._sends if s.chat_id == chat["id"]]
            windows.append(("group", 60.0, per_group, in_chat))
        for kind, window, limit, sends in windows:
            recent = [s.at for s in sends if s.at > now - window]
            if len(recent) >= limit:
                self.refused_by_limit[kind] += 1
                retry_after = max(1, math.ceil(recent[-limit] + window - now))
                raise ApiError(
                    429,
                    f"Too Many Requests: retry after {retry_after}",
                    {"retry_after": retry_after},
                )

    def _deliver(self, chat: dict[str, Any], messages: list[dict[str, Any]]) -> None:
        self._sends.append(_Send(time.monotonic(), chat["id"], chat["type"]))
        for message in messages:
            self._messages[(chat["id"], message["message_id"])] = message
            self._sent.append(_snapshot(message))

    def _new_message(self, chat: dict[str, Any], **content: Any) -> dict[str, Any]:
        message = {
            "message_id": self._alloc_message_id(chat["id"]),
            "date": int(time.time()),
            "chat": dict(chat),
            "from": self.bot_user,
        }
        message.update({key: value for key, value in content.items() if value is not None})
        return message

    # -- methods ----------------------------------------------------------------------------

    def _get_me(self, call: Call) -> dict[str, Any]:
        return {
            **self.bot_user,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    def _delete_webhook(self, call: Call) -> bool:
        self._webhook_url = ""
        self._drop_pending(call)
        return True

    def _drop_pending(self, call: Call) -> None:
        if call.params.get("drop_pending_updates") == "true" and self._updates:
            self._confirmed = max(self._confirmed, self._updates[-1]["update_id"])
            self._updates.clear()
            self._signal.fire()

    def _set_webhook(self, call: Call) -> bool:
        url = call.params.get("url", "")
        secret = call.params.get("secret_token", "")
        if url and not url.startswith("https://"):
            raise ApiError(400, WEBHOOK_NOT_HTTPS)
        if secret and not _WEBHOOK_SECRET.fullmatch(secret):
            raise ApiError(400, SECRET_NOT_ALLOWED)
        self._webhook_url, self._webhook_secret = url, secret
        if call.params.get("allowed_updates"):
            allowed = _json_param(call, "allowed_updates", "allowed updates") or []
            self._allowed_updates = frozenset(allowed) if allowed else None
        self._drop_pending(call)
        if self._poll is not None:
            self._poll.terminated_by = "Conflict: terminated by setWebhook request"
            self._signal.fire()
        return True

    def _get_webhook_info(self, call: Call) -> dict[str, Any]:
        info: dict[str, Any] = {
            "url": self._webhook_url,
            "has_custom_certificate": False,
            "pending_update_count": len(self._updates),
        }
        if self._webhook_url and self._allowed_updates is not None:
            info["allowed_updates"] = sorted(self._allowed_updates)
        return info

    async def _get_updates(self, call: Call) -> list[dict[str, Any]]:
        if self._webhook_url:
            raise ApiError(409, CONFLICT_WEBHOOK)
        offset = _int_param(call, "offset", 0)
        limit = min(max(_int_param(call, "limit", 100), 1), 100)
        timeout = max(_int_param(call, "timeout", 0), 0)
        if call.params.get("allowed_updates"):
            allowed = _json_param(call, "allowed_updates", "allowed updates") or []
            self._allowed_updates = frozenset(allowed) if allowed else None
        if self._poll is not None:
            if self.poll_conflict == "new":
                raise ApiError(409, CONFLICT_POLL)
            self._poll.terminated_by = CONFLICT_POLL
        self._confirm(offset)
        poll = self._poll = _Poll()
        self._signal.fire()
        try:
            if timeout and not self._deliverable():
                async with asyncio.timeout(timeout):
                    await self._signal.wait_until(
                        lambda: self._closing or bool(poll.terminated_by or self._deliverable())
                    )
        except TimeoutError:
            pass
        finally:
            if self._poll is poll:
                self._poll = None
                self._signal.fire()
        if poll.terminated_by:
            raise ApiError(409, poll.terminated_by)
        return self._deliverable()[:limit]

    def _confirm(self, offset: int) -> None:
        if offset > 0:
            self._updates = [u for u in self._updates if u["update_id"] >= offset]
            confirmed = offset - 1
        elif offset < 0:
            dropped = self._updates[:offset]
            self._updates = self._updates[offset:]
            confirmed = dropped[-1]["update_id"] if dropped else 0
        else:
            return
        if confirmed > self._confirmed:
            self._confirmed = confirmed
        self._signal.fire()

    def _deliverable(self) -> list[dict[str, Any]]:
        # Updates of types the bot did not ask for are dropped, as Telegram never creates them.
        kept = [u for u in self._updates if self._wanted(u)]
        if len(kept) != len(self._updates):
            self._updates = kept
        return kept

    def _wanted(self, update: dict[str, Any]) -> bool:
        kind = next((key for key in update if key != "update_id"), "")
        if self._allowed_updates is None:
            return kind not in _OPT_IN_UPDATES
        return kind in self._allowed_updates

    def _send_message(self, call: Call) -> dict[str, Any]:
        chat = self._chat(self._chat_id(call))
        self._check_rights(chat, "messages")
        text, entities = self._text(call)
        markup = self._reply_markup(call)
        reply = self._reply_to(call, chat["id"])
        self._rate_check(chat)
        message = self._new_message(
            chat, text=text, entities=entities or None, reply_markup=markup, **reply
        )
        self._deliver(chat, [message])
        return message

    def _send_photo(self, call: Call) -> dict[str, Any]:
        chat = self._chat(self._chat_id(call))
        self._check_rights(chat, "photos")
        caption = self._caption(
            call, call.params.get("caption", ""), call.params.get("parse_mode", "")
        )
        markup = self._reply_markup(call)
        reply = self._reply_to(call, chat["id"])
        upload = self._upload(call, "photo", "photo")
        size = self._check_photo(upload)
        self._rate_check(chat)
        message = self._new_message(
            chat, photo=self._photo_json(upload, size), reply_markup=markup, **caption, **reply
        )
        self._deliver(chat, [message])
        return message

    def _send_document(self, call: Call) -> dict[str, Any]:
        chat = self._chat(self._chat_id(call))
        self._check_rights(chat, "documents")
        caption = self._caption(
            call, call.params.get("caption", ""), call.params.get("parse_mode", "")
        )
        markup = self._reply_markup(call)
        reply = self._reply_to(call, chat["id"])
        upload = self._upload(call, "document", "document")
        self._check_document(upload)
        self._rate_check(chat)
        message = self._new_message(
            chat, document=self._document_json(upload), reply_markup=markup, **caption, **reply
        )
        self._deliver(chat, [message])
        return message

    def _send_media_group(self, call: Call) -> list[dict[str, Any]]:
        chat = self._chat(self._chat_id(call))
        raw = call.params.get("media", "")
        if not raw:
            raise _bad('parameter "media" is required')
        try:
            media = json.loads(raw)
        except ValueError:
            raise _bad("can't parse media JSON object") from None
        if not isinstance(media, list):
            raise _bad("expected an Array of InputMedia")
        if not media:
            raise _bad("there are no messages to send")
        if len(media) > MAX_MEDIA_GROUP:
            raise _bad("too many messages to send as an album")
        if len(media) == 1 and self.strict:
            raise _bad(
                "media group must include 2-10 items (the fake is strict: Telegram sends a "
                "single item as a plain message)"
            )
        kinds = {item.get("type") if isinstance(item, dict) else None for item in media}
        if not kinds <= {"photo", "video", "document", "audio"}:
            raise _bad("can't parse InputMedia: unsupported media type")
        if "document" in kinds and len(kinds) > 1:
            raise _bad("document can't be mixed with other media types")
        if "audio" in kinds and len(kinds) > 1:
            raise _bad("audio can't be mixed with other media types")
        for kind in ("photos", "documents"):
            if kind.removesuffix("s") in kinds:
                self._check_rights(chat, kind)
        reply = self._reply_to(call, chat["id"])
        items = []
        for item in media:
            caption = self._caption(
                call, item.get("caption", ""), item.get("parse_mode", ""), "caption_entities"
            )
            ref = item.get("media", "")
            if not isinstance(ref, str) or not ref:
                raise _bad("can't parse InputMedia: media not found")
            if ref.startswith("attach://"):
                upload = call.files.get(ref.removeprefix("attach://"))
                if upload is None:
                    raise _bad("can't parse InputMedia: media not found")
            else:
                stored = self._files.get(ref)
                if stored is None:
                    raise _bad("wrong file identifier/HTTP URL specified")
                upload = stored[1]
            if item["type"] == "photo":
                items.append((upload, self._check_photo(upload), caption))
            else:
                self._check_document(upload)
                items.append((upload, None, caption))
        self._rate_check(chat)
        group_id = str(10_000 + self._next_media_group)
        self._next_media_group += 1
        messages = []
        for upload, size, caption in items:
            content = (
                {"photo": self._photo_json(upload, size)}
                if size is not None
                else {"document": self._document_json(upload)}
            )
            messages.append(
                self._new_message(chat, media_group_id=group_id, **content, **caption, **reply)
            )
        self._deliver(chat, messages)
        return messages

    def _send_chat_action(self, call: Call) -> bool:
        self._chat(self._chat_id(call))
        if call.params.get("action", "").lower() not in _CHAT_ACTIONS:
            raise _bad("wrong parameter action in request")
        return True

    def _answer_callback_query(self, call: Call) -> bool:
        query_id = call.params.get("callback_query_id", "")
        if self._callbacks.get(query_id, True):
            raise _bad("query is too old and response timeout expired or query ID is invalid")
        if len(call.params.get("text", "")) > MAX_CALLBACK_ANSWER:
            raise _bad("MESSAGE_TOO_LONG")
        self._callbacks[query_id] = True
        return True

    def _editable(self, call: Call) -> dict[str, Any] | None:
        if call.params.get("inline_message_id"):
            return None
        chat_id = self._chat_id(call)
        message_id = _int_param(call, "message_id", 0)
        if not message_id:
            raise _bad("message identifier is not specified")
        message = self._messages.get((chat_id, message_id))
        if message is None:
            raise _bad("message to edit not found")
        if message.get("from", {}).get("id") != self.bot_id:
            raise _bad("message can't be edited")
        return message

    def _edit_message_text(self, call: Call) -> dict[str, Any] | bool:
        message = self._editable(call)
        text, entities = self._text(call)
        markup = self._reply_markup(call)
        if message is None:
            return True
        if "text" not in message:
            raise _bad("there is no text in the message to edit")
        same = (
            message["text"] == text
            and message.get("entities", []) == entities
            and message.get("reply_markup") == markup
        )
        if same:
            raise _bad(NOT_MODIFIED.removeprefix("Bad Request: "))
        message["text"] = text
        _set_or_drop(message, "entities", entities or None)
        _set_or_drop(message, "reply_markup", markup)
        message["edit_date"] = int(time.time())
        return message

    def _edit_message_reply_markup(self, call: Call) -> dict[str, Any] | bool:
        message = self._editable(call)
        markup = self._reply_markup(call)
        if message is None:
            return True
        if message.get("reply_markup") == markup:
            raise _bad(NOT_MODIFIED.removeprefix("Bad Request: "))
        _set_or_drop(message, "reply_markup", markup)
        message["edit_date"] = int(time.time())
        return message

    def _delete_message(self, call: Call) -> bool:
        key = (self._chat_id(call), _int_param(call, "message_id", 0))
        if self._messages.pop(key, None) is None:
            raise _bad("message to delete not found")
        return True

    def _set_my_commands(self, call: Call) -> bool:
        commands = _json_param(call, "commands", "commands") or []
        if not isinstance(commands, list):
            raise _bad("expected an Array of BotCommand")
        language = self._language(call)
        cleaned = []
        for command in commands:
            if not isinstance(command, dict):
                raise _bad("can't parse BotCommand: expected an Object")
            name = str(command.get("command", "")).strip().removeprefix("/")
            description = str(command.get("description", "")).strip()
            if not name:
                raise _bad("command must be non-empty")
            if len(name) > 32:
                raise _bad("command length must not exceed 32")
            if not description:
                raise _bad("command description must be non-empty")
            if len(description) > 256:
                raise _bad("command description length must not exceed 256")
            cleaned.append({"command": name, "description": description})
        if len(cleaned) > MAX_COMMANDS:
            raise _bad("BOT_COMMANDS_TOO_MUCH")
        if any(not _COMMAND_NAME.fullmatch(c["command"]) for c in cleaned):
            raise _bad("BOT_COMMAND_INVALID")
        key = (self._command_scope(call), language)
        if cleaned:
            self._commands[key] = cleaned
        else:
            self._commands.pop(key, None)
        return True

    def _delete_my_commands(self, call: Call) -> bool:
        key = (self._command_scope(call), self._language(call))
        self._commands.pop(key, None)
        return True

    def _get_my_commands(self, call: Call) -> list[dict[str, str]]:
        key = (self._command_scope(call), self._language(call))
        return list(self._commands.get(key, []))

    def _command_scope(self, call: Call) -> str:
        """The key of a BotCommandScope, refused as Telegram refuses it: an unknown type, a
        chat scope without its chat, or (strict_chats) a chat the bot has no conversation with."""
        scope = _json_param(call, "scope", "scope")
        if scope is None:
            return _scope_key(None)
        if not isinstance(scope, dict) or scope.get("type") not in _SCOPE_TYPES:
            raise _bad("unsupported bot command scope type")
        if scope["type"] in ("chat", "chat_administrators", "chat_member"):
            chat_id = scope.get("chat_id")
            if not isinstance(chat_id, int) or (self.strict_chats and chat_id not in self._chats):
                raise _bad("chat not found")
        if scope["type"] == "chat_member" and not isinstance(scope.get("user_id"), int):
            raise _bad("user not found")
        return _scope_key(scope)

    def _language(self, call: Call) -> str:
        language = call.params.get("language_code", "")
        if language and not re.fullmatch(r"[a-z]{2}", language):
            raise _bad("invalid language code specified")
        return language

    def _leave_chat(self, call: Call) -> bool:
        chat = self._chat(self._chat_id(call))
        if chat["type"] != "private":
            self.set_member(chat["id"], self.bot_id, "left")
            self.block_chat(
                chat["id"], f"Forbidden: bot is not a member of the {chat['type']} chat"
            )
        return True

    def _get_chat(self, call: Call) -> dict[str, Any]:
        chat = self._chat(self._chat_id(call))
        return {
            **chat,
            "accent_color_id": 0,
            "max_reaction_count": 11,
            "accepted_gift_types": dict.fromkeys(_GIFT_TYPES, False),
        }

    def _get_chat_member(self, call: Call) -> dict[str, Any]:
        chat = self._chat(self._chat_id(call))
        user_id = _int_param(call, "user_id", 0)
        if not user_id:
            raise _bad("user not found")
        user = self._users.get(user_id) or {"id": user_id, "is_bot": False, "first_name": "User"}
        status = self._members.get((chat["id"], user_id), self.default_member_status)
        return self._member_json(status, user)

    def _get_file(self, call: Call) -> dict[str, Any]:
        file_id = call.params.get("file_id", "")
        if file_id not in self._files:
            raise _bad("wrong file_id or the file is temporarily unavailable")
        path, upload = self._files[file_id]
        return {
            "file_id": file_id,
            "file_unique_id": f"u{file_id}",
            "file_size": upload.size,
            "file_path": path,
        }


# ----------------------------------------------------------------------------------------------


async def _read_form(request: web.Request) -> tuple[dict[str, str], dict[str, UploadedFile]]:
    params: dict[str, str] = dict(request.query)
    files: dict[str, UploadedFile] = {}
    if not request.body_exists:
        return params, files
    if request.content_type == "application/json":
        body = await request.json()
        for key, value in body.items():
            params[key] = value if isinstance(value, str) else json.dumps(value)
        return params, files
    form = await request.post()
    for key, value in form.items():
        if isinstance(value, web.FileField):
            with value.file as handle:
                data = handle.read()
            files[key] = UploadedFile(value.filename, value.content_type, data)
        else:
            params[key] = str(value)
    return params, files


def _check_inline_button(button: Any) -> None:
    prefix = "can't parse inline keyboard button: "
    if not isinstance(button, dict):
        raise _bad(f"{prefix}InlineKeyboardButton must be an Object")
    if not isinstance(button.get("text"), str):
        raise _bad(f'{prefix}Field "text" must be of type String')
    data = button.get("callback_data")
    if isinstance(data, str) and len(data.encode("utf-8")) > MAX_CALLBACK_DATA_BYTES:
        raise _bad("BUTTON_DATA_INVALID")
    if not any(button.get(action) for action in _BUTTON_ACTIONS):
        raise _bad(f"{prefix}Text buttons are unallowed in the inline keyboard")


def _json_param(call: Call, name: str, what: str) -> Any:
    raw = call.params.get(name)
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        raise _bad(f"can't parse {what} JSON object") from None


def _int_param(call: Call, name: str, default: int) -> int:
    raw = call.params.get(name, "")
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise _bad(f'field "{name}" must be of type Integer') from None


_SCOPE_TYPES = frozenset(
    {
        "default",
        "all_private_chats",
        "all_group_chats",
        "all_chat_administrators",
        "chat",
        "chat_administrators",
        "chat_member",
    }
)


def _scope_key(scope: dict[str, Any] | None) -> str:
    return json.dumps(scope or {"type": "default"}, sort_keys=True)


def _type_from_id(chat_id: int) -> str:
    if chat_id > 0:
        return "private"
    return "supergroup" if str(chat_id).startswith("-100") else "group"


def _snapshot(value: Any) -> Any:
    return json.loads(json.dumps(value))


def _set_or_drop(message: dict[str, Any], key: str, value: Any) -> None:
    if value is None:
        message.pop(key, None)
    else:
        message[key] = value


def _unauthorized() -> dict[str, Any]:
    return {"ok": False, "error_code": 401, "description": "Unauthorized"}


def _fault_error(fault: _Fault) -> ApiError:
    defaults = {
        400: "Bad Request",
        401: "Unauthorized",
        403: "Forbidden",
        404: "Not Found",
        409: "Conflict",
        429: f"Too Many Requests: retry after {fault.retry_after}",
        500: "Internal Server Error",
        502: "Bad Gateway",
    }
    description = fault.description or defaults.get(fault.status, f"Error {fault.status}")
    parameters = {"retry_after": fault.retry_after} if fault.retry_after else None
    return ApiError(fault.status, description, parameters)


def _window_violations(
    sends: Iterable[_Send],
    window: float,
    limit: int,
    kind: Literal["per_chat", "global", "group"],
    *,
    by_chat: bool,
) -> list[RateViolation]:
    recent: dict[int | None, deque[float]] = defaultdict(deque)
    violations = []
    for send in sends:
        key = send.chat_id if by_chat else None
        times = recent[key]
        while times and times[0] <= send.at - window:
            times.popleft()
        times.append(send.at)
        if len(times) > limit:
            violations.append(RateViolation(kind, key, send.at, len(times), limit))
    return violations


def _peak(times: Iterable[float], window: float = 1.0) -> int:
    recent: deque[float] = deque()
    peak = 0
    for at in sorted(times):
        while recent and recent[0] <= at - window:
            recent.popleft()
        recent.append(at)
        peak = max(peak, len(recent))
    return peak
