"""The job service on both databases: attempts, fencing, dispatch tokens, leases, retries."""

from __future__ import annotations

import datetime as dt

import pytest

from audiojobs.db import session_scope, utcnow
from audiojobs.errors import Conflict
from audiojobs.jobs import idempotency, queries, recovery, service
from audiojobs.jobs.attempts import Decision
from audiojobs.jobs.models import Job, StageRun
from audiojobs.jobs.states import Stage
from audiojobs.users.principal import Principal

ALIVE = lambda _holder: False  # noqa: E731
DEAD = lambda _holder: True  # noqa: E731


def _create(url: str, owner: str = "1", max_retries: int = 2, admit: bool = True) -> int:
    with session_scope(url) as s:
        job_id = service.create_job(s, owner_user_id=owner, payload={"url": "https://e.com/a.mp3"},
                                    queue="audio_cpu", max_retries=max_retries, request_id="r1").id
    if admit:
        with session_scope(url) as s:
            assert recovery.mark_admitted(s, job_id) == service.Dispatch(job_id, 1, Stage.DOWNLOAD)
    return job_id


def _begin(url: str, job_id: int, stage: Stage = Stage.DOWNLOAD, dispatch: int = 1, worker: str = "host:1",
           holder_dead=ALIVE) -> service.StageDecision:  # type: ignore[no-untyped-def]
    with session_scope(url) as s:
        return service.begin_stage(s, job_id, stage, dispatch=dispatch, worker_id=worker, lease_seconds=60,
                                   holder_is_dead=holder_dead)


def _job(url: str, job_id: int) -> Job:
    with session_scope(url) as s:
        job = s.get(Job, job_id)
        assert job is not None
        return job


def test_stage_lifecycle_moves_the_job_on(db_url: str) -> None:
    job_id = _create(db_url)
    first = _begin(db_url, job_id)
    assert first.decision is Decision.START and first.attempt is not None
    job = _job(db_url, job_id)
    assert (job.status, job.stage, job.fence, job.worker_id) == ("processing", "audio_download", 1, "host:1")
    assert job.leased_until is not None and job.leased_until.tzinfo is not None
    with session_scope(db_url) as s:
        assert service.finish_stage(s, first.attempt).moved_on
    job = _job(db_url, job_id)
    assert (job.stage, job.leased_until) == ("audio_convert", None)
    # A re-delivered download message: already done, the chain goes on; nothing is re-run.
    assert _begin(db_url, job_id, Stage.DOWNLOAD).decision is Decision.SKIP_DONE
    # A message for a later stage than the job's is not ours.
    assert _begin(db_url, job_id, Stage.CHUNK).decision is Decision.IGNORE


def test_jobs_without_a_slot_never_start(db_url: str) -> None:
    job_id = _create(db_url, admit=False)
    assert _begin(db_url, job_id).decision is Decision.IGNORE
    with session_scope(db_url) as s:
        assert recovery.waiting_job_ids(s, "1", 10) == [job_id]
        assert recovery.count_admitted_unstarted(s) == 0


def test_stale_dispatch_and_final_jobs_are_ignored(db_url: str) -> None:
    job_id = _create(db_url)
    assert _begin(db_url, job_id, dispatch=7).decision is Decision.IGNORE
    started = _begin(db_url, job_id)
    assert started.attempt is not None
    with session_scope(db_url) as s:
        assert service.fail_job(s, job_id, code="invalid_media", message="x" * 5000, attempt=started.attempt)
    job = _job(db_url, job_id)
    assert (job.status, job.error_code, len(job.error_message or "")) == ("failed", "invalid_media", 2000)
    ignored = _begin(db_url, job_id, Stage.CONVERT)
    assert ignored.decision is Decision.IGNORE and ignored.job_status == "failed"
    with session_scope(db_url) as s:  # not failed twice
        assert not service.fail_job(s, job_id, code="other", message="y")


def test_live_lease_is_never_stolen_but_a_dead_holder_costs_a_retry(db_url: str) -> None:
    job_id = _create(db_url)
    first = _begin(db_url, job_id, worker="host:1")
    assert first.attempt is not None
    # The same message delivered again elsewhere while the first attempt runs: it does not run, and
    # it is not dropped either (it is the job's current dispatch): it comes back within the lease.
    waiting = _begin(db_url, job_id, worker="host:2")
    assert waiting.decision is Decision.WAIT and waiting.retry_in is not None and 0 < waiting.retry_in <= 60
    # Its holder died (same host, process gone): the new delivery takes over, one retry spent.
    second = _begin(db_url, job_id, worker="host:2", holder_dead=DEAD)
    assert second.decision is Decision.START and second.attempt is not None
    assert second.attempt.fence == first.attempt.fence + 1
    job = _job(db_url, job_id)
    assert job.retry_count == 1 and job.attempt_errors[-1]["code"] == "worker_lost"
    # The old attempt is fenced off: its writes change nothing.
    with session_scope(db_url) as s:
        assert not service.finish_stage(s, first.attempt).moved_on
        assert not service.set_media_duration(s, first.attempt, 3.0)
        assert not service.fail_job(s, job_id, code="x", message="y", attempt=first.attempt)
        assert service.renew_lease(s, first.attempt, 60) == "taken_over"
        assert service.renew_lease(s, second.attempt, 60) is None
        runs = s.query(StageRun).filter_by(job_id=job_id).order_by(StageRun.id).all()
        assert [r.status for r in runs] == ["lost", "running"]


def test_a_stage_that_keeps_killing_its_worker_ends_lease_expired(db_url: str) -> None:
    job_id = _create(db_url, max_retries=2)
    for attempt in range(3):
        assert _begin(db_url, job_id, worker=f"host:{attempt}", holder_dead=DEAD).decision is Decision.START
    final = _begin(db_url, job_id, worker="host:9", holder_dead=DEAD)
    assert final.decision is Decision.IGNORE
    job = _job(db_url, job_id)
    assert (job.status, job.error_code, job.retry_count) == ("failed", "lease_expired", 3)


def test_reaper_retries_expired_leases_then_gives_up(db_url: str) -> None:
    job_id = _create(db_url, max_retries=1)
    for round_ in range(2):
        started = _begin(db_url, job_id, dispatch=round_ + 1)
        assert started.decision is Decision.START
        with session_scope(db_url) as s:
            s.get(Job, job_id).leased_until = utcnow() - dt.timedelta(seconds=1)  # type: ignore[union-attr]
        with session_scope(db_url) as s:
            assert recovery.reap_expired_leases(s) == [job_id]
        job = _job(db_url, job_id)
        if round_ == 0:
            assert (job.status, job.retry_count, job.dispatch) == ("queued", 1, 2)
            assert job.dispatch_due_at is not None
    job = _job(db_url, job_id)
    assert (job.status, job.error_code) == ("failed", "lease_expired")


def test_retry_later_backs_off_with_a_new_dispatch(db_url: str) -> None:
    job_id = _create(db_url)
    started = _begin(db_url, job_id)
    assert started.attempt is not None
    with session_scope(db_url) as s:
        assert service.retry_later(s, started.attempt, code="transient_error", message="timeout",
                                   delay_seconds=30) == "retrying"
    job = _job(db_url, job_id)
    assert (job.status, job.retry_count, job.dispatch, job.worker_id) == ("queued", 1, 2, None)
    with session_scope(db_url) as s:
        s.get(Job, job_id).dispatch_due_at = utcnow() + dt.timedelta(seconds=30)  # type: ignore[union-attr]
    with session_scope(db_url) as s:
        assert recovery.due_dispatches(s) == []  # not before its backoff
        s.get(Job, job_id).dispatch_due_at = utcnow() - dt.timedelta(seconds=5)  # type: ignore[union-attr]
    with session_scope(db_url) as s:
        due = recovery.due_dispatches(s)
        assert due == [service.Dispatch(job_id, 2, Stage.DOWNLOAD)]
        recovery.mark_published(s, due[0])
    with session_scope(db_url) as s:
        assert recovery.due_dispatches(s) == []


def test_broker_loss_redispatches_every_waiting_job_but_not_running_ones(db_url: str) -> None:
    waiting, running = _create(db_url), _create(db_url)
    assert _begin(db_url, running).decision is Decision.START
    with session_scope(db_url) as s:
        assert recovery.redispatch_waiting(s) == [waiting]
    assert _job(db_url, waiting).dispatch == 2 and _job(db_url, running).dispatch == 1


def test_cancel_and_delete(db_url: str) -> None:
    owner = Principal("alice", is_admin=False)
    job_id = _create(db_url, owner="alice")
    started = _begin(db_url, job_id)
    assert started.attempt is not None
    with session_scope(db_url) as s:
        with pytest.raises(Conflict):
            service.delete_job(s, job_id, owner)
        job = service.cancel_job(s, job_id, owner)
        assert (job.status, job.error_code) == ("cancelled", "cancelled") and job.cancelled_at is not None
    with session_scope(db_url) as s:
        assert service.attempt_lost_reason(s, started.attempt) == "cancelled"
        with pytest.raises(Conflict):
            service.cancel_job(s, job_id, owner)
        service.delete_job(s, job_id, owner)
    with session_scope(db_url) as s:
        assert s.get(Job, job_id) is None


def test_idempotency_keys(db_url: str) -> None:
    job_id = _create(db_url)
    body = {"url": "https://e.com/a.mp3", "model": "whisper-1"}
    ttl = dt.timedelta(hours=24)
    with session_scope(db_url) as s:
        assert idempotency.find_idempotent_job(s, owner_user_id="1", key="k", payload=body, ttl=ttl) is None
        idempotency.remember_idempotency_key(s, owner_user_id="1", key="k", payload=body, job_id=job_id)
    with session_scope(db_url) as s:
        found = idempotency.find_idempotent_job(s, owner_user_id="1", key="k", payload=dict(reversed(body.items())),
                                            ttl=ttl)
        assert found is not None and found.id == job_id
        assert idempotency.find_idempotent_job(s, owner_user_id="2", key="k", payload=body, ttl=ttl) is None
        with pytest.raises(Conflict):
            idempotency.find_idempotent_job(s, owner_user_id="1", key="k", payload={**body, "model": "base"}, ttl=ttl)
        assert idempotency.find_idempotent_job(s, owner_user_id="1", key="k", payload=body,
                                           ttl=dt.timedelta(seconds=0)) is None  # expired keys are forgotten


def test_queries(db_url: str) -> None:
    a1, _b1, a2 = _create(db_url, "a"), _create(db_url, "b"), _create(db_url, "a")
    _begin(db_url, a2)
    with session_scope(db_url) as s:
        assert [j.id for j in queries.list_jobs(s, queries.JobFilter(owner_user_id="a"), limit=10)] == [a2, a1]
        assert queries.count_by_status(s, owner_user_id=None)["queued"] == 2
        assert queries.count_processing(s, "a") == 1
        assert queries.final_job_ids(s, [a1, a2, 12345]) == {12345}


def test_minutes_are_charged_once_and_given_back_when_the_job_does_not_complete(db_url: str) -> None:
    from audiojobs.quotas import minutes

    day = minutes.utc_today()
    job_id = _create(db_url, owner="m")
    started = _begin(db_url, job_id)
    assert started.attempt is not None
    with session_scope(db_url) as s:
        assert service.charge_minutes(s, started.attempt, 0.5, 1.0, day) is True
        assert service.charge_minutes(s, started.attempt, 0.5, 1.0, day) is True  # again: not charged twice
        assert minutes.usage(s, "m", day) == (0.5, 1)
    with session_scope(db_url) as s:
        service.cancel_job(s, job_id, Principal("m", is_admin=False))
    with session_scope(db_url) as s:
        assert minutes.usage(s, "m", day) == (0.0, 1)  # the reservation went back; the start still counts
        assert s.get(Job, job_id).minutes_charged == 0.0  # type: ignore[union-attr]
