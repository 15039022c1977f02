"""Blinger webhook payloads to minimised desk events (help.blinger.io/documentation/webhooks).

Every Blinger event carries the conversation with `id`, `application` (the messenger's code),
`status`, `date_created`/`date_updated` (Unix seconds) and the client as `from_user.user_id`.
An event's time is the conversation's `date_updated` (DESIGN.md §10). Names, avatars, pages and
message texts in the payload are never kept.
"""

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

SOURCE = "blinger"

CHANNELS = {
    "telegrambot": "telegram",
    "telegram": "telegram",
    "livechat": "webchat",
    "whatsapp": "whatsapp",
    "viber": "viber",
    "vk": "vk",
    "vkontakte": "vk",
    "facebook": "facebook",
    "instagram": "instagram",
    "email": "email",
    "ok": "ok",
    "avito": "avito",
}

# What each webhook means for the conversation's cycles: the client writing (an incoming
# message, the conversation back to unassigned) or a close; assignment is the desk's own move.
_KINDS: dict[str, Kind] = {
    "on_conversation_unassigned": "client",
    "on_conversation_closed": "close",
    "on_incoming_message": "client",
    "on_message_incoming": "client",
    "on_incoming_comment": "client",
    "on_new_conversation": "open",
}
IGNORED = frozenset(
    {
        "on_conversation_assigned",
        "on_outgoing_message",
        "on_message_outgoing",
        "on_outgoing_comment",
        "on_new_client",
    }
)


def events_from_webhook(payload: Any, label: str) -> list[DeskEvent]:
    body = mapping(payload, "the body")
    webhook = body.get("webhook")
    if not isinstance(webhook, str):
        raise PayloadError('the body has no "webhook" name')
    kind = _KINDS.get(webhook)
    if kind is None:
        return []
    conversation = mapping(body.get("conversation"), "conversation")
    conversation_id = identifier(conversation.get("id"), "conversation.id")
    user = mapping(conversation.get("from_user"), "conversation.from_user")
    contact = identifier(user.get("user_id"), "conversation.from_user.user_id")
    at = instant(conversation.get("date_updated"), "conversation.date_updated")
    created = instant(conversation.get("date_created"), "conversation.date_created")
    application = channel_name(conversation.get("application"), {})
    account = _account_name(conversation)
    common: dict[str, Any] = {
        "source": SOURCE,
        "label": label,
        "conversation_id": conversation_id,
        "contact_id": contact,
        "channel": CHANNELS.get(application, application),
        "app_key": account or application,
        "app_name": account,
    }
    events = [
        DeskEvent(
            key=f"{webhook}:{conversation_id}:{at.isoformat()}",
            kind=kind,
            occurred_at=at,
            **common,
        )
    ]
    # The conversation's creation opens its first cycle even when its first webhook is a close.
    events.append(
        DeskEvent(
            key=f"created:{conversation_id}:{created.isoformat()}",
            kind="open",
            occurred_at=created,
            **common,
        )
    )
    return events


def _account_name(conversation: dict[str, Any]) -> str | None:
    """The connected account (one of several bots or numbers) where the payload names one."""
    for field in ("account", "application_account", "channel_account"):
        value = conversation.get(field)
        if isinstance(value, dict):
            value = value.get("name") or value.get("id")
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if isinstance(value, str) and value.strip():
            return encodable(value.strip()[:NAME_MAX], f"conversation.{field}")
    return None
