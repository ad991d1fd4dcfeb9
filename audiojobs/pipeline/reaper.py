"""The reaper, run by celery beat: nothing lost, whatever died.

Each pass (``AUDIO_REAPER_INTERVAL_SECONDS``):

1. jobs whose running stage's lease ran out (the worker died or hangs) are retried from that
   stage with ``retry_count + 1``, or end ``failed``/``lease_expired`` past ``max_retries``;
2. if Redis came back empty (the epoch key is gone: a restart without persistence), every active
   job that no live lease holds gets a new dispatch;
3. every dispatch that is due and unpublished (retries after their backoff, the above, messages
   whose publishing failed) is published;
4. the per-user slot sets are brought in line with the jobs table, and waiting jobs admitted.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from celery import Celery

from audiojobs import webhooks
from audiojobs.analysis import reruns as analyses
from audiojobs.config import Settings
from audiojobs.db import session_scope, utcnow
from audiojobs.jobs import recovery
from audiojobs.pipeline import admission
from audiojobs.pipeline.flow import publish
from audiojobs.quotas import minutes
from audiojobs.users import service as users_service

log = logging.getLogger(__name__)

EPOCH_KEY = "audiojobs:broker_epoch"


@dataclass(frozen=True)
class ReapReport:
    expired: int
    redispatched: int
    published: int
    broker_was_reset: bool
    admitted: int


def reap(settings: Settings, celery: Celery) -> ReapReport:
    db_url = settings.effective_database_url
    with session_scope(db_url) as session:
        expired = recovery.reap_expired_leases(session)
        recovery.close_abandoned_runs(session, dt.timedelta(seconds=settings.lease_seconds))
    client = admission.redis_client(settings)
    redispatched: list[int] = []
    broker_was_reset = not client.exists(EPOCH_KEY)
    if broker_was_reset:
        with session_scope(db_url) as session:
            redispatched = recovery.redispatch_waiting(session)
        client.set(EPOCH_KEY, utcnow().isoformat())
    with session_scope(db_url) as session:
        due = recovery.due_dispatches(session)
    published = 0
    for dispatch in due:
        publish(celery, dispatch)
        with session_scope(db_url) as session:
            recovery.mark_published(session, dispatch)
        published += 1
    # Slots follow the jobs table (renewed, re-added after a Redis loss, freed for ended jobs),
    # then every waiting job that may start now is admitted.
    admission.reconcile_slots(settings)
    admitted = admission.admit(settings, celery)
    webhooks.dispatch_due(settings, celery)  # first sends that never happened, and retries now due
    analyses.redispatch_lost(settings, celery)
    report = ReapReport(len(expired), len(redispatched), published, broker_was_reset, admitted)
    if expired or redispatched or published or admitted:
        log.info("reaper: %s", report)
    return report


def reset_quotas(settings: Settings, celery: Celery, user_id: str | None = None,
                 day: dt.date | None = None) -> dict[str, int]:
    """The daily reset (beat, AUDIO_QUOTA_RESET_CRON) and ``audiojobs quotas reset``: start the day's
    ledger rows, rebuild the Redis usage counters from the ledger, clear stale concurrency slots."""
    day = day or minutes.utc_today()
    client = admission.redis_client(settings)
    with session_scope(settings.effective_database_url) as session:
        owners = [user_id] if user_id else sorted(set(users_service.all_user_ids(session, settings))
                                                  | set(recovery.admitted_active_jobs(session)))
        for owner in owners:
            minutes.start_day(session, owner, day)
    with session_scope(settings.effective_database_url) as session:
        mirrored = minutes.rebuild_mirror(session, client, day, user_id)
    cleared = admission.reconcile_slots(settings, user_id)
    admitted = admission.admit(settings, celery)
    report = {"users": len(owners), "counters_rebuilt": mirrored, "stale_slots_cleared": cleared,
              "admitted": admitted}
    log.info("quota reset for %s: %s", day, report)
    return report
