"""The caller's quota: minutes used and left today."""

from __future__ import annotations

from flask import Blueprint, g

from audiojobs.api import responses as R
from audiojobs.api.auth import current_settings, login_required
from audiojobs.api.openapi import Answer, documented
from audiojobs.db import session_scope
from audiojobs.jobs.snapshot import iso_utc
from audiojobs.quotas import minutes
from audiojobs.quotas.limits import limits_for, tier_of

routes = Blueprint("audio_quotas", __name__)


@routes.get("/usage")
@documented(ok={200: R.Usage}, tag="quotas")
@login_required
def usage() -> Answer:
    """The caller's minutes used and left today

    The caller's day: minutes used and left, jobs started, when it resets.
    """
    settings = current_settings()
    owner = g.principal.user_id
    today = minutes.utc_today()
    with session_scope(settings.effective_database_url) as session:
        limits = limits_for(session, settings, owner)
        used, started = minutes.usage(session, owner, today)
        tier = tier_of(session, settings, owner)
    limit = limits.daily_minutes
    return R.Usage(user_id=owner, tier=tier, day=today.isoformat(), minutes_used=round(used, 4), minutes_limit=limit,
                   minutes_remaining=None if limit is None else round(max(0.0, limit - used), 4),
                   jobs_started=started, concurrent_jobs_limit=limits.concurrent_jobs,
                   max_file_mb=limits.max_file_mb, priority=limits.priority,
                   resets_at=iso_utc(minutes.resets_at(today)))
