"""Daily minutes: the ``audio_usage_daily`` ledger (source of truth) and its Redis mirror.

A job reserves its whole duration once it is known (after audio_convert), in one conditional
UPDATE, so concurrent reservations never overshoot the limit; the job row remembers the charge,
so a re-delivered stage never charges twice; a job that ends failed or cancelled gets it back.
"""

from __future__ import annotations

import datetime as dt
import logging

import redis
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from audiojobs.db import utcnow
from audiojobs.users.models import UsageDaily

log = logging.getLogger(__name__)

EPSILON = 1e-6  # minutes: float slack, so 30 s + 30 s fit in a 1-minute allowance


def utc_today(now: dt.datetime | None = None) -> dt.date:
    return (now or utcnow()).astimezone(dt.timezone.utc).date()


def resets_at(day: dt.date) -> dt.datetime:
    """When ``day``'s allowance is replaced by the next day's: the next 00:00 UTC."""
    return dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=dt.timezone.utc)


def _ensure_row(session: Session, user_id: str, day: dt.date) -> None:
    values = {"user_id": user_id, "day": day, "minutes_used": 0.0, "jobs_started": 0, "updated_at": utcnow()}
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    session.execute(insert(UsageDaily).values(**values).on_conflict_do_nothing())


def usage(session: Session, user_id: str, day: dt.date) -> tuple[float, int]:
    """(minutes used, jobs started) of ``user_id`` on ``day``."""
    row = session.get(UsageDaily, (user_id, day))
    return (row.minutes_used, row.jobs_started) if row is not None else (0.0, 0)


def reserve(session: Session, user_id: str, minutes: float, limit: float | None, day: dt.date) -> bool:
    """Add ``minutes`` to the day's usage if it stays within ``limit`` (None: unlimited); atomic."""
    _ensure_row(session, user_id, day)
    condition = [UsageDaily.user_id == user_id, UsageDaily.day == day]
    if limit is not None:
        condition.append(UsageDaily.minutes_used + minutes <= limit + EPSILON)
    result = session.execute(sa.update(UsageDaily).where(*condition).values(
        minutes_used=UsageDaily.minutes_used + minutes, updated_at=utcnow()))
    return getattr(result, "rowcount", 0) == 1


def give_back(session: Session, user_id: str, minutes: float, day: dt.date) -> None:
    session.execute(sa.update(UsageDaily).where(UsageDaily.user_id == user_id, UsageDaily.day == day).values(
        minutes_used=sa.case((UsageDaily.minutes_used > minutes, UsageDaily.minutes_used - minutes), else_=0.0),
        updated_at=utcnow()))


def start_day(session: Session, user_id: str, day: dt.date) -> None:
    """Open ``day``'s ledger row for ``user_id`` (at zero), if it is not there yet."""
    _ensure_row(session, user_id, day)


def count_job_started(session: Session, user_id: str, day: dt.date) -> None:
    _ensure_row(session, user_id, day)
    session.execute(sa.update(UsageDaily).where(UsageDaily.user_id == user_id, UsageDaily.day == day).values(
        jobs_started=UsageDaily.jobs_started + 1, updated_at=utcnow()))


# --- The Redis mirror ----------------------------------------------------------------------------
def counter_key(user_id: str, day: dt.date) -> str:
    return f"audiojobs:usage:{user_id}:{day.isoformat()}"


def mirror(client: redis.Redis, user_id: str, day: dt.date, minutes_used: float, jobs_started: int) -> None:
    """Copy one ledger row into Redis (kept 2 days). Best effort: the ledger is the truth."""
    try:
        key = counter_key(user_id, day)
        client.hset(key, mapping={"minutes_used": f"{minutes_used:.4f}", "jobs_started": jobs_started})
        client.expire(key, 2 * 86400)
    except redis.RedisError as exc:
        log.warning("usage counter for %s not mirrored to Redis: %r", user_id, exc)


def rebuild_mirror(session: Session, client: redis.Redis, day: dt.date, user_id: str | None = None) -> int:
    """Rewrite the Redis counters of ``day`` from the ledger; the number of rows copied."""
    query = sa.select(UsageDaily).where(UsageDaily.day == day)
    if user_id is not None:
        query = query.where(UsageDaily.user_id == user_id)
    rows = list(session.scalars(query))
    for row in rows:
        mirror(client, row.user_id, row.day, row.minutes_used, row.jobs_started)
    return len(rows)
