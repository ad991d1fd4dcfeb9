"""``Idempotency-Key`` on submit: the same key and body within ``AUDIO_IDEMPOTENCY_TTL_SECONDS``
return the job the first request made; the same key with another body is 409."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from audiojobs.db import utcnow
from audiojobs.errors import Conflict
from audiojobs.jobs.models import IdempotencyKey, Job


def payload_hash(payload: dict[str, Any]) -> str:
    public = {k: v for k, v in payload.items() if not k.startswith("_")}  # not the checked file's identity
    return hashlib.sha256(json.dumps(public, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def find_idempotent_job(session: Session, *, owner_user_id: str, key: str, payload: dict[str, Any],
                        ttl: dt.timedelta) -> Job | None:
    """The job an earlier submit with this key made (within ``ttl``); Conflict if its body differed."""
    row = session.scalar(sa.select(IdempotencyKey).where(IdempotencyKey.owner_user_id == owner_user_id,
                                                         IdempotencyKey.key == key))
    if row is None:
        return None
    if row.created_at < utcnow() - ttl:
        session.delete(row)
        session.flush()
        return None
    if row.body_hash != payload_hash(payload):
        raise Conflict("this Idempotency-Key was already used with a different request body",
                       code="idempotency_key_reused", field="Idempotency-Key")
    return session.get(Job, row.job_id)


def remember_idempotency_key(session: Session, *, owner_user_id: str, key: str, payload: dict[str, Any],
                             job_id: int) -> None:
    session.add(IdempotencyKey(owner_user_id=owner_user_id, key=key, body_hash=payload_hash(payload), job_id=job_id))
    session.flush()
