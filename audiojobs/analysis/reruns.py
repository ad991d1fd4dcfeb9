"""``POST /jobs/{id}/analyze``: analysis again on a completed job, from its stored transcript.

The job stays ``completed``; its analysis row turns ``pending`` with a new ``run`` number, a task
on the CPU queue analyses the stored transcript (no download, no transcription, no minutes) and
writes the result only if its run is still the newest (a second request fences the first out).
A lost task (a worker died) is sent again by the reaper once the run is overdue.
"""

from __future__ import annotations

import datetime as dt
import logging
from contextlib import closing
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from audiojobs.analysis.registry import get_provider
from audiojobs.analysis.states import AnalysisStatus, moved
from audiojobs.analysis.transcripts import analyze_transcript
from audiojobs.config import Settings
from audiojobs.db import session_scope, utcnow
from audiojobs.errors import AnalysisFailed, Conflict
from audiojobs.jobs import queries
from audiojobs.jobs.models import Analysis, Job, Transcript
from audiojobs.jobs.states import JobStatus
from audiojobs.users.principal import Principal

log = logging.getLogger(__name__)
TASK = "audiojobs.reanalyze"


def request_rerun(session: Session, job: Job, api_name: str, prompt: str | None) -> Analysis:
    row = session.scalar(sa.select(Analysis).where(Analysis.job_id == job.id).with_for_update())
    if row is None:
        row = Analysis(job_id=job.id, provider=api_name, summary="", key_phrases=[], run=0)
        session.add(row)
    row.provider = api_name
    row.model = None
    row.prompt = prompt
    row.status = moved(row.status, AnalysisStatus.PENDING) if row.status else AnalysisStatus.PENDING.value
    row.run = (row.run or 0) + 1
    row.error_code = row.error_message = None
    row.dispatched_at = row.updated_at = utcnow()
    session.flush()
    return row


def reanalyse(settings: Settings, celery: Any, principal: Principal, job_id: int, api_name: str,
              prompt: str | None) -> tuple[int, Analysis]:
    """``POST /jobs/{id}/analyze``: the caller's completed job is analysed again from its stored
    transcript (no download, no transcription, no minutes). (job id, its pending analysis)."""
    with session_scope(settings.effective_database_url) as session:
        job = queries.get_job_for(session, job_id, principal)
        if job.status != JobStatus.COMPLETED.value:
            raise Conflict(f"job {job.id} is {job.status}; only a completed job can be analysed again",
                           code="job_not_completed")
        if session.scalar(sa.select(Transcript.id).where(Transcript.job_id == job.id)) is None:
            raise Conflict(f"job {job.id} has no stored transcript", code="result_missing")
        row = request_rerun(session, job, api_name, prompt)
        key, run = job.id, row.run
    publish(celery, key, run)  # lost: the reaper sends it again
    return key, row


def publish(celery: Any, job_id: int, run: int) -> None:
    celery.send_task(TASK, args=[job_id, run])


def overdue_after(settings: Settings) -> float:
    """How long a run may stay pending before the reaper sends it again (every retry, map-reduce)."""
    return settings.analysis_timeout * (settings.analysis_max_retries + 1) * 4 + 60


def redispatch_lost(settings: Settings, celery: Any) -> int:
    cutoff = utcnow() - dt.timedelta(seconds=overdue_after(settings))
    with session_scope(settings.effective_database_url) as session:
        rows = list(session.scalars(sa.select(Analysis).where(Analysis.status == AnalysisStatus.PENDING.value,
                                                              Analysis.dispatched_at < cutoff).limit(50)))
        runs = [(row.job_id, row.run) for row in rows]
        for row in rows:
            row.dispatched_at = utcnow()
    for job_id, run in runs:
        log.warning("job %s: analysis run %s overdue; sent again", job_id, run)
        publish(celery, job_id, run)
    return len(runs)


def run_rerun(settings: Settings, job_id: int, run: int) -> str | None:
    """Analyse the stored transcript for ``run``; the analysis status afterwards (None: fenced out)."""
    with session_scope(settings.effective_database_url) as session:
        row = session.scalar(sa.select(Analysis).where(Analysis.job_id == job_id))
        if row is None or row.run != run or row.status != AnalysisStatus.PENDING.value:
            return None
        stored = session.execute(sa.select(Transcript.text, Transcript.segments)
                                 .where(Transcript.job_id == job_id)).one_or_none()
        api_name, prompt = row.provider, row.prompt
    try:
        if stored is None:
            raise AnalysisFailed("the job has no stored transcript")
        with closing(get_provider(api_name, settings)) as provider:
            result = analyze_transcript(provider, {"text": stored[0], "segments": stored[1]}, prompt, settings)
        error = None
    except AnalysisFailed as exc:
        result, error = None, exc
    with session_scope(settings.effective_database_url) as session:
        row = session.scalar(sa.select(Analysis).where(Analysis.job_id == job_id).with_for_update())
        if row is None or row.run != run or row.status != AnalysisStatus.PENDING.value:
            return None
        row.updated_at = utcnow()
        if result is None:
            assert error is not None
            row.status = moved(row.status, AnalysisStatus.FAILED)
            row.error_code, row.error_message = error.code, error.message
        else:
            row.status = moved(row.status, AnalysisStatus.COMPLETED)
            row.model, row.summary, row.key_phrases = result.model, result.summary, list(result.key_phrases)
            row.parts, row.cached = result.parts, result.cached
        log.info("job %s: analysis run %s %s", job_id, run, row.status)
        return row.status
