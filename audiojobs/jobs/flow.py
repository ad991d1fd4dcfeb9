"""The one place the six stages are chained and sent to the broker, at the job's priority."""

from __future__ import annotations

from typing import Any

from celery import Celery, chain
from celery.canvas import Signature

from audiojobs.config import Settings
from audiojobs.db import session_scope, utcnow
from audiojobs.jobs import priority, recovery
from audiojobs.jobs.attempts import Dispatch
from audiojobs.jobs.states import PIPELINE, Stage


def pipeline_for(celery: Celery, job_id: int, dispatch: int = 1, first: Stage = PIPELINE[0],
                 level: int | None = None) -> Signature:
    """The chain from ``first`` to ``audio_store``; each task takes only (job id, dispatch token).
    ``level``: the job's priority level now (each stage re-sets it for the next, see ``next_at``).

    Signatures are sent by name, so the API never imports the stage modules (or Whisper).
    """
    options = {} if level is None else {"priority": priority.message_priority(level)}
    stages = PIPELINE[PIPELINE.index(first):]
    return chain(*(celery.signature(f"audiojobs.{stage.value}", args=(job_id, dispatch), immutable=True, **options)
                   for stage in stages))


def level_now(settings: Settings, dispatch: Dispatch) -> int:
    """The level a dispatch is sent at now: the job's priority, aged since its admission."""
    return priority.effective(dispatch.priority, dispatch.admitted_at, utcnow(), settings.priority_aging_seconds)


def publish(celery: Celery, dispatch: Dispatch, level: int | None = None) -> None:
    """Send the job's remaining stages. Call only after the job row (and its dispatch) is committed."""
    pipeline_for(celery, dispatch.job_id, dispatch.dispatch, dispatch.stage, level).apply_async()


def publish_and_mark(settings: Settings, celery: Celery, dispatch: Dispatch) -> None:
    """Publish a dispatch that is due in the outbox, then take it out. If publishing fails the
    dispatch stays due and the reaper sends it; if marking fails it is sent twice (harmless)."""
    publish(celery, dispatch, level_now(settings, dispatch))
    with session_scope(settings.effective_database_url) as session:
        recovery.mark_published(session, dispatch)


def next_at(settings: Settings, chain_ahead: list[Any] | None, following: Dispatch) -> None:
    """A stage ended and its chain sends the next one (Celery does, from the message's ``chain``):
    send it at the job's level now, which may have aged or been changed by an admin since."""
    if chain_ahead and isinstance(chain_ahead[-1], dict):
        options = chain_ahead[-1].setdefault("options", {})
        options["priority"] = priority.message_priority(level_now(settings, following))
