"""users, API keys, the daily usage ledger; per-job admission and minute charges

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""
import sqlalchemy as sa
from alembic import op

from audiojobs.db import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("username", sa.String(64), nullable=False, unique=True),
        sa.Column("password_hash", sa.String(255)),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("tier", sa.String(32), nullable=False),
        sa.Column("disabled", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("created_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("revoked_at", UTCDateTime),
        sa.Column("last_used_at", UTCDateTime),
    )
    op.create_table(
        "audio_usage_daily",
        sa.Column("user_id", sa.String(64), primary_key=True),
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("minutes_used", sa.Float, nullable=False, server_default="0"),
        sa.Column("jobs_started", sa.Integer, nullable=False, server_default="0"),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("admitted_at", UTCDateTime))
        batch.add_column(sa.Column("minutes_charged", sa.Float))
        batch.add_column(sa.Column("charged_day", sa.Date))
    op.create_index("ix_jobs_waiting", "jobs", ["status", "admitted_at", "owner_user_id"])


def downgrade() -> None:
    op.drop_index("ix_jobs_waiting", table_name="jobs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("charged_day")
        batch.drop_column("minutes_charged")
        batch.drop_column("admitted_at")
    op.drop_table("audio_usage_daily")
    op.drop_table("api_keys")
    op.drop_table("users")
