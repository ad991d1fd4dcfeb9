"""audio_store: transcript, chunks and analysis into the database in one transaction, then cleanup.

Idempotent and fenced: results are replaced, not added, and only the attempt that still holds
the job (newest fence, job still processing) writes; so a re-delivered or stale store leaves
exactly one result.
"""

from __future__ import annotations

import sqlalchemy as sa

from audiojobs.db import session_scope, utcnow
from audiojobs.jobs import service
from audiojobs.jobs.models import Analysis, Transcript, TranscriptChunk
from audiojobs.pipeline.context import (
    ANALYSIS_NAME,
    CHUNKS_NAME,
    TRANSCRIPT_NAME,
    Outcome,
    StageContext,
)
from audiojobs.pipeline.guard import AttemptStopped
from audiojobs.storage import remove_job_files


def run(ctx: StageContext) -> Outcome:
    transcript = ctx.read_json(TRANSCRIPT_NAME)
    chunks = ctx.read_json(CHUNKS_NAME) if ctx.has(CHUNKS_NAME) else []
    analysis = ctx.read_json(ANALYSIS_NAME) if ctx.has(ANALYSIS_NAME) else None
    with session_scope(ctx.settings.effective_database_url) as session:
        job = service.own_job_for_store(session, ctx.attempt)
        if job is None:
            raise AttemptStopped(service.attempt_lost_reason(session, ctx.attempt) or "taken_over")
        for model in (TranscriptChunk, Analysis, Transcript):
            session.execute(sa.delete(model).where(model.job_id == ctx.job_id))
        payload = job.payload
        session.add(Transcript(
            job_id=ctx.job_id, source=payload.get("url") or payload.get("local_path")
            or f"upload:{(payload.get('upload') or {}).get('filename', '')}",
            duration_seconds=transcript["duration"], language=transcript.get("language"),
            model=transcript["model"], text=transcript["text"], segments=transcript["segments"],
        ))
        session.add_all(TranscriptChunk(job_id=ctx.job_id, chunk_index=c["index"], text=c["text"],
                                        start_seconds=c["start"], end_seconds=c["end"], speakers=c.get("speakers"))
                        for c in chunks)
        if analysis is not None:
            session.add(Analysis(job_id=ctx.job_id, provider=analysis["provider"], model=analysis.get("model"),
                                 summary=analysis["summary"], key_phrases=analysis["key_phrases"],
                                 prompt=analysis.get("prompt"), parts=analysis.get("parts", 1),
                                 cached=analysis.get("cached", False), updated_at=utcnow()))
        service.finish_stage(session, ctx.attempt)
        service.complete_job(session, job)
    remove_job_files(ctx.settings, ctx.attempt.job_uuid)  # the result is in the database now
    return Outcome.FINISHED
