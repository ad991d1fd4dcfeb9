"""``POST /api/v1/audio/transcriptions``: OpenAI's transcription API, answered synchronously.

The request is a job like any other (the same validation, quotas, concurrency caps, queues and
backends); this endpoint waits for it, up to ``AUDIO_SYNC_TIMEOUT_SECONDS``, and answers in the
asked ``response_format``. A job that takes longer is answered **202** with the job, to poll. The
official ``openai`` client works against it (``base_url=.../api/v1``, the API key as ``api_key``).
"""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify, request, url_for

from audiojobs import formats
from audiojobs.api import responses as R
from audiojobs.api.auth import current_settings, login_required
from audiojobs.api.jobs import read_upload
from audiojobs.api.openapi import TEXT, Answer, documented
from audiojobs.api.schemas import TranscriptionForm, validate_submit
from audiojobs.db import session_scope
from audiojobs.errors import AudioJobsError, ValidationError
from audiojobs.jobs import queries, usecases
from audiojobs.jobs.states import FINAL_STATUS_VALUES

openai_compat = Blueprint("openai_compat", __name__)

RESPONSE_FORMATS = ("json", "text", "srt", "verbose_json", "vtt", "diarized_json")
FIELDS = {"model", "language", "prompt", "response_format", "timestamp_granularities[]", "temperature"}
# A failed job's code -> the HTTP status the caller gets.
FAILURE_STATUS = {"invalid_media": 422, "source_too_large": 413, "quota_exceeded": 402, "unknown_model": 422,
                  "model_unavailable": 422}


@openai_compat.post("/transcriptions")
@documented(ok={200: R.TranscriptionBody, 202: R.JobSummary}, errors=(402, 413, 422, 429), tag="openai",
            form=TranscriptionForm, media={"text/plain": TEXT})
@login_required
def transcriptions() -> Answer:
    """OpenAI-compatible transcription, answered when done

    multipart/form-data: file, model, language, prompt, response_format (diarized_json labels each
    segment with its speaker), timestamp_granularities[]. A
    job that takes longer than AUDIO_SYNC_TIMEOUT_SECONDS is answered 202 with the job, to poll.
    """
    settings = current_settings()
    if request.mimetype != "multipart/form-data":
        raise ValidationError("send multipart/form-data with the audio in 'file'", code="invalid_body", field="file")
    storage, info, form = read_upload(settings)
    try:
        unknown = sorted(set(form) - FIELDS)
        if unknown:
            raise ValidationError(f"unknown field {unknown[0]!r}", code="unknown_field", field=unknown[0])
        response_format = form.get("response_format", "json")
        if response_format not in RESPONSE_FORMATS:
            raise ValidationError(f"response_format must be one of {', '.join(RESPONSE_FORMATS)}", code="invalid_value",
                                  field="response_format")
        temperature = form.get("temperature")
        if temperature not in (None, "0", "0.0"):
            raise ValidationError("only temperature 0 is supported (the decoder falls back on its own)",
                                  code="invalid_value", field="temperature")
        granularities = set(request.form.getlist("timestamp_granularities[]"))
        if granularities - {"word", "segment"}:
            raise ValidationError("timestamp_granularities[] may be word and segment", code="invalid_value",
                                  field="timestamp_granularities[]")
        body: dict[str, Any] = {"model": form.get("model") or "whisper-1", "perform_chunking": False,
                                "word_timestamps": "word" in granularities,
                                "diarize": response_format == "diarized_json"}
        if form.get("language"):
            body["language"] = form["language"]
        if form.get("prompt"):
            body["initial_prompt"] = form["prompt"]
        payload = validate_submit(body, settings, g.principal, upload=info)
        job, _replayed = usecases.submit(settings, current_app.extensions["celery"], g.principal, payload, None,
                                         storage.stream, request_id=g.request_id)
    finally:
        storage.close()
    final = _wait(settings.effective_database_url, job.id, settings.sync_timeout)
    if final is None:
        return R.JobSummary.of(job), 202, {"Location": url_for("audio_jobs.get_job", job_id=job.id)}
    if final["status"] != "completed":
        code = final["error_code"] or final["status"]
        raise AudioJobsError(final["error_message"] or f"the job ended {final['status']}", code=code,
                             http_status=FAILURE_STATUS.get(code, 503),
                             field="file" if code in FAILURE_STATUS else None)
    return _render(final["result"], response_format, granularities)


def _wait(db_url: str, job_id: int, timeout: float) -> dict[str, Any] | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with session_scope(db_url) as session:
            job = queries.get_job(session, job_id)
            if job is not None and job.status in FINAL_STATUS_VALUES:
                body: dict[str, Any] = {"status": job.status, "error_code": job.error_code,
                                        "error_message": job.error_message}
                if job.status == "completed":
                    body["result"] = R.Result.of(job, *usecases.stored_result(session, job)).model_dump(mode="json")
                return body
        time.sleep(0.1)
    return None


def _render(result: dict[str, Any], response_format: str, granularities: set[str]) -> Answer:
    if response_format == "json":
        return R.OpenAITranscription(text=result["text"])
    if response_format == "verbose_json":
        body = formats.verbose_json(result)
        if granularities == {"word"}:
            body.pop("segments", None)
        return jsonify(body)
    if response_format == "diarized_json":
        return jsonify(formats.diarized_json(result))
    if response_format == "text":
        return Response(formats.text(result), mimetype="text/plain")
    render = formats.srt if response_format == "srt" else formats.vtt
    return Response(render(result["segments"]), mimetype="text/plain")
