"""Drop the (app_id, client_id) index of appeals: every live write paid for it, no report needs it.

Revision ID: 0009
Revises: 0008

Each appeal inserted lands at a random place of that index, so a batch of 1,000 live appeals
rewrote about a thousand of its pages (1M appeals: about 15 ms of the insert and 5 ms of the
commit). Its one use was all-time clients of a channel or app, which the metric store now
answers from its month bitmaps (reports and /channels alike); the plain-SQL reference reads
the period index instead.
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_appeals_app_client", table_name="appeals")


def downgrade() -> None:
    op.create_index("ix_appeals_app_client", "appeals", ["app_id", "client_id"])
