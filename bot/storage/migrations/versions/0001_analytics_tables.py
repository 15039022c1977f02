"""Analytics tables: apps, clients, appeals.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

from reports.schema import NAME_MAX, UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "apps",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("channel", sa.String(NAME_MAX), nullable=False),
        sa.Column("name", sa.String(NAME_MAX), nullable=False),
        sa.UniqueConstraint("channel", "name", name="uq_apps_channel_name"),
    )
    op.create_table(
        "clients",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("external_id", sa.String(NAME_MAX), nullable=False),
        sa.Column("first_appeal_at", UTCDateTime(), nullable=False),
        sa.Column("first_appeal_id", sa.Integer, nullable=True),
        sa.UniqueConstraint("external_id", name="uq_clients_external_id"),
    )
    op.create_index("ix_clients_first_appeal_at", "clients", ["first_appeal_at"])
    op.create_table(
        "appeals",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("external_id", sa.String(NAME_MAX), nullable=False),
        sa.Column(
            "client_id",
            sa.Integer,
            sa.ForeignKey("clients.id", name="fk_appeals_client_id_clients"),
            nullable=False,
        ),
        sa.Column(
            "app_id",
            sa.Integer,
            sa.ForeignKey("apps.id", name="fk_appeals_app_id_apps"),
            nullable=False,
        ),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("external_id", name="uq_appeals_external_id"),
    )
    op.create_index("ix_appeals_period_scan", "appeals", ["created_at", "client_id", "app_id"])
    op.create_index("ix_appeals_app_client", "appeals", ["app_id", "client_id"])
    op.create_index("ix_appeals_client_first", "appeals", ["client_id", "created_at", "id"])


def downgrade() -> None:
    op.drop_table("appeals")
    op.drop_table("clients")
    op.drop_table("apps")
