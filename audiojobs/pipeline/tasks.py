"""Thin Celery tasks, one per stage; each takes (job id, dispatch token) and hands the work on."""

from __future__ import annotations

from audiojobs.analysis import reruns
from audiojobs.celery_app import AudioJobsTask, app_settings, celery
from audiojobs.jobs.states import Stage
from audiojobs.pipeline import analyze, chunk, cleanup, convert, download, reaper, store, transcribe
from audiojobs.pipeline.runner import TRANSIENT_EXCEPTIONS, StageTask, infra_delay
from audiojobs.transcription.batching import ARRIVALS


@celery.task(bind=True, base=StageTask, name="audiojobs.audio_download")
def audio_download(self: StageTask, job_id: int, dispatch: int) -> None:
    self.run_stage(job_id, dispatch, Stage.DOWNLOAD, download.run)


@celery.task(bind=True, base=StageTask, name="audiojobs.audio_convert")
def audio_convert(self: StageTask, job_id: int, dispatch: int) -> None:
    self.run_stage(job_id, dispatch, Stage.CONVERT, convert.run)


@celery.task(bind=True, base=StageTask, name="audiojobs.audio_transcribe")
def audio_transcribe(self: StageTask, job_id: int, dispatch: int) -> None:
    with ARRIVALS.coming():  # a batching worker's batcher waits a moment for jobs on their way
        self.run_stage(job_id, dispatch, Stage.TRANSCRIBE, transcribe.run)


@celery.task(bind=True, base=StageTask, name="audiojobs.audio_chunk")
def audio_chunk(self: StageTask, job_id: int, dispatch: int) -> None:
    self.run_stage(job_id, dispatch, Stage.CHUNK, chunk.run)


@celery.task(bind=True, base=StageTask, name="audiojobs.audio_analyze")
def audio_analyze(self: StageTask, job_id: int, dispatch: int) -> None:
    self.run_stage(job_id, dispatch, Stage.ANALYZE, analyze.run)


@celery.task(bind=True, base=StageTask, name="audiojobs.audio_store")
def audio_store(self: StageTask, job_id: int, dispatch: int) -> None:
    self.run_stage(job_id, dispatch, Stage.STORE, store.run)


@celery.task(base=AudioJobsTask, name="audiojobs.reap")
def reap() -> dict[str, object]:
    """Beat, every AUDIO_REAPER_INTERVAL_SECONDS: expired leases, broker loss, due dispatches."""
    return reaper.reap(app_settings(), celery).__dict__


@celery.task(base=AudioJobsTask, name="audiojobs.reset_quotas")
def reset_quotas() -> dict[str, int]:
    """Beat, at AUDIO_QUOTA_RESET_CRON (00:00 UTC): a new day's quotas, counters rebuilt from the ledger."""
    return reaper.reset_quotas(app_settings(), celery)


@celery.task(base=AudioJobsTask, name="audiojobs.sweep_work_dirs")
def sweep_work_dirs() -> int:
    """Beat, every 15 minutes: remove work directories of finished jobs."""
    return cleanup.sweep_work_dirs(app_settings())


@celery.task(bind=True, base=AudioJobsTask, name="audiojobs.reanalyze")
def reanalyze(self: AudioJobsTask, job_id: int, run: int) -> str | None:
    """POST /jobs/{id}/analyze: analysis again from the stored transcript."""
    try:
        return reruns.run_rerun(app_settings(), job_id, run)
    except TRANSIENT_EXCEPTIONS as exc:
        raise self.retry(countdown=infra_delay(self.request.retries), max_retries=None, exc=exc) from None
