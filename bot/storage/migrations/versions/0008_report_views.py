"""Report views: the period, zone and filter behind a report's buttons, under a short key.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

from reports.schema import NAME_MAX, UTCDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "report_views",
        sa.Column("key", sa.String(16), primary_key=True),
        sa.Column("period_start", UTCDateTime(), nullable=False),
        sa.Column("period_end", UTCDateTime(), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("channel", sa.String(NAME_MAX), nullable=True),
        sa.Column("app", sa.String(NAME_MAX), nullable=True),
        sa.Column("used_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_report_views_used_at", "report_views", ["used_at"])


def downgrade() -> None:
    op.drop_index("ix_report_views_used_at", table_name="report_views")
    op.drop_table("report_views")
