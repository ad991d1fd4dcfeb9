"""Refresh tokens that were logged out: their ids (``jti``) in Redis until they would have expired,
so every API process refuses them at once."""

from __future__ import annotations

import time

from audiojobs.config import Settings
from audiojobs.redis_client import redis_client


def _key(jti: str) -> str:
    return f"audiojobs:revoked-token:{jti}"


def revoke(settings: Settings, jti: str, expires_at: int) -> None:
    if jti:
        redis_client(settings).set(_key(jti), "1", ex=max(1, expires_at - int(time.time())))


def is_revoked(settings: Settings, jti: str) -> bool:
    return bool(jti) and bool(redis_client(settings).exists(_key(jti)))
