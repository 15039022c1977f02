"""Chats (timezone, language), digest subscriptions and the digest delivery ledger.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

from reports.schema import NAME_MAX, UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "chats",
        sa.Column("chat_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("timezone", sa.String(64), nullable=True),
        sa.Column("language", sa.String(8), nullable=True),
    )
    op.create_table(
        "subscriptions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("chat_id", sa.BigInteger, nullable=False, index=True),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("at_time", sa.String(5), nullable=False),
        sa.Column("weekday", sa.Integer, nullable=True),
        sa.Column("day_of_month", sa.Integer, nullable=True),
        sa.Column("channel", sa.String(NAME_MAX), nullable=True),
        sa.Column("app", sa.String(NAME_MAX), nullable=True),
        sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("deactivated_reason", sa.String(NAME_MAX), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "digest_deliveries",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "subscription_id",
            sa.Integer,
            sa.ForeignKey(
                "subscriptions.id", name="fk_digest_deliveries_subscription_id_subscriptions"
            ),
            nullable=False,
        ),
        sa.Column("period_key", sa.String(32), nullable=False),
        sa.Column("slot_at", UTCDateTime(), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("claimed_by", sa.String(64), nullable=True),
        sa.Column("claim_expires_at", UTCDateTime(), nullable=True),
        sa.Column("parts", sa.String(64), nullable=False, server_default=""),
        sa.Column("chat_id", sa.BigInteger, nullable=True),
        sa.Column("detail", sa.String(NAME_MAX), nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint(
            "subscription_id", "period_key", name="uq_digest_deliveries_subscription_id"
        ),
    )


def downgrade() -> None:
    op.drop_table("digest_deliveries")
    op.drop_table("subscriptions")
    op.drop_table("chats")
