"""Job priorities: levels 0-9 (9 first), how they age, and what the broker is told.

A job's ``priority`` is its level: its owner's tier default (``AUDIO_TIER_LIMITS_JSON`` key
``priority``; free 2, standard 4, premium 6) or what an admin gave it. Higher levels start first
everywhere: admission (each owner's waiting jobs, and across owners with
``AUDIO_JOBS_OWNER_STRICT``) and every broker queue (CPU, transcription), through Celery message
priorities on the Redis transport (celeryconfig: one Redis list per level).

**Aging.** An admitted job rises one level per ``AUDIO_PRIORITY_AGING_SECONDS`` since its
admission, up to 9; a waiting job (not yet admitted) rises the same way since it was submitted, in
strict admission. Each stage message is sent at the job's level of that moment, and the reaper sends
a message that has waited in a queue again at the level it has reached (taking the old one out), so
no job waits behind a steady stream of higher work for longer than ``(9 - level) x aging`` plus one
reaper interval before it is level 9, where messages are served oldest first.
"""

from __future__ import annotations

import datetime as dt

LOWEST = 0
HIGHEST = 9


def effective(level: int, since: dt.datetime | None, now: dt.datetime, aging_seconds: int) -> int:
    """``level`` raised one step per ``aging_seconds`` elapsed since ``since``, at most HIGHEST."""
    if since is None or aging_seconds <= 0:
        return level
    if since.tzinfo is None:
        since = since.replace(tzinfo=dt.timezone.utc)
    steps = int(max(0.0, (now - since).total_seconds()) // aging_seconds)
    return min(HIGHEST, level + steps) if level < HIGHEST else level


def message_priority(level: int) -> int:
    """The Celery message priority of a level. The Redis transport serves 0 first, so it is the
    level reversed (level 9 -> 0)."""
    return HIGHEST - max(LOWEST, min(HIGHEST, level))


def level_of_message(priority: int | None) -> int:
    """The level a message was sent at (no priority: kombu's default 0, i.e. level 9)."""
    return HIGHEST - max(LOWEST, min(HIGHEST, int(priority or 0)))
