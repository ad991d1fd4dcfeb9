"""StageTask: the one place that turns a stage function's outcome into job state.

Every stage task calls ``run_stage``: it opens the stage run (or does nothing when the job is
already final), calls the plain stage function, and then closes the run, retries a transient error
with backoff, or ends the job ``failed`` with the error's code. Ending a job raises ``Ignore``,
which also stops the rest of the chain.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from typing import Any

import redis
import sqlalchemy.exc
from celery.exceptions import Ignore, SoftTimeLimitExceeded

from audiojobs.celery_app import AudioJobsTask, app_settings, worker_id
from audiojobs.db import session_scope
from audiojobs.errors import AudioJobsError
from audiojobs.jobs import service
from audiojobs.jobs.models import Job
from audiojobs.jobs.states import Stage
from audiojobs.pipeline.context import StageContext, remove_job_dir

log = logging.getLogger(__name__)

# Failures outside our error tree that are worth another try.
TRANSIENT_EXCEPTIONS: tuple[type[BaseException], ...] = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    redis.ConnectionError,
    redis.TimeoutError,
    ConnectionError,
    TimeoutError,
)


def retry_delay(retry_count: int) -> float:
    """Exponential backoff with full jitter: 2 s, 4 s, 8 s … capped at 5 minutes."""
    return random.uniform(0.5, 1.0) * min(300.0, 2.0 ** (retry_count + 1))


class StageTask(AudioJobsTask):
    abstract = True

    def run_stage(self, job_id: int, stage: Stage, stage_fn: Callable[[StageContext], Any]) -> None:
        settings = app_settings()
        db_url = settings.effective_database_url
        with session_scope(db_url) as session:
            run = service.begin_stage(session, job_id, stage, worker_id=worker_id(),
                                      lease_seconds=settings.lease_seconds)
            if run is None:
                log.info("job %s is final or gone: %s does nothing", job_id, stage.value)
                raise Ignore()
            ctx = StageContext(job_id=job_id, payload=dict(run.job.payload), settings=settings,
                               run_id=run.id, worker_id=run.worker_id or "")
        log.info("job %s: %s started (attempt %s)", job_id, stage.value, run.attempt)
        try:
            outcome = stage_fn(ctx)
        except SoftTimeLimitExceeded:
            self._fail(ctx, "timeout", f"{stage.value} ran past its time limit")
        except AudioJobsError as exc:
            if exc.transient:
                self._retry_or_fail(ctx, exc.code, exc.message)
            self._fail(ctx, exc.code, exc.message)
        except TRANSIENT_EXCEPTIONS as exc:
            log.warning("job %s: %s hit a transient error: %r", job_id, stage.value, exc)
            self._retry_or_fail(ctx, "transient_error", f"{stage.value}: {type(exc).__name__}")
        except Exception as exc:  # noqa: BLE001 - a bug must still end the job, never leave it processing
            log.exception("job %s: %s failed unexpectedly", job_id, stage.value)
            self._fail(ctx, "internal_error", f"{stage.value} failed unexpectedly ({type(exc).__name__})")
        else:
            with session_scope(db_url) as session:
                service.finish_stage(session, ctx.run_id, skipped=outcome is False)
            log.info("job %s: %s finished", job_id, stage.value)

    def _fail(self, ctx: StageContext, code: str, message: str) -> None:
        with session_scope(ctx.settings.effective_database_url) as session:
            service.fail_job(session, ctx.job_id, code=code, message=message, run_id=ctx.run_id)
        remove_job_dir(ctx.settings, ctx.job_id)
        log.info("job %s failed: %s: %s", ctx.job_id, code, message)
        raise Ignore()

    def _retry_or_fail(self, ctx: StageContext, code: str, message: str) -> None:
        with session_scope(ctx.settings.effective_database_url) as session:
            job = session.get(Job, ctx.job_id)
            exhausted = job is None or job.retry_count >= job.max_retries
            if not exhausted:
                job = service.record_retry(session, ctx.job_id, run_id=ctx.run_id, code=code, message=message)
                delay = retry_delay(job.retry_count if job else 0)
        if exhausted:
            self._fail(ctx, code, f"{message} (gave up after {job.max_retries if job else 0} retries)")
        log.info("job %s: retrying %s in %.1f s: %s", ctx.job_id, self.name, delay, message)
        raise self.retry(countdown=delay, max_retries=None)
