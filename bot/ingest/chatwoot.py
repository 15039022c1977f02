"""Chatwoot webhook payloads (and REST conversations) to minimised desk events.

Conversation events carry the conversation at the top level with `inbox_id` but no inbox name,
`created_at` and `timestamp` as Unix seconds; `message_created` carries the conversation under
`conversation`, the inbox as `inbox {id, name}` and its own `created_at` as an ISO string. Only
ids, times, channel, inbox and status are kept (DESIGN.md §10): never names or message text.
"""

from datetime import datetime
from typing import Any

from bot.ingest.desk import DeskEvent, Kind
from bot.ingest.payloads import (
    PayloadError,
    channel_name,
    encodable,
    identifier,
    instant,
    mapping,
)
from reports.schema import NAME_MAX

SOURCE = "chatwoot"
CONVERSATION_EVENTS = frozenset(
    {
        "conversation_created",
        "conversation_status_changed",
        "conversation_updated",
        "conversation_opened",
        "conversation_resolved",
    }
)
MESSAGE_EVENTS = frozenset({"message_created"})
# Statuses that show the client back (reopened); pending and snoozed are the desk's own moves.
_CLIENT_STATUSES = frozenset({"open"})
_CLOSED_STATUSES = frozenset({"resolved"})

CHANNELS = {
    "channel::whatsapp": "whatsapp",
    "channel::telegram": "telegram",
    "channel::webwidget": "webchat",
    "channel::email": "email",
    "channel::facebookpage": "facebook",
    "channel::instagram": "instagram",
    "channel::twitterprofile": "twitter",
    "channel::twiliosms": "sms",
    "channel::sms": "sms",
    "channel::line": "line",
    "channel::api": "api",
    "channel::tiktok": "tiktok",
    "channel::voice": "voice",
}


def events_from_webhook(payload: Any, label: str) -> list[DeskEvent]:
    """The desk events in one webhook body; [] for an event that does not matter."""
    body = mapping(payload, "the body")
    event = body.get("event")
    if not isinstance(event, str):
        raise PayloadError('the body has no "event" name')
    if event in CONVERSATION_EVENTS:
        conversation = body
        found = conversation_event(body, event, label)
    elif event in MESSAGE_EVENTS:
        conversation = mapping(body.get("conversation"), "conversation")
        found = message_event(body, label)
    else:
        return []
    if found is None:
        return []
    # The conversation's start opens its first cycle even when the first event the bot sees
    # is a later one (the webhook was set up after the conversation began).
    start = conversation_event(conversation, "conversation_created", label)
    return [found] if start is None or start.key == found.key else [found, start]


def conversation_event(conversation: dict[str, Any], event: str, label: str) -> DeskEvent | None:
    """A conversation event; history sync passes REST conversations as "conversation_created"
    (its start) and "sync" (its status at its last activity)."""
    conversation_id = _conversation_id(conversation)
    status = conversation.get("status")
    if event == "conversation_created":
        kind: Kind = "open"
        at = instant(conversation.get("created_at"), "created_at")
    else:
        if event == "conversation_resolved" or status in _CLOSED_STATUSES:
            kind = "close"
        elif event == "conversation_opened" or status in _CLIENT_STATUSES:
            kind = "client"
        else:
            return None
        at = instant(conversation.get("timestamp"), "timestamp")
    return _event(
        label,
        key=f"c:{conversation_id}:{kind}:{at.isoformat()}",
        conversation=conversation,
        conversation_id=conversation_id,
        kind=kind,
        at=at,
        app_name=None,
    )


def message_event(message: dict[str, Any], label: str) -> DeskEvent | None:
    message_type = message.get("message_type")
    # Webhooks name the type; the REST API and older versions send its number (0 = incoming).
    if message_type not in ("incoming", 0) or message.get("private") is True:
        return None
    conversation = mapping(message.get("conversation"), "conversation")
    conversation_id = _conversation_id(conversation)
    message_id = identifier(message.get("id"), "id")
    inbox = message.get("inbox")
    inbox_name = None
    if isinstance(inbox, dict):
        if isinstance(inbox.get("name"), str):
            inbox_name = encodable(inbox["name"].strip()[:NAME_MAX], "inbox.name") or None
        if conversation.get("inbox_id") is None and inbox.get("id") is not None:
            conversation = {**conversation, "inbox_id": inbox["id"]}
    at = instant(message.get("created_at"), "created_at")
    return _event(
        label,
        key=f"m:{message_id}",
        conversation=conversation,
        conversation_id=conversation_id,
        kind="client",
        at=at,
        app_name=inbox_name,
        sender=message.get("sender"),
    )


def _conversation_id(conversation: dict[str, Any]) -> str:
    # The per-account number shown in Chatwoot's UI and used by its REST API.
    value = conversation.get("display_id", conversation.get("id"))
    return identifier(value, "conversation id")


def _contact_id(conversation: dict[str, Any], sender: Any) -> str | None:
    meta = conversation.get("meta")
    if isinstance(meta, dict) and isinstance(meta.get("sender"), dict):
        found = meta["sender"].get("id")
        if found is not None:
            return identifier(found, "meta.sender.id")
    if isinstance(sender, dict) and sender.get("type", "contact") == "contact":
        found = sender.get("id")
        if found is not None:
            return identifier(found, "sender.id")
    contact_inbox = conversation.get("contact_inbox")
    if isinstance(contact_inbox, dict) and contact_inbox.get("contact_id") is not None:
        return identifier(contact_inbox["contact_id"], "contact_inbox.contact_id")
    return None


def _event(
    label: str,
    *,
    key: str,
    conversation: dict[str, Any],
    conversation_id: str,
    kind: Kind,
    at: datetime,
    app_name: str | None,
    sender: Any = None,
) -> DeskEvent:
    inbox_id = conversation.get("inbox_id")
    channel = conversation.get("channel")
    meta = conversation.get("meta")
    if channel is None and isinstance(meta, dict):
        # The REST API's conversation names its channel under meta, webhooks at the top.
        channel = meta.get("channel")
    return DeskEvent(
        source=SOURCE,
        label=label,
        key=key,
        conversation_id=conversation_id,
        contact_id=_contact_id(conversation, sender),
        kind=kind,
        occurred_at=at,
        channel=channel_name(channel, CHANNELS) if channel is not None else None,
        app_key=identifier(inbox_id, "inbox_id") if inbox_id is not None else None,
        app_name=app_name,
    )
