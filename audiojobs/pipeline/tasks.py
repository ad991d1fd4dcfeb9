"""Thin Celery tasks, one per stage; each takes a job id and hands the work to its stage module."""

from __future__ import annotations

from audiojobs.celery_app import AudioJobsTask, app_settings, celery
from audiojobs.jobs.states import Stage
from audiojobs.pipeline import analyze, chunk, cleanup, convert, download, store, transcribe
from audiojobs.pipeline.runner import StageTask


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


@celery.task(base=AudioJobsTask, name="audiojobs.sweep_work_dirs")
def sweep_work_dirs() -> int:
    """Beat, every 15 minutes: remove work directories of finished jobs."""
    return cleanup.sweep_work_dirs(app_settings())
