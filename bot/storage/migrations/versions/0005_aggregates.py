"""Pre-aggregated metric store: client bitmaps and counts per UTC hour, day and month.

Revision ID: 0005
Revises: 0004

The tables start empty and without a rollup_state row; `migrate` then builds the store from
the appeals (bot.storage.aggregates.ensure_aggregates).
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rollup_clients",
        sa.Column("level", sa.SmallInteger, primary_key=True, autoincrement=False),
        sa.Column("bucket", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("app_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("appeals", sa.Integer, nullable=False),
        sa.Column("firsts", sa.Integer, nullable=False),
        sa.Column("clients", sa.LargeBinary, nullable=False),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "rollup_first",
        sa.Column("level", sa.SmallInteger, primary_key=True, autoincrement=False),
        sa.Column("bucket", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("clients", sa.LargeBinary, nullable=False),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "rollup_state",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("version", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("rollup_state")
    op.drop_table("rollup_first")
    op.drop_table("rollup_clients")
