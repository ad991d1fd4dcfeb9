"""The one place the six stages are chained and sent to the broker."""

from __future__ import annotations

from celery import Celery, chain
from celery.canvas import Signature

from audiojobs.jobs.states import PIPELINE


def pipeline_for(celery: Celery, job_id: int) -> Signature:
    """download → convert → transcribe → chunk → analyze → store, each task taking only the job id.

    Signatures are sent by name, so the API never imports the stage modules (or Whisper).
    """
    return chain(*(celery.signature(f"audiojobs.{stage.value}", args=(job_id,), immutable=True)
                   for stage in PIPELINE))


def enqueue(celery: Celery, job_id: int) -> None:
    """Send the chain through ``celery``'s broker. Call only after the job row is committed."""
    pipeline_for(celery, job_id).apply_async()
