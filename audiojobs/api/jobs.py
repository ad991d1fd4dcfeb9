"""The Audio Jobs API under ``/api/v1/audio``, as the user's spec words it."""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify, request, url_for
from werkzeug.datastructures import FileStorage

from audiojobs import formats, metrics
from audiojobs.analysis import reruns
from audiojobs.api import responses as R
from audiojobs.api.auth import current_settings, login_required
from audiojobs.api.openapi import JOB_EVENT, TEXT, Answer, documented
from audiojobs.api.reads import reader
from audiojobs.api.schemas import (
    AnalyzeRequest,
    BatchRequest,
    IdempotencyHeaders,
    JobListQuery,
    PriorityRequest,
    ResultQuery,
    SubmitForm,
    SubmitRequest,
    check_analysis,
    form_body,
    parse_idempotency_key,
    parse_job_id,
    parse_job_list,
    parse_json_object,
    parse_model,
    parse_result_query,
    validate_batch,
    validate_submit,
)
from audiojobs.config import Settings
from audiojobs.db import session_scope
from audiojobs.errors import (
    Conflict,
    PayloadTooLarge,
    ValidationError,
)
from audiojobs.jobs import events, queries, usecases
from audiojobs.jobs.models import Job
from audiojobs.quotas.limits import limits_for
from audiojobs.redis_client import redis_client

log = logging.getLogger(__name__)

jobs = Blueprint("audio_jobs", __name__)


def _db_url() -> str:
    return current_settings().effective_database_url


@jobs.post("/jobs/submit")
@documented(ok={202: R.JobSummary}, errors=(402, 409, 413, 429), json=SubmitRequest, form=SubmitForm,
            headers=IdempotencyHeaders)
@login_required
def submit() -> Answer:
    """Submit a job: a URL, a server-local file or an upload

    Answers 202 with the queued job; poll GET /jobs/{job_id}. An Idempotency-Key replays the same job
    for the same body.
    """
    settings = current_settings()
    upload = info = None
    try:
        if request.mimetype == "multipart/form-data":
            upload, info, body = read_upload(settings)
        else:
            body = parse_json_object(request.get_data(cache=False))
        payload = validate_submit(body, settings, g.principal, upload=info)
        key = parse_idempotency_key(request.headers.get("Idempotency-Key"))
        job, replayed = usecases.submit(settings, current_app.extensions["celery"], g.principal, payload, key,
                                        upload.stream if upload is not None else None, request_id=g.request_id)
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


def _accepted(job: Job, replayed: bool = False) -> Answer:
    headers = {"Location": url_for("audio_jobs.get_job", job_id=job.id)}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return R.JobSummary.of(job), 202, headers


@jobs.post("/jobs/batch")
@documented(ok={202: R.BatchAccepted}, errors=(402, 409, 413, 429), json=BatchRequest, headers=IdempotencyHeaders)
@login_required
def submit_batch() -> Answer:
    """Submit several jobs at once: all or none

    {"items": [<submit body>, ...], "defaults": {...}}: each item over the defaults, at most
    AUDIO_BATCH_MAX_ITEMS. Any invalid item is 422 naming it (items[3].url) and no job is made; quotas
    and caps apply to each item as to a submit (402/413/429 name the item). An Idempotency-Key
    replays the same batch for the same body.
    """
    settings = current_settings()
    payloads = validate_batch(parse_json_object(request.get_data(cache=False)), settings, g.principal)
    key = parse_idempotency_key(request.headers.get("Idempotency-Key"))
    batch, made, replayed = usecases.submit_batch(settings, current_app.extensions["celery"], g.principal, payloads,
                                                  key, request_id=g.request_id)
    headers = {"Location": url_for("audio_jobs.get_batch", batch_id=batch.id)}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return R.BatchAccepted.of(batch, made), 202, headers


@jobs.get("/jobs/batches/<batch_id>")
@documented(ok={200: R.BatchOut}, errors=(404,))
@login_required
def get_batch(batch_id: str) -> Answer:
    """A batch: its jobs and how many are in each status (owner or admin)"""
    with session_scope(_db_url()) as session:
        return R.BatchOut.of(*usecases.batch_of(session, g.principal, batch_id))


@jobs.get("/jobs")
@documented(ok={200: R.JobList}, errors=(403,), query=JobListQuery)
@login_required
def list_jobs() -> Answer:
    """Your jobs, newest first

    An admin's own, or anyone's with owner_user_id. Filter by status and created_after /
    created_before (ISO 8601); page with limit (1-200, default 50) and the next_cursor of the previous
    page as cursor (stable while new jobs arrive).
    """
    query = parse_job_list(request.args, JobListQuery)
    where = query.where(query.owner_user_id or g.principal.user_id)
    with session_scope(_db_url()) as session:
        rows, cursor = usecases.list_jobs(session, g.principal, where, query.limit, query.cursor)
        return R.JobList(jobs=[R.Job.of(job) for job in rows], next_cursor=cursor)


@jobs.get("/jobs/<job_id>")
@documented(ok={200: R.JobDetail}, errors=(404,))
@login_required
def get_job(job_id: str) -> Answer:
    """A job's status, stage, error and stage runs"""
    return R.JobDetail.of(queries.get_job_for(reader(_db_url()), parse_job_id(job_id), g.principal, with_runs=True))


@jobs.get("/jobs/<job_id>/result")
@documented(ok={200: R.ResultBody}, errors=(404, 409), query=ResultQuery,
            media={formats.MIME[name]: TEXT for name in ("text", "srt", "vtt")})
@login_required
def get_result(job_id: str) -> Answer:
    """The transcript of a completed job, in the format asked for

    json (default): transcript, chunks and analysis; verbose_json: OpenAI's shape; diarized_json:
    OpenAI's with speakers (jobs submitted with diarize; else 409 not_diarized); text; srt and vtt
    subtitles.
    """
    query = parse_result_query(request.args)
    with session_scope(_db_url()) as session:
        job = usecases.completed_job(session, g.principal, parse_job_id(job_id))
        result = R.Result.of(job, *usecases.stored_result(session, job))
    if query.format == "json":
        return result
    body = result.model_dump(mode="json")
    settings = current_settings()
    style = formats.SubtitleStyle(settings.subtitle_line_chars, settings.subtitle_lines, settings.subtitle_seconds)
    if query.format == "verbose_json":
        return jsonify(formats.verbose_json(body))
    if query.format == "diarized_json":
        if body["speakers"] is None:
            raise Conflict(f"job {job.id} was not submitted with diarize: it has no speakers", code="not_diarized")
        return jsonify(formats.diarized_json(body))
    if query.format == "text":
        return Response(formats.text(body), mimetype=formats.MIME["text"])
    render = formats.srt if query.format == "srt" else formats.vtt
    return Response(render(body["segments"], style), mimetype=formats.MIME[query.format])


@jobs.get("/jobs/<job_id>/events")
@documented(ok={200: None}, errors=(404,), media={"text/event-stream": JOB_EVENT})
@login_required
def job_events(job_id: str) -> Answer:
    """Server-sent events: the job's status, stage and progress as they change

    Each change is an `event: job` whose data is the job row; the stream ends after the job reaches a
    final state (or after AUDIO_EVENTS_MAX_SECONDS; reconnect to go on). Polling GET /jobs/{job_id}
    stays authoritative.
    """
    settings = current_settings()
    changes = events.follow(settings, g.principal, parse_job_id(job_id), settings.events_max_seconds)
    first = next(changes)  # 404 before the stream starts

    def stream() -> Iterator[str]:
        try:
            for fields in itertools.chain([first], changes):
                if fields is None:
                    yield ": keep-alive\n\n"
                    continue
                body = R.Job(**fields).model_dump_json()
                yield f"event: job\nid: {fields['updated_at']}\ndata: {body}\n\n"
        finally:
            changes.close()

    return Response(stream(), mimetype="text/event-stream",
                    headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


@jobs.post("/jobs/<job_id>/cancel")
@documented(ok={200: R.Job}, errors=(404, 409))
@login_required
def cancel(job_id: str) -> Answer:
    """Cancel a queued or running job

    A running stage stops within about a second.
    """
    settings = current_settings()
    return R.Job.of(usecases.cancel(settings, current_app.extensions["celery"], g.principal, parse_job_id(job_id)))


@jobs.put("/jobs/<job_id>/priority")
@documented(ok={200: R.Job}, errors=(403, 404, 409), json=PriorityRequest)
@login_required
def set_priority(job_id: str) -> Answer:
    """Change a job's priority (admins)

    Levels 0-9, 9 first. Applies at once to a job waiting for a slot or in a queue (its waiting
    message is sent again at the new level) and to every later stage of a running job. A user gets
    403 priority_forbidden; a final job 409 job_final.
    """
    settings = current_settings()
    req = parse_model(PriorityRequest, parse_json_object(request.get_data(cache=False)))
    return R.Job.of(usecases.set_priority(settings, current_app.extensions["celery"], g.principal,
                                          parse_job_id(job_id), req.priority))


@jobs.post("/jobs/<job_id>/analyze")
@documented(ok={202: R.AnalysisRun}, errors=(404, 409), json=AnalyzeRequest)
@login_required
def analyze(job_id: str) -> Answer:
    """Run the analysis again on a completed job

    Analyses the stored transcript again (no download, no transcription, no minutes), with another
    provider or your own prompt. The job stays completed; its analysis is pending until the re-run
    writes it (see GET /jobs/{id} or /result).
    """
    settings = current_settings()
    raw = request.get_data(cache=False)
    req = parse_model(AnalyzeRequest, parse_json_object(raw) if raw.strip() else {})  # no body: the defaults
    api_name = check_analysis(req.api_name, req.analysis_prompt, settings)
    job_key, row = reruns.reanalyse(settings, current_app.extensions["celery"], g.principal, parse_job_id(job_id),
                                    api_name, req.analysis_prompt)
    return R.AnalysisRun(job_id=job_key, analysis=R.AnalysisOut.of(row)), 202


@jobs.delete("/jobs/<job_id>")
@documented(ok={204: None}, errors=(404, 409))
@login_required
def delete(job_id: str) -> Answer:
    """Delete a final job with its results and files"""
    usecases.delete(current_settings(), g.principal, parse_job_id(job_id))
    return "", 204
