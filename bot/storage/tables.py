"""The bot's full schema: the analytics tables of reports/ plus the bot-side tables."""

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    UniqueConstraint,
    false,
    true,
)

from reports.schema import NAME_MAX, UTCDateTime, metadata
from reports.store_schema import rollup_clients, rollup_first, rollup_state

# A desk account's label in a webhook URL (`/ingest/chatwoot/<token>/<label>`).
LABEL_MAX = 64
EVENT_KEY_MAX = 400

people = Table(
    "people",
    metadata,
    Column("user_id", BigInteger, primary_key=True, autoincrement=False),
    # Set by /lang; None means "follow the Telegram client's language".
    Column("language", String(8), nullable=True),
    # "lead" when an admin granted it; admins come from ADMIN_IDS and are never stored.
    Column("role", String(10), nullable=True),
    # The name last seen, for /users.
    Column("name", String(200), nullable=True),
    Column("granted_by", BigInteger, nullable=True),
)

chats = Table(
    "chats",
    metadata,
    Column("chat_id", BigInteger, primary_key=True, autoincrement=False),
    # None: the TIMEZONE setting.
    Column("timezone", String(64), nullable=True),
    # Language of digests: the one of the admin who last set a digest or timezone here.
    Column("language", String(8), nullable=True),
    # Groups are served only after an admin sends /enable there.
    Column("enabled", Boolean, nullable=False, server_default=false()),
)

subscriptions = Table(
    "subscriptions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("chat_id", BigInteger, nullable=False, index=True),
    Column("kind", String(10), nullable=False),
    Column("at_time", String(5), nullable=False),
    Column("weekday", Integer, nullable=True),
    Column("day_of_month", Integer, nullable=True),
    Column("channel", String(NAME_MAX), nullable=True),
    Column("app", String(NAME_MAX), nullable=True),
    Column("active", Boolean, nullable=False, server_default=true()),
    Column("deactivated_reason", String(NAME_MAX), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    # Set while the chat may not see data (bot.access): the digest stays listed but is not
    # sent until an admin resumes it; slots before `resumed_at` are not owed.
    Column("paused_reason", String(NAME_MAX), nullable=True),
    Column("resumed_at", UTCDateTime(), nullable=True),
)

# One row per (subscription, period): claimed before sending, so a digest goes out once even
# with several bot processes; `parts` lists what Telegram already accepted.
digest_deliveries = Table(
    "digest_deliveries",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("subscription_id", Integer, ForeignKey("subscriptions.id"), nullable=False),
    Column("period_key", String(32), nullable=False),
    Column("slot_at", UTCDateTime(), nullable=False),
    Column("status", String(10), nullable=False),
    Column("claimed_by", String(64), nullable=True),
    Column("claim_expires_at", UTCDateTime(), nullable=True),
    Column("parts", String(64), nullable=False, server_default=""),
    Column("chat_id", BigInteger, nullable=True),
    Column("detail", String(NAME_MAX), nullable=True),
    Column("updated_at", UTCDateTime(), nullable=False),
    UniqueConstraint("subscription_id", "period_key", name="uq_digest_deliveries_subscription_id"),
)

# What a report's buttons stand for, behind a short key (callback_data holds 64 bytes): the
# exact period, zone and filter of the report, for the "By hour" button and for re-run buttons
# whose filter is too long to carry itself. Kept in the database so buttons under digests
# survive a restart; `used_at` is refreshed by every report that needs the row, and rows
# unused for REPORT_VIEW_DAYS are deleted.
report_views = Table(
    "report_views",
    metadata,
    Column("key", String(16), primary_key=True),
    Column("period_start", UTCDateTime(), nullable=False),
    Column("period_end", UTCDateTime(), nullable=False),
    Column("timezone", String(64), nullable=False),
    Column("channel", String(NAME_MAX), nullable=True),
    Column("app", String(NAME_MAX), nullable=True),
    Column("used_at", UTCDateTime(), nullable=False, index=True),
)

__all__ = [
    "chats",
    "desk_apps",
    "desk_deliveries",
    "desk_events",
    "digest_deliveries",
    "ingest_refusals",
    "metadata",
    "people",
    "rollup_clients",
    "rollup_first",
    "report_views",
    "rollup_state",
    "subscriptions",
    "sync_state",
]

# --- live data from the desk (DESIGN.md §10) ---------------------------------------------------

# Append-only: every relevant desk event, minimised to ids, times, channel, inbox and kind (never
# names, phones, e-mails or message text). Appeals are derived from these rows per conversation;
# triggers made by the migration refuse UPDATE and DELETE, so no path can rewrite history.
desk_events = Table(
    "desk_events",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("source", String(16), nullable=False),
    Column("label", String(LABEL_MAX), nullable=False),
    # The event's identity within its source and label: a repeat of it is the same event.
    Column("event_key", String(EVENT_KEY_MAX), nullable=False),
    Column("conversation_id", String(NAME_MAX), nullable=False),
    Column("contact_id", String(NAME_MAX), nullable=True),
    # open (conversation started), client (the client wrote or reopened), close.
    Column("kind", String(8), nullable=False),
    Column("occurred_at", UTCDateTime(), nullable=False),
    Column("channel", String(NAME_MAX), nullable=True),
    Column("app_key", String(NAME_MAX), nullable=True),
    Column("app_name", String(NAME_MAX), nullable=True),
    Column("received_at", UTCDateTime(), nullable=False),
    UniqueConstraint("source", "label", "event_key", name="uq_desk_events_identity"),
    Index("ix_desk_events_conversation", "source", "label", "conversation_id"),
    Index("ix_desk_events_app_name", "source", "label", "app_key", "occurred_at"),
    Index("ix_desk_events_received", "received_at"),
    Index("ix_desk_events_occurred", "occurred_at"),
)

# Which analytics app stands for a desk's inbox (or application): renaming the inbox renames
# the app instead of splitting its history.
desk_apps = Table(
    "desk_apps",
    metadata,
    Column("source", String(16), primary_key=True),
    Column("label", String(LABEL_MAX), primary_key=True),
    Column("app_key", String(NAME_MAX), primary_key=True),
    Column("app_id", Integer, ForeignKey("apps.id"), nullable=False),
)

# Webhook deliveries already taken (Chatwoot's X-Chatwoot-Delivery): a replay changes nothing.
desk_deliveries = Table(
    "desk_deliveries",
    metadata,
    Column("source", String(16), primary_key=True),
    Column("delivery_id", String(NAME_MAX), primary_key=True),
    Column("received_at", UTCDateTime(), nullable=False),
)

# Requests the web server refused (bad token, signature or body), for /sources.
ingest_refusals = Table(
    "ingest_refusals",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("source", String(16), nullable=False),
    Column("reason", String(40), nullable=False),
    Column("at", UTCDateTime(), nullable=False, index=True),
)

# Where the history sync of a source stands, so an interrupted sync resumes.
sync_state = Table(
    "sync_state",
    metadata,
    Column("source", String(16), primary_key=True),
    Column("label", String(LABEL_MAX), primary_key=True),
    # Conversations updated at or after this instant still need reading.
    Column("synced_until", UTCDateTime(), nullable=True),
    Column("updated_at", UTCDateTime(), nullable=False),
)
