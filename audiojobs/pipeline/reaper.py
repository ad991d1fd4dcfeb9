"""The reaper, run by celery beat: nothing lost, whatever died.

Each pass (``AUDIO_REAPER_INTERVAL_SECONDS``):

1. jobs whose running stage lost its worker (the lease ran out, or the holder is a process of
   this host that is gone) are retried from that stage with ``retry_count + 1``, or end
   ``failed``/``lease_expired`` past ``max_retries``;
2. the broker epoch (pipeline/broker.py): if Redis came back empty, every active job that no
   live lease holds gets a new dispatch; a new Redis re-sends nothing;
3. the stall watchdog: an active job with no live lease, no due dispatch, no change for
   ``AUDIO_STALL_SECONDS`` and no message of its current dispatch in the broker (seen so on two
   passes) gets a new dispatch, or ends ``failed``/``stalled`` once rescued more than
   ``max_retries`` times;
4. every dispatch that is due and unpublished (retries after their backoff, the above, messages
   whose publishing failed) is published;
5. priority aging (jobs/priority.py): a message that waited in a queue while its job rose a level is
   sent again at that level;
6. the per-user slot sets are brought in line with the jobs table, and waiting jobs admitted;
   due webhook deliveries and lost analysis re-runs are sent.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

import redis
from celery import Celery

from audiojobs import metrics
from audiojobs.analysis import reruns as analyses
from audiojobs.config import Settings
from audiojobs.db import session_scope, utcnow
from audiojobs.jobs import admission, messages, priority, recovery
from audiojobs.jobs.flow import publish_and_mark
from audiojobs.pipeline import broker
from audiojobs.pipeline.guard import holder_is_dead
from audiojobs.quotas import minutes
from audiojobs.redis_client import redis_client
from audiojobs.users import service as users_service
from audiojobs.webhooks import service as webhooks

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReapReport:
    expired: int
    redispatched: int
    published: int
    broker_was_reset: bool  # Redis came back empty (not: a new Redis)
    admitted: int
    stalled: int = 0
    aged: int = 0


class Scan:
    """The broker's stage messages, read once per pass and only when a step needs them."""

    def __init__(self, settings: Settings, client: redis.Redis) -> None:
        self.settings, self.client = settings, client
        self._found: messages.JobMessages | None = None

    def __call__(self) -> messages.JobMessages:
        if self._found is None:
            self._found = messages.scan(self.client, broker.stage_queues(self.settings))
        return self._found


def watch_for_stalls(settings: Settings, celery: Celery, client: redis.Redis, scan: Scan) -> list[int]:
    """Step 3: rescue the jobs nothing will move; their ids."""
    unchanged_for = dt.timedelta(seconds=settings.effective_stall_seconds)
    with session_scope(settings.effective_database_url) as session:
        candidates = recovery.stall_candidates(session, unchanged_for)
    if not candidates:
        return []
    orphans = broker.confirmed(client, broker.without_messages(settings, celery, scan(), candidates))
    rescued = []
    for orphan in orphans:
        with session_scope(settings.effective_database_url) as session:
            outcome = recovery.rescue_stalled(session, orphan, unchanged_for)
        if outcome is None:
            continue
        rescued.append(orphan.job_id)
        metrics.count_stall(client, orphan.stage.value)
        log.warning("job %s stalled at %s (no lease, message or change for %d s, dispatch %s): %s",
                    orphan.job_id, orphan.stage.value, unchanged_for.total_seconds(), orphan.dispatch,
                    "dispatched again" if outcome == "rescued" else "failed: rescued too often")
    return rescued


def age_waiting(settings: Settings, celery: Celery, client: redis.Redis, scan: Scan) -> list[int]:
    """Step 5: messages that waited in a queue while their job aged a level (jobs/priority.py) are
    sent again at the level reached; the job ids."""
    if settings.priority_aging_seconds <= 0:
        return []
    now = utcnow()
    with session_scope(settings.effective_database_url) as session:
        candidates = recovery.aging_candidates(session, now - dt.timedelta(seconds=settings.priority_aging_seconds))
    raised = []
    for candidate in candidates:
        waiting = scan().queued.get((candidate.job_id, candidate.dispatch))
        level = priority.effective(candidate.priority, candidate.admitted_at, now, settings.priority_aging_seconds)
        if waiting is not None and waiting.level < level:
            messages.send_again(celery, client, waiting, candidate, level)
            raised.append(candidate.job_id)
    if raised:
        log.info("reaper: %d waiting jobs aged a priority level and were sent again", len(raised))
    return raised


def reap(settings: Settings, celery: Celery) -> ReapReport:
    db_url = settings.effective_database_url
    with session_scope(db_url) as session:
        expired = recovery.reap_expired_leases(session, holder_is_dead=holder_is_dead)
        recovery.close_abandoned_runs(session, dt.timedelta(seconds=settings.lease_seconds))
    client = redis_client(settings)
    epoch, redispatched = broker.renew_epoch(settings, client)
    scan = Scan(settings, client)
    stalled = watch_for_stalls(settings, celery, client, scan)
    with session_scope(db_url) as session:
        due = recovery.due_dispatches(session)
    for dispatch in due:
        publish_and_mark(settings, celery, dispatch)
    aged = age_waiting(settings, celery, client, scan)
    # Slots follow the jobs table (renewed, re-added after a Redis loss, freed for ended jobs),
    # then every waiting job that may start now is admitted.
    admission.reconcile_slots(settings)
    admitted = admission.admit(settings, celery)
    webhooks.dispatch_due(settings, celery)  # first sends that never happened, and retries now due
    analyses.redispatch_lost(settings, celery)
    report = ReapReport(len(expired), len(redispatched), len(due), epoch is broker.Epoch.LOST, admitted,
                        len(stalled), len(aged))
    if expired or redispatched or due or admitted or stalled or aged:
        log.info("reaper: %s", report)
    return report


def reset_quotas(settings: Settings, celery: Celery, user_id: str | None = None,
                 day: dt.date | None = None) -> dict[str, int]:
    """The daily reset (beat, AUDIO_QUOTA_RESET_CRON) and ``audiojobs quotas reset``: start the day's
    ledger rows, rebuild the Redis usage counters from the ledger, clear stale concurrency slots."""
    day = day or minutes.utc_today()
    client = redis_client(settings)
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
