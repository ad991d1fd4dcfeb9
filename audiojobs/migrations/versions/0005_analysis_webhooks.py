"""analysis re-runs (prompt, status, run fence) and webhook deliveries with per-user secrets

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from audiojobs.db import UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("analyses") as batch:
        batch.add_column(sa.Column("prompt", sa.Text))
        batch.add_column(sa.Column("parts", sa.Integer, nullable=False, server_default="1"))
        batch.add_column(sa.Column("cached", sa.Boolean, nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("status", sa.String(16), nullable=False, server_default="completed"))
        batch.add_column(sa.Column("run", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("error_code", sa.String(64)))
        batch.add_column(sa.Column("error_message", sa.Text))
        batch.add_column(sa.Column("dispatched_at", UTCDateTime))
        batch.add_column(sa.Column("updated_at", UTCDateTime))
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("uuid", sa.String(36), nullable=False, unique=True),
        sa.Column("job_id", sa.Integer, sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("owner_user_id", sa.String(64), nullable=False),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", UTCDateTime),
        sa.Column("last_status_code", sa.Integer),
        sa.Column("last_error", sa.Text),
        sa.Column("log", JSONType, nullable=False),
        sa.Column("resent_from", sa.String(36)),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("delivered_at", UTCDateTime),
    )
    op.create_index("ix_webhook_due", "webhook_deliveries", ["status", "next_attempt_at"])
    op.create_index("ix_webhook_job", "webhook_deliveries", ["job_id"])
    op.create_table(
        "webhook_secrets",
        sa.Column("owner_user_id", sa.String(64), primary_key=True),
        sa.Column("secret", sa.String(128), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("webhook_secrets")
    op.drop_index("ix_webhook_job", "webhook_deliveries")
    op.drop_index("ix_webhook_due", "webhook_deliveries")
    op.drop_table("webhook_deliveries")
    with op.batch_alter_table("analyses") as batch:
        for name in ("updated_at", "dispatched_at", "error_message", "error_code", "run", "status", "cached",
                     "parts", "prompt"):
            batch.drop_column(name)
