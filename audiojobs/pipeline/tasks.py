"""Thin Celery tasks, one per stage; each takes a job id and hands the work to its stage module."""

from __future__ import annotations

import logging
import re

from audiojobs.celery_app import AudioJobsTask, app_settings, celery
from audiojobs.db import session_scope
from audiojobs.jobs import service
from audiojobs.jobs.states import Stage
from audiojobs.pipeline import analyze, chunk, convert, download, store, transcribe
from audiojobs.pipeline.context import remove_job_dir
from audiojobs.pipeline.runner import StageTask

log = logging.getLogger(__name__)


@celery.task(bind=True, base=StageTask, name="audiojobs.audio_download")
def audio_download(self: StageTask, job_id: int) -> None:
    self.run_stage(job_id, Stage.DOWNLOAD, download.run)


@celery.task(bind=True, base=StageTask, name="audiojobs.audio_convert")
def audio_convert(self: StageTask, job_id: int) -> None:
    self.run_stage(job_id, Stage.CONVERT, convert.run)


@celery.task(bind=True, base=StageTask, name="audiojobs.audio_transcribe")
def audio_transcribe(self: StageTask, job_id: int) -> None:
    self.run_stage(job_id, Stage.TRANSCRIBE, transcribe.run)


@celery.task(bind=True, base=StageTask, name="audiojobs.audio_chunk")
def audio_chunk(self: StageTask, job_id: int) -> None:
    self.run_stage(job_id, Stage.CHUNK, chunk.run)


@celery.task(bind=True, base=StageTask, name="audiojobs.audio_analyze")
def audio_analyze(self: StageTask, job_id: int) -> None:
    self.run_stage(job_id, Stage.ANALYZE, analyze.run)


@celery.task(bind=True, base=StageTask, name="audiojobs.audio_store")
def audio_store(self: StageTask, job_id: int) -> None:
    self.run_stage(job_id, Stage.STORE, store.run)


_JOB_DIR = re.compile(r"^job-(\d+)$")


@celery.task(base=AudioJobsTask, name="audiojobs.sweep_work_dirs")
def sweep_work_dirs() -> int:
    """Remove work directories left behind by jobs that are final (or deleted). Runs from beat."""
    settings = app_settings()
    if not settings.work_path.is_dir():
        return 0
    ids = [int(m.group(1)) for p in settings.work_path.iterdir() if (m := _JOB_DIR.match(p.name))]
    with session_scope(settings.effective_database_url) as session:
        finished = service.final_job_ids(session, ids)
    for job_id in finished:
        remove_job_dir(settings, job_id)
    if finished:
        log.info("removed %d work directories of finished jobs", len(finished))
    return len(finished)
