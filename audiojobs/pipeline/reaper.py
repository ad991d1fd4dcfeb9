"""The reaper, run by celery beat: nothing lost, whatever died.

Each pass (``AUDIO_REAPER_INTERVAL_SECONDS``):

1. jobs whose running stage's lease ran out (the worker died or hangs) are retried from that
   stage with ``retry_count + 1``, or end ``failed``/``lease_expired`` past ``max_retries``;
2. if Redis came back empty (the epoch key is gone: a restart without persistence), every active
   job that no live lease holds gets a new dispatch;
3. every dispatch that is due and unpublished (retries after their backoff, the above, messages
   whose publishing failed) is published.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from functools import lru_cache

import redis
from celery import Celery

from audiojobs.config import Settings
from audiojobs.db import session_scope, utcnow
from audiojobs.jobs import recovery
from audiojobs.pipeline.flow import publish

log = logging.getLogger(__name__)

EPOCH_KEY = "audiojobs:broker_epoch"


@dataclass(frozen=True)
class ReapReport:
    expired: int
    redispatched: int
    published: int
    broker_was_reset: bool


@lru_cache(maxsize=4)
def _redis(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)


def reap(settings: Settings, celery: Celery) -> ReapReport:
    db_url = settings.effective_database_url
    with session_scope(db_url) as session:
        expired = recovery.reap_expired_leases(session)
        recovery.close_abandoned_runs(session, dt.timedelta(seconds=settings.lease_seconds))
    assert settings.redis_url is not None
    client = _redis(settings.redis_url)
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
    report = ReapReport(len(expired), len(redispatched), published, broker_was_reset)
    if expired or redispatched or published:
        log.info("reaper: %s", report)
    return report
