"""A job row as the API shows it (``GET /jobs/{id}``, the job list, the event stream): plain JSON
fields. ``api/responses.Job`` is the model of this shape; the change notifications carry it."""

from __future__ import annotations

import datetime as dt
from typing import Any

from audiojobs.jobs.models import Job
from audiojobs.jobs.progress import eta_seconds, overall_progress


def iso_utc(value: dt.datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def job_fields(job: Job) -> dict[str, Any]:
    return {
        "id": job.id, "uuid": job.uuid, "domain": job.domain, "queue": job.queue, "job_type": job.job_type,
        "status": job.status, "stage": job.stage, "priority": job.priority, "retry_count": job.retry_count,
        "max_retries": job.max_retries, "owner_user_id": job.owner_user_id,
        "payload": {k: v for k, v in (job.payload or {}).items() if not k.startswith("_")},
        "error_code": job.error_code, "error_message": job.error_message,
        "attempt_errors": list(job.attempt_errors or []),
        "media_duration_seconds": job.media_duration_seconds, "progress": overall_progress(job),
        "eta_seconds": eta_seconds(job), "progress_detail": job.progress, "leased_until": iso_utc(job.leased_until),
        "worker_id": job.worker_id, "request_id": job.request_id, "created_at": iso_utc(job.created_at),
        "started_at": iso_utc(job.started_at), "updated_at": iso_utc(job.updated_at),
        "completed_at": iso_utc(job.completed_at), "cancelled_at": iso_utc(job.cancelled_at),
        "retry_at": iso_utc(job.dispatch_due_at) if job.status == "queued" and job.retry_count else None,
    }
