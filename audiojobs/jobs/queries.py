"""Reads of the jobs table that change nothing: one job (as its owner or an admin sees it), lists,
counts, and which jobs are final."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.orm import Session

from audiojobs.errors import NotFound
from audiojobs.jobs.models import Job
from audiojobs.jobs.states import ACTIVE_STATUSES, JobStatus
from audiojobs.users.principal import Principal


def count_queued(session: Session, owner_user_id: str) -> int:
    return session.scalar(sa.select(sa.func.count()).select_from(Job).where(
        Job.owner_user_id == owner_user_id, Job.status == JobStatus.QUEUED.value)) or 0


def get_job(session: Session, job_id: int) -> Job | None:
    return session.get(Job, job_id)


# Built once: every status read runs it.
_JOB_WITH_RUNS = sa.select(Job).options(orm.joinedload(Job.stage_runs)).where(Job.id == sa.bindparam("job_id"))


def get_job_for(session: Session, job_id: int, principal: Principal, with_runs: bool = False) -> Job:
    """The job, if ``principal`` owns it or is an admin; otherwise NotFound, as if it did not exist.
    ``with_runs``: its stage runs loaded in the same query."""
    if with_runs:
        job = session.execute(_JOB_WITH_RUNS, {"job_id": job_id}).unique().scalar_one_or_none()
    else:
        job = session.get(Job, job_id)
    if job is None or not (principal.is_admin or job.owner_user_id == principal.user_id):
        raise NotFound(f"job {job_id} not found")
    return job


@dataclass(frozen=True)
class JobFilter:
    """Which jobs a list shows: one owner's (None: everyone's), one status, a creation window."""

    owner_user_id: str | None = None
    status: JobStatus | None = None
    created_after: dt.datetime | None = None
    created_before: dt.datetime | None = None


def list_jobs(session: Session, where: JobFilter, limit: int, before_id: int | None = None) -> list[Job]:
    """Newest first (by id, the order of submission), at most ``limit``, only ids below ``before_id``:
    a keyset page, stable however many jobs arrive while a client pages through."""
    query = sa.select(Job).order_by(Job.id.desc()).limit(limit)
    if before_id is not None:
        query = query.where(Job.id < before_id)
    if where.status is not None:
        query = query.where(Job.status == where.status.value)
    if where.owner_user_id is not None:
        query = query.where(Job.owner_user_id == where.owner_user_id)
    if where.created_after is not None:
        query = query.where(Job.created_at >= where.created_after)
    if where.created_before is not None:
        query = query.where(Job.created_at < where.created_before)
    return list(session.scalars(query))


def batch_jobs(session: Session, batch_id: str) -> list[Job]:
    """A batch's jobs, in the order of its items."""
    return list(session.scalars(sa.select(Job).where(Job.batch_id == batch_id).order_by(Job.id)))


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
    live = set(session.scalars(sa.select(Job.id).where(Job.id.in_(job_ids), Job.status.in_(ACTIVE_STATUSES))))
    return set(job_ids) - live


def final_job_uuids(session: Session, job_uuids: list[str]) -> set[str]:
    """Which of ``job_uuids`` are final or gone: their objects and scratch copies may be removed."""
    if not job_uuids:
        return set()
    live = set(session.scalars(sa.select(Job.uuid).where(Job.uuid.in_(job_uuids),
                                                          Job.status.in_(ACTIVE_STATUSES))))
    return set(job_uuids) - live
