"""transcript_chunks.speakers: who speaks in each chunk of a diarized transcript

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""
import sqlalchemy as sa
from alembic import op

from audiojobs.db import JSONType

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("transcript_chunks") as batch:
        batch.add_column(sa.Column("speakers", JSONType, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("transcript_chunks") as batch:
        batch.drop_column("speakers")
