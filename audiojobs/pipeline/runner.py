"""StageTask: the one place that turns a delivered stage message into job state.

Every stage task calls ``run_stage``. It asks the job service what the message means (start an
attempt, skip a stage already done, wait for another attempt's lease, or ignore a stale or foreign
message), runs the plain stage function under a heartbeat, and then moves the job on, schedules a
retry for a transient error, or ends the job ``failed`` with the error's code. Ending a job, or
ignoring a message, raises ``Ignore``, which also stops the rest of the chain.

Infrastructure failures around the stage (the database unreachable while opening or closing an
attempt) retry the message itself with Celery, changing nothing in the database.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import Any

import redis
import sqlalchemy.exc
from celery.exceptions import Ignore, Reject, SoftTimeLimitExceeded

from audiojobs import metrics
from audiojobs.celery_app import AudioJobsTask, app_settings, celery
from audiojobs.config import Settings
from audiojobs.db import session_scope
from audiojobs.errors import AudioJobsError, StorageUnavailable
from audiojobs.jobs import admission, recovery, service
from audiojobs.jobs.attempts import Decision, Dispatch
from audiojobs.jobs.flow import next_at, publish_and_mark
from audiojobs.jobs.priority import level_of_message
from audiojobs.jobs.states import PIPELINE, JobStatus, Stage
from audiojobs.logs import job_id_var, request_id_var
from audiojobs.pipeline import cleanup
from audiojobs.pipeline.context import Outcome, StageContext
from audiojobs.pipeline.guard import AttemptGuard, AttemptStopped, WorkerStopping, holder_is_dead, worker_id
from audiojobs.redis_client import redis_client
from audiojobs.storage import remove_job_files
from audiojobs.webhooks import service as webhooks

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
# Job states after which nothing of the job should stay on disk.
_CLEAN_UP_AFTER = {JobStatus.FAILED.value, JobStatus.CANCELLED.value, "deleted"}


def retry_delay(attempt: int) -> float:
    """Exponential backoff with jitter for a job's transient errors: ~2 s, 4 s, 8 s … capped at 5 min."""
    return random.uniform(0.5, 1.0) * min(300.0, 2.0 ** attempt)


def infra_delay(retries: int) -> float:
    """Backoff for re-delivering a message while the database is unreachable: 1 s … 30 s."""
    return random.uniform(0.5, 1.0) * min(30.0, 2.0 ** retries)


class StageTask(AudioJobsTask):
    abstract = True

    def run_stage(self, job_id: int, dispatch: int, stage: Stage, stage_fn: Callable[[StageContext], Outcome]) -> None:
        settings = app_settings()
        job_id_var.set(job_id)
        request_id_var.set(None)
        if settings.worker_stages and stage.value not in settings.worker_stages:
            self._hand_back(job_id, stage, settings)
        db_url = settings.effective_database_url
        cleanup.sweep_scratch_now_and_then(settings)  # this host's copies of finished jobs' files
        try:
            with session_scope(db_url) as session:
                decision = service.begin_stage(session, job_id, stage, dispatch=dispatch, worker_id=worker_id(),
                                               lease_seconds=settings.lease_seconds, holder_is_dead=holder_is_dead)
        except TRANSIENT_EXCEPTIONS as exc:
            log.warning("job %s: cannot open %s (%r); message retried", job_id, stage.value, exc)
            raise self.retry(countdown=infra_delay(self.request.retries), max_retries=None) from None
        if decision.decision is Decision.SKIP_DONE:
            log.info("job %s: %s already done; the chain goes on", job_id, stage.value)
            return
        if decision.decision is Decision.WAIT and decision.retry_in is not None:
            # The job's current dispatch: never dropped. It comes back, chain and all, after the
            # holder's lease or stage ends (then it starts, or finds the stage done and goes on).
            log.info("job %s: %s message waits %.1f s: %s", job_id, stage.value, decision.retry_in, decision.reason)
            raise self.retry(countdown=decision.retry_in, max_retries=None)
        if decision.decision is Decision.IGNORE or decision.attempt is None:
            log.info("job %s: %s message ignored: %s", job_id, stage.value, decision.reason)
            if decision.job_status in _CLEAN_UP_AFTER:
                remove_job_files(settings, decision.job_uuid)
            raise Ignore()
        attempt = decision.attempt
        log.info("job %s: %s started (attempt %s, fence %s)", job_id, stage.value, attempt.attempt, attempt.fence)
        if stage is PIPELINE[0] and settings.owner_strict:
            admit_quietly(settings)  # one fewer admitted job waits unstarted: let the next owner in
        limit = settings.transcribe_time_limit if stage is Stage.TRANSCRIBE else settings.stage_time_limit
        deadline = time.monotonic() + max(5, limit - 30)  # the soft limit, in a threads pool too
        with AttemptGuard(settings, attempt, deadline=deadline) as guard:
            ctx = StageContext(settings=settings, attempt=attempt, guard=guard, level=self._level())
            try:
                started = time.perf_counter()
                outcome = stage_fn(ctx)
                metrics.observe_stage(redis_client(settings), stage.value, time.perf_counter() - started)
            except AttemptStopped as stop:
                self._stopped(ctx, stop.reason)
            except WorkerStopping:
                # As a prefork worker's killed process: nothing recorded (the run stays open for the
                # next worker to close as lost), the message back on its queue.
                log.info("job %s: %s stopped: the worker is shutting down; the stage goes back", job_id,
                         stage.value)
                raise Reject("the worker is shutting down", requeue=True) from None
            except SoftTimeLimitExceeded:
                self._fail(ctx, "timeout", f"{stage.value} ran past its time limit")
            except AudioJobsError as exc:
                if exc.transient:  # a store outage is waited out without spending the job's retries
                    self._retry_later(ctx, exc.code, exc.message, spend_retry=not isinstance(exc, StorageUnavailable))
                self._fail(ctx, exc.code, exc.message)
            except TRANSIENT_EXCEPTIONS as exc:
                log.warning("job %s: %s hit a transient error: %r", job_id, stage.value, exc)
                self._retry_later(ctx, "transient_error", f"{stage.value}: {type(exc).__name__}")
            except Exception as exc:  # noqa: BLE001 - a bug must still end the job, never leave it processing
                log.exception("job %s: %s failed unexpectedly", job_id, stage.value)
                self._fail(ctx, "internal_error", f"{stage.value} failed unexpectedly ({type(exc).__name__})")
        if outcome is Outcome.FINISHED:
            log.info("job %s: %s finished the job", job_id, stage.value)
            self._job_ended(ctx)
            return
        try:
            with session_scope(db_url) as session:
                end = service.finish_stage(session, attempt, skipped=outcome is Outcome.SKIPPED, outputs=ctx.outputs)
                reason = None if end.moved_on else service.attempt_lost_reason(session, attempt)
        except TRANSIENT_EXCEPTIONS as exc:
            log.warning("job %s: cannot close %s (%r); message retried", job_id, stage.value, exc)
            raise self.retry(countdown=infra_delay(self.request.retries), max_retries=None) from None
        if not end.moved_on:
            self._stopped(ctx, reason or "taken_over", run_closed=True)
        if end.redispatch is not None:
            # The job was re-dispatched while this attempt ran: its chain's next message would be
            # stale. Send the current dispatch instead (it is due in the outbox should this fail).
            log.info("job %s: %s finished under dispatch %s; the job goes on under dispatch %s", job_id,
                     stage.value, attempt.dispatch, end.redispatch.dispatch)
            publish_dispatch(settings, self.app, end.redispatch)
            raise Ignore()
        if end.following is not None:
            next_at(settings, self.request.chain, end.following)
        log.info("job %s: %s finished", job_id, stage.value)

    def _level(self) -> int:
        """The priority level this message was sent at (aging included)."""
        info = getattr(self.request, "delivery_info", None) or {}
        return level_of_message(info.get("priority"))

    def _hand_back(self, job_id: int, stage: Stage, settings: Settings) -> None:
        """A stage this worker does not run (a GPU worker given anything but transcription): send the
        message, chain and all, to the CPU queue after a short backoff. The job is not touched."""
        queue = settings.cpu_queue
        log.info("job %s: %s is not run here (AUDIO_WORKER_STAGES); handed back to %s", job_id, stage.value, queue)
        raise self.retry(queue=queue, exchange="", routing_key=queue, countdown=settings.handback_seconds,
                         max_retries=None)

    def _stopped(self, ctx: StageContext, reason: str, run_closed: bool = False) -> None:
        """The attempt lost its job (cancelled, failed elsewhere, taken over): no side effects."""
        if not run_closed:
            with session_scope(ctx.settings.effective_database_url) as session:
                service.close_stopped_run(session, ctx.attempt, reason)
        if reason in _CLEAN_UP_AFTER:
            remove_job_files(ctx.settings, ctx.attempt.job_uuid)
            self._job_ended(ctx)
        log.info("job %s: %s attempt %s stopped: %s", ctx.job_id, ctx.attempt.stage.value, ctx.attempt.fence, reason)
        raise Ignore()

    def _job_ended(self, ctx: StageContext) -> None:
        """Free the job's concurrency slot and admit the owner's next waiting job."""
        admission.release(ctx.settings, self.app, ctx.attempt.owner_user_id, ctx.job_id)
        if ctx.payload.get("callback_url"):
            webhooks.dispatch_quietly(ctx.settings, self.app)

    def _fail(self, ctx: StageContext, code: str, message: str) -> None:
        with session_scope(ctx.settings.effective_database_url) as session:
            failed = service.fail_job(session, ctx.job_id, code=code, message=message, attempt=ctx.attempt)
        if failed:
            remove_job_files(ctx.settings, ctx.attempt.job_uuid)
            log.info("job %s failed: %s: %s", ctx.job_id, code, message)
            self._job_ended(ctx)
        raise Ignore()

    def _retry_later(self, ctx: StageContext, code: str, message: str, spend_retry: bool = True) -> None:
        delay = retry_delay(ctx.attempt.attempt)
        with session_scope(ctx.settings.effective_database_url) as session:
            outcome = service.retry_later(session, ctx.attempt, code=code, message=message, delay_seconds=delay,
                                          spend_retry=spend_retry)
        if outcome == "failed":
            remove_job_files(ctx.settings, ctx.attempt.job_uuid)
            self._job_ended(ctx)
        log.info("job %s: %s: %s (%s; next try in %.1f s)", ctx.job_id, ctx.attempt.stage.value, message, outcome,
                 delay)
        raise Ignore()

    def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        """An error outside the stage (e.g. the broker was down when the chain's next message was
        sent): make the job's next dispatch due, so the reaper publishes it once things recover."""
        job_id = args[0] if args else kwargs.get("job_id")
        log.error("job %s: %s failed outside its stage: %r", job_id, self.name, exc)
        try:
            with session_scope(app_settings().effective_database_url) as session:
                recovery.mark_dispatch_due(session, int(job_id), delay_seconds=5)
        except Exception as inner:  # noqa: BLE001 - the lease and the reaper remain as the last resort
            log.error("job %s: could not schedule a re-dispatch: %r", job_id, inner)


def publish_dispatch(settings: Settings, celery: Any, dispatch: Dispatch) -> None:
    """Publish a due dispatch now and take it out of the outbox; on failure the reaper sends it."""
    try:
        publish_and_mark(settings, celery, dispatch)
    except Exception as exc:  # noqa: BLE001 - the outbox still holds it: the reaper publishes it
        log.warning("job %s: dispatch %s not published now (%r); the reaper will", dispatch.job_id,
                    dispatch.dispatch, exc)


def admit_quietly(settings: Settings) -> None:
    try:
        admission.admit(settings, celery)
    except Exception as exc:  # noqa: BLE001 - admission is retried by every reaper pass
        log.warning("admission after a job start failed: %r", exc)
