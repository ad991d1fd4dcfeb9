"""The one place the six stages are chained and sent to the broker."""

from __future__ import annotations

from celery import Celery, chain
from celery.canvas import Signature

from audiojobs.jobs.service import Dispatch
from audiojobs.jobs.states import PIPELINE, Stage


def pipeline_for(celery: Celery, job_id: int, dispatch: int = 1, first: Stage = PIPELINE[0]) -> Signature:
    """The chain from ``first`` to ``audio_store``; each task takes only (job id, dispatch token).

    Signatures are sent by name, so the API never imports the stage modules (or Whisper).
    """
    stages = PIPELINE[PIPELINE.index(first):]
    return chain(*(celery.signature(f"audiojobs.{stage.value}", args=(job_id, dispatch), immutable=True)
                   for stage in stages))


def publish(celery: Celery, dispatch: Dispatch) -> None:
    """Send the job's remaining stages. Call only after the job row (and its dispatch) is committed."""
    pipeline_for(celery, dispatch.job_id, dispatch.dispatch, dispatch.stage).apply_async()
