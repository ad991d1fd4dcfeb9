"""Signed webhooks: a job's ``callback_url`` hears ``job.completed``, ``job.failed`` and ``job.cancelled``.

An outbox: the delivery row is written in the same transaction that makes the job final, so an
event is never lost to a crash; it is then sent at once (``dispatch_due`` after the commit) and by
every reaper pass for anything due (a retry, or a send that never happened). Each try is a POST
through the same guarded egress proxy as URL downloads (the SSRF guard checks the address it
connects to), logged on the delivery; a non-2xx answer or an error is tried again after
``AUDIO_WEBHOOK_BACKOFF_SECONDS``, doubling, up to ``AUDIO_WEBHOOK_MAX_ATTEMPTS`` tries. Delivery is
at least once: receivers de-duplicate by ``X-Audiojobs-Delivery``.

Signature: ``X-Audiojobs-Signature: sha256=HEX``, the HMAC-SHA256 of ``TIMESTAMP + "." + BODY``
with the owner's secret, ``TIMESTAMP`` (Unix seconds) in ``X-Audiojobs-Timestamp``. A user's own
secret (``GET /api/v1/audio/webhooks/secret`` makes one) wins; else ``AUDIO_WEBHOOK_SECRET``; a user
with neither gets one made at the first event.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import secrets
import time
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from audiojobs.config import Settings
from audiojobs.db import session_scope, utcnow
from audiojobs.net.egress import EgressProxy
from audiojobs.net.urlguard import Refused, UrlPolicy
from audiojobs.webhooks.models import WebhookDelivery, WebhookSecret
from audiojobs.webhooks.states import DeliveryStatus, moved

if TYPE_CHECKING:
    from audiojobs.jobs.models import Job

log = logging.getLogger(__name__)

EVENTS = {"completed": "job.completed", "failed": "job.failed", "cancelled": "job.cancelled"}
CLAIM_SECONDS = 60  # a published try owns its delivery this long before a reaper pass may send it again
MAX_LOGGED_BODY = 500


def _iso(when: dt.datetime | None) -> str | None:
    return None if when is None else when.isoformat().replace("+00:00", "Z")


# --- the outbox ----------------------------------------------------------------------------------
def record_event(session: Session, job: Job) -> WebhookDelivery | None:
    """In the transaction that made ``job`` final: the event for its callback_url, if it has one."""
    url = (job.payload or {}).get("callback_url")
    event = EVENTS.get(job.status)
    if not url or event is None:
        return None
    delivery = WebhookDelivery(job_id=job.id, owner_user_id=job.owner_user_id, event=event, url=url, body="",
                               status=DeliveryStatus.PENDING.value, attempts=0, next_attempt_at=utcnow(), log=[])
    session.add(delivery)
    session.flush()  # the uuid and id go into the body
    delivery.body = json.dumps({
        "event": event, "delivery_id": delivery.uuid, "created_at": _iso(utcnow()),
        "job": {"id": job.id, "uuid": job.uuid, "status": job.status, "stage": job.stage,
                "error_code": job.error_code, "error_message": job.error_message,
                "owner_user_id": job.owner_user_id, "created_at": _iso(job.created_at),
                "completed_at": _iso(job.completed_at), "media_duration_seconds": job.media_duration_seconds,
                "result_url": f"/api/v1/audio/jobs/{job.id}/result"},
    }, separators=(",", ":"))
    return delivery


def resend(session: Session, delivery: WebhookDelivery) -> WebhookDelivery:
    """The same event sent again as a new delivery (new id, fresh tries and signature)."""
    body = json.loads(delivery.body)
    again = WebhookDelivery(job_id=delivery.job_id, owner_user_id=delivery.owner_user_id, event=delivery.event,
                            url=delivery.url, body="", status=DeliveryStatus.PENDING.value, attempts=0,
                            next_attempt_at=utcnow(), log=[], resent_from=delivery.uuid)
    session.add(again)
    session.flush()
    body["delivery_id"] = again.uuid
    body["created_at"] = _iso(utcnow())
    again.body = json.dumps(body, separators=(",", ":"))
    return again


def dispatch_due(settings: Settings, celery: Any, limit: int = 100) -> int:
    """Publish a try for every pending delivery that is due; each claimed for CLAIM_SECONDS."""
    with session_scope(settings.effective_database_url) as session:
        due = list(session.scalars(
            sa.select(WebhookDelivery).where(WebhookDelivery.status == DeliveryStatus.PENDING.value,
                                             WebhookDelivery.next_attempt_at <= utcnow())
            .order_by(WebhookDelivery.next_attempt_at).limit(limit).with_for_update(skip_locked=True)))
        for delivery in due:
            delivery.next_attempt_at = utcnow() + dt.timedelta(seconds=CLAIM_SECONDS)
        ids = [d.id for d in due]
    for delivery_id in ids:
        celery.send_task("audiojobs.deliver_webhook", args=[delivery_id])
    return len(ids)


def dispatch_quietly(settings: Settings, celery: Any) -> None:
    """After a job ended: send its event now rather than at the next reaper pass."""
    try:
        dispatch_due(settings, celery)
    except Exception as exc:  # noqa: BLE001 - the reaper sends whatever is due on its next pass
        log.warning("webhook dispatch deferred to the reaper: %r", exc)


# --- secrets and signatures --------------------------------------------------------------------
def user_secret(session: Session, owner_user_id: str, rotate: bool = False) -> str:
    """The user's own signing secret, made on first use (or replaced when ``rotate``)."""
    return user_secret_row(session, owner_user_id, rotate=rotate)[0]


def user_secret_row(session: Session, owner_user_id: str, rotate: bool = False) -> tuple[str, dt.datetime]:
    """The user's own signing secret (made on first use, replaced when ``rotate``) and when it was made."""
    row = session.get(WebhookSecret, owner_user_id)
    if row is None:
        row = WebhookSecret(owner_user_id=owner_user_id, secret=secrets.token_hex(32), created_at=utcnow())
        session.add(row)
    elif rotate:
        row.secret = secrets.token_hex(32)
        row.created_at = utcnow()
    session.flush()
    return row.secret, row.created_at


def deliveries_of(session: Session, job_id: int) -> list[WebhookDelivery]:
    """A job's deliveries, oldest first."""
    return list(session.scalars(sa.select(WebhookDelivery).where(WebhookDelivery.job_id == job_id)
                                .order_by(WebhookDelivery.id)))


def delivery_of(session: Session, job_id: int, delivery_uuid: str) -> WebhookDelivery | None:
    return session.scalar(sa.select(WebhookDelivery).where(WebhookDelivery.job_id == job_id,
                                                           WebhookDelivery.uuid == delivery_uuid))


def secret_for(session: Session, settings: Settings, owner_user_id: str) -> str:
    row = session.get(WebhookSecret, owner_user_id)
    if row is not None:
        return row.secret
    return settings.webhook_secret or user_secret(session, owner_user_id)


def sign(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


# --- one try -------------------------------------------------------------------------------------
def deliver(settings: Settings, delivery_id: int) -> str | None:
    """Send one try of a delivery; its status afterwards (None: nothing to send)."""
    with session_scope(settings.effective_database_url) as session:
        delivery = session.get(WebhookDelivery, delivery_id)
        if delivery is None or delivery.status != DeliveryStatus.PENDING.value:
            return None
        secret = secret_for(session, settings, delivery.owner_user_id)
        url, body, event, uuid = delivery.url, delivery.body.encode(), delivery.event, delivery.uuid
    timestamp = int(time.time())
    headers = {"Content-Type": "application/json", "User-Agent": "audiojobs-webhooks/1",
               "X-Audiojobs-Event": event, "X-Audiojobs-Delivery": uuid,
               "X-Audiojobs-Timestamp": str(timestamp), "X-Audiojobs-Signature": sign(secret, timestamp, body)}
    started = time.perf_counter()
    status_code, error = _post(settings, url, body, headers)
    entry = {"at": _iso(utcnow()), "status_code": status_code, "error": error,
             "duration_ms": round((time.perf_counter() - started) * 1000, 1)}
    with session_scope(settings.effective_database_url) as session:
        delivery = session.get(WebhookDelivery, delivery_id, with_for_update=True)
        if delivery is None or delivery.status != DeliveryStatus.PENDING.value:
            return None
        delivery.attempts += 1
        entry["attempt"] = delivery.attempts
        delivery.log = [*delivery.log, entry]
        delivery.last_status_code = status_code
        delivery.last_error = error
        if error is None and status_code is not None and 200 <= status_code < 300:
            delivery.status = moved(delivery.status, DeliveryStatus.DELIVERED)
            delivery.delivered_at = utcnow()
            delivery.next_attempt_at = None
        elif delivery.attempts >= settings.webhook_max_attempts:
            delivery.status = moved(delivery.status, DeliveryStatus.FAILED)
            delivery.next_attempt_at = None
        else:
            delay = settings.webhook_backoff_seconds * 2 ** (delivery.attempts - 1)
            delivery.next_attempt_at = utcnow() + dt.timedelta(seconds=delay)
        log.info("webhook %s (%s) try %s: %s", uuid, event, delivery.attempts,
                 error or status_code)
        return delivery.status


def _post(settings: Settings, url: str, body: bytes, headers: dict[str, str]) -> tuple[int | None, str | None]:
    """POST through the guarded egress proxy: (status code, None) or (None or status, error)."""
    import requests  # a worker's dependency; the API process never posts a webhook

    policy = UrlPolicy.from_settings(settings)
    try:
        policy.check_url(url)
    except Refused as refusal:
        return None, f"refused by the URL guard: {refusal.message}"
    with EgressProxy(policy, connect_timeout=settings.webhook_timeout, deadline_seconds=settings.webhook_timeout,
                     max_bytes=1024 * 1024) as proxy:
        try:
            response = requests.post(url, data=body, headers=headers, timeout=settings.webhook_timeout,
                                     allow_redirects=False, proxies={"http": proxy.url, "https": proxy.url})
        except requests.RequestException as exc:
            if proxy.refusals:
                return None, f"refused by the URL guard: {proxy.refusals[0].message}"
            return None, f"{type(exc).__name__}: {str(exc)[:300]}"
        with response:
            if proxy.refusals:
                return None, f"refused by the URL guard: {proxy.refusals[0].message}"
            if 200 <= response.status_code < 300:
                return response.status_code, None
            return response.status_code, f"HTTP {response.status_code}: {response.text[:MAX_LOGGED_BODY]}"
