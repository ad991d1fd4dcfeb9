"""The only writer of Job rows: creation, stage transitions, failure, completion and queries.

Callers pass an open session and own the transaction; nothing here commits, so a caller can make
a transition and its side effects (results, stage runs) land together or not at all.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from audiojobs.db import utcnow
from audiojobs.errors import NotFound
from audiojobs.jobs.models import Job, StageRun
from audiojobs.jobs.states import JobStatus, Stage, StageRunStatus, check_transition

JOB_DOMAIN = "audio"
JOB_TYPE = "audio_pipeline"
# Error messages are shown to users; keep them readable, not log dumps.
MAX_ERROR_MESSAGE = 2000


@dataclass(frozen=True)
class Principal:
    """Who is calling: a user id and whether they are an admin."""

    user_id: str
    is_admin: bool


def create_job(session: Session, *, owner_user_id: str, payload: dict[str, Any], queue: str,
               max_retries: int, request_id: str | None, priority: int = 0) -> Job:
    job = Job(domain=JOB_DOMAIN, job_type=JOB_TYPE, queue=queue, status=JobStatus.QUEUED.value,
              owner_user_id=owner_user_id, payload=payload, max_retries=max_retries,
              request_id=request_id, priority=priority)
    session.add(job)
    session.flush()
    return job


def _lock_job(session: Session, job_id: int) -> Job | None:
    # FOR UPDATE serialises competing workers on PostgreSQL; SQLite serialises writers anyway.
    return session.execute(sa.select(Job).where(Job.id == job_id).with_for_update()).scalar_one_or_none()


def _set_status(job: Job, status: JobStatus) -> None:
    check_transition(job.status_enum, status)
    job.status = status.value
    job.updated_at = utcnow()


def begin_stage(session: Session, job_id: int, stage: Stage, *, worker_id: str,
                lease_seconds: int) -> StageRun | None:
    """Mark ``stage`` as running on ``worker_id``; None when the job is gone or already final."""
    job = _lock_job(session, job_id)
    if job is None or job.status_enum.is_final:
        return None
    now = utcnow()
    _set_status(job, JobStatus.PROCESSING)
    job.stage = stage.value
    job.started_at = job.started_at or now
    job.worker_id = worker_id
    job.leased_until = now + dt.timedelta(seconds=lease_seconds)
    previous = session.scalar(
        sa.select(sa.func.count()).select_from(StageRun).where(StageRun.job_id == job_id, StageRun.stage == stage.value)
    ) or 0
    run = StageRun(job_id=job_id, stage=stage.value, attempt=previous + 1, status=StageRunStatus.RUNNING.value,
                   worker_id=worker_id, started_at=now)
    session.add(run)
    session.flush()
    return run


def _close_run(run: StageRun, status: StageRunStatus, code: str | None = None, message: str | None = None) -> None:
    now = utcnow()
    run.status = status.value
    run.finished_at = now
    run.duration_seconds = (now - run.started_at).total_seconds()
    run.error_code = code
    run.error_message = message[:MAX_ERROR_MESSAGE] if message else None


def finish_stage(session: Session, run_id: int, *, skipped: bool = False) -> None:
    """Close a stage run that did its work (or had nothing to do); the job stays processing."""
    run = session.get(StageRun, run_id)
    if run is None:
        return
    _close_run(run, StageRunStatus.SKIPPED if skipped else StageRunStatus.SUCCEEDED)
    job = session.get(Job, run.job_id)
    if job is not None and not job.status_enum.is_final:
        job.leased_until = None
        job.updated_at = utcnow()


def fail_job(session: Session, job_id: int, *, code: str, message: str, run_id: int | None = None) -> Job | None:
    """End the job ``failed`` with ``code``; a job already final is left as it is."""
    if run_id is not None:
        run = session.get(StageRun, run_id)
        if run is not None and run.finished_at is None:
            _close_run(run, StageRunStatus.FAILED, code, message)
    job = _lock_job(session, job_id)
    if job is None or job.status_enum.is_final:
        return job
    _set_status(job, JobStatus.FAILED)
    job.error_code = code
    job.error_message = message[:MAX_ERROR_MESSAGE]
    job.completed_at = utcnow()
    job.leased_until = None
    return job


def record_retry(session: Session, job_id: int, *, run_id: int, code: str, message: str) -> Job | None:
    """A stage hit a transient error and will run again: count it and hand the job back to the queue."""
    run = session.get(StageRun, run_id)
    if run is not None and run.finished_at is None:
        _close_run(run, StageRunStatus.RETRYING, code, message)
    job = _lock_job(session, job_id)
    if job is None or job.status_enum.is_final:
        return job
    _set_status(job, JobStatus.QUEUED)
    job.retry_count += 1
    job.error_code = code
    job.error_message = message[:MAX_ERROR_MESSAGE]
    job.leased_until = None
    job.worker_id = None
    return job


def complete_job(session: Session, job: Job) -> None:
    _set_status(job, JobStatus.COMPLETED)
    job.error_code = None
    job.error_message = None
    job.completed_at = utcnow()
    job.leased_until = None


def set_media_duration(session: Session, job_id: int, seconds: float) -> None:
    job = session.get(Job, job_id)
    if job is not None:
        job.media_duration_seconds = seconds


# --- Queries ---------------------------------------------------------------------------------
def get_job(session: Session, job_id: int) -> Job | None:
    return session.get(Job, job_id)


def get_job_for(session: Session, job_id: int, principal: Principal) -> Job:
    """The job, if ``principal`` owns it or is an admin; otherwise NotFound, as if it did not exist."""
    job = session.get(Job, job_id)
    if job is None or not (principal.is_admin or job.owner_user_id == principal.user_id):
        raise NotFound(f"job {job_id} not found")
    return job


def list_jobs(session: Session, *, status: JobStatus | None, owner_user_id: str | None, limit: int) -> list[Job]:
    query = sa.select(Job).order_by(Job.created_at.desc(), Job.id.desc()).limit(limit)
    if status is not None:
        query = query.where(Job.status == status.value)
    if owner_user_id is not None:
        query = query.where(Job.owner_user_id == owner_user_id)
    return list(session.scalars(query))


def count_by_status(session: Session, *, owner_user_id: str | None) -> dict[str, int]:
    query = sa.select(Job.status, sa.func.count()).group_by(Job.status)
    if owner_user_id is not None:
        query = query.where(Job.owner_user_id == owner_user_id)
    counts = {status.value: 0 for status in JobStatus}
    for status, count in session.execute(query):
        counts[status] = count
    return counts


def count_processing(session: Session, owner_user_id: str) -> int:
    return session.scalar(
        sa.select(sa.func.count()).select_from(Job).where(
            Job.owner_user_id == owner_user_id, Job.status == JobStatus.PROCESSING.value
        )
    ) or 0


def final_job_ids(session: Session, job_ids: list[int]) -> set[int]:
    """Which of ``job_ids`` are final or gone: their work directories may be removed."""
    if not job_ids:
        return set()
    live = set(session.scalars(
        sa.select(Job.id).where(Job.id.in_(job_ids), Job.status.in_([JobStatus.QUEUED.value,
                                                                       JobStatus.PROCESSING.value]))
    ))
    return set(job_ids) - live
