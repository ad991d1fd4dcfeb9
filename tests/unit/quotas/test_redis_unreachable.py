"""What quotas do while Redis is unreachable: minutes keep working from the SQL ledger; the Redis
mirror is skipped (and rebuilt later); slots cannot be taken, so nothing is admitted."""

from __future__ import annotations

import pytest
import redis

from audiojobs.db import session_scope
from audiojobs.embedded_redis import free_port
from audiojobs.quotas import minutes
from audiojobs.quotas.slots import Slots


def test_minutes_are_enforced_from_the_ledger_without_redis(db_url: str) -> None:
    dead = redis.Redis(port=free_port(), socket_connect_timeout=0.2)
    day = minutes.utc_today()
    with session_scope(db_url) as session:
        assert minutes.reserve(session, "u", 0.6, limit=1.0, day=day)
        assert not minutes.reserve(session, "u", 0.6, limit=1.0, day=day)
        minutes.mirror(dead, "u", day, 0.6, 1)  # logged, not raised


def test_no_slot_can_be_taken_without_redis() -> None:
    slots = Slots(redis.Redis(port=free_port(), socket_connect_timeout=0.2), grace_seconds=10)
    with pytest.raises(redis.ConnectionError):
        slots.acquire("u", 1, 3)
