"""Admission: which waiting jobs start now, within each owner's concurrency cap.

A submitted job waits (``queued``, no slot) until its owner has a free slot; then it is admitted
(``admitted_at``) and its chain is sent. Admission runs at submit, whenever a job ends or starts,
and on every reaper pass, so a freed slot is used at once. Waiting for a slot uses no retry and
no broker message.

Each owner's waiting jobs are admitted highest priority first (jobs/priority.py), then oldest first.
With ``AUDIO_JOBS_OWNER_STRICT=true`` admission is also fair across owners: at most
``AUDIO_STRICT_QUEUE_DEPTH`` admitted jobs wait unstarted in the broker, and the next one goes to
the owner whose first waiting job has the highest (aged) level, and among equals to the owner
whose latest admission is oldest (round-robin), so one user's backlog delays another user's job
of the same level by about one job's run time at most.
"""

from __future__ import annotations

import logging

import redis
from celery import Celery

from audiojobs.config import Settings
from audiojobs.db import session_scope
from audiojobs.jobs import queries, recovery
from audiojobs.jobs.flow import publish_and_mark
from audiojobs.quotas.limits import limits_for
from audiojobs.quotas.slots import Slots, Taken
from audiojobs.redis_client import redis_client

log = logging.getLogger(__name__)


def slots_for(settings: Settings) -> Slots:
    # The grace covers the moment between taking a slot and recording the admission, many times over.
    return Slots(redis_client(settings), grace_seconds=max(settings.lease_seconds * 2, settings.reaper_interval * 6))


def _cap(settings: Settings, owner: str) -> int:
    with session_scope(settings.effective_database_url) as session:
        return limits_for(session, settings, owner).concurrent_jobs


def _try_admit(settings: Settings, celery: Celery, slots: Slots, owner: str, job_id: int, cap: int) -> bool | None:
    """True: admitted and sent. False: the owner is at the cap. None: the job no longer waits, or
    another process is admitting it (it took the slot first)."""
    taken = slots.acquire(owner, job_id, cap)
    if taken is Taken.FULL:
        return False
    if taken is Taken.HELD:
        # Another admitter took this job's slot: it admits the job (or it already has). Should that
        # process have died in between, the reaper drops the slot after the grace period.
        return None
    with session_scope(settings.effective_database_url) as session:
        dispatch = recovery.mark_admitted(session, job_id)
        holds = dispatch is not None or recovery.holds_slot(session, job_id)
    if dispatch is None:
        if not holds:  # cancelled or ended meanwhile: the slot taken for it goes back
            slots.release(owner, job_id)
        return None
    publish_and_mark(settings, celery, dispatch)
    log.info("job %s admitted for owner %s", job_id, owner)
    return True


def admit(settings: Settings, celery: Celery, owner: str | None = None, cap: int | None = None) -> int:
    """Admit every waiting job that may start now (only ``owner``'s, whose concurrency cap is
    ``cap`` when the caller knows it); how many were admitted."""
    slots = slots_for(settings)
    db_url = settings.effective_database_url
    admitted = 0
    if settings.owner_strict:
        while True:
            with session_scope(db_url) as session:
                if recovery.count_admitted_unstarted(session) >= settings.strict_queue_depth:
                    return admitted
                candidates = recovery.waiting_owners(session, settings.priority_aging_seconds)
            for candidate_owner, job_id in candidates:
                if _try_admit(settings, celery, slots, candidate_owner, job_id, _cap(settings, candidate_owner)):
                    admitted += 1
                    break
            else:
                return admitted
    with session_scope(db_url) as session:
        owners = [owner] if owner is not None else [o for o, _first in recovery.waiting_owners(session)]
    for each in owners:
        each_cap = cap if cap is not None and each == owner else _cap(settings, each)
        if slots.count(each) >= each_cap:
            continue  # no slot free: nothing of theirs can start (the ones that end admit the next)
        with session_scope(db_url) as session:
            waiting = recovery.waiting_job_ids(session, each, limit=each_cap + 5)
        for job_id in waiting:
            outcome = _try_admit(settings, celery, slots, each, job_id, each_cap)
            if outcome is False:
                break
            admitted += outcome is True
    return admitted


def release(settings: Settings, celery: Celery, owner: str, job_id: int) -> None:
    """The job is final: free its slot and let the next waiting job in."""
    try:
        slots_for(settings).release(owner, job_id)
        admit(settings, celery, None if settings.owner_strict else owner)
    except redis.RedisError as exc:  # the reaper rebuilds the slot sets from the jobs table
        log.warning("job %s: slot not released now (%r); the reaper will", job_id, exc)


def reconcile_slots(settings: Settings, owner: str | None = None) -> int:
    """Bring the slot sets (of every owner, or of ``owner``) in line with the jobs table: every
    admitted active job holds a slot (re-added after a Redis loss), jobs that are final or gone do
    not. How many slots were dropped."""
    slots = slots_for(settings)
    members = {each: slots.members(each) for each in ([owner] if owner else slots.users_with_slots())}
    with session_scope(settings.effective_database_url) as session:
        held = recovery.admitted_active_jobs(session)
        finished = set(queries.final_job_ids(session, sorted({j for ids in members.values() for j in ids})))
    owners = [owner] if owner else sorted(set(held) | set(members))
    return sum(len(slots.reconcile(each, held.get(each, []), finished)) for each in owners)
