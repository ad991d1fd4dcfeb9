"""Concurrency slots in a real Redis: atomic under races, held for as long as the job is admitted,
never leaked."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import redis

from audiojobs.quotas.slots import Slots, Taken


def test_racing_acquirers_never_exceed_the_cap(redis_url: str) -> None:
    slots = Slots(redis.Redis.from_url(redis_url), grace_seconds=60)
    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(lambda job: slots.acquire("u", job, 3), range(40)))
    assert results.count(Taken.NEW) == 3 and results.count(Taken.FULL) == 37
    assert len(slots.holders("u")) == 3
    # A second admitter for a job that holds a slot is told so: the slot is not its to give back.
    assert slots.acquire("u", min(slots.holders("u")), 3) is Taken.HELD


def test_an_admitted_job_keeps_its_slot_however_long_it_waits(redis_url: str) -> None:
    slots = Slots(redis.Redis.from_url(redis_url), grace_seconds=0.5)
    assert slots.acquire("u", 1, 1)
    time.sleep(0.7)  # waiting in a queue between stages, longer than the grace period
    assert slots.reconcile("u", admitted=[1], final=set()) == []
    assert not slots.acquire("u", 2, 1)


def test_a_slot_whose_admission_was_never_recorded_is_dropped_after_the_grace(redis_url: str) -> None:
    slots = Slots(redis.Redis.from_url(redis_url), grace_seconds=0.5)
    assert slots.acquire("u", 1, 1)
    assert slots.reconcile("u", admitted=[], final=set()) == []  # taken a moment ago: may be admitting now
    time.sleep(0.7)  # the process that took it died before it recorded the admission
    assert slots.reconcile("u", admitted=[], final=set()) == [1]
    assert slots.acquire("u", 2, 1)


def test_release_and_reconcile(redis_url: str) -> None:
    slots = Slots(redis.Redis.from_url(redis_url), grace_seconds=60)
    assert slots.acquire("u", 1, 2) and slots.acquire("u", 2, 2)
    slots.release("u", 1)
    assert slots.holders("u") == {2}
    assert slots.reconcile("u", admitted=[5, 6], final={2}) == [2]  # 2 ended; 5 and 6 re-added after a loss
    assert slots.holders("u") == {5, 6}
    assert slots.users_with_slots() == ["u"]
