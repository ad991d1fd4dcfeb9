"""Re-dispatches racing a stage's life, on both databases: nothing may strand a job.

Issue 12: the reaper's broker-loss pass read a job on SQLite while a stage was starting, gave it a
new dispatch, and the job was left ``processing`` with no message, no lease and no end. These tests
replay that and the other ways a job gets a new dispatch (lease expiry, a retry, the stall watchdog)
at each point of a stage's life, through the real job service on a real database. ``Broker`` holds
the messages that exist and plays them the way ``pipeline/runner.py`` does (see its docstring):

- START: the stage runs, then ``finish_stage``; moved on: the chain sends the next stage under the
  message's dispatch; ``redispatch``: that dispatch is published instead; stale: nothing.
- SKIP_DONE: the chain sends the next stage under the message's dispatch.
- WAIT: the message comes back later. IGNORE: it is dropped.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from audiojobs.db import get_engine, session_scope, utcnow
from audiojobs.jobs import recovery, service
from audiojobs.jobs.attempts import Attempt, Decision, Dispatch
from audiojobs.jobs.models import Job, StageRun
from audiojobs.jobs.states import PIPELINE, Stage, next_stage

ALIVE = lambda _holder: False  # noqa: E731
LEASE = 60


@dataclass
class Broker:
    """The job's messages that exist, played through the job service like the runner plays them."""

    db_url: str
    queue: list[tuple[Stage, int]] = field(default_factory=list)
    log: list[str] = field(default_factory=list)

    def publish(self, dispatch: Dispatch) -> None:
        self.queue.append((dispatch.stage, dispatch.dispatch))

    def publish_due(self) -> None:
        """The reaper's outbox step: publish every due dispatch (as if its grace had passed)."""
        with session_scope(self.db_url) as s:
            s.execute(sa.update(Job).where(Job.dispatch_due_at.is_not(None))
                      .values(dispatch_due_at=utcnow() - dt.timedelta(minutes=1)))
        with session_scope(self.db_url) as s:
            due = recovery.due_dispatches(s)
            for each in due:
                recovery.mark_published(s, each)
        for each in due:
            self.publish(each)

    def begin(self, job_id: int, stage: Stage, dispatch: int, worker: str) -> service.StageDecision:
        with session_scope(self.db_url) as s:
            decision = service.begin_stage(s, job_id, stage, dispatch=dispatch, worker_id=worker,
                                           lease_seconds=LEASE, holder_is_dead=ALIVE)
        self.log.append(f"{stage.value}@{dispatch} by {worker}: {decision.decision.value} ({decision.reason})")
        if decision.decision is Decision.SKIP_DONE:
            self._chain_on(stage, dispatch)
        elif decision.decision is Decision.WAIT:
            assert decision.retry_in is not None and 0 < decision.retry_in <= LEASE
            self.queue.append((stage, dispatch))  # it comes back after the lease or the stage ends
        return decision

    def finish(self, attempt: Attempt) -> None:
        if attempt.stage is Stage.STORE:
            with session_scope(self.db_url) as s:
                job = service.own_job_for_store(s, attempt)
                if job is not None:
                    s.get(StageRun, attempt.run_id).status = "succeeded"  # type: ignore[union-attr]
                    s.get(StageRun, attempt.run_id).finished_at = utcnow()  # type: ignore[union-attr]
                    service.complete_job(s, job)
            return
        with session_scope(self.db_url) as s:
            end = service.finish_stage(s, attempt)
        self.log.append(f"{attempt.stage.value}@{attempt.dispatch} finished: {end}")
        if end.redispatch is not None:
            self.publish(end.redispatch)
            with session_scope(self.db_url) as s:
                recovery.mark_published(s, end.redispatch)
        elif end.moved_on:
            self._chain_on(attempt.stage, attempt.dispatch)

    def deliver_queued(self, job_id: int, worker: str) -> list[Attempt]:
        """Deliver every message queued now, once; the attempts they started (still running)."""
        started = []
        for stage, dispatch in list(self.queue):
            self.queue.remove((stage, dispatch))
            decision = self.begin(job_id, stage, dispatch, worker)
            if decision.attempt is not None:
                started.append(decision.attempt)
        return started

    def _chain_on(self, stage: Stage, dispatch: int) -> None:
        following = next_stage(stage)
        if following is not None:
            self.queue.append((following, dispatch))

    def run_to_the_end(self, job_id: int, worker: str = "host:9", rounds: int = 60) -> None:
        """Deliver what exists, one message at a time, each stage run to its end at once."""
        for _ in range(rounds):
            if not self.queue:
                return
            stage, dispatch = self.queue.pop(0)
            decision = self.begin(job_id, stage, dispatch, worker)
            if decision.decision is Decision.START:
                assert decision.attempt is not None
                self.finish(decision.attempt)
        raise AssertionError(f"still delivering after {rounds} messages: {self.log}")


def _admitted_job(db_url: str, broker: Broker, max_retries: int = 3) -> int:
    with session_scope(db_url) as s:
        job_id = service.create_job(s, owner_user_id="1", payload={"url": "https://e.com/a.mp3"},
                                    queue="audio_cpu", max_retries=max_retries, request_id=None).id
    with session_scope(db_url) as s:
        first = recovery.mark_admitted(s, job_id)
        assert first is not None
        recovery.mark_published(s, first)
    broker.publish(first)
    return job_id


def assert_completed_once(db_url: str, job_id: int, broker: Broker) -> None:
    with session_scope(db_url) as s:
        job = s.get(Job, job_id)
        assert job is not None
        runs = s.execute(sa.select(StageRun.stage, StageRun.status).where(StageRun.job_id == job_id)
                         .order_by(StageRun.id)).all()
        status = job.status
    assert status == "completed", f"job left {status}; messages played: {broker.log}"
    for stage in PIPELINE:
        succeeded = [r for r in runs if r.stage == stage.value and r.status == "succeeded"]
        assert len(succeeded) == 1, (stage, runs)


@contextmanager
def paused_after_job_read(db_url: str) -> Iterator[tuple[threading.Event, threading.Event]]:
    """Pause the first thread that reads the jobs row with a lock (begin_stage, finish_stage), right
    after the read, inside its transaction; yields (paused, release)."""
    engine = get_engine(db_url)
    paused, release = threading.Event(), threading.Event()
    claimed: list[int] = []

    def after(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if ("FROM jobs" in statement and statement.lstrip().upper().startswith("SELECT")
                and "WHERE jobs.id" in statement and not claimed):
            claimed.append(threading.get_ident())
            paused.set()
            assert release.wait(30)

    event.listen(engine, "after_cursor_execute", after)
    try:
        yield paused, release
    finally:
        release.set()
        event.remove(engine, "after_cursor_execute", after)


def _in_thread(fn: Any, *args: Any) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []

    def run() -> None:
        out.append(fn(*args))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def _broker_loss_pass(db_url: str) -> list[int]:
    with session_scope(db_url) as s:
        return recovery.redispatch_waiting(s)


def test_broker_loss_redispatch_racing_a_stage_begin_never_strands_the_job(db_url: str) -> None:
    """The issue's log, replayed: the reaper's broker-loss pass runs while audio_download starts."""
    broker = Broker(db_url)
    job_id = _admitted_job(db_url, broker)
    stage, dispatch = broker.queue.pop(0)
    with paused_after_job_read(db_url) as (paused, release):
        starter, started = _in_thread(broker.begin, job_id, stage, dispatch, "host:A")
        assert paused.wait(10)
        reaper, redispatched = _in_thread(_broker_loss_pass, db_url)
        reaper.join(timeout=1.0)  # a reaper that is serialised behind the begin waits here
        release.set()
        starter.join(timeout=30)
        reaper.join(timeout=30)
    assert not starter.is_alive() and not reaper.is_alive()
    decision = started[0]
    assert decision.decision is Decision.START and decision.attempt is not None
    # Serialised behind the begin, the pass saw the live lease: a running job is not re-dispatched.
    assert redispatched == [[]], f"the broker-loss pass re-dispatched the job while its stage began: {broker.log}"
    broker.publish_due()
    started = broker.deliver_queued(job_id, "host:B")
    assert started == []
    broker.finish(decision.attempt)
    broker.run_to_the_end(job_id)
    assert_completed_once(db_url, job_id, broker)


def _begin_first(broker: Broker, job_id: int) -> Attempt:
    stage, dispatch = broker.queue.pop(0)
    decision = broker.begin(job_id, stage, dispatch, "host:A")
    assert decision.decision is Decision.START and decision.attempt is not None
    return decision.attempt


def _age(db_url: str, job_id: int, seconds: float) -> None:
    """Pretend the job has not changed for ``seconds``."""
    with session_scope(db_url) as s:
        s.execute(sa.update(Job).where(Job.id == job_id)
                  .values(updated_at=utcnow() - dt.timedelta(seconds=seconds)))


def _redispatch(kind: str, db_url: str, broker: Broker, job_id: int, attempt: Attempt | None) -> Attempt | None:
    """Give the job a new dispatch the way ``kind`` does; the running attempt if it still runs."""
    if kind == "broker_loss":  # Redis came back empty: every queued message is gone
        broker.queue.clear()
        with session_scope(db_url) as s:
            recovery.redispatch_waiting(s)
    elif kind == "lease_expiry":  # the holder hung past its lease
        with session_scope(db_url) as s:
            s.execute(sa.update(Job).where(Job.id == job_id, Job.leased_until.is_not(None))
                      .values(leased_until=utcnow() - dt.timedelta(seconds=1)))
        with session_scope(db_url) as s:
            recovery.reap_expired_leases(s)
    elif kind == "stall_watchdog":  # the job's messages vanished without a broker loss
        broker.queue.clear()
        _age(db_url, job_id, 600)
        with session_scope(db_url) as s:
            candidates = recovery.stall_candidates(s, dt.timedelta(seconds=300))
        for candidate in candidates:  # none of them has a message: the broker model is empty
            with session_scope(db_url) as s:
                assert recovery.rescue_stalled(s, candidate, dt.timedelta(seconds=300)) == "rescued"
    elif kind == "retry":  # the running attempt hit a transient error
        assert attempt is not None
        with session_scope(db_url) as s:
            assert service.retry_later(s, attempt, code="transient_error", message="x", delay_seconds=0) == "retrying"
        attempt = None
    broker.publish_due()
    return attempt


# Each way a job gets a new dispatch, at each point of a stage's life where it can (only a running
# attempt retries).
CASES = [(kind, point) for kind in ("broker_loss", "lease_expiry", "stall_watchdog")
         for point in ("queued", "running", "between_stages")] + [("retry", "running")]


@pytest.mark.parametrize(("kind", "point"), CASES)
def test_a_redispatch_at_any_point_of_a_stage_leaves_the_job_one_way_forward(db_url: str, kind: str,
                                                                              point: str) -> None:
    broker = Broker(db_url)
    job_id = _admitted_job(db_url, broker)
    attempt = None
    if point in ("running", "between_stages"):
        attempt = _begin_first(broker, job_id)
    if point == "between_stages":
        broker.finish(attempt)  # type: ignore[arg-type]
        attempt = None
    attempt = _redispatch(kind, db_url, broker, job_id, attempt)
    # Whatever is queued now arrives while the first attempt (if any) still runs; then that ends
    # (first, as in the log), then whatever the new messages started.
    started = broker.deliver_queued(job_id, "host:B")
    for each in ([attempt] if attempt is not None else []) + started:
        broker.finish(each)
    broker.run_to_the_end(job_id)
    assert_completed_once(db_url, job_id, broker)


def test_an_attempt_that_ends_under_an_older_dispatch_sends_the_current_one(db_url: str) -> None:
    """Defence in depth: should a new dispatch ever slip in while a stage runs, the attempt's chain
    would be stale and the new message meets the lease; neither may leave the job without a way on."""
    broker = Broker(db_url)
    job_id = _admitted_job(db_url, broker)
    attempt = _begin_first(broker, job_id)
    with session_scope(db_url) as s:
        s.execute(sa.update(Job).where(Job.id == job_id).values(dispatch=Job.dispatch + 1))
    # The new dispatch's message meets the live lease: it waits instead of being dropped.
    assert broker.begin(job_id, Stage.DOWNLOAD, 2, "host:B").decision is Decision.WAIT
    broker.queue.clear()  # and say it is lost too: the finishing attempt alone must carry the job on
    with session_scope(db_url) as s:
        end = service.finish_stage(s, attempt)
    assert end.moved_on and end.redispatch == Dispatch(job_id, 2, Stage.CONVERT)
    # Due in the outbox in the same transaction: had the worker died before publishing it, the
    # reaper sends it once its grace has passed.
    with session_scope(db_url) as s:
        s.execute(sa.update(Job).where(Job.id == job_id).values(dispatch_due_at=utcnow() - dt.timedelta(seconds=5)))
    with session_scope(db_url) as s:
        assert recovery.due_dispatches(s) == [Dispatch(job_id, 2, Stage.CONVERT)]
    broker.publish_due()
    broker.run_to_the_end(job_id)
    assert_completed_once(db_url, job_id, broker)


def test_a_redispatch_racing_a_stage_end_is_serialised_behind_it(db_url: str) -> None:
    """The reaper's broker-loss pass while finish_stage holds the job. On SQLite it waits, then sees
    the job between stages and re-dispatches it (the attempt's chain message is then stale and the
    new dispatch carries the job on); on PostgreSQL its snapshot still shows the live lease and it
    leaves the job to the chain. Either way the job goes on and nothing runs twice."""
    broker = Broker(db_url)
    job_id = _admitted_job(db_url, broker)
    attempt = _begin_first(broker, job_id)
    broker.queue.clear()
    with paused_after_job_read(db_url) as (paused, release):
        finisher, _ = _in_thread(broker.finish, attempt)
        assert paused.wait(10)
        reaper, redispatched = _in_thread(_broker_loss_pass, db_url)
        reaper.join(timeout=1.0)
        release.set()
        finisher.join(timeout=30)
        reaper.join(timeout=30)
    assert not finisher.is_alive() and not reaper.is_alive()
    broker.publish_due()
    broker.run_to_the_end(job_id)
    assert_completed_once(db_url, job_id, broker)
    assert redispatched in ([[]], [[job_id]])
