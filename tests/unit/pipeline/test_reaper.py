"""The reaper against a real Redis and both databases, no worker: the broker epoch (a new Redis is
not a lost one) and the stall watchdog (a job waiting its turn is left alone; a job nothing will
move is dispatched again, then fails ``stalled``)."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

import pytest
import redis as redis_lib
import sqlalchemy as sa
from celery import Celery

from audiojobs import metrics
from audiojobs.celery_app import producer_app
from audiojobs.config import Settings
from audiojobs.db import session_scope, utcnow
from audiojobs.jobs import admission, messages, service
from audiojobs.jobs.models import Job, SystemState
from audiojobs.jobs.states import Stage
from audiojobs.pipeline import broker, reaper
from tests.conftest import make_settings


@pytest.fixture
def setup(db_url: str, redis_url: str, tmp_path: Path) -> tuple[Settings, Celery, redis_lib.Redis]:
    media = tmp_path / "media"
    media.mkdir()
    settings = make_settings(db_url, redis_url, tmp_path, media, AUDIO_STALL_SECONDS=30, AUDIO_JOBS_MAX_RETRIES=1)
    return settings, producer_app(settings), redis_lib.Redis.from_url(redis_url)


def _admitted_job(settings: Settings, celery: Celery) -> int:
    """A job admitted and sent to the broker (its chain waits in audio_cpu: no worker runs here)."""
    with session_scope(settings.effective_database_url) as s:
        job_id = service.create_job(s, owner_user_id="1", payload={"url": "https://e.com/a.mp3"},
                                    queue="audio_cpu", max_retries=settings.max_retries, request_id=None).id
    assert admission.admit(settings, celery) >= 1
    return job_id


def _job(settings: Settings, job_id: int) -> Job:
    with session_scope(settings.effective_database_url) as s:
        job = s.get(Job, job_id)
        assert job is not None
        return job


def _unchanged_for(settings: Settings, job_id: int, seconds: float) -> None:
    with session_scope(settings.effective_database_url) as s:
        s.execute(sa.update(Job).where(Job.id == job_id).values(updated_at=utcnow() - dt.timedelta(seconds=seconds)))


def _messages(client: redis_lib.Redis, settings: Settings) -> messages.JobMessages:
    return messages.scan(client, broker.stage_queues(settings))


def test_a_new_broker_is_not_a_lost_one(setup: tuple[Settings, Celery, redis_lib.Redis]) -> None:
    settings, celery, client = setup
    waiting = _admitted_job(settings, celery)
    running = _admitted_job(settings, celery)
    with session_scope(settings.effective_database_url) as s:
        assert service.begin_stage(s, running, Stage.DOWNLOAD, dispatch=1, worker_id="other-host:1",
                                   lease_seconds=60, holder_is_dead=lambda _h: False).attempt is not None
    # The first pass of a new system: no epoch anywhere. Nothing is re-sent, running or not.
    first = reaper.reap(settings, celery)
    assert (first.redispatched, first.broker_was_reset) == (0, False)
    assert (_job(settings, waiting).dispatch, _job(settings, running).dispatch) == (1, 1)
    assert reaper.reap(settings, celery).redispatched == 0
    # Redis comes back empty: now it is a loss. The waiting job is sent again; the running one keeps
    # its lease and its dispatch.
    client.flushdb()
    lost = reaper.reap(settings, celery)
    assert (lost.redispatched, lost.broker_was_reset) == (1, True)
    assert (_job(settings, waiting).dispatch, _job(settings, running).dispatch) == (2, 1)
    assert (waiting, 2) in _messages(client, settings).queued
    assert reaper.reap(settings, celery).redispatched == 0


def test_an_epoch_kept_in_redis_before_the_database_recorded_it_is_adopted(
        setup: tuple[Settings, Celery, redis_lib.Redis]) -> None:
    settings, celery, client = setup
    client.set(broker.EPOCH_KEY, "from-an-older-version")
    job_id = _admitted_job(settings, celery)
    assert reaper.reap(settings, celery).redispatched == 0
    with session_scope(settings.effective_database_url) as s:
        assert s.get(SystemState, broker.EPOCH_STATE).value == "from-an-older-version"  # type: ignore[union-attr]
    client.delete(broker.EPOCH_KEY)
    assert reaper.reap(settings, celery).redispatched == 1
    assert _job(settings, job_id).dispatch == 2


def test_a_job_waiting_its_turn_in_a_queue_is_not_stalled(setup: tuple[Settings, Celery, redis_lib.Redis]) -> None:
    settings, celery, client = setup
    job_id = _admitted_job(settings, celery)
    reaper.reap(settings, celery)
    for _ in range(3):  # unchanged far past AUDIO_STALL_SECONDS, but its message is in audio_cpu
        _unchanged_for(settings, job_id, 600)
        assert reaper.reap(settings, celery).stalled == 0
        time.sleep(broker.CONFIRM_SECONDS)
    job = _job(settings, job_id)
    assert (job.dispatch, job.stall_rescues, job.attempt_errors) == (1, 0, [])


def test_a_job_whose_message_vanished_is_rescued_then_fails_stalled(
        setup: tuple[Settings, Celery, redis_lib.Redis]) -> None:
    settings, celery, client = setup
    job_id = _admitted_job(settings, celery)
    reaper.reap(settings, celery)  # records the epoch: what follows is no broker loss
    client.delete(*messages.queue_keys([settings.cpu_queue]))  # the message is gone, the epoch is not
    _unchanged_for(settings, job_id, 10)
    assert reaper.reap(settings, celery).stalled == 0  # not before AUDIO_STALL_SECONDS (30)
    _unchanged_for(settings, job_id, 31)
    assert reaper.reap(settings, celery).stalled == 0  # seen once: a message may be changing hands
    time.sleep(broker.CONFIRM_SECONDS)
    report = reaper.reap(settings, celery)
    assert report.stalled == 1 and report.published == 1
    job = _job(settings, job_id)
    assert (job.status, job.dispatch, job.stall_rescues) == ("queued", 2, 1)
    assert [e["code"] for e in job.attempt_errors] == ["stalled"]
    assert (job_id, 2) in _messages(client, settings).queued  # sent again under the new dispatch
    text = metrics.render(client, {}, {}).decode()
    assert 'audiojobs_stalls_total{stage="audio_download"} 1.0' in text

    # Stranded again and again: past max_retries (1) rescues it fails, with its reason.
    client.delete(*messages.queue_keys([settings.cpu_queue]))
    _unchanged_for(settings, job_id, 31)
    reaper.reap(settings, celery)
    time.sleep(broker.CONFIRM_SECONDS)
    assert reaper.reap(settings, celery).stalled == 1
    job = _job(settings, job_id)
    assert (job.status, job.error_code, job.stall_rescues) == ("failed", "stalled", 2)
    assert [e["code"] for e in job.attempt_errors] == ["stalled", "stalled"]
    assert not admission.slots_for(settings).members("1")  # its concurrency slot went back


def test_a_message_taken_by_a_worker_that_died_does_not_keep_the_job_waiting(
        setup: tuple[Settings, Celery, redis_lib.Redis]) -> None:
    """A worker killed outright leaves the messages it had taken in Redis's unacked set until the
    visibility timeout (an hour and more): no live worker holds them, so the job is rescued."""
    settings, celery, client = setup
    job_id = _admitted_job(settings, celery)
    reaper.reap(settings, celery)
    key = next(k for k in messages.queue_keys([settings.cpu_queue]) if client.llen(k))  # the job's level's list
    raw = client.rpop(key)  # as kombu takes a message for a consumer
    assert raw is not None
    client.hset("unacked", "tag-1", json.dumps([json.loads(raw), "", settings.cpu_queue]))
    client.zadd("unacked_index", {"tag-1": time.time()})
    found = _messages(client, settings)
    assert not found.queued and list(found.taken) == [(job_id, 1)]
    _unchanged_for(settings, job_id, 31)
    reaper.reap(settings, celery)
    time.sleep(broker.CONFIRM_SECONDS)
    assert reaper.reap(settings, celery).stalled == 1
    assert _job(settings, job_id).dispatch == 2
