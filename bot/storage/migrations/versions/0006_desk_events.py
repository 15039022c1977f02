"""Live data from the desk: the append-only event table, inbox apps, deliveries, refusals, sync.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

from reports.schema import NAME_MAX, UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

LABEL_MAX = 64
EVENT_KEY_MAX = 400


def upgrade() -> None:
    op.create_table(
        "desk_events",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("label", sa.String(LABEL_MAX), nullable=False),
        sa.Column("event_key", sa.String(EVENT_KEY_MAX), nullable=False),
        sa.Column("conversation_id", sa.String(NAME_MAX), nullable=False),
        sa.Column("contact_id", sa.String(NAME_MAX), nullable=True),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("occurred_at", UTCDateTime(), nullable=False),
        sa.Column("channel", sa.String(NAME_MAX), nullable=True),
        sa.Column("app_key", sa.String(NAME_MAX), nullable=True),
        sa.Column("app_name", sa.String(NAME_MAX), nullable=True),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("source", "label", "event_key", name="uq_desk_events_identity"),
    )
    op.create_index(
        "ix_desk_events_conversation", "desk_events", ["source", "label", "conversation_id"]
    )
    op.create_index(
        "ix_desk_events_app_name", "desk_events", ["source", "label", "app_key", "occurred_at"]
    )
    op.create_index("ix_desk_events_received", "desk_events", ["received_at"])
    op.create_index("ix_desk_events_occurred", "desk_events", ["occurred_at"])
    op.create_table(
        "desk_apps",
        sa.Column("source", sa.String(16), primary_key=True),
        sa.Column("label", sa.String(LABEL_MAX), primary_key=True),
        sa.Column("app_key", sa.String(NAME_MAX), primary_key=True),
        sa.Column("app_id", sa.Integer, sa.ForeignKey("apps.id"), nullable=False),
    )
    op.create_table(
        "desk_deliveries",
        sa.Column("source", sa.String(16), primary_key=True),
        sa.Column("delivery_id", sa.String(NAME_MAX), primary_key=True),
        sa.Column("received_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "ingest_refusals",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(40), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_ingest_refusals_at", "ingest_refusals", ["at"])
    op.create_table(
        "sync_state",
        sa.Column("source", sa.String(16), primary_key=True),
        sa.Column("label", sa.String(LABEL_MAX), primary_key=True),
        sa.Column("synced_until", UTCDateTime(), nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )
    # The event table is append-only for every path, not only by convention.
    if op.get_bind().dialect.name == "sqlite":
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER desk_events_no_{action.lower()} BEFORE {action} ON desk_events "
                "BEGIN SELECT RAISE(ABORT, 'desk_events is append-only'); END"
            )
    else:
        op.execute(
            "CREATE FUNCTION desk_events_append_only() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'desk_events is append-only'; END $$"
        )
        op.execute(
            "CREATE TRIGGER desk_events_append_only BEFORE UPDATE OR DELETE ON desk_events "
            "FOR EACH ROW EXECUTE FUNCTION desk_events_append_only()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        op.execute("DROP TRIGGER IF EXISTS desk_events_append_only ON desk_events")
        op.execute("DROP FUNCTION IF EXISTS desk_events_append_only()")
    for table in ("sync_state", "ingest_refusals", "desk_deliveries", "desk_apps", "desk_events"):
        op.drop_table(table)
