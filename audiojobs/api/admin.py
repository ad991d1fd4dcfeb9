"""Admin routes: every user's jobs, counts, queues and workers, tiers."""

from __future__ import annotations

import logging
import time

import redis
from flask import Blueprint, current_app, g, request
from kombu.exceptions import OperationalError as BrokerError

from audiojobs.api import responses as R
from audiojobs.api.auth import admin_required, current_settings
from audiojobs.api.openapi import Answer, documented
from audiojobs.api.schemas import (
    AdminListQuery,
    OwnerQuery,
    TierRequest,
    parse_job_list,
    parse_json_object,
    parse_model,
)
from audiojobs.config import Settings
from audiojobs.db import session_scope
from audiojobs.errors import Conflict, NotFound
from audiojobs.jobs import queries, usecases
from audiojobs.jobs.messages import queue_depth
from audiojobs.quotas.limits import known_tiers, limits_for, tier_of
from audiojobs.redis_client import redis_client
from audiojobs.users import service as users

log = logging.getLogger(__name__)
routes = Blueprint("audio_admin", __name__)


def _db_url() -> str:
    return current_settings().effective_database_url


@routes.get("/jobs/admin/list")
@documented(ok={200: R.JobList}, errors=(403,), tag="admin", query=AdminListQuery)
@admin_required
def admin_list() -> Answer:
    """List jobs (admin)

    Everyone's jobs, newest first, unless owner_user_id names one user; pages as GET /jobs does.
    """
    query = parse_job_list(request.args, AdminListQuery)
    with session_scope(_db_url()) as session:
        rows, cursor = usecases.list_jobs(session, g.principal, query.where(query.owner_user_id), query.limit,
                                          query.cursor)
        return R.JobList(jobs=[R.Job.of(job) for job in rows], next_cursor=cursor)


@routes.get("/jobs/admin/summary")
@documented(ok={200: R.StatusSummary}, errors=(403,), tag="admin", query=OwnerQuery)
@admin_required
def admin_summary() -> Answer:
    """Job counts by status (admin)"""
    owner = request.args.get("owner_user_id") or None
    with session_scope(_db_url()) as session:
        counts = queries.count_by_status(session, owner_user_id=owner)
    return R.StatusSummary(counts_by_status=counts, total=sum(counts.values()), owner_user_id=owner)


@routes.get("/jobs/admin/owner/<owner_user_id>/processing")
@documented(ok={200: R.OwnerProcessing}, errors=(403,), tag="admin")
@admin_required
def admin_owner_processing(owner_user_id: str) -> Answer:
    """A user's processing jobs and concurrency cap (admin)"""
    settings = current_settings()
    with session_scope(settings.effective_database_url) as session:
        processing = queries.count_processing(session, owner_user_id)
        limit = limits_for(session, settings, owner_user_id).concurrent_jobs
    return R.OwnerProcessing(owner_user_id=owner_user_id, processing=processing, limit=limit)


@routes.get("/jobs/admin/queues")
@documented(ok={200: R.QueueDepths}, errors=(403,), tag="admin")
@admin_required
def admin_queues() -> Answer:
    """Queue depths and the workers online (admin)

    Depth of each queue (its Redis lists, every priority level together) and the workers that answer a 1-second ping.
    """
    settings = current_settings()
    names = list(dict.fromkeys([settings.control_queue, settings.cpu_queue, settings.transcribe_queue]))
    client = redis_client(settings)
    depths = {name: queue_depth(client, name) for name in names}
    return R.QueueDepths(queues=depths, workers=_workers_online())


WORKERS_TTL = 5.0


def _workers_online() -> dict[str, list[str]]:
    """Workers and their queues, from a 1-second broadcast; kept 5 s so polling dashboards do not
    make every request wait for the broadcast."""
    cached = current_app.extensions.get("audiojobs_workers")
    now = time.monotonic()
    if cached is not None and now - cached[0] < WORKERS_TTL:
        return dict(cached[1])
    try:
        active = current_app.extensions["celery"].control.inspect(timeout=1.0).active_queues() or {}
    except (BrokerError, OSError, redis.RedisError) as exc:
        log.warning("admin queues: workers not inspected: %r", exc)
        active = {}
    workers = {name: sorted(q["name"] for q in queues) for name, queues in sorted(active.items())}
    current_app.extensions["audiojobs_workers"] = (now, workers)
    return workers


def _tier_body(user_id: str, tier: str, settings: Settings) -> R.TierOut:
    return R.TierOut(user_id=user_id, tier=tier, limits=R.TierLimitsOut(**known_tiers(settings)[tier].to_dict()))


@routes.get("/jobs/admin/tiers/<user_id>")
@documented(ok={200: R.TierOut}, errors=(403, 404), tag="admin")
@admin_required
def admin_get_tier(user_id: str) -> Answer:
    """A user's tier and limits (admin)"""
    settings = current_settings()
    with session_scope(settings.effective_database_url) as session:
        tier = tier_of(session, settings, user_id)
    if tier is None:
        raise NotFound(f"user {user_id} not found")
    return _tier_body(user_id, tier, settings)


@routes.put("/jobs/admin/tiers/<user_id>")
@documented(ok={200: R.TierOut}, errors=(403, 404, 409), tag="admin", json=TierRequest)
@admin_required
def admin_set_tier(user_id: str) -> Answer:
    """Set a user's tier (admin, multi-user mode)"""
    settings = current_settings()
    req = parse_model(TierRequest, parse_json_object(request.get_data(cache=False)))
    if settings.auth_mode == "single_user":
        raise Conflict("in single-user mode the tier is AUDIOJOBS_SINGLE_USER_TIER", code="single_user_tier_fixed")
    with session_scope(settings.effective_database_url) as session:
        user = users.get_user(session, user_id)
        if user is None:
            raise NotFound(f"user {user_id} not found")
        users.set_tier(session, user, req.tier, set(known_tiers(settings)))
    return _tier_body(user_id, req.tier, settings)
