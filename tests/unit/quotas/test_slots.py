"""Concurrency slots in a real Redis: atomic under races, expiring, never leaked."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import redis

from audiojobs.quotas.slots import Slots


def test_racing_acquirers_never_exceed_the_cap(redis_url: str) -> None:
    slots = Slots(redis.Redis.from_url(redis_url), ttl_seconds=60)
    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(lambda job: slots.acquire("u", job, 3), range(40)))
    assert results.count(True) == 3
    assert len(slots.holders("u")) == 3
    assert slots.acquire("u", 0, 3) or slots.acquire("u", min(slots.holders("u")), 3)  # a holder re-acquires


def test_expired_slots_are_usable_again(redis_url: str) -> None:
    slots = Slots(redis.Redis.from_url(redis_url), ttl_seconds=1)
    assert slots.acquire("u", 1, 1)
    assert not slots.acquire("u", 2, 1)
    time.sleep(1.2)  # the holder died and nothing renewed its slot
    assert slots.acquire("u", 2, 1)


def test_release_renew_and_refresh(redis_url: str) -> None:
    slots = Slots(redis.Redis.from_url(redis_url), ttl_seconds=60)
    assert slots.acquire("u", 1, 2) and slots.acquire("u", 2, 2)
    slots.release("u", 1)
    assert slots.holders("u") == {2}
    slots.refresh("u", keep=[5, 6], drop=[2])
    assert slots.holders("u") == {5, 6}
    assert slots.users_with_slots() == ["u"]
