"""Tables: jobs (one row per job), their stage runs, and the results kept outside the job row."""

from __future__ import annotations

import datetime as dt
import uuid as uuid_mod
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from audiojobs.db import Base, JSONType, UTCDateTime, utcnow
from audiojobs.jobs.states import JobStatus


class JobBatch(Base):
    """Jobs submitted together (``POST /jobs/batch``): all made in one transaction, or none."""

    __tablename__ = "job_batches"

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True, default=lambda: str(uuid_mod.uuid4()))
    owner_user_id: Mapped[str] = mapped_column(sa.String(64), nullable=False, index=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        sa.Index("ix_jobs_status_created", "status", "created_at"),
        sa.Index("ix_jobs_owner_status", "owner_user_id", "status"),
        sa.Index("ix_jobs_dispatch_due", "dispatch_due_at"),
        sa.Index("ix_jobs_leased_until", "leased_until"),
        sa.Index("ix_jobs_waiting", "status", "admitted_at", "owner_user_id"),
    )

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    uuid: Mapped[str] = mapped_column(sa.String(36), unique=True, nullable=False,
                                      default=lambda: str(uuid_mod.uuid4()))
    batch_id: Mapped[str | None] = mapped_column(sa.ForeignKey("job_batches.id", ondelete="SET NULL"), index=True)
    domain: Mapped[str] = mapped_column(sa.String(32), nullable=False, default="audio")
    queue: Mapped[str] = mapped_column(sa.String(64), nullable=False)
    job_type: Mapped[str] = mapped_column(sa.String(64), nullable=False)
    status: Mapped[str] = mapped_column(sa.String(16), nullable=False, default=JobStatus.QUEUED.value)
    stage: Mapped[str | None] = mapped_column(sa.String(32))
    priority: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=0)
    retry_count: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=0)
    max_retries: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=3)
    owner_user_id: Mapped[str] = mapped_column(sa.String(64), nullable=False)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType, nullable=False, default=dict)
    error_code: Mapped[str | None] = mapped_column(sa.String(64))
    error_message: Mapped[str | None] = mapped_column(sa.Text)
    media_duration_seconds: Mapped[float | None] = mapped_column(sa.Float)
    # What stages reported: {"stage": last reporter, "audio_download": {"downloaded_bytes", ...}, ...}.
    progress: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    leased_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    worker_id: Mapped[str | None] = mapped_column(sa.String(255))
    request_id: Mapped[str | None] = mapped_column(sa.String(128))
    # Fencing token: bumped each time a stage attempt starts; only the newest attempt may write.
    fence: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=0, server_default="0")
    # Dispatch token: bumped each time the job is (re)sent to the broker; older messages are ignored.
    dispatch: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=1, server_default="1")
    # Outbox: when set, the job's current stage must be published at or after this time.
    dispatch_due_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    attempt_errors: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, nullable=False, default=list,
                                                                 server_default="[]")
    # The current object of each artifact in the store (storage/): {"source": "jobs/UUID/audio_download/1/
    # source.flac", "wav": …}. Set by the attempt that wrote it, under its fence, when its stage succeeds.
    artifacts: Mapped[dict[str, str]] = mapped_column(JSONType, nullable=False, default=dict, server_default="{}")
    # Times the reaper's stall watchdog gave the job a new dispatch (no lease, no message, no change).
    stall_rescues: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=0, server_default="0")
    cancelled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # Holds one of its owner's concurrency slots since then (None: waiting for a slot).
    admitted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # Minutes reserved against the owner's daily quota, and the UTC day they count on.
    minutes_charged: Mapped[float | None] = mapped_column(sa.Float)
    charged_day: Mapped[dt.date | None] = mapped_column(sa.Date)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow, onupdate=utcnow)
    completed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    stage_runs: Mapped[list[StageRun]] = relationship(
        back_populates="job", order_by="StageRun.id", cascade="all, delete-orphan", passive_deletes=True
    )

    @property
    def status_enum(self) -> JobStatus:
        return JobStatus(self.status)


class StageRun(Base):
    """One attempt of one stage of one job."""

    __tablename__ = "job_stage_runs"
    __table_args__ = (sa.Index("ix_stage_runs_job", "job_id", "stage"),)

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[int] = mapped_column(sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False)
    stage: Mapped[str] = mapped_column(sa.String(32), nullable=False)
    attempt: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    status: Mapped[str] = mapped_column(sa.String(16), nullable=False)
    worker_id: Mapped[str | None] = mapped_column(sa.String(255))
    fence: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=0, server_default="0")
    dispatch: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=1, server_default="1")
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    duration_seconds: Mapped[float | None] = mapped_column(sa.Float)
    error_code: Mapped[str | None] = mapped_column(sa.String(64))
    error_message: Mapped[str | None] = mapped_column(sa.Text)

    job: Mapped[Job] = relationship(back_populates="stage_runs")


class Transcript(Base):
    __tablename__ = "transcripts"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[int] = mapped_column(sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False, unique=True)
    source: Mapped[str] = mapped_column(sa.Text, nullable=False)
    duration_seconds: Mapped[float] = mapped_column(sa.Float, nullable=False)
    language: Mapped[str | None] = mapped_column(sa.String(16))
    model: Mapped[str] = mapped_column(sa.String(255), nullable=False)
    text: Mapped[str] = mapped_column(sa.Text, nullable=False)
    segments: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, nullable=False, default=list)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)


class TranscriptChunk(Base):
    __tablename__ = "transcript_chunks"
    __table_args__ = (sa.UniqueConstraint("job_id", "chunk_index", name="uq_chunks_job_index"),)

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[int] = mapped_column(sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False)
    chunk_index: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    text: Mapped[str] = mapped_column(sa.Text, nullable=False)
    start_seconds: Mapped[float] = mapped_column(sa.Float, nullable=False)
    end_seconds: Mapped[float] = mapped_column(sa.Float, nullable=False)
    speakers: Mapped[list[str] | None] = mapped_column(JSONType, nullable=True)  # diarized transcripts only


class Analysis(Base):
    __tablename__ = "analyses"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[int] = mapped_column(sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False, unique=True)
    provider: Mapped[str] = mapped_column(sa.String(64), nullable=False)
    model: Mapped[str | None] = mapped_column(sa.String(255))
    summary: Mapped[str] = mapped_column(sa.Text, nullable=False)
    key_phrases: Mapped[list[str]] = mapped_column(JSONType, nullable=False, default=list)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    # The user's own prompt (None: the built-in summary), how many transcript pieces were summarised
    # first (map-reduce), and whether the result came from the analysis cache.
    prompt: Mapped[str | None] = mapped_column(sa.Text)
    parts: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=1, server_default="1")
    cached: Mapped[bool] = mapped_column(sa.Boolean, nullable=False, default=False, server_default=sa.false())
    # A re-run (POST /jobs/{id}/analyze): pending until its task writes; run fences older tasks out.
    status: Mapped[str] = mapped_column(sa.String(16), nullable=False, default="completed",
                                        server_default="completed")
    run: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=0, server_default="0")
    error_code: Mapped[str | None] = mapped_column(sa.String(64))
    error_message: Mapped[str | None] = mapped_column(sa.Text)
    dispatched_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class IdempotencyKey(Base):
    """An ``Idempotency-Key`` a user sent with a submit, and the job it made (kept 24 h)."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (sa.UniqueConstraint("owner_user_id", "key", name="uq_idempotency_owner_key"),)

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    owner_user_id: Mapped[str] = mapped_column(sa.String(64), nullable=False)
    key: Mapped[str] = mapped_column(sa.String(255), nullable=False)
    body_hash: Mapped[str] = mapped_column(sa.String(64), nullable=False)
    job_id: Mapped[int] = mapped_column(sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)


class SystemState(Base):
    """Small facts about the system as a whole, e.g. ``broker_epoch``: the token the reaper last
    saw in Redis. Redis without the token and a recorded one here means Redis came back empty."""

    __tablename__ = "system_state"

    key: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    value: Mapped[str] = mapped_column(sa.Text, nullable=False)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow, onupdate=utcnow)
