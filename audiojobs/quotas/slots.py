"""Per-user concurrency slots: one sorted set per user in Redis, members = job ids, scores = the
time the slot was taken.

Taking a slot is one Lua script (add if under the cap), so any number of API processes and workers
racing never admit more than the cap. A slot is held for as long as its job is admitted and not
final, however long the job waits in a queue between stages: it is freed when the job ends, and
the reaper brings the sets in line with the jobs table (slots of final or vanished jobs dropped,
slots of admitted jobs re-added after a Redis loss). A slot taken by a process that died before it
recorded the admission is dropped once it is older than the grace period, so nothing leaks.
"""

from __future__ import annotations

import enum
import time

import redis


class Taken(enum.IntEnum):
    """What ``Slots.acquire`` did."""

    FULL = 0  # the owner is at the cap: no slot
    NEW = 1  # this call took the slot: the caller admits the job, or gives the slot back
    HELD = 2  # the job already held one: someone else took it (admitting it now, or it was admitted)

_ACQUIRE = """
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  return 2
end
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
  return 1
end
return 0
"""


def slots_key(user_id: str) -> str:
    return f"audiojobs:slots:{user_id}"


class Slots:
    def __init__(self, client: redis.Redis, grace_seconds: float) -> None:
        self.client = client
        self.grace = grace_seconds
        self._acquire = client.register_script(_ACQUIRE)

    def acquire(self, user_id: str, job_id: int, cap: int) -> Taken:
        """Take a slot for the job if the owner is under the cap. Only the caller that got ``NEW``
        may give the slot back when the admission does not happen: two admitters racing for one job
        would otherwise both think the slot theirs, and the loser would free the winner's slot."""
        return Taken(int(self._acquire(keys=[slots_key(user_id)], args=[str(job_id), cap, time.time()])))

    def release(self, user_id: str, job_id: int) -> None:
        self.client.zrem(slots_key(user_id), str(job_id))

    def count(self, user_id: str) -> int:
        return int(self.client.zcard(slots_key(user_id)))

    def holders(self, user_id: str) -> set[int]:
        return set(self.members(user_id))

    def members(self, user_id: str) -> list[int]:
        return [int(m) for m in self.client.zrange(slots_key(user_id), 0, -1)]  # type: ignore[arg-type]

    def reconcile(self, user_id: str, admitted: list[int], final: set[int]) -> list[int]:
        """Make the user's set match the jobs table: ``admitted`` (active, admitted jobs) hold a slot,
        ``final`` jobs do not, and a slot of any other job is dropped once older than the grace period
        (taken by a process that died before it recorded the admission). The slots dropped."""
        key = slots_key(user_id)
        held = set(admitted)
        too_old = time.time() - self.grace
        scored: list[tuple[bytes, float]] = self.client.zrange(key, 0, -1, withscores=True)  # type: ignore[assignment]
        drop = [int(m) for m, taken in scored if int(m) not in held and (int(m) in final or taken < too_old)]
        pipe = self.client.pipeline()
        if drop:
            pipe.zrem(key, *[str(j) for j in drop])
        if held:
            pipe.zadd(key, {str(j): time.time() for j in held}, nx=True)
        pipe.execute()
        return drop

    def users_with_slots(self) -> list[str]:
        return [k.decode().rsplit(":", 1)[1] for k in self.client.scan_iter(match="audiojobs:slots:*")]
