"""leases, fencing and dispatch tokens on jobs; attempt errors; idempotency keys

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from audiojobs.db import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("fence", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("dispatch", sa.Integer, nullable=False, server_default="1"))
        batch.add_column(sa.Column("dispatch_due_at", UTCDateTime))
        batch.add_column(sa.Column("attempt_errors", JSONType, nullable=False, server_default="[]"))
        batch.add_column(sa.Column("cancelled_at", UTCDateTime))
    op.create_index("ix_jobs_dispatch_due", "jobs", ["dispatch_due_at"])
    op.create_index("ix_jobs_leased_until", "jobs", ["leased_until"])
    with op.batch_alter_table("job_stage_runs") as batch:
        batch.add_column(sa.Column("fence", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("dispatch", sa.Integer, nullable=False, server_default="1"))
    op.create_table(
        "idempotency_keys",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("owner_user_id", sa.String(64), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("body_hash", sa.String(64), nullable=False),
        sa.Column("job_id", sa.Integer, sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.UniqueConstraint("owner_user_id", "key", name="uq_idempotency_owner_key"),
    )


def downgrade() -> None:
    op.drop_table("idempotency_keys")
    with op.batch_alter_table("job_stage_runs") as batch:
        batch.drop_column("dispatch")
        batch.drop_column("fence")
    op.drop_index("ix_jobs_leased_until", table_name="jobs")
    op.drop_index("ix_jobs_dispatch_due", table_name="jobs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("cancelled_at")
        batch.drop_column("attempt_errors")
        batch.drop_column("dispatch_due_at")
        batch.drop_column("dispatch")
        batch.drop_column("fence")
