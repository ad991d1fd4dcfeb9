"""Recovery writes on Job rows: expired leases, abandoned runs, broker loss, and the dispatch outbox.

The reaper (pipeline/reaper.py) calls these; see service.py for the tokens they rely on. Every
function that changes a job's dispatch locks its row first, so it runs before or after a stage's
begin or end, never in between.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.orm import Session

from audiojobs.db import utcnow
from audiojobs.jobs import priority
from audiojobs.jobs.models import Job, StageRun
from audiojobs.jobs.runs import close_run
from audiojobs.jobs.service import (
    DISPATCH_GRACE,
    Dispatch,
    end_job,
    lose_attempt,
    note_error,
    set_status,
)
from audiojobs.jobs.states import ACTIVE_STATUSES, FINAL_STATUSES, PIPELINE, JobStatus, Stage, StageRunStatus


def reap_expired_leases(session: Session, holder_is_dead: Callable[[str], bool] | None = None) -> list[int]:
    """Jobs whose running attempt lost its worker: the lease ran out (the worker died or hangs), or
    ``holder_is_dead`` says the holder is a process of this host that is gone (no need to wait for
    its lease). Each is sent again from its stage, one retry spent, or fails past ``max_retries``."""
    now = utcnow()
    expired = (sa.select(Job).where(Job.status == JobStatus.PROCESSING.value, Job.leased_until.is_not(None),
                                    Job.leased_until < now).with_for_update(skip_locked=True))
    lost = [(job, "lease_expired", "whose lease ran out during") for job in session.scalars(expired)]
    if holder_is_dead is not None:  # read the holders unlocked; lock (and check again) only the dead
        live = sa.select(Job.id, Job.worker_id).where(Job.status == JobStatus.PROCESSING.value,
                                                      Job.leased_until >= now, Job.worker_id.is_not(None))
        dead = [job_id for job_id, holder in session.execute(live) if holder and holder_is_dead(holder)]
        if dead:
            held = (sa.select(Job).where(Job.id.in_(dead), Job.status == JobStatus.PROCESSING.value,
                                         Job.leased_until >= now).with_for_update(skip_locked=True))
            lost += [(job, "worker_lost", "stopped during") for job in session.scalars(held)
                     if job.worker_id and holder_is_dead(job.worker_id)]
    for job, code, what in lost:
        if lose_attempt(session, job, code, what):
            set_status(job, JobStatus.QUEUED)
            job.leased_until = None
            job.worker_id = None
            job.dispatch += 1
            job.dispatch_due_at = now
    return [job.id for job, _code, _what in lost]


def close_abandoned_runs(session: Session, older_than: dt.timedelta) -> int:
    """Stage runs still open on final jobs whose attempt never reported back (its worker died)."""
    cutoff = utcnow() - older_than
    runs = session.scalars(sa.select(StageRun).join(Job, Job.id == StageRun.job_id).where(
        StageRun.finished_at.is_(None), Job.status.in_([s.value for s in FINAL_STATUSES]), Job.updated_at < cutoff))
    count = 0
    for run in runs:
        close_run(run, StageRunStatus.LOST, "worker_lost", "its worker never reported back")
        count += 1
    return count


def redispatch_waiting(session: Session) -> list[int]:
    """The broker lost its messages: every active job not held by a live lease gets a new dispatch.

    Rows another transaction holds (a stage beginning or ending) are waited for, not skipped: once
    that commits, the row is read again, and a stage that began is left to its lease."""
    now = utcnow()
    query = (sa.select(Job).where(Job.status.in_(ACTIVE_STATUSES), Job.admitted_at.is_not(None),
                                  sa.or_(Job.leased_until.is_(None), Job.leased_until < now))
             .with_for_update())
    ids = []
    for job in session.scalars(query):
        job.dispatch += 1
        job.dispatch_due_at = now - DISPATCH_GRACE
        ids.append(job.id)
    return ids


def stall_candidates(session: Session, unchanged_for: dt.timedelta, limit: int = 1000) -> list[Dispatch]:
    """Active admitted jobs with no lease, no due dispatch and no change for ``unchanged_for``: each
    is either waiting in a queue or stranded; the reaper asks the broker which (pipeline/broker.py)."""
    cutoff = utcnow() - unchanged_for
    rows = session.execute(
        sa.select(Job.id, Job.dispatch, Job.stage).where(
            Job.status.in_(ACTIVE_STATUSES), Job.admitted_at.is_not(None), Job.leased_until.is_(None),
            Job.dispatch_due_at.is_(None), Job.updated_at < cutoff,
        ).order_by(Job.id).limit(limit)
    )
    return [Dispatch(job_id, dispatch, Stage(stage or PIPELINE[0].value)) for job_id, dispatch, stage in rows]


def aging_candidates(session: Session, admitted_before: dt.datetime, limit: int = 1000) -> list[Dispatch]:
    """Admitted active jobs below the top level, between stages (no lease, no due dispatch), admitted
    before ``admitted_before``: their waiting message may have aged a level (jobs/priority.py)."""
    rows = session.execute(
        sa.select(Job.id, Job.dispatch, Job.stage, Job.priority, Job.admitted_at).where(
            Job.status.in_(ACTIVE_STATUSES), Job.admitted_at.is_not(None), Job.admitted_at < admitted_before,
            Job.leased_until.is_(None), Job.dispatch_due_at.is_(None), Job.priority < priority.HIGHEST,
        ).order_by(Job.admitted_at).limit(limit)
    )
    return [Dispatch(job_id, dispatch, Stage(stage or PIPELINE[0].value), level, admitted)
            for job_id, dispatch, stage, level, admitted in rows]


def rescue_stalled(session: Session, stalled: Dispatch, unchanged_for: dt.timedelta) -> str | None:
    """A stranded job (no lease, no due dispatch, no message, no change): a new dispatch, due now
    (``rescued``), or ``failed`` / ``stalled`` once rescued more than ``max_retries`` times. None when
    the job moved meanwhile."""
    job = session.execute(sa.select(Job).where(Job.id == stalled.job_id).with_for_update()).scalar_one_or_none()
    if (job is None or job.status not in ACTIVE_STATUSES or job.dispatch != stalled.dispatch
            or job.leased_until is not None or job.dispatch_due_at is not None):
        return None
    job.stall_rescues += 1
    stage = job.stage or PIPELINE[0].value
    message = (f"no lease, message or change for {unchanged_for.total_seconds():.0f} s at {stage}"
               f" (rescue {job.stall_rescues})")
    note_error(job, stage, "stalled", message)
    if job.stall_rescues > job.max_retries:
        end_job(job, JobStatus.FAILED, "stalled", f"stalled {job.stall_rescues} times at {stage}; giving up")
        return "failed"
    job.dispatch += 1
    job.dispatch_due_at = utcnow() - DISPATCH_GRACE
    job.updated_at = utcnow()
    return "rescued"


def due_dispatches(session: Session, limit: int = 500) -> list[Dispatch]:
    """Dispatches that are due and that nobody else published: the reaper publishes them."""
    cutoff = utcnow() - DISPATCH_GRACE
    rows = session.execute(
        sa.select(Job.id, Job.dispatch, Job.stage, Job.priority, Job.admitted_at).where(
            Job.dispatch_due_at.is_not(None), Job.dispatch_due_at <= cutoff, Job.status.in_(ACTIVE_STATUSES)
        ).order_by(Job.dispatch_due_at).limit(limit)
    )
    return [Dispatch(job_id, dispatch, Stage(stage or PIPELINE[0].value), level, admitted)
            for job_id, dispatch, stage, level, admitted in rows]


def mark_published(session: Session, dispatch: Dispatch) -> None:
    session.execute(sa.update(Job).where(Job.id == dispatch.job_id, Job.dispatch == dispatch.dispatch)
                    .values(dispatch_due_at=None))


def mark_dispatch_due(session: Session, job_id: int, delay_seconds: float = 0.0) -> None:
    """Publishing the job's next message failed: let the reaper publish it."""
    session.execute(sa.update(Job).where(Job.id == job_id, Job.status.in_(ACTIVE_STATUSES))
                    .values(dispatch_due_at=utcnow() + dt.timedelta(seconds=delay_seconds)))



# --- Admission: jobs waiting for a concurrency slot ----------------------------------------------
def _waiting() -> list[sa.ColumnElement[bool]]:
    return [Job.status == JobStatus.QUEUED.value, Job.admitted_at.is_(None)]


def waiting_job_ids(session: Session, owner_user_id: str, limit: int) -> list[int]:
    """The owner's jobs waiting for a slot, highest priority first, then oldest first."""
    return list(session.scalars(sa.select(Job.id).where(*_waiting(), Job.owner_user_id == owner_user_id)
                                .order_by(Job.priority.desc(), Job.id).limit(limit)))


def waiting_owners(session: Session, aging_seconds: int = 0) -> list[tuple[str, int]]:
    """(owner, first waiting job) for every owner with waiting jobs. An owner's first job is their
    highest priority, oldest first; owners come by that job's level (aged since it was submitted,
    see jobs/priority.py), then round-robin: the owner whose latest admission is oldest (or who
    never had one) first."""
    groups = session.execute(sa.select(Job.owner_user_id, Job.priority, sa.func.min(Job.id),
                                       sa.func.min(Job.created_at)).where(*_waiting())
                             .group_by(Job.owner_user_id, Job.priority)).all()
    if not groups:
        return []
    firsts: dict[str, tuple[int, int, dt.datetime]] = {}
    for owner, level, first_id, since in groups:
        if owner not in firsts or level > firsts[owner][0]:
            firsts[owner] = (level, first_id, since)
    latest = dict(session.execute(sa.select(Job.owner_user_id, sa.func.max(Job.admitted_at))
                                  .where(Job.owner_user_id.in_(list(firsts))).group_by(Job.owner_user_id)).all())
    epoch = dt.datetime.min.replace(tzinfo=dt.timezone.utc)
    now = utcnow()

    def order(owner: str) -> tuple[int, dt.datetime, int]:
        level, first_id, since = firsts[owner]
        value = latest.get(owner)
        when = epoch if value is None else value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
        return -priority.effective(level, since, now, aging_seconds), when, first_id

    return [(owner, firsts[owner][1]) for owner in sorted(firsts, key=order)]


def count_admitted_unstarted(session: Session) -> int:
    return session.scalar(sa.select(sa.func.count()).select_from(Job).where(
        Job.status == JobStatus.QUEUED.value, Job.admitted_at.is_not(None), Job.started_at.is_(None))) or 0


def mark_admitted(session: Session, job_id: int) -> Dispatch | None:
    """The job got a slot: its first dispatch is due now. None if it is no longer waiting."""
    now = utcnow()
    result = session.execute(sa.update(Job).where(Job.id == job_id, *_waiting())
                             .values(admitted_at=now, dispatch_due_at=now, updated_at=now))
    if getattr(result, "rowcount", 0) != 1:
        return None
    dispatch, stage, level = session.execute(sa.select(Job.dispatch, Job.stage, Job.priority)
                                             .where(Job.id == job_id)).one()
    return Dispatch(job_id, dispatch, Stage(stage or PIPELINE[0].value), level, now)


def holds_slot(session: Session, job_id: int) -> bool:
    """The job is admitted and not final: it must hold its owner's slot."""
    return session.scalar(sa.select(sa.func.count()).select_from(Job).where(
        Job.id == job_id, Job.status.in_(ACTIVE_STATUSES), Job.admitted_at.is_not(None))) == 1


def admitted_active_jobs(session: Session) -> dict[str, list[int]]:
    """Owner -> ids of their active jobs that hold a slot (what the Redis slot sets must say)."""
    rows = session.execute(sa.select(Job.owner_user_id, Job.id).where(
        Job.status.in_(ACTIVE_STATUSES), Job.admitted_at.is_not(None)))
    held: dict[str, list[int]] = {}
    for owner, job_id in rows:
        held.setdefault(owner, []).append(job_id)
    return held
