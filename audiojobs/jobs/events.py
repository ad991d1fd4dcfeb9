"""Job change notifications: every committed change of a job's status, stage, progress or retry
count is published on Redis (channel ``audiojobs:job:<id>``) with the job's fields, by whichever
process made it (a worker, the reaper, the API). ``GET /jobs/{id}/events`` subscribes, so it streams
every change, the shortest stage included, without reading the database per open stream.

Publishing is best effort: the database stays the truth, and a stream that hears nothing for a
while reads the row again. A process publishes for the databases whose Redis it was told of
(:func:`publish_to`, called where Celery is configured: every worker and every API app).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Generator
from typing import Any

import redis
from redis.client import PubSub
from sqlalchemy import event, inspect
from sqlalchemy.orm import Session

from audiojobs.config import Settings
from audiojobs.db import session_scope
from audiojobs.jobs import queries
from audiojobs.jobs.models import Job
from audiojobs.jobs.snapshot import job_fields
from audiojobs.jobs.states import FINAL_STATUS_VALUES
from audiojobs.redis_client import redis_client
from audiojobs.users.principal import Principal

log = logging.getLogger(__name__)

WATCHED = ("status", "stage", "progress", "retry_count")
_PENDING = "audiojobs_changed_jobs"
_targets: dict[str, Settings] = {}  # database URL -> the settings naming its Redis


def publish_to(settings: Settings) -> None:
    """Publish the changes of jobs in ``settings``' database to its Redis."""
    if settings.redis_url:
        _targets[settings.effective_database_url] = settings


def channel(job_id: int) -> str:
    return f"audiojobs:job:{job_id}"


@event.listens_for(Session, "before_flush")
def _note_changes(session: Session, _context: Any, _instances: Any) -> None:
    if session.info.get("db_url") not in _targets:
        return
    for obj in (*session.new, *session.dirty):
        if isinstance(obj, Job) and (obj in session.new or any(
                inspect(obj).attrs[name].history.has_changes() for name in WATCHED)):
            session.info.setdefault(_PENDING, set()).add(obj)


@event.listens_for(Session, "after_commit")
def _publish(session: Session) -> None:
    jobs: set[Job] = session.info.pop(_PENDING, set())
    settings = _targets.get(session.info.get("db_url", ""))
    if not jobs or settings is None:
        return
    client = redis_client(settings)
    for job in sorted(jobs, key=lambda j: j.id):
        try:
            client.publish(channel(job.id), json.dumps(job_fields(job)))
        except redis.RedisError as exc:
            log.warning("job %s: change not published (%r); event streams read the row instead", job.id, exc)


@event.listens_for(Session, "after_rollback")
def _forget(session: Session) -> None:
    session.info.pop(_PENDING, None)


QUIET_RECHECK_SECONDS = 5.0  # a stream that heard nothing this long reads the row (a lost publish)
KEEPALIVE_SECONDS = 15.0


def _state(fields: dict[str, Any]) -> tuple[Any, ...]:
    return fields["status"], fields["stage"], fields["progress"], fields["retry_count"]


def follow(settings: Settings, principal: Principal, job_id: int,
           max_seconds: float) -> Generator[dict[str, Any] | None, None, None]:
    """The job's fields now, then at each change of its status, stage, progress or retry count,
    until it is final or ``max_seconds`` pass; None now and then while nothing changes (a
    keep-alive). NotFound before anything when the job is not the caller's."""
    db_url = settings.effective_database_url

    def read() -> dict[str, Any]:
        with session_scope(db_url) as session:
            return job_fields(queries.get_job_for(session, job_id, principal))

    listening = redis_client(settings).pubsub(ignore_subscribe_messages=True)
    pubsub: PubSub | None = listening
    try:
        listening.subscribe(channel(job_id))  # before the first read: no change falls in between
    except redis.RedisError as exc:
        log.warning("job %s: events not subscribed (%r); the stream reads the row instead", job_id, exc)
        listening.close()
        pubsub = None
    try:
        current = read()
        yield current
        last, heard, sent = current, time.monotonic(), time.monotonic()
        deadline = heard + max_seconds
        while last["status"] not in FINAL_STATUS_VALUES and time.monotonic() < deadline:
            message = _next_message(pubsub, min(1.0, max(0.0, deadline - time.monotonic())))
            fields = None
            if message is not None:
                fields, heard = json.loads(message), time.monotonic()
            elif time.monotonic() - heard >= QUIET_RECHECK_SECONDS:
                fields, heard = read(), time.monotonic()
            # Newer than what was sent (a message may trail the first read) and a change: an event.
            if fields is not None and _state(fields) != _state(last) \
                    and (fields["updated_at"] or "") >= (last["updated_at"] or ""):
                last, sent = fields, time.monotonic()
                yield fields
            elif time.monotonic() - sent >= KEEPALIVE_SECONDS:
                sent = time.monotonic()
                yield None
    finally:
        if pubsub is not None:
            pubsub.close()


def _next_message(pubsub: PubSub | None, timeout: float) -> bytes | None:
    if pubsub is None:
        time.sleep(timeout)
        return None
    try:
        message = pubsub.get_message(timeout=timeout)
    except redis.RedisError:
        time.sleep(timeout)
        return None
    return message["data"] if message is not None and message.get("type") == "message" else None
