"""Job state transitions: creation, stage attempts, leases, retries, the end of a job, cancellation.

Reads that change nothing are in :mod:`audiojobs.jobs.queries`; the use cases the front ends call
(submit, cancel, delete, results) in :mod:`audiojobs.jobs.usecases`; the recovery passes the reaper
runs in :mod:`audiojobs.jobs.recovery`.

Callers pass an open session and own the transaction; nothing here commits, so a transition and
its side effects (results, stage runs) land together or not at all.

Three tokens keep a job's history single even though the broker delivers at least once:

- ``dispatch``: bumped whenever the job is (re)sent to the broker. Every message carries the
  dispatch it was sent under; a message from an older dispatch is ignored.
- ``fence``: bumped whenever a stage attempt starts. Every write an attempt makes (heartbeat,
  stage end, results) names its fence; a stale attempt's writes change nothing.
- ``leased_until``/``worker_id``: the running attempt's lease, renewed by its heartbeat. While it
  is live nobody else starts the stage; once it has expired the reaper hands the job on.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, object_session

from audiojobs.db import utcnow
from audiojobs.errors import Conflict, NotFound
from audiojobs.jobs import queries
from audiojobs.jobs.attempts import Attempt, Decision, Dispatch, StageDecision, StageEnd
from audiojobs.jobs.models import Job, StageRun
from audiojobs.jobs.runs import MAX_ERROR_MESSAGE, close_own_run, close_run, open_runs
from audiojobs.jobs.states import (
    FINAL_STATUSES,
    PIPELINE,
    JobStatus,
    Stage,
    StageRunStatus,
    check_transition,
    next_stage,
)
from audiojobs.quotas import minutes
from audiojobs.users.principal import Principal
from audiojobs.webhooks import service as webhooks

JOB_DOMAIN = "audio"
JOB_TYPE = "audio_pipeline"
# How many of its attempts' errors a job keeps.
MAX_ATTEMPT_ERRORS = 10
# A dispatch due this long ago was not published by whoever made it due (it died): the reaper does.
DISPATCH_GRACE = dt.timedelta(seconds=2)


WAIT_POLL_SECONDS = 5.0


def _lock_job(session: Session, job_id: int) -> Job | None:
    # FOR UPDATE serialises competing workers on PostgreSQL; on SQLite every transaction begins
    # with BEGIN IMMEDIATE (db.py), which serialises them from their first read.
    return session.execute(sa.select(Job).where(Job.id == job_id).with_for_update()).scalar_one_or_none()


def set_status(job: Job, status: JobStatus) -> None:
    check_transition(job.status_enum, status)
    job.status = status.value
    job.updated_at = utcnow()


def note_error(job: Job, stage: str | None, code: str, message: str) -> None:
    errors = list(job.attempt_errors or [])
    errors.append({"at": utcnow().isoformat().replace("+00:00", "Z"), "stage": stage, "code": code,
                   "message": message[:500]})
    job.attempt_errors = errors[-MAX_ATTEMPT_ERRORS:]


def lose_attempt(session: Session, job: Job, code: str, what: str) -> bool:
    """The job's running attempt lost its worker (died, hung, lease ran out): close its runs
    ``lost`` and spend a retry. False when that was the last retry: the job ended ``failed`` /
    ``lease_expired``. ``what`` completes "worker W <what> STAGE" in the job's attempt errors."""
    stage = job.stage or PIPELINE[0].value
    runs = open_runs(session, job.id)
    holder = runs[-1].worker_id if runs else job.worker_id
    for run in runs:
        close_run(run, StageRunStatus.LOST, code, f"worker {run.worker_id} {what} the stage")
    job.retry_count += 1
    note_error(job, stage, code, f"worker {holder} {what} {stage}")
    if job.retry_count > job.max_retries:
        end_job(job, JobStatus.FAILED, "lease_expired", f"{stage} lost its worker {job.retry_count} times; giving up")
        return False
    return True


def end_job(job: Job, status: JobStatus, code: str | None, message: str | None) -> None:
    """Move ``job`` to a final status; a job that did not complete gives its reserved minutes back."""
    set_status(job, status)
    if status is not JobStatus.COMPLETED and job.minutes_charged and job.charged_day is not None:
        session = object_session(job)
        if session is not None:
            minutes.give_back(session, job.owner_user_id, job.minutes_charged, job.charged_day)
            job.minutes_charged = 0.0
    now = utcnow()
    job.error_code = code
    job.error_message = message[:MAX_ERROR_MESSAGE] if message else None
    job.completed_at = now
    job.leased_until = None
    job.dispatch_due_at = None
    if (job.payload or {}).get("callback_url"):
        session = object_session(job)
        if session is not None:
            webhooks.record_event(session, job)  # the outbox row commits with the final status


# --- Creation ----------------------------------------------------------------------------------
def create_job(session: Session, *, owner_user_id: str, payload: dict[str, Any], queue: str,
               max_retries: int, request_id: str | None, priority: int = 0) -> Job:
    """A queued job waiting for a concurrency slot; admission (jobs/admission.py) sends it."""
    job = Job(domain=JOB_DOMAIN, job_type=JOB_TYPE, queue=queue, status=JobStatus.QUEUED.value,
              stage=PIPELINE[0].value, owner_user_id=owner_user_id, payload=payload, max_retries=max_retries,
              request_id=request_id, priority=priority, fence=0, dispatch=1, dispatch_due_at=None,
              attempt_errors=[])
    session.add(job)
    session.flush()
    return job


def record_artifact(session: Session, job_id: int, name: str, key: str) -> None:
    """An artifact the API stored before the job started (an upload's media)."""
    job = _lock_job(session, job_id)
    if job is not None:
        job.artifacts = {**(job.artifacts or {}), name: key}


# --- Stage attempts ----------------------------------------------------------------------------
def begin_stage(session: Session, job_id: int, stage: Stage, *, dispatch: int, worker_id: str, lease_seconds: int,
                holder_is_dead: Callable[[str], bool]) -> StageDecision:
    """Decide what a delivered stage message does, and start an attempt when it should run."""
    job = _lock_job(session, job_id)
    if job is None:
        return StageDecision(Decision.IGNORE, "job is gone")
    if job.status_enum.is_final:
        return StageDecision(Decision.IGNORE, f"job is {job.status}", job_status=job.status, job_uuid=job.uuid)
    if job.admitted_at is None:
        return StageDecision(Decision.IGNORE, "job holds no concurrency slot")
    if dispatch != job.dispatch:
        return StageDecision(Decision.IGNORE, f"stale dispatch {dispatch} (job is at {job.dispatch})")
    current = PIPELINE.index(Stage(job.stage)) if job.stage else 0
    wanted = PIPELINE.index(stage)
    if wanted < current:
        return StageDecision(Decision.SKIP_DONE, f"{stage.value} already done")
    if wanted > current:
        return StageDecision(Decision.IGNORE, f"{stage.value} is ahead of the job ({job.stage})")
    now = utcnow()
    if (job.leased_until is not None and job.leased_until > now and job.worker_id
            and job.worker_id != worker_id and not holder_is_dead(job.worker_id)):
        # This message is the job's current dispatch: dropping it could leave the job with none
        # (should the holder's chain end stale). It comes back when the lease or the stage ends.
        remaining = (job.leased_until - now).total_seconds()
        return StageDecision(Decision.WAIT, f"leased by {job.worker_id} until {job.leased_until.isoformat()}",
                             retry_in=max(0.5, min(WAIT_POLL_SECONDS, remaining)))
    # The job's runs, two columns each, in one read: whether one is open, and this stage's attempts.
    runs = session.execute(sa.select(StageRun.stage, StageRun.finished_at).where(StageRun.job_id == job_id)).all()
    if any(f is None for _s, f in runs) and not lose_attempt(session, job, "worker_lost", "stopped during"):
        return StageDecision(Decision.IGNORE, "retries exhausted", job_status=job.status, job_uuid=job.uuid)
    set_status(job, JobStatus.PROCESSING)
    job.fence += 1
    job.stage = stage.value
    if job.started_at is None:  # the job's very first attempt: it counts as started, once
        minutes.count_job_started(session, job.owner_user_id, minutes.utc_today(now))
        job.started_at = now
    job.worker_id = worker_id
    job.leased_until = now + dt.timedelta(seconds=lease_seconds)
    job.dispatch_due_at = None
    previous = sum(s == stage.value for s, _f in runs)
    run = StageRun(job_id=job_id, stage=stage.value, attempt=previous + 1, status=StageRunStatus.RUNNING.value,
                   worker_id=worker_id, started_at=now, fence=job.fence, dispatch=dispatch)
    session.add(run)
    session.flush()
    attempt = Attempt(job_id=job_id, stage=stage, run_id=run.id, attempt=run.attempt, fence=job.fence,
                      dispatch=dispatch, payload=dict(job.payload), owner_user_id=job.owner_user_id,
                      job_uuid=job.uuid, artifacts=dict(job.artifacts or {}), started_at=now)
    return StageDecision(Decision.START, "started", attempt=attempt)


def _own_job(session: Session, attempt: Attempt) -> Job | None:
    """The job, locked, if ``attempt`` still holds it (newest fence, still processing)."""
    job = _lock_job(session, attempt.job_id)
    if job is None or job.fence != attempt.fence or job.status != JobStatus.PROCESSING.value:
        return None
    return job


def _close_stale_run(session: Session, attempt: Attempt) -> None:
    """The attempt lost its job: record why (cancelled, or taken over) on its run."""
    close_stopped_run(session, attempt, attempt_lost_reason(session, attempt) or "taken_over")


def renew_lease(session: Session, attempt: Attempt, lease_seconds: int) -> str | None:
    """Heartbeat: extend the lease. None while the attempt holds the job; else why it does not."""
    now = utcnow()
    result = session.execute(
        sa.update(Job)
        .where(Job.id == attempt.job_id, Job.fence == attempt.fence, Job.status == JobStatus.PROCESSING.value)
        .values(leased_until=now + dt.timedelta(seconds=lease_seconds))
    )
    if getattr(result, "rowcount", 0) == 1:
        return None
    return attempt_lost_reason(session, attempt)


def attempt_lost_reason(session: Session, attempt: Attempt) -> str | None:
    """Why ``attempt`` no longer holds its job (``cancelled``, ``failed`` …, ``taken_over``), or None."""
    row = session.execute(sa.select(Job.status, Job.fence).where(Job.id == attempt.job_id)).one_or_none()
    if row is None:
        return "deleted"
    status, fence = row
    if status in {s.value for s in FINAL_STATUSES}:
        return str(status)
    if fence != attempt.fence or status != JobStatus.PROCESSING.value:
        return "taken_over"
    return None


def finish_stage(session: Session, attempt: Attempt, *, skipped: bool = False,
                 outputs: dict[str, str] | None = None) -> StageEnd:
    """Close the attempt's run, record the objects it wrote (``outputs``: artifact name -> key) as
    the job's current ones, and move the job to its next stage (see ``StageEnd``). A stale attempt
    records nothing: its objects can never replace the current attempt's."""
    job = _own_job(session, attempt)
    if job is None:
        _close_stale_run(session, attempt)
        return StageEnd(moved_on=False)
    if outputs:
        job.artifacts = {**(job.artifacts or {}), **outputs}
    close_own_run(session, attempt, StageRunStatus.SKIPPED if skipped else StageRunStatus.SUCCEEDED)
    following = next_stage(attempt.stage)
    now = utcnow()
    if following is not None:
        job.stage = following.value
    job.leased_until = None
    job.updated_at = now
    if following is None:
        return StageEnd(moved_on=True)
    ahead = Dispatch(job.id, job.dispatch, following, job.priority, job.admitted_at)
    if job.dispatch != attempt.dispatch:
        # Re-dispatched while this attempt ran: the chain's next message carries the old token and
        # would be ignored. The outbox makes the next stage due now; the caller publishes it at once.
        job.dispatch_due_at = now
        return StageEnd(moved_on=True, redispatch=ahead)
    return StageEnd(moved_on=True, following=ahead)


def fail_job(session: Session, job_id: int, *, code: str, message: str, attempt: Attempt | None = None) -> bool:
    """End the job ``failed`` with ``code``. False (nothing changed) if it is final or ``attempt`` is stale."""
    if attempt is not None:
        job = _own_job(session, attempt)
        if job is None:
            _close_stale_run(session, attempt)
        else:
            close_own_run(session, attempt, StageRunStatus.FAILED, code, message)
    else:
        job = _lock_job(session, job_id)
        if job is not None and job.status_enum.is_final:
            job = None
    if job is None:
        return False
    note_error(job, job.stage, code, message)
    end_job(job, JobStatus.FAILED, code, message)
    return True


def retry_later(session: Session, attempt: Attempt, *, code: str, message: str, delay_seconds: float,
                spend_retry: bool = True) -> str:
    """A transient error: ``retrying`` (the job waits ``delay_seconds`` for a new dispatch),
    ``failed`` (retries used up) or ``stale``. ``spend_retry=False`` for an outage of the system's
    own infrastructure (the object store), which is waited out like a database outage."""
    job = _own_job(session, attempt)
    if job is None:
        _close_stale_run(session, attempt)
        return "stale"
    close_own_run(session, attempt, StageRunStatus.RETRYING, code, message)
    job.retry_count += 1 if spend_retry else 0
    note_error(job, attempt.stage.value, code, message)
    if job.retry_count > job.max_retries:
        end_job(job, JobStatus.FAILED, code, f"{message} (gave up after {job.max_retries} retries)")
        return "failed"
    set_status(job, JobStatus.QUEUED)
    job.error_code = code
    job.error_message = message[:MAX_ERROR_MESSAGE]
    job.leased_until = None
    job.worker_id = None
    job.dispatch += 1
    job.dispatch_due_at = utcnow() + dt.timedelta(seconds=delay_seconds)
    return "retrying"


def complete_job(session: Session, job: Job) -> None:
    end_job(job, JobStatus.COMPLETED, None, None)


def set_media_duration(session: Session, attempt: Attempt, seconds: float) -> bool:
    job = _own_job(session, attempt)
    if job is None:
        return False
    job.media_duration_seconds = seconds
    return True


def set_progress(session: Session, attempt: Attempt, progress: dict[str, Any]) -> bool:
    """Record the running stage's progress; False when the attempt no longer holds the job."""
    job = _own_job(session, attempt)
    if job is None:
        return False
    merged = dict(job.progress or {})
    merged[attempt.stage.value] = progress
    merged["stage"] = attempt.stage.value
    job.progress = merged
    return True


def charge_minutes(session: Session, attempt: Attempt, amount: float, limit: float | None,
                   day: dt.date) -> bool | None:
    """Reserve the job's minutes once: True if reserved (now or before), False if over the limit,
    None if the attempt no longer holds the job."""
    job = _own_job(session, attempt)
    if job is None:
        return None
    if job.minutes_charged is not None:
        return True  # a re-delivered stage never charges twice
    if not minutes.reserve(session, job.owner_user_id, amount, limit, day):
        return False
    job.minutes_charged = amount
    job.charged_day = day
    return True


def own_job_for_store(session: Session, attempt: Attempt) -> Job | None:
    """The locked job if ``attempt`` may write its results (see pipeline/store.py)."""
    return _own_job(session, attempt)


def close_stopped_run(session: Session, attempt: Attempt, reason: str) -> None:
    """The attempt noticed it no longer holds the job (cancelled, failed, taken over): close its run."""
    status = StageRunStatus.CANCELLED if reason == "cancelled" else StageRunStatus.STALE
    close_own_run(session, attempt, status, reason, f"stopped: job {reason}")


# --- Cancellation and deletion ----------------------------------------------------------------
def active_job_for(session: Session, job_id: int, principal: Principal) -> Job:
    """The caller's job, locked; 404 as ``get_job_for``, 409 ``job_final`` when it is final."""
    queries.get_job_for(session, job_id, principal)
    job = _lock_job(session, job_id)
    if job is None:
        raise NotFound(f"job {job_id} not found")
    if job.status_enum.is_final:
        raise Conflict(f"job {job_id} is already {job.status}", code="job_final")
    return job


def cancel_job(session: Session, job_id: int, principal: Principal) -> Job:
    job = active_job_for(session, job_id, principal)
    # A running attempt notices within about a second, stops and closes its own stage run.
    end_job(job, JobStatus.CANCELLED, "cancelled", f"cancelled by user {principal.user_id}")
    job.cancelled_at = job.completed_at
    return job


def delete_job(session: Session, job_id: int, principal: Principal) -> str:
    """Delete a final job and its results; its uuid (whose objects may go)."""
    job = queries.get_job_for(session, job_id, principal)
    if not job.status_enum.is_final:
        raise Conflict(f"job {job_id} is {job.status}; cancel it before deleting it", code="job_not_final")
    job_uuid = job.uuid
    session.delete(job)
    session.flush()
    return job_uuid
