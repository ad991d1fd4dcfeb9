"""Webhook routes: a job's deliveries, sending one again, the caller's signing secret."""

from __future__ import annotations

from flask import Blueprint, current_app, g, jsonify
from flask.typing import ResponseReturnValue

from audiojobs.api import responses as R
from audiojobs.api.auth import current_settings, login_required
from audiojobs.api.openapi import operation
from audiojobs.api.schemas import parse_job_id
from audiojobs.api.serializers import iso_utc
from audiojobs.db import session_scope
from audiojobs.jobs import usecases
from audiojobs.webhooks import service as webhooks

routes = Blueprint("audio_webhooks", __name__)


@routes.get("/jobs/<job_id>/deliveries")
@operation("Webhook deliveries of a job, with every try", responses={200: R.Deliveries}, errors=(404,))
@login_required
def deliveries(job_id: str) -> ResponseReturnValue:
    with session_scope(current_settings().effective_database_url) as session:
        job_key, rows = usecases.deliveries(session, g.principal, parse_job_id(job_id))
        return jsonify({"job_id": job_key, "deliveries": [webhooks.delivery_to_dict(d) for d in rows]})


@routes.post("/jobs/<job_id>/deliveries/<delivery_id>/resend")
@operation("Send a webhook event again", responses={202: R.Delivery}, errors=(404,),
           path_params={"delivery_id": {"type": "string", "format": "uuid"}},
           description="A new delivery of the same event, with a new id, fresh tries and a fresh signature.")
@login_required
def resend(job_id: str, delivery_id: str) -> ResponseReturnValue:
    body = usecases.resend_delivery(current_settings(), current_app.extensions["celery"], g.principal,
                                    parse_job_id(job_id), delivery_id[:36])
    return jsonify(body), 202


@routes.get("/webhooks/secret")
@operation("Your webhook signing secret (made on first use)", responses={200: R.WebhookSecretOut}, tag="webhooks",
           description="Callbacks of your jobs are signed with it: X-Audiojobs-Signature is sha256= and the "
                       "HMAC-SHA256 of X-Audiojobs-Timestamp, '.', and the body.")
@login_required
def webhook_secret() -> ResponseReturnValue:
    return _secret(rotate=False)


@routes.post("/webhooks/secret/rotate")
@operation("Replace your webhook signing secret", responses={200: R.WebhookSecretOut}, tag="webhooks")
@login_required
def rotate_webhook_secret() -> ResponseReturnValue:
    return _secret(rotate=True)


def _secret(rotate: bool) -> ResponseReturnValue:
    with session_scope(current_settings().effective_database_url) as session:
        secret, created = webhooks.user_secret_row(session, g.principal.user_id, rotate=rotate)
    return jsonify({"secret": secret, "created_at": iso_utc(created)})
