"""A job's stage runs: which are open, and closing one."""

from __future__ import annotations

from typing import cast

import sqlalchemy as sa
from sqlalchemy.orm import Session

from audiojobs.db import utcnow
from audiojobs.jobs.attempts import Attempt
from audiojobs.jobs.models import StageRun
from audiojobs.jobs.states import StageRunStatus

# Error messages are shown to users; keep them readable, not log dumps.
MAX_ERROR_MESSAGE = 2000


def close_run(run: StageRun, status: StageRunStatus, code: str | None = None, message: str | None = None) -> None:
    now = utcnow()
    run.status = status.value
    run.finished_at = now
    run.duration_seconds = (now - run.started_at).total_seconds()
    run.error_code = code
    run.error_message = message[:MAX_ERROR_MESSAGE] if message else None


def open_runs(session: Session, job_id: int) -> list[StageRun]:
    return list(session.scalars(
        sa.select(StageRun).where(StageRun.job_id == job_id, StageRun.finished_at.is_(None)).order_by(StageRun.id)
    ))


def close_own_run(session: Session, attempt: Attempt, status: StageRunStatus, code: str | None = None,
                  message: str | None = None) -> None:
    """One UPDATE, no read (the attempt knows when its run began); an open run only."""
    now = utcnow()
    session.connection().execute(  # Core: the job's own changes still go in one UPDATE at commit
        sa.update(cast(sa.Table, StageRun.__table__))
        .where(StageRun.id == attempt.run_id, StageRun.finished_at.is_(None))
        .values(status=status.value, finished_at=now, duration_seconds=(now - attempt.started_at).total_seconds(),
                error_code=code, error_message=message[:MAX_ERROR_MESSAGE] if message else None))
