"""Liveness (``/healthz``), readiness (``/readyz``) and Prometheus metrics (``/metrics``)."""

from __future__ import annotations

import logging

import redis
import sqlalchemy as sa
from flask import Blueprint, Response

from audiojobs import metrics as m
from audiojobs.api import responses as R
from audiojobs.api.auth import admin_required, current_settings
from audiojobs.api.openapi import TEXT, Answer, documented
from audiojobs.db import session_scope
from audiojobs.errors import ConfigError, StorageMisconfigured, StorageUnavailable
from audiojobs.jobs import queries
from audiojobs.jobs.messages import queue_depth
from audiojobs.redis_client import redis_client
from audiojobs.storage import open_store

log = logging.getLogger(__name__)
health = Blueprint("health", __name__)


@health.get("/healthz")
@documented(ok={200: R.Health}, auth=False, tag="health")
def healthz() -> Answer:
    """Liveness: the process serves requests"""
    return R.Health(status="ok")


@health.get("/readyz")
@documented(ok={200: R.Readiness, 503: R.Readiness}, auth=False, tag="health")
def readyz() -> Answer:
    """Readiness: the database, Redis and the object store answer"""
    settings = current_settings()
    checks: dict[str, str] = {}
    try:
        with session_scope(settings.effective_database_url) as session:
            session.execute(sa.text("SELECT 1"))
        checks["database"] = "ok"
    except sa.exc.SQLAlchemyError as exc:
        log.warning("readiness: database: %r", exc)
        checks["database"] = "unavailable"
    try:
        redis_client(settings).ping()
        checks["redis"] = "ok"
    except redis.RedisError as exc:
        log.warning("readiness: redis: %r", exc)
        checks["redis"] = "unavailable"
    try:
        open_store(settings).ready()
        checks["storage"] = "ok"
    except (StorageMisconfigured, ConfigError) as exc:
        log.warning("readiness: storage: %s", exc)
        checks["storage"] = "misconfigured"
    except StorageUnavailable as exc:
        log.warning("readiness: storage: %s", exc)
        checks["storage"] = "unavailable"
    ready = all(v == "ok" for v in checks.values())
    return R.Readiness(status="ready" if ready else "unavailable", checks=checks), 200 if ready else 503


@health.get("/metrics")
@documented(ok={200: None}, errors=(403,), tag="health", media={"text/plain": TEXT})
@admin_required
def metrics() -> Answer:
    """Prometheus metrics (admin)

    Jobs by status, stage durations, queue depth, quota refusals, transcription real-time factor.
    """
    settings = current_settings()
    with session_scope(settings.effective_database_url) as session:
        counts = queries.count_by_status(session, owner_user_id=None)
    client = redis_client(settings)
    queues = dict.fromkeys([settings.control_queue, settings.cpu_queue, settings.transcribe_queue])
    body = m.render(client, counts, {queue: queue_depth(client, queue) for queue in queues})
    return Response(body, mimetype="text/plain", headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})
