"""One 0-100 progress figure across a job's stages, and its transcription ETA, from the job row."""

from __future__ import annotations

from typing import Any

from audiojobs.jobs.models import Job

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
