"""The job use cases every front end shares: submit, cancel, delete, results, webhook deliveries.

The HTTP API, the OpenAI-compatible endpoint and the CLI (through the API) call these; views only
parse, call one of them and serialise. Nothing here knows Flask: the caller passes who asks (a
``Principal``), the Celery app that publishes, and the request id.
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
import os
from pathlib import Path
from typing import IO, Any

import redis
import sqlalchemy as sa
import sqlalchemy.exc
from celery import Celery
from kombu.exceptions import OperationalError as BrokerError
from sqlalchemy.orm import Session

from audiojobs import metrics
from audiojobs.config import Settings
from audiojobs.db import session_scope, utcnow
from audiojobs.errors import (
    AudioJobsError,
    Conflict,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    QuotaExceeded,
    ServiceUnavailable,
    TooManyRequests,
    ValidationError,
)
from audiojobs.jobs import admission, flow, idempotency, messages, queries, service
from audiojobs.jobs.attempts import Dispatch
from audiojobs.jobs.models import Analysis, Job, JobBatch, Transcript, TranscriptChunk
from audiojobs.jobs.states import JobStatus, Stage
from audiojobs.logs import job_id_var
from audiojobs.quotas import minutes
from audiojobs.quotas.limits import limits_for
from audiojobs.quotas.tiers import TierLimits
from audiojobs.redis_client import redis_client
from audiojobs.storage import SOURCE_STEM, artifact_key, open_store, remove_job_files
from audiojobs.users.principal import Principal
from audiojobs.webhooks import service as webhooks
from audiojobs.webhooks.models import WebhookDelivery

log = logging.getLogger(__name__)


def submit(settings: Settings, celery: Celery, principal: Principal, payload: dict[str, Any], key: str | None,
           upload: IO[bytes] | None = None, request_id: str | None = None) -> tuple[Job, bool]:
    """Create the job (or find its idempotent twin), stream an upload into the store, then let a
    worker see it: (job, replayed). A job is admitted now when its owner has a free slot."""
    owner = principal.user_id
    ttl = dt.timedelta(seconds=settings.idempotency_ttl)
    try:
        with session_scope(settings.effective_database_url) as session:
            existing = None
            if key is not None:
                existing = idempotency.find_idempotent_job(session, owner_user_id=owner, key=key, payload=payload,
                                                           ttl=ttl)
            if existing is not None:
                return existing, True
            limits = check_submit_allowed(session, settings, principal, payload)
            cap = limits.concurrent_jobs
            job = service.create_job(session, owner_user_id=owner, payload=payload, queue=settings.cpu_queue,
                                     max_retries=settings.max_retries, request_id=request_id,
                                     priority=_level(payload, limits))
            if key is not None:
                idempotency.remember_idempotency_key(session, owner_user_id=owner, key=key, payload=payload,
                                                 job_id=job.id)
    except sa.exc.IntegrityError:
        # A concurrent submit with the same key won the race: answer with its job.
        with session_scope(settings.effective_database_url) as session:
            existing = idempotency.find_idempotent_job(session, owner_user_id=owner, key=key or "", payload=payload,
                                                   ttl=ttl)
            if existing is None:
                raise
            return existing, True
    job_id_var.set(job.id)
    if upload is not None:
        try:
            save_upload(settings, job, upload, payload["upload"]["filename"])
        except (OSError, AudioJobsError) as exc:
            log.error("job %s: upload not saved: %r", job.id, exc)
            with session_scope(settings.effective_database_url) as session:
                service.fail_job(session, job.id, code="upload_failed", message="the upload could not be stored")
            raise ServiceUnavailable("the upload could not be stored; try again", code="upload_failed",
                                     headers={"Retry-After": "5"}) from None
    # The row is committed: only now may a worker see the job. It starts when its owner has a slot.
    try:
        admission.admit(settings, celery, None if settings.owner_strict else owner, cap)
    except (BrokerError, OSError, redis.RedisError) as exc:
        log.error("job %s could not be enqueued: %s", job.id, exc)
        with session_scope(settings.effective_database_url) as session:
            service.fail_job(session, job.id, code="broker_unavailable",
                             message="the job could not be queued: the broker is unavailable")
        remove_job_files(settings, job.uuid)
        raise ServiceUnavailable("the job queue is unavailable; try again shortly", code="broker_unavailable",
                                 headers={"Retry-After": "5"}) from None
    log.info("job %s submitted by %s", job.id, owner)
    return job, False


def submit_batch(settings: Settings, celery: Celery, principal: Principal, payloads: list[dict[str, Any]],
                 key: str | None, request_id: str | None = None) -> tuple[JobBatch, list[Job], bool]:
    """Create every job of a batch in one transaction, or none: each item passes the backlog, minutes
    and file size checks as a single submit would (the refusal names the item, ``items[i]``), then
    the jobs are let in. (batch, its jobs, replayed)."""
    owner = principal.user_id
    body = {"batch": payloads}
    try:
        with session_scope(settings.effective_database_url) as session:
            if key is not None:
                first = idempotency.find_idempotent_job(session, owner_user_id=owner, key=key, payload=body,
                                                        ttl=dt.timedelta(seconds=settings.idempotency_ttl))
                if first is not None and first.batch_id is not None:
                    batch = session.get(JobBatch, first.batch_id)
                    if batch is not None:
                        return batch, queries.batch_jobs(session, batch.id), True
            batch = JobBatch(owner_user_id=owner)
            session.add(batch)
            session.flush()
            jobs: list[Job] = []
            cap = 1
            for index, payload in enumerate(payloads):
                try:
                    limits = check_submit_allowed(session, settings, principal, payload)
                except AudioJobsError as refusal:
                    refusal.field = f"items[{index}]" + (f".{refusal.field}" if refusal.field else "")
                    refusal.message = f"items[{index}]: {refusal.message}"
                    raise
                cap = limits.concurrent_jobs
                job = service.create_job(session, owner_user_id=owner, payload=payload, queue=settings.cpu_queue,
                                         max_retries=settings.max_retries, request_id=request_id,
                                         priority=_level(payload, limits))
                job.batch_id = batch.id
                jobs.append(job)
            if key is not None:
                idempotency.remember_idempotency_key(session, owner_user_id=owner, key=key, payload=body,
                                                     job_id=jobs[0].id)
    except sa.exc.IntegrityError:
        if key is None:
            raise
        with session_scope(settings.effective_database_url) as session:  # a concurrent twin won the race
            first = idempotency.find_idempotent_job(session, owner_user_id=owner, key=key, payload=body,
                                                    ttl=dt.timedelta(seconds=settings.idempotency_ttl))
            if first is None or first.batch_id is None or (batch := session.get(JobBatch, first.batch_id)) is None:
                raise
            return batch, queries.batch_jobs(session, batch.id), True
    try:
        admission.admit(settings, celery, None if settings.owner_strict else owner, cap)
    except (BrokerError, OSError, redis.RedisError) as exc:
        log.error("batch %s could not be enqueued: %s", batch.id, exc)
        with session_scope(settings.effective_database_url) as session:
            for job in jobs:
                service.fail_job(session, job.id, code="broker_unavailable",
                                 message="the job could not be queued: the broker is unavailable")
        raise ServiceUnavailable("the job queue is unavailable; try again shortly", code="broker_unavailable",
                                 headers={"Retry-After": "5"}) from None
    log.info("batch %s of %s jobs submitted by %s", batch.id, len(jobs), owner)
    return batch, jobs, False


def batch_of(session: Session, principal: Principal, batch_id: str) -> tuple[JobBatch, list[Job]]:
    """The batch and its jobs, if ``principal`` owns it or is an admin; else NotFound."""
    batch = session.get(JobBatch, batch_id[:36])
    if batch is None or not (principal.is_admin or batch.owner_user_id == principal.user_id):
        raise NotFound(f"batch {batch_id[:36]} not found")
    return batch, queries.batch_jobs(session, batch.id)


def save_upload(settings: Settings, job: Job, upload: IO[bytes], filename: str) -> str:
    """Stream the upload into the object store as the job's source; its key (audio_download finds it
    through the job's artifacts, on whichever host it runs)."""
    suffix = "".join(ch for ch in Path(filename).suffix.lower() if ch.isalnum())[:10]
    key = artifact_key(job.uuid, "upload", 0, f"{SOURCE_STEM}.{suffix or 'bin'}")
    open_store(settings).put_stream(key, upload)
    with session_scope(settings.effective_database_url) as session:
        service.record_artifact(session, job.id, SOURCE_STEM, key)
    return key


def _level(payload: dict[str, Any], limits: TierLimits) -> int:
    """A new job's priority: an admin's ``priority`` (kept as ``_priority``), else the tier's."""
    given = payload.get("_priority")
    return int(given) if isinstance(given, int) else limits.priority


def check_submit_allowed(session: Session, settings: Settings, principal: Principal,
                         payload: dict[str, object]) -> TierLimits:
    """Backlog (429), daily minutes (402) and file size (413), before a job is created. The owner's limits."""
    try:
        return _check_submit_allowed(session, settings, principal, payload)
    except (TooManyRequests, QuotaExceeded, PayloadTooLarge) as refusal:
        metrics.count_refusal(redis_client(settings), refusal.code)
        raise


def _check_submit_allowed(session: Session, settings: Settings, principal: Principal,
                          payload: dict[str, object]) -> TierLimits:
    owner = principal.user_id
    limits = limits_for(session, settings, owner, principal.tier)
    if queries.count_queued(session, owner) >= settings.max_queued_per_user:
        raise TooManyRequests(f"you have {settings.max_queued_per_user} jobs queued already; wait for some to start",
                              headers={"Retry-After": "30"})
    if limits.daily_minutes is not None:
        today = minutes.utc_today()
        used, _started = minutes.usage(session, owner, today)
        if used >= limits.daily_minutes - minutes.EPSILON:
            reset = minutes.resets_at(today)
            when = reset.isoformat().replace("+00:00", "Z")
            raise QuotaExceeded(
                f"today's {limits.daily_minutes:g} minutes are used up; they reset at {when}",
                headers={"Retry-After": str(int((reset - utcnow()).total_seconds()) + 1)},
                details={"resets_at": when, "minutes_used": round(used, 4), "minutes_limit": limits.daily_minutes})
    local_path = payload.get("local_path")
    if isinstance(local_path, str) and os.path.getsize(local_path) > limits.max_file_bytes:
        raise PayloadTooLarge(f"the file is larger than your tier's {limits.max_file_mb:g} MB", field="local_path")
    return limits


def cancel(settings: Settings, celery: Celery, principal: Principal, job_id: int) -> Job:
    """Cancel a queued or running job: a running stage stops within about a second."""
    with session_scope(settings.effective_database_url) as session:
        job = service.cancel_job(session, job_id, principal)
    # Its objects go now; a running stage notices within a second and removes its host's scratch copies.
    remove_job_files(settings, job.uuid)
    admission.release(settings, celery, job.owner_user_id, job.id)
    if job.payload.get("callback_url"):
        webhooks.dispatch_due(settings, celery)
    log.info("job %s cancelled by %s", job.id, principal.user_id)
    return job


def set_priority(settings: Settings, celery: Celery, principal: Principal, job_id: int, level: int) -> Job:
    """An admin changes an active job's priority: admission and every stage from now on use it, and
    its message waiting in a queue, if any, is sent again at the new level (jobs/priority.py)."""
    if not principal.is_admin:
        raise Forbidden("only an admin may change a job's priority", code="priority_forbidden", field="priority")
    with session_scope(settings.effective_database_url) as session:
        job = service.active_job_for(session, job_id, principal)
        job.priority = level
        job.updated_at = utcnow()
        between_stages = job.admitted_at is not None and job.leased_until is None and job.dispatch_due_at is None
        ahead = Dispatch(job.id, job.dispatch, Stage(job.stage), job.priority, job.admitted_at)
    if between_stages:
        client = redis_client(settings)
        found = messages.scan(client, [settings.cpu_queue, settings.transcribe_queue])
        waiting = found.queued.get((ahead.job_id, ahead.dispatch))
        target = flow.level_now(settings, ahead)
        if waiting is not None and waiting.level != target:
            messages.send_again(celery, client, waiting, ahead, target)
    log.info("job %s: priority %s, set by %s", job.id, level, principal.user_id)
    return job


def delete(settings: Settings, principal: Principal, job_id: int) -> None:
    """Remove a final job with its results and files."""
    with session_scope(settings.effective_database_url) as session:
        job_uuid = service.delete_job(session, job_id, principal)
    remove_job_files(settings, job_uuid)


def completed_job(session: Session, principal: Principal, job_id: int) -> Job:
    """The caller's job when it is completed; 409 ``job_not_completed`` otherwise (with why it ended)."""
    job = queries.get_job_for(session, job_id, principal)
    if job.status != JobStatus.COMPLETED.value:
        detail = f" ({job.error_code}: {job.error_message})" if job.error_code else ""
        raise Conflict(f"job {job.id} is {job.status}, not completed{detail}", code="job_not_completed")
    return job


def stored_result(session: Session, job: Job) -> tuple[Transcript, list[TranscriptChunk], Analysis | None]:
    """What a completed job stored: its transcript, chunks and analysis (409 ``result_missing`` if none)."""
    transcript = session.scalar(sa.select(Transcript).where(Transcript.job_id == job.id))
    if transcript is None:
        raise Conflict(f"job {job.id} has no stored result", code="result_missing")
    chunks = list(session.scalars(
        sa.select(TranscriptChunk).where(TranscriptChunk.job_id == job.id).order_by(TranscriptChunk.chunk_index)))
    analysis = session.scalar(sa.select(Analysis).where(Analysis.job_id == job.id))
    return transcript, chunks, analysis


CURSOR_PREFIX = "j1:"  # the cursor's version: what follows is the last id of the page


def list_jobs(session: Session, principal: Principal, where: queries.JobFilter, limit: int,
              cursor: str | None) -> tuple[list[Job], str | None]:
    """A page of jobs, newest first, and the cursor of the next page (None: this was the last).
    Users see their own jobs only; ``where.owner_user_id`` names someone else's for admins."""
    if where.owner_user_id is not None and where.owner_user_id != principal.user_id and not principal.is_admin:
        raise Forbidden("only admins list other users' jobs", field="owner_user_id")
    rows = queries.list_jobs(session, where, limit + 1, before_id=_cursor_id(cursor))
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (_encode_cursor(rows[-1].id) if more and rows else None)


def _encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"{CURSOR_PREFIX}{last_id}".encode()).decode().rstrip("=")


def _cursor_id(cursor: str | None) -> int | None:
    if cursor is None:
        return None
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (ValueError, UnicodeDecodeError):
        text = ""
    digits = text.removeprefix(CURSOR_PREFIX)
    if not text.startswith(CURSOR_PREFIX) or not digits.isdigit() or len(digits) > 18:
        raise ValidationError("cursor is not a next_cursor this API gave", code="invalid_cursor", field="cursor")
    return int(digits)


def deliveries(session: Session, principal: Principal, job_id: int) -> tuple[int, list[WebhookDelivery]]:
    """The caller's job's webhook deliveries, oldest first: (job id, deliveries)."""
    job = queries.get_job_for(session, job_id, principal)
    return job.id, webhooks.deliveries_of(session, job.id)


def resend_delivery(settings: Settings, celery: Celery, principal: Principal, job_id: int,
                    delivery_uuid: str) -> WebhookDelivery:
    """A new delivery of the same event (new id, fresh tries and signature), sent now."""
    with session_scope(settings.effective_database_url) as session:
        job = queries.get_job_for(session, job_id, principal)
        original = webhooks.delivery_of(session, job.id, delivery_uuid)
        if original is None:
            raise NotFound(f"delivery {delivery_uuid} of job {job.id} not found")
        delivery = webhooks.resend(session, original)
    webhooks.dispatch_due(settings, celery)
    return delivery
