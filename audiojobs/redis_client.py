"""The one Redis client of a process, per URL: concurrency slots, metrics, analysis cache, health."""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

import redis

if TYPE_CHECKING:
    from audiojobs.config import Settings


@lru_cache(maxsize=8)
def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)


def redis_client(settings: Settings) -> redis.Redis:
    assert settings.redis_url is not None
    return _client(settings.redis_url)
