"""audio_store: transcript, chunks and analysis into the database in one transaction, then cleanup.

Idempotent: results are replaced, not added, and a job already completed is left alone, so a
re-delivered store leaves exactly one result.
"""

from __future__ import annotations

import sqlalchemy as sa

from audiojobs.db import session_scope
from audiojobs.jobs import service
from audiojobs.jobs.models import Analysis, Job, Transcript, TranscriptChunk
from audiojobs.pipeline.context import ANALYSIS_NAME, CHUNKS_NAME, TRANSCRIPT_NAME, StageContext, remove_job_dir


def run(ctx: StageContext) -> bool:
    """True when this call completed the job; False when it was already final (nothing written)."""
    transcript = ctx.read_json(TRANSCRIPT_NAME) if ctx.path(TRANSCRIPT_NAME).exists() else None
    with session_scope(ctx.settings.effective_database_url) as session:
        job = session.execute(sa.select(Job).where(Job.id == ctx.job_id).with_for_update()).scalar_one_or_none()
        if job is None or job.status_enum.is_final:
            return False
        if transcript is None:
            transcript = ctx.read_json(TRANSCRIPT_NAME)  # raises the missing-file error
        chunks = ctx.read_json(CHUNKS_NAME) if ctx.path(CHUNKS_NAME).exists() else []
        analysis = ctx.read_json(ANALYSIS_NAME) if ctx.path(ANALYSIS_NAME).exists() else None
        for model in (TranscriptChunk, Analysis, Transcript):
            session.execute(sa.delete(model).where(model.job_id == ctx.job_id))
        payload = job.payload
        session.add(Transcript(
            job_id=ctx.job_id, source=payload.get("url") or payload.get("local_path") or "",
            duration_seconds=transcript["duration"], language=transcript.get("language"),
            model=transcript["model"], text=transcript["text"], segments=transcript["segments"],
        ))
        session.add_all(TranscriptChunk(job_id=ctx.job_id, chunk_index=c["index"], text=c["text"],
                                        start_seconds=c["start"], end_seconds=c["end"]) for c in chunks)
        if analysis is not None:
            session.add(Analysis(job_id=ctx.job_id, provider=analysis["provider"], model=analysis.get("model"),
                                 summary=analysis["summary"], key_phrases=analysis["key_phrases"]))
        service.finish_stage(session, ctx.run_id)
        service.complete_job(session, job)
    remove_job_dir(ctx.settings, ctx.job_id)
    return True
