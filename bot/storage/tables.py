"""The bot's full schema: the analytics tables of reports/ plus the bot-side tables."""

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Integer,
    String,
    Table,
    UniqueConstraint,
    false,
    true,
)

from reports.schema import NAME_MAX, UTCDateTime, metadata
from reports.store_schema import rollup_clients, rollup_first, rollup_state

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

__all__ = [
    "chats",
    "digest_deliveries",
    "metadata",
    "people",
    "rollup_clients",
    "rollup_first",
    "rollup_state",
    "subscriptions",
]
