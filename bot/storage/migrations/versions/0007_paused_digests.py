"""Digest subscriptions can be paused (their chat may no longer see data) and resumed.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

from reports.schema import NAME_MAX, UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("subscriptions") as batch:
        batch.add_column(sa.Column("paused_reason", sa.String(NAME_MAX), nullable=True))
        batch.add_column(sa.Column("resumed_at", UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("subscriptions") as batch:
        batch.drop_column("resumed_at")
        batch.drop_column("paused_reason")
