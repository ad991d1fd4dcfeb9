"""Priorities below the API, against a real Redis and both databases: the level each message is sent
at, the list kombu keeps it in, the reaper sending an aged message again, strict admission's order,
and the tiers' levels."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import redis as redis_lib
import sqlalchemy as sa
from celery import Celery

from audiojobs.celery_app import producer_app
from audiojobs.config import Settings
from audiojobs.db import session_scope, utcnow
from audiojobs.errors import ConfigError
from audiojobs.jobs import admission, flow, messages, priority, recovery, service
from audiojobs.jobs.attempts import Dispatch
from audiojobs.jobs.models import Job
from audiojobs.jobs.states import JobStatus, Stage
from audiojobs.pipeline import broker, reaper
from audiojobs.quotas.tiers import DEFAULT_TIERS, tier_table
from tests.conftest import make_settings

NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.timezone.utc)


@pytest.fixture
def setup(db_url: str, redis_url: str, tmp_path: Path) -> tuple[Settings, Celery, redis_lib.Redis]:
    media = tmp_path / "media"
    media.mkdir()
    settings = make_settings(db_url, redis_url, tmp_path, media, AUDIO_PRIORITY_AGING_SECONDS=60)
    return settings, producer_app(settings), redis_lib.Redis.from_url(redis_url)


def _job(settings: Settings, owner: str, level: int) -> int:
    with session_scope(settings.effective_database_url) as s:
        return service.create_job(s, owner_user_id=owner, payload={"url": "https://e.com/a.mp3"}, queue="audio_cpu",
                                  max_retries=1, request_id=None, priority=level).id


def _queued(settings: Settings, client: redis_lib.Redis) -> dict[int, messages.Queued]:
    return {job_id: m for (job_id, _d), m in messages.scan(client, broker.stage_queues(settings)).queued.items()}


def test_a_level_rises_one_step_per_aging_period_up_to_nine() -> None:
    assert priority.effective(2, NOW, NOW, 60) == 2
    assert priority.effective(2, NOW - dt.timedelta(seconds=59), NOW, 60) == 2
    assert priority.effective(2, NOW - dt.timedelta(seconds=181), NOW, 60) == 5
    assert priority.effective(2, NOW - dt.timedelta(hours=5), NOW, 60) == 9
    assert priority.effective(2, NOW - dt.timedelta(hours=5), NOW, 0) == 2  # aging off
    assert priority.effective(3, (NOW - dt.timedelta(seconds=120)).replace(tzinfo=None), NOW, 60) == 5  # SQLite's
    assert priority.effective(4, None, NOW, 60) == 4  # not admitted: nothing to age from
    # Redis serves message priority 0 first: level 9 is 0, level 0 is 9, and back.
    assert [priority.message_priority(level) for level in (0, 2, 9)] == [9, 7, 0]
    assert [priority.level_of_message(p) for p in (9, 7, 0, None)] == [0, 2, 9, 9]


def test_each_level_has_its_own_list_and_the_highest_comes_first(
        setup: tuple[Settings, Celery, redis_lib.Redis]) -> None:
    settings, celery, client = setup
    ids = {level: _job(settings, f"owner{level}", level) for level in (2, 6, 9, 4)}
    assert admission.admit(settings, celery) == 4
    found = _queued(settings, client)
    assert {found[ids[level]].level for level in ids} == set(ids)
    keys = messages.queue_keys([settings.cpu_queue])
    assert len(keys) == 10 and keys[0] == settings.cpu_queue
    # The order a worker's BRPOP reads the lists in (kombu: priority steps ascending) is level 9 first.
    order = sorted(ids, key=lambda level: keys.index(found[ids[level]].key))
    assert order == [9, 6, 4, 2]
    assert messages.queue_depth(client, settings.cpu_queue) == 4


def test_a_job_waiting_in_a_queue_ages_and_is_sent_again_once_per_level(
        setup: tuple[Settings, Celery, redis_lib.Redis]) -> None:
    settings, celery, client = setup
    low, top = _job(settings, "a", 2), _job(settings, "b", 9)
    admission.admit(settings, celery)
    reaper.reap(settings, celery)
    assert {job: m.level for job, m in _queued(settings, client).items()} == {low: 2, top: 9}
    with session_scope(settings.effective_database_url) as s:  # admitted 3 aging periods ago
        s.execute(sa.update(Job).values(admitted_at=utcnow() - dt.timedelta(seconds=185)))
    report = reaper.reap(settings, celery)
    assert report.aged == 1 and report.stalled == 0
    assert {job: m.level for job, m in _queued(settings, client).items()} == {low: 5, top: 9}
    assert messages.queue_depth(client, settings.cpu_queue) == 2  # the level-2 message was taken out
    assert reaper.reap(settings, celery).aged == 0  # nothing more until the next period
    with session_scope(settings.effective_database_url) as s:
        job = s.get(Job, low)
        assert job is not None and (job.dispatch, job.priority, job.attempt_errors) == (1, 2, [])


def test_the_next_stage_is_sent_at_the_jobs_level_of_that_moment(
        setup: tuple[Settings, Celery, redis_lib.Redis]) -> None:
    settings, _celery, _client = setup
    ahead = [{"task": "audiojobs.audio_store", "options": {"priority": 7}},
             {"task": "audiojobs.audio_chunk", "options": {"priority": 7}}]
    flow.next_at(settings, ahead, Dispatch(1, 1, Stage.CHUNK, 4, utcnow() - dt.timedelta(seconds=130)))
    assert [step["options"]["priority"] for step in ahead] == [7, 3]  # chunk (next): level 4 + 2 -> 6 -> 3
    chain = flow.pipeline_for(producer_app(settings), 5, 2, Stage.TRANSCRIBE, level=6)
    assert {task.options["priority"] for task in chain.tasks} == {3}


def test_strict_admission_takes_the_highest_aged_level_then_round_robin(
        setup: tuple[Settings, Celery, redis_lib.Redis]) -> None:
    settings, _celery, _client = setup
    first_free = _job(settings, "free", 2)
    _job(settings, "free", 2)
    premium = _job(settings, "premium", 6)
    other = _job(settings, "other", 6)
    with session_scope(settings.effective_database_url) as s:
        # Level 6 before 2; between equals (neither admitted before) the older job's owner.
        assert recovery.waiting_owners(s, 60) == [("premium", premium), ("other", other), ("free", first_free)]
        s.execute(sa.update(Job).where(Job.id == first_free).values(created_at=utcnow() - dt.timedelta(seconds=300)))
    with session_scope(settings.effective_database_url) as s:  # waited 5 periods: level 7, above premium's 6
        assert recovery.waiting_owners(s, 60)[0] == ("free", first_free)
        assert recovery.waiting_owners(s, 0)[-1] == ("free", first_free)  # without aging: last


def test_tiers_carry_a_level_premium_above_standard_above_free() -> None:
    assert DEFAULT_TIERS["premium"].priority > DEFAULT_TIERS["standard"].priority > DEFAULT_TIERS["free"].priority
    tiers = tier_table('{"free": {"priority": 1}, "gold": {"daily_minutes": null, "concurrent_jobs": 2, '
                       '"max_file_mb": 50}}')
    assert tiers["free"].priority == 1 and tiers["free"].concurrent_jobs == 1
    assert tiers["gold"].priority == DEFAULT_TIERS["free"].priority  # a new tier without one: free's level
    for bad in ('{"free": {"priority": 10}}', '{"free": {"priority": "high"}}', '{"free": {"priority": true}}'):
        with pytest.raises(ConfigError, match="priority must be an integer 0-9"):
            tier_table(bad)


def test_an_owners_waiting_jobs_are_admitted_highest_level_first(
        setup: tuple[Settings, Celery, redis_lib.Redis]) -> None:
    settings, celery, _client = setup
    first = _job(settings, "solo", 2)
    assert admission.admit(settings, celery, "solo", cap=1) == 1  # takes the one slot
    low, high, middle = _job(settings, "solo", 1), _job(settings, "solo", 8), _job(settings, "solo", 5)
    order = []
    for ended in (first, high, middle):
        with session_scope(settings.effective_database_url) as s:
            job = s.get(Job, ended)
            assert job is not None and job.admitted_at is not None
            service.end_job(job, JobStatus.CANCELLED, "cancelled", "test")
        admission.release(settings, celery, "solo", ended)
        with session_scope(settings.effective_database_url) as s:
            admitted = s.scalars(sa.select(Job.id).where(Job.admitted_at.is_not(None), Job.status == "queued")).all()
        order += list(admitted)
    assert order == [high, middle, low]
