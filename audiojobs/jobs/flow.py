"""The one place the six stages are chained and sent to the broker."""

from __future__ import annotations

from celery import Celery, chain
from celery.canvas import Signature

from audiojobs.config import Settings
from audiojobs.db import session_scope
from audiojobs.jobs import recovery
from audiojobs.jobs.attempts import Dispatch
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


def publish_and_mark(settings: Settings, celery: Celery, dispatch: Dispatch) -> None:
    """Publish a dispatch that is due in the outbox, then take it out. If publishing fails the
    dispatch stays due and the reaper sends it; if marking fails it is sent twice (harmless)."""
    publish(celery, dispatch)
    with session_scope(settings.effective_database_url) as session:
        recovery.mark_published(session, dispatch)
