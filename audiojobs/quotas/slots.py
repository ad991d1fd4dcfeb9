"""Per-user concurrency slots: one sorted set per user in Redis, members = job ids, scores = expiry.

Taking a slot is one Lua script (drop expired members, then add if under the cap), so any number
of API processes and workers racing never admit more than the cap. A slot expires unless renewed
(heartbeats renew it while a stage runs, the reaper for every admitted job each pass), so a
crashed process never leaks one; the reaper also rebuilds the sets from the jobs table.
"""

from __future__ import annotations

import time

import redis

_ACQUIRE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  redis.call('ZADD', KEYS[1], ARGV[4], ARGV[1])
  return 1
end
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], ARGV[4], ARGV[1])
  redis.call('EXPIRE', KEYS[1], ARGV[5])
  return 1
end
return 0
"""


def slots_key(user_id: str) -> str:
    return f"audiojobs:slots:{user_id}"


class Slots:
    def __init__(self, client: redis.Redis, ttl_seconds: int) -> None:
        self.client = client
        self.ttl = ttl_seconds
        self._acquire = client.register_script(_ACQUIRE)

    def acquire(self, user_id: str, job_id: int, cap: int) -> bool:
        now = time.time()
        return bool(self._acquire(keys=[slots_key(user_id)],
                                  args=[str(job_id), cap, now, now + self.ttl, self.ttl * 4]))

    def renew(self, user_id: str, job_id: int) -> None:
        self.client.zadd(slots_key(user_id), {str(job_id): time.time() + self.ttl}, xx=True)

    def release(self, user_id: str, job_id: int) -> None:
        self.client.zrem(slots_key(user_id), str(job_id))

    def holders(self, user_id: str) -> set[int]:
        now = time.time()
        return {int(m) for m in self.client.zrangebyscore(slots_key(user_id), now, "+inf")}  # type: ignore[arg-type]

    def members(self, user_id: str) -> list[int]:
        return [int(m) for m in self.client.zrange(slots_key(user_id), 0, -1)]  # type: ignore[arg-type]

    def refresh(self, user_id: str, keep: list[int], drop: list[int]) -> None:
        """Renew (or re-add) the slots of ``keep``, remove those of ``drop``, in one transaction."""
        key = slots_key(user_id)
        pipe = self.client.pipeline()
        if drop:
            pipe.zrem(key, *[str(j) for j in drop])
        if keep:
            pipe.zadd(key, {str(j): time.time() + self.ttl for j in keep})
            pipe.expire(key, self.ttl * 4)
        pipe.execute()

    def clear(self, user_id: str) -> None:
        self.client.delete(slots_key(user_id))

    def users_with_slots(self) -> list[str]:
        return [k.decode().rsplit(":", 1)[1] for k in self.client.scan_iter(match="audiojobs:slots:*")]
