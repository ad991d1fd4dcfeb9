"""The Audio Jobs API under ``/api/v1/audio``, as the user's spec words it."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import redis
import sqlalchemy as sa
import sqlalchemy.exc
from flask import Blueprint, Response, current_app, g, jsonify, request, url_for
from flask.typing import ResponseReturnValue
from kombu.exceptions import OperationalError as BrokerError
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session
from werkzeug.datastructures import FileStorage

from audiojobs import formats, metrics
from audiojobs.analysis import reruns
from audiojobs.api import responses as R
from audiojobs.api.auth import admin_required, current_settings, login_required
from audiojobs.api.openapi import Param, form_fields_of, form_schema, operation
from audiojobs.api.reads import reader
from audiojobs.api.schemas import (
    AnalyzeRequest,
    SubmitRequest,
    check_analysis,
    form_body,
    parse_admin_list,
    parse_idempotency_key,
    parse_job_id,
    parse_json_object,
    parse_model,
    parse_result_query,
    validate_submit,
)
from audiojobs.api.serializers import (
    analysis_to_dict,
    iso_utc,
    job_summary,
    job_to_dict,
    result_to_dict,
    stage_run_to_dict,
)
from audiojobs.config import Settings
from audiojobs.db import session_scope, utcnow
from audiojobs.errors import (
    AudioJobsError,
    Conflict,
    NotFound,
    PayloadTooLarge,
    QuotaExceeded,
    ServiceUnavailable,
    TooManyRequests,
    ValidationError,
)
from audiojobs.jobs import service
from audiojobs.jobs.models import Analysis, Job, Transcript, TranscriptChunk
from audiojobs.jobs.states import JobStatus
from audiojobs.logs import job_id_var
from audiojobs.pipeline import admission
from audiojobs.pipeline.context import SOURCE_STEM, remove_job_files
from audiojobs.quotas import minutes
from audiojobs.quotas.limits import known_tiers, limits_for, tier_of
from audiojobs.quotas.tiers import TierLimits
from audiojobs.redis_client import redis_client
from audiojobs.storage import artifact_key, open_store
from audiojobs.users import service as users
from audiojobs.webhooks import service as webhooks
from audiojobs.webhooks.models import WebhookDelivery, WebhookSecret

log = logging.getLogger(__name__)

jobs = Blueprint("audio_jobs", __name__)
IDEMPOTENCY_HEADER = Param("Idempotency-Key", {"type": "string", "minLength": 1, "maxLength": 255},
                           "replay protection: the same key and body return the same job", location="header")
USER_PARAM = {"type": "string", "minLength": 1, "maxLength": 64}
FORMAT_PARAM = Param("format", {"type": "string", "enum": list(formats.FORMATS), "default": "json"},
                     "json, verbose_json, text, srt or vtt")


class TierRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    tier: str = Field(min_length=1, max_length=32)




def _db_url() -> str:
    return current_settings().effective_database_url


@jobs.post("/jobs/submit")
@operation("Submit a job: a URL, a server-local file or an upload", body=SubmitRequest,
           responses={202: R.JobSummary}, errors=(402, 409, 413, 429), headers=(IDEMPOTENCY_HEADER,),
           multipart=form_schema(form_fields_of(SubmitRequest, skip={"url", "local_path"}, json_fields={"chunking"}),
                                 "The audio or video (at most the tier's file size)."),
           description="Answers 202 with the queued job; poll GET /jobs/{job_id}. An Idempotency-Key "
                       "replays the same job for the same body.")
@login_required
def submit() -> ResponseReturnValue:
    settings = current_settings()
    upload = info = None
    try:
        if request.mimetype == "multipart/form-data":
            upload, info, body = read_upload(settings)
        else:
            body = parse_json_object(request.get_data(cache=False))
        payload = validate_submit(body, settings, g.principal, upload=info)
        key = parse_idempotency_key(request.headers.get("Idempotency-Key"))
        job, replayed = create_and_enqueue(settings, payload, key, upload)
    finally:
        if upload is not None:
            upload.close()  # its spooled temporary file, whether the job was made or not
    return _accepted(job, replayed=replayed)


def read_upload(settings: Settings) -> tuple[FileStorage, dict[str, Any], dict[str, Any]]:
    """The multipart ``file`` (at most the caller's tier's file size; 413 above), its name and size,
    and the other fields as a submit body (``true``/``false`` for flags, JSON for ``chunking``)."""
    with session_scope(settings.effective_database_url) as session:
        limit = limits_for(session, settings, g.principal.user_id, g.principal.tier).max_file_bytes
    request.max_content_length = limit + 1024 * 1024  # werkzeug streams to disk and stops at this
    storage = request.files.get("file")
    if storage is None or not storage.filename:
        for other in request.files.values():
            other.close()
        raise ValidationError("send the audio or video as the multipart field 'file'", code="missing_field",
                              field="file")
    info = upload_info(storage)
    if info["bytes"] > limit:
        storage.close()
        metrics.count_refusal(redis_client(settings), "file_too_large")
        raise PayloadTooLarge(f"the file is larger than your tier's {limit / 1024 / 1024:g} MB", field="file")
    return storage, info, form_body(request.form)


def upload_info(storage: FileStorage) -> dict[str, Any]:
    storage.stream.seek(0, os.SEEK_END)
    size = storage.stream.tell()
    storage.stream.seek(0)
    if size == 0:
        storage.close()
        raise ValidationError("the uploaded file is empty", code="empty_file", field="file")
    name = os.path.basename((storage.filename or "upload").replace("\\", "/"))[:255]
    return {"filename": name, "bytes": size}


def create_and_enqueue(settings: Settings, payload: dict[str, Any], key: str | None,
                       upload: FileStorage | None = None) -> tuple[Job, bool]:
    """Create the job (or find its idempotent twin), put an upload in its work directory, then let a
    worker see it. (job, replayed)."""
    owner = g.principal.user_id
    ttl = dt.timedelta(seconds=settings.idempotency_ttl)
    try:
        with session_scope(settings.effective_database_url) as session:
            existing = None
            if key is not None:
                existing = service.find_idempotent_job(session, owner_user_id=owner, key=key, payload=payload, ttl=ttl)
            if existing is not None:
                return existing, True
            cap = check_submit_allowed(session, settings, owner, payload).concurrent_jobs
            job = service.create_job(session, owner_user_id=owner, payload=payload, queue=settings.cpu_queue,
                                     max_retries=settings.max_retries, request_id=g.request_id)
            if key is not None:
                service.remember_idempotency_key(session, owner_user_id=owner, key=key, payload=payload,
                                                 job_id=job.id)
    except sa.exc.IntegrityError:
        # A concurrent submit with the same key won the race: answer with its job.
        with session_scope(settings.effective_database_url) as session:
            existing = service.find_idempotent_job(session, owner_user_id=owner, key=key or "", payload=payload,
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
        admission.admit(settings, current_app.extensions["celery"], None if settings.owner_strict else owner, cap)
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


def save_upload(settings: Settings, job: Job, upload: FileStorage, filename: str) -> str:
    """Stream the upload into the object store as the job's source; its key (audio_download finds it
    through the job's artifacts, on whichever host it runs)."""
    suffix = "".join(ch for ch in Path(filename).suffix.lower() if ch.isalnum())[:10]
    key = artifact_key(job.uuid, "upload", 0, f"{SOURCE_STEM}.{suffix or 'bin'}")
    open_store(settings).put_stream(key, upload.stream)
    with session_scope(settings.effective_database_url) as session:
        service.record_artifact(session, job.id, SOURCE_STEM, key)
    return key


def check_submit_allowed(session: Session, settings: Settings, owner: str, payload: dict[str, object]) -> TierLimits:
    """Backlog (429), daily minutes (402) and file size (413), before a job is created. The owner's limits."""
    try:
        return _check_submit_allowed(session, settings, owner, payload)
    except (TooManyRequests, QuotaExceeded, PayloadTooLarge) as refusal:
        metrics.count_refusal(redis_client(settings), refusal.code)
        raise


def _check_submit_allowed(session: Session, settings: Settings, owner: str, payload: dict[str, object]) -> TierLimits:
    limits = limits_for(session, settings, owner, g.principal.tier if g.principal.user_id == owner else None)
    if service.count_queued(session, owner) >= settings.max_queued_per_user:
        raise TooManyRequests(f"you have {settings.max_queued_per_user} jobs queued already; wait for some to start",
                              headers={"Retry-After": "30"})
    if limits.daily_minutes is not None:
        today = minutes.utc_today()
        used, _started = minutes.usage(session, owner, today)
        if used >= limits.daily_minutes - minutes.EPSILON:
            reset = minutes.resets_at(today)
            raise QuotaExceeded(
                f"today's {limits.daily_minutes:g} minutes are used up; they reset at {iso_utc(reset)}",
                headers={"Retry-After": str(int((reset - utcnow()).total_seconds()) + 1)},
                details={"resets_at": iso_utc(reset), "minutes_used": round(used, 4),
                         "minutes_limit": limits.daily_minutes})
    local_path = payload.get("local_path")
    if isinstance(local_path, str) and os.path.getsize(local_path) > limits.max_file_bytes:
        raise PayloadTooLarge(f"the file is larger than your tier's {limits.max_file_mb:g} MB", field="local_path")
    return limits


def _accepted(job: Job, replayed: bool = False) -> ResponseReturnValue:
    headers = {"Location": url_for("audio_jobs.get_job", job_id=job.id)}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return jsonify(job_summary(job)), 202, headers


@jobs.get("/jobs/<job_id>")
@operation("A job's status, stage, error and stage runs", responses={200: R.JobDetail}, errors=(404,))
@login_required
def get_job(job_id: str) -> ResponseReturnValue:
    job = service.get_job_for(reader(_db_url()), parse_job_id(job_id), g.principal, with_runs=True)
    body = job_to_dict(job)
    body["stages"] = [stage_run_to_dict(run) for run in job.stage_runs]
    return jsonify(body)


@jobs.get("/jobs/<job_id>/result")
@operation("The transcript of a completed job, in the format asked for", responses={200: R.Result},
           errors=(404, 409), params=(FORMAT_PARAM,), alternatives={"verbose_json": R.VerboseTranscription,
                                                                  **{m: None for m in formats.MIME.values()}},
           description="json (default): transcript, chunks and analysis; verbose_json: OpenAI's shape; "
                       "text; srt and vtt subtitles.")
@login_required
def get_result(job_id: str) -> ResponseReturnValue:
    query = parse_result_query(request.args)
    with session_scope(_db_url()) as session:
        job = service.get_job_for(session, parse_job_id(job_id), g.principal)
        if job.status != JobStatus.COMPLETED.value:
            detail = f" ({job.error_code}: {job.error_message})" if job.error_code else ""
            raise Conflict(f"job {job.id} is {job.status}, not completed{detail}", code="job_not_completed")
        body = load_result(session, job)
    settings = current_settings()
    style = formats.SubtitleStyle(settings.subtitle_line_chars, settings.subtitle_lines, settings.subtitle_seconds)
    if query.format == "verbose_json":
        return jsonify(formats.verbose_json(body))
    if query.format == "text":
        return Response(formats.text(body), mimetype=formats.MIME["text"])
    if query.format in {"srt", "vtt"}:
        render = formats.srt if query.format == "srt" else formats.vtt
        return Response(render(body["segments"], style), mimetype=formats.MIME[query.format])
    return jsonify(body)


@jobs.get("/jobs/<job_id>/events")
@operation("Server-sent events: the job's status, stage and progress as they change", responses={200: None},
           errors=(404,), alternatives={"text/event-stream": None},
           description="Each change is an `event: job` whose data is the job row; the stream ends after the "
                       "job reaches a final state (or after AUDIO_EVENTS_MAX_SECONDS; reconnect to go on). "
                       "Polling GET /jobs/{job_id} stays authoritative.")
@login_required
def job_events(job_id: str) -> ResponseReturnValue:
    settings = current_settings()
    numeric_id = parse_job_id(job_id)
    principal = g.principal
    with session_scope(settings.effective_database_url) as session:
        service.get_job_for(session, numeric_id, principal)  # 404 before the stream starts

    def stream() -> Iterator[str]:
        last: tuple[object, ...] | None = None
        deadline = time.monotonic() + settings.events_max_seconds
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            with session_scope(settings.effective_database_url) as session:
                job = service.get_job_for(session, numeric_id, principal)
                body = job_to_dict(job)
            state = (body["status"], body["stage"], body["progress"], body["retry_count"])
            if state != last:
                last = state
                quiet_since = time.monotonic()
                yield f"event: job\nid: {body['updated_at']}\ndata: {json.dumps(body)}\n\n"
                if body["status"] in {"completed", "failed", "cancelled"}:
                    return
            elif time.monotonic() - quiet_since > 15:
                quiet_since = time.monotonic()
                yield ": keep-alive\n\n"
            time.sleep(0.5)

    return Response(stream(), mimetype="text/event-stream",
                    headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


def load_result(session: Session, job: Job) -> dict[str, Any]:
    """The stored result of a completed job, as ``GET /jobs/{id}/result`` returns it."""
    transcript = session.scalar(sa.select(Transcript).where(Transcript.job_id == job.id))
    if transcript is None:
        raise Conflict(f"job {job.id} has no stored result", code="result_missing")
    chunks = list(session.scalars(
        sa.select(TranscriptChunk).where(TranscriptChunk.job_id == job.id).order_by(TranscriptChunk.chunk_index)
    ))
    analysis = session.scalar(sa.select(Analysis).where(Analysis.job_id == job.id))
    return result_to_dict(job, transcript, chunks, analysis)


@jobs.post("/jobs/<job_id>/cancel")
@operation("Cancel a queued or running job", responses={200: R.Job}, errors=(404, 409))
@login_required
def cancel(job_id: str) -> ResponseReturnValue:
    """Cancel a queued or running job: a running stage stops within about a second."""
    settings = current_settings()
    with session_scope(settings.effective_database_url) as session:
        job = service.cancel_job(session, parse_job_id(job_id), g.principal)
        body = job_to_dict(job)
    # Its objects go now; a running stage notices within a second and removes its host's scratch copies.
    remove_job_files(settings, job.uuid)
    admission.release(settings, current_app.extensions["celery"], job.owner_user_id, job.id)
    if job.payload.get("callback_url"):
        webhooks.dispatch_due(settings, current_app.extensions["celery"])
    log.info("job %s cancelled by %s", job.id, g.principal.user_id)
    return jsonify(body)


@jobs.post("/jobs/<job_id>/analyze")
@operation("Run the analysis again on a completed job", responses={202: R.AnalysisRun}, errors=(404, 409),
           body=AnalyzeRequest,
           description="Analyses the stored transcript again (no download, no transcription, no minutes), with "
                       "another provider or your own prompt. The job stays completed; its analysis is pending "
                       "until the re-run writes it (see GET /jobs/{id} or /result).")
@login_required
def analyze(job_id: str) -> ResponseReturnValue:
    settings = current_settings()
    raw = request.get_data(cache=False)
    req = parse_model(AnalyzeRequest, parse_json_object(raw) if raw.strip() else {})  # no body: the defaults
    api_name = check_analysis(req.api_name, req.analysis_prompt, settings)
    with session_scope(settings.effective_database_url) as session:
        job = service.get_job_for(session, parse_job_id(job_id), g.principal)
        if job.status != JobStatus.COMPLETED.value:
            raise Conflict(f"job {job.id} is {job.status}; only a completed job can be analysed again",
                           code="job_not_completed")
        if session.scalar(sa.select(Transcript.id).where(Transcript.job_id == job.id)) is None:
            raise Conflict(f"job {job.id} has no stored transcript", code="result_missing")
        row = reruns.request_rerun(session, job, api_name, req.analysis_prompt)
        numeric_id, run, body = job.id, row.run, {"job_id": job.id, "analysis": analysis_to_dict(row)}
    reruns.publish(current_app.extensions["celery"], numeric_id, run)  # lost: the reaper sends it again
    return jsonify(body), 202


@jobs.get("/jobs/<job_id>/deliveries")
@operation("Webhook deliveries of a job, with every try", responses={200: R.Deliveries}, errors=(404,))
@login_required
def deliveries(job_id: str) -> ResponseReturnValue:
    settings = current_settings()
    with session_scope(settings.effective_database_url) as session:
        job = service.get_job_for(session, parse_job_id(job_id), g.principal)
        rows = session.scalars(sa.select(WebhookDelivery).where(WebhookDelivery.job_id == job.id)
                               .order_by(WebhookDelivery.id))
        return jsonify({"job_id": job.id, "deliveries": [webhooks.delivery_to_dict(d) for d in rows]})


@jobs.post("/jobs/<job_id>/deliveries/<delivery_id>/resend")
@operation("Send a webhook event again", responses={202: R.Delivery}, errors=(404,),
           path_params={"delivery_id": {"type": "string", "format": "uuid"}},
           description="A new delivery of the same event, with a new id, fresh tries and a fresh signature.")
@login_required
def resend(job_id: str, delivery_id: str) -> ResponseReturnValue:
    settings = current_settings()
    with session_scope(settings.effective_database_url) as session:
        job = service.get_job_for(session, parse_job_id(job_id), g.principal)
        original = session.scalar(sa.select(WebhookDelivery).where(WebhookDelivery.job_id == job.id,
                                                                   WebhookDelivery.uuid == delivery_id[:36]))
        if original is None:
            raise NotFound(f"delivery {delivery_id[:36]} of job {job.id} not found")
        again = webhooks.resend(session, original)
        body = webhooks.delivery_to_dict(again)
    webhooks.dispatch_due(settings, current_app.extensions["celery"])
    return jsonify(body), 202


@jobs.get("/webhooks/secret")
@operation("Your webhook signing secret (made on first use)", responses={200: R.WebhookSecretOut}, tag="webhooks",
           description="Callbacks of your jobs are signed with it: X-Audiojobs-Signature is sha256= and the "
                       "HMAC-SHA256 of X-Audiojobs-Timestamp, '.', and the body.")
@login_required
def webhook_secret() -> ResponseReturnValue:
    return _secret(rotate=False)


@jobs.post("/webhooks/secret/rotate")
@operation("Replace your webhook signing secret", responses={200: R.WebhookSecretOut}, tag="webhooks")
@login_required
def rotate_webhook_secret() -> ResponseReturnValue:
    return _secret(rotate=True)


def _secret(rotate: bool) -> ResponseReturnValue:
    settings = current_settings()
    with session_scope(settings.effective_database_url) as session:
        secret = webhooks.user_secret(session, g.principal.user_id, rotate=rotate)
        row = session.get(WebhookSecret, g.principal.user_id)
        created = iso_utc(row.created_at if row is not None else None)
    return jsonify({"secret": secret, "created_at": created})


@jobs.delete("/jobs/<job_id>")
@operation("Delete a final job with its results and files", responses={204: None}, errors=(404, 409))
@login_required
def delete(job_id: str) -> ResponseReturnValue:
    """Remove a final job with its results and files."""
    settings = current_settings()
    numeric_id = parse_job_id(job_id)
    with session_scope(settings.effective_database_url) as session:
        job_uuid = service.delete_job(session, numeric_id, g.principal)
    remove_job_files(settings, job_uuid)
    return "", 204


@jobs.get("/usage")
@operation("The caller's minutes used and left today", responses={200: R.Usage}, tag="quotas")
@login_required
def usage() -> ResponseReturnValue:
    """The caller's day: minutes used and left, jobs started, when it resets."""
    settings = current_settings()
    owner = g.principal.user_id
    today = minutes.utc_today()
    with session_scope(settings.effective_database_url) as session:
        limits = limits_for(session, settings, owner)
        used, started = minutes.usage(session, owner, today)
        tier = tier_of(session, settings, owner)
    limit = limits.daily_minutes
    return jsonify({"user_id": owner, "tier": tier, "day": today.isoformat(), "minutes_used": round(used, 4),
                    "minutes_limit": limit,
                    "minutes_remaining": None if limit is None else round(max(0.0, limit - used), 4),
                    "jobs_started": started, "concurrent_jobs_limit": limits.concurrent_jobs,
                    "max_file_mb": limits.max_file_mb, "resets_at": iso_utc(minutes.resets_at(today))})


@jobs.get("/jobs/admin/list")
@operation("List jobs (admin)", responses={200: R.JobList}, errors=(403,), tag="admin", params=(
    Param("status", {"type": "string", "enum": [s.value for s in JobStatus]}, "only jobs in this status"),
    Param("status_filter", {"type": "string", "enum": [s.value for s in JobStatus]}, "alias of status"),
    Param("owner_user_id", {"type": "string", "minLength": 1, "maxLength": 64}, "only this user's jobs"),
    Param("limit", {"type": "integer", "minimum": 1, "maximum": 200, "default": 50}, "at most this many")))
@admin_required
def admin_list() -> ResponseReturnValue:
    query = parse_admin_list(request.args)
    with session_scope(_db_url()) as session:
        rows = service.list_jobs(session, status=query.status, owner_user_id=query.owner_user_id, limit=query.limit)
        body = {"jobs": [job_to_dict(job) for job in rows]}
    return jsonify(body)


@jobs.get("/jobs/admin/summary")
@operation("Job counts by status (admin)", responses={200: R.StatusSummary}, errors=(403,), tag="admin",
           params=(Param("owner_user_id", {"type": "string", "maxLength": 64}, "only this user's jobs"),))
@admin_required
def admin_summary() -> ResponseReturnValue:
    owner = request.args.get("owner_user_id") or None
    with session_scope(_db_url()) as session:
        counts = service.count_by_status(session, owner_user_id=owner)
    return jsonify({"counts_by_status": counts, "total": sum(counts.values()), "owner_user_id": owner})


@jobs.get("/jobs/admin/owner/<owner_user_id>/processing")
@operation("A user's processing jobs and concurrency cap (admin)", responses={200: R.OwnerProcessing},
           errors=(403,), tag="admin", path_params={"owner_user_id": USER_PARAM})
@admin_required
def admin_owner_processing(owner_user_id: str) -> ResponseReturnValue:
    settings = current_settings()
    with session_scope(settings.effective_database_url) as session:
        processing = service.count_processing(session, owner_user_id)
        limit = limits_for(session, settings, owner_user_id).concurrent_jobs
    return jsonify({"owner_user_id": owner_user_id, "processing": processing, "limit": limit})


@jobs.get("/jobs/admin/queues")
@operation("Queue depths and the workers online (admin)", responses={200: R.QueueDepths}, errors=(403,),
           tag="admin")
@admin_required
def admin_queues() -> ResponseReturnValue:
    """Depth of each queue (Redis list lengths) and the workers that answer a 1-second ping."""
    settings = current_settings()
    names = list(dict.fromkeys([settings.control_queue, settings.cpu_queue, settings.transcribe_queue]))
    client = redis_client(settings)
    depths = {name: int(client.llen(name)) for name in names}
    return jsonify({"queues": depths, "workers": _workers_online()})


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


def _tier_body(user_id: str, tier: str, settings: Settings) -> dict[str, object]:
    return {"user_id": user_id, "tier": tier, "limits": known_tiers(settings)[tier].to_dict()}


@jobs.get("/jobs/admin/tiers/<user_id>")
@operation("A user's tier and limits (admin)", responses={200: R.TierOut}, errors=(403, 404), tag="admin",
           path_params={"user_id": USER_PARAM})
@admin_required
def admin_get_tier(user_id: str) -> ResponseReturnValue:
    settings = current_settings()
    with session_scope(settings.effective_database_url) as session:
        tier = tier_of(session, settings, user_id)
    if tier is None:
        raise NotFound(f"user {user_id} not found")
    return jsonify(_tier_body(user_id, tier, settings))


@jobs.put("/jobs/admin/tiers/<user_id>")
@operation("Set a user's tier (admin, multi-user mode)", body=TierRequest, responses={200: R.TierOut},
           errors=(403, 404, 409), tag="admin", path_params={"user_id": USER_PARAM})
@admin_required
def admin_set_tier(user_id: str) -> ResponseReturnValue:
    settings = current_settings()
    req = parse_model(TierRequest, parse_json_object(request.get_data(cache=False)))
    if settings.auth_mode == "single_user":
        raise Conflict("in single-user mode the tier is AUDIOJOBS_SINGLE_USER_TIER", code="single_user_tier_fixed")
    with session_scope(settings.effective_database_url) as session:
        user = users.get_user(session, user_id)
        if user is None:
            raise NotFound(f"user {user_id} not found")
        users.set_tier(session, user, req.tier, set(known_tiers(settings)))
    return jsonify(_tier_body(user_id, req.tier, settings))
