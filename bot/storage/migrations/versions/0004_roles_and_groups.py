"""Roles granted by admins, and groups enabled for reports.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("people") as batch:
        batch.add_column(sa.Column("role", sa.String(10), nullable=True))
        batch.add_column(sa.Column("name", sa.String(200), nullable=True))
        batch.add_column(sa.Column("granted_by", sa.BigInteger, nullable=True))
    with op.batch_alter_table("chats") as batch:
        batch.add_column(
            sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("chats") as batch:
        batch.drop_column("enabled")
    with op.batch_alter_table("people") as batch:
        batch.drop_column("granted_by")
        batch.drop_column("name")
        batch.drop_column("role")
