"""Webhook routes: a job's deliveries, sending one again, the caller's signing secret."""

from __future__ import annotations

from flask import Blueprint, current_app, g

from audiojobs.api import responses as R
from audiojobs.api.auth import current_settings, login_required
from audiojobs.api.openapi import Answer, documented
from audiojobs.api.schemas import parse_job_id
from audiojobs.db import session_scope
from audiojobs.jobs import usecases
from audiojobs.jobs.snapshot import iso_utc
from audiojobs.webhooks import service as webhooks

routes = Blueprint("audio_webhooks", __name__)


@routes.get("/jobs/<job_id>/deliveries")
@documented(ok={200: R.Deliveries}, errors=(404,))
@login_required
def deliveries(job_id: str) -> Answer:
    """Webhook deliveries of a job, with every try"""
    with session_scope(current_settings().effective_database_url) as session:
        job_key, rows = usecases.deliveries(session, g.principal, parse_job_id(job_id))
        return R.Deliveries(job_id=job_key, deliveries=[R.Delivery.of(d) for d in rows])


@routes.post("/jobs/<job_id>/deliveries/<delivery_id>/resend")
@documented(ok={202: R.Delivery}, errors=(404,))
@login_required
def resend(job_id: str, delivery_id: str) -> Answer:
    """Send a webhook event again

    A new delivery of the same event, with a new id, fresh tries and a fresh signature.
    """
    delivery = usecases.resend_delivery(current_settings(), current_app.extensions["celery"], g.principal,
                                        parse_job_id(job_id), delivery_id[:36])
    return R.Delivery.of(delivery), 202


@routes.get("/webhooks/secret")
@documented(ok={200: R.WebhookSecretOut}, tag="webhooks")
@login_required
def webhook_secret() -> Answer:
    """Your webhook signing secret (made on first use)

    Callbacks of your jobs are signed with it: X-Audiojobs-Signature is sha256= and the HMAC-SHA256 of
    X-Audiojobs-Timestamp, '.', and the body.
    """
    return _secret(rotate=False)


@routes.post("/webhooks/secret/rotate")
@documented(ok={200: R.WebhookSecretOut}, tag="webhooks")
@login_required
def rotate_webhook_secret() -> Answer:
    """Replace your webhook signing secret"""
    return _secret(rotate=True)


def _secret(rotate: bool) -> R.WebhookSecretOut:
    with session_scope(current_settings().effective_database_url) as session:
        secret, created = webhooks.user_secret_row(session, g.principal.user_id, rotate=rotate)
    return R.WebhookSecretOut(secret=secret, created_at=iso_utc(created) or "")
