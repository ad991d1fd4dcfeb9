"""Rows -> JSON-ready dicts."""

from __future__ import annotations

import datetime as dt
from typing import Any

from audiojobs.jobs.models import Analysis, Job, StageRun, Transcript, TranscriptChunk


def iso_utc(value: dt.datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def job_summary(job: Job) -> dict[str, Any]:
    return {"id": job.id, "uuid": job.uuid, "domain": job.domain, "queue": job.queue,
            "job_type": job.job_type, "status": job.status}


# Share of a typical job's time each stage takes, for one 0-100 figure across the pipeline.
STAGE_WEIGHTS = {"audio_download": 10, "audio_convert": 5, "audio_transcribe": 75, "audio_chunk": 3,
                 "audio_analyze": 5, "audio_store": 2}


def _stage_percent(detail: dict[str, Any]) -> float:
    if isinstance(detail.get("percent"), (int, float)):
        return float(detail["percent"])
    done, total = detail.get("downloaded_bytes"), detail.get("total_bytes")
    if isinstance(done, (int, float)) and isinstance(total, (int, float)) and total > 0:
        return min(100.0, 100.0 * done / total)
    return 0.0


def overall_progress(job: Job) -> float:
    """0-100 across the stages: the weights of the stages done, plus the running one's own share."""
    if job.status == "completed":
        return 100.0
    if job.stage not in STAGE_WEIGHTS or (job.status == "queued" and not job.started_at):
        return 0.0
    names = list(STAGE_WEIGHTS)
    done = sum(STAGE_WEIGHTS[name] for name in names[:names.index(job.stage)])
    detail = (job.progress or {}).get(job.stage) or {}
    return round(done + STAGE_WEIGHTS[job.stage] * _stage_percent(detail) / 100, 1)


def eta_seconds(job: Job) -> float | None:
    """Seconds until transcription ends, from its pace so far; None outside transcription."""
    if job.status != "processing" or job.stage != "audio_transcribe":
        return None
    eta = ((job.progress or {}).get("audio_transcribe") or {}).get("eta_seconds")
    return float(eta) if isinstance(eta, (int, float)) else None


def job_to_dict(job: Job) -> dict[str, Any]:
    return {
        **job_summary(job),
        "stage": job.stage,
        "priority": job.priority,
        "retry_count": job.retry_count,
        "max_retries": job.max_retries,
        "owner_user_id": job.owner_user_id,
        "payload": {k: v for k, v in (job.payload or {}).items() if not k.startswith("_")},
        "error_code": job.error_code,
        "error_message": job.error_message,
        "attempt_errors": list(job.attempt_errors or []),
        "media_duration_seconds": job.media_duration_seconds,
        "progress": overall_progress(job),
        "eta_seconds": eta_seconds(job),
        "progress_detail": job.progress,
        "leased_until": iso_utc(job.leased_until),
        "worker_id": job.worker_id,
        "request_id": job.request_id,
        "created_at": iso_utc(job.created_at),
        "started_at": iso_utc(job.started_at),
        "updated_at": iso_utc(job.updated_at),
        "completed_at": iso_utc(job.completed_at),
        "cancelled_at": iso_utc(job.cancelled_at),
        "retry_at": iso_utc(job.dispatch_due_at) if job.status == "queued" and job.retry_count else None,
    }


def stage_run_to_dict(run: StageRun) -> dict[str, Any]:
    return {"stage": run.stage, "attempt": run.attempt, "status": run.status, "worker_id": run.worker_id,
            "started_at": iso_utc(run.started_at), "finished_at": iso_utc(run.finished_at),
            "duration_seconds": run.duration_seconds, "error_code": run.error_code,
            "error_message": run.error_message}


def result_to_dict(job: Job, transcript: Transcript, chunks: list[TranscriptChunk],
                   analysis: Analysis | None) -> dict[str, Any]:
    body = {"text": transcript.text, "segments": transcript.segments, "language": transcript.language,
            "duration": transcript.duration_seconds, "model": transcript.model}
    return {
        "job_id": job.id,
        "status": job.status,
        **body,
        "transcript": {**body, "source": transcript.source},
        "chunks": [{"index": c.chunk_index, "text": c.text, "start": c.start_seconds, "end": c.end_seconds}
                   for c in chunks],
        "analysis": None if analysis is None else analysis_to_dict(analysis),
    }


def analysis_to_dict(analysis: Analysis) -> dict[str, Any]:
    return {"provider": analysis.provider, "model": analysis.model, "summary": analysis.summary,
            "key_phrases": analysis.key_phrases, "prompt": analysis.prompt, "parts": analysis.parts,
            "cached": analysis.cached, "status": analysis.status, "error_code": analysis.error_code,
            "error_message": analysis.error_message, "updated_at": iso_utc(analysis.updated_at)}
