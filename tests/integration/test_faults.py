"""Nothing lost, nothing done twice: real workers killed, Redis emptied, PostgreSQL stopped.

Each fault test prints submitted / completed / lost / duplicated; lost and duplicated must be 0.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from audiojobs.db import session_scope
from audiojobs.jobs.models import Job, StageRun, Transcript
from audiojobs.jobs.states import FINAL_STATUS_VALUES
from tests.conftest import AUTH, stage_running, wait_for_job, word_error_rate
from tests.integration.conftest import Stack, build_stack
from tests.media import jfk_repeated
from tests.services import JFK_TEXT, PrivatePostgres, RedisServer, WorkerProcess

pytestmark = pytest.mark.integration
SUBMIT = "/api/v1/audio/jobs/submit"


def submit(stack: Stack, path: Path) -> int:
    resp = stack.client.post(SUBMIT, json={"local_path": str(path)}, headers=AUTH)
    assert resp.status_code == 202, resp.get_json()
    return int(resp.get_json()["id"])


def tally(stack: Stack, job_ids: list[int], label: str) -> dict[str, int]:
    """submitted / completed / lost / duplicated, from the database (the source of truth)."""
    with session_scope(stack.settings.effective_database_url) as session:
        statuses = dict(session.execute(sa.select(Job.id, Job.status).where(Job.id.in_(job_ids))).all())
        results = dict(session.execute(
            sa.select(Transcript.job_id, sa.func.count()).where(Transcript.job_id.in_(job_ids))
            .group_by(Transcript.job_id)).all())
    counts = {
        "submitted": len(job_ids),
        "completed": sum(1 for j in job_ids if statuses.get(j) == "completed" and results.get(j) == 1),
        "lost": sum(1 for j in job_ids if statuses.get(j) != "completed" or results.get(j, 0) == 0),
        "duplicated": sum(1 for j in job_ids if results.get(j, 0) > 1),
    }
    print(f"\n{label}: " + " / ".join(f"{k} {v}" for k, v in counts.items()))
    return counts


def wait_all_final(stack: Stack, job_ids: list[int], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with session_scope(stack.settings.effective_database_url) as session:
            pending = session.scalar(sa.select(sa.func.count()).select_from(Job).where(
                Job.id.in_(job_ids), Job.status.not_in(FINAL_STATUS_VALUES)))
        if not pending:
            return
        time.sleep(0.5)
    raise AssertionError(f"{pending} jobs still not final after {timeout} s")


def runs_of(stack: Stack, job_id: int, stage: str) -> list[str]:
    with session_scope(stack.settings.effective_database_url) as session:
        return list(session.scalars(sa.select(StageRun.status).where(
            StageRun.job_id == job_id, StageRun.stage == stage).order_by(StageRun.id)))


def sigterm_while_transcribing(stack: Stack, worker: WorkerProcess, path: Path, wait: float) -> tuple[int, float]:
    """Submit ``path``, SIGTERM ``worker`` once its transcription runs (as an orchestrator stops a
    container): the job's id and the seconds the worker took to go (at most ``wait``)."""
    try:
        job_id = submit(stack, path)
        wait_for_job(stack.client, job_id, timeout=60, until=stage_running("audio_transcribe"))
        started = time.monotonic()
        worker.proc.send_signal(signal.SIGTERM)
        worker.proc.wait(timeout=wait)
        return job_id, time.monotonic() - started
    finally:
        worker.stop()


@pytest.fixture(scope="module")
def long_audio(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return jfk_repeated(tmp_path_factory.mktemp("long") / "jfk-x8.flac", 8)  # 88 s


def test_worker_sigkilled_while_transcribing_completes_once(bare_stack: Stack, long_audio: Path) -> None:
    stack = bare_stack
    # A lease far longer than the test: the rescue must come from the reaper seeing the holder's
    # process gone (same host), not from the lease running out.
    env = {"JOBS_LEASE_SECONDS": "600"}
    path = stack.media_root / "long-kill.flac"
    path.write_bytes(long_audio.read_bytes())
    beat = stack.start_beat(env)
    victim = stack.start_worker(env=env)
    try:
        job_id = submit(stack, path)
        wait_for_job(stack.client, job_id, timeout=60, until=stage_running("audio_transcribe"))
        os.killpg(victim.proc.pid, signal.SIGKILL)  # the whole worker: main process and pool
        victim.proc.wait()
        rescuer = stack.start_worker(env=env)
        try:
            job = wait_for_job(stack.client, job_id, timeout=120)
        finally:
            rescuer.stop()
    finally:
        victim.stop()
        beat.stop()
    assert job["status"] == "completed", job
    assert job["retry_count"] == 1
    assert runs_of(stack, job_id, "audio_transcribe") == ["lost", "succeeded"]
    assert [e["code"] for e in job["attempt_errors"]] == ["worker_lost"]
    result = stack.client.get(f"/api/v1/audio/jobs/{job_id}/result", headers=AUTH).get_json()
    assert word_error_rate(" ".join([JFK_TEXT] * 8), result["text"]) <= 0.15
    counts = tally(stack, [job_id], "SIGKILL while transcribing")
    assert counts["lost"] == 0 and counts["duplicated"] == 0


def test_a_stage_that_always_kills_its_worker_ends_lease_expired(bare_stack: Stack) -> None:
    stack = bare_stack
    env = {"AUDIOJOBS_TEST_FAULT": "crash_convert"}
    worker = stack.start_worker(app="tests.fault_apps", env=env)
    try:
        resp = stack.client.post(SUBMIT, json={"local_path": str(stack.media_root / "jfk.flac")}, headers=AUTH)
        job_id = resp.get_json()["id"]
        job = wait_for_job(stack.client, job_id, timeout=120)
        assert (job["status"], job["error_code"]) == ("failed", "lease_expired"), job
        # One first attempt and max_retries retries, each killing its worker process.
        expected = ["lost"] * (job["max_retries"] + 1)
        assert runs_of(stack, job_id, "audio_convert") == expected
        assert job["retry_count"] == job["max_retries"] + 1
        # It does not loop: a few seconds later nothing more has run.
        time.sleep(3)
        assert runs_of(stack, job_id, "audio_convert") == expected
        print(f"\nstage that kills its worker: submitted 1 / failed lease_expired 1 after {len(expected)} attempts"
              " / lost 0 / duplicated 0")
        assert worker.proc.poll() is None  # the worker itself survived its pool processes' deaths
    finally:
        worker.stop()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


def test_redis_restarted_empty_loses_nothing(tmp_path: Path, own_redis: RedisServer,
                                             postgres: object) -> None:
    with build_stack("postgresql", tmp_path, own_redis.url(0), postgres) as stack:  # type: ignore[arg-type]
        worker = stack.start_worker(concurrency=2)
        beat = stack.start_beat()
        try:
            job_ids = [submit(stack, stack.media_root / "jfk.flac") for _ in range(20)]
            wait_for_job(stack.client, job_ids[2], timeout=60)  # some done, some running, most queued
            own_redis.stop()
            time.sleep(1)
            own_redis.start()  # empty: no persistence
            wait_all_final(stack, job_ids, timeout=240)
        finally:
            beat.stop()
            worker.stop()
        counts = tally(stack, job_ids, "Redis restarted empty with 20 jobs in flight")
        assert counts == {"submitted": 20, "completed": 20, "lost": 0, "duplicated": 0}


def test_postgres_stopped_for_ten_seconds(tmp_path: Path, test_redis: RedisServer) -> None:
    pg = PrivatePostgres(tmp_path / "pgdata")
    try:
        with build_stack("postgresql", tmp_path, test_redis.url(14), None, admin_url=pg.url) as stack:
            worker = stack.start_worker()
            beat = stack.start_beat()
            try:
                job_ids = [submit(stack, stack.media_root / "jfk.flac") for _ in range(6)]
                wait_for_job(stack.client, job_ids[0], timeout=60, until=lambda b: b["status"] == "processing")
                pg.stop()
                outage_started = time.monotonic()
                resp = stack.client.get(f"/api/v1/audio/jobs/{job_ids[0]}", headers=AUTH)
                assert resp.status_code == 503
                assert resp.get_json()["error"]["code"] == "database_unavailable"
                assert resp.headers["Retry-After"]
                resp = stack.client.post(SUBMIT, json={"local_path": str(stack.media_root / "jfk.flac")},
                                         headers=AUTH)
                assert resp.status_code == 503 and resp.get_json()["error"]["code"] == "database_unavailable"
                time.sleep(max(0.0, 10 - (time.monotonic() - outage_started)))
                pg.start()
                wait_all_final(stack, job_ids, timeout=180)
            finally:
                beat.stop()
                worker.stop()
            counts = tally(stack, job_ids, "PostgreSQL stopped for 10 s")
            assert counts == {"submitted": 6, "completed": 6, "lost": 0, "duplicated": 0}
    finally:
        pg.cleanup()


def test_sigterm_hands_the_running_stage_back_within_bounded_time(bare_stack: Stack, long_audio: Path) -> None:
    stack = bare_stack
    env = {"AUDIO_WORKER_SOFT_SHUTDOWN_SECONDS": "2"}
    path = stack.media_root / "long-term.flac"
    path.write_bytes(long_audio.read_bytes())
    job_id, shutdown = sigterm_while_transcribing(stack, stack.start_worker(env=env), path, wait=30)
    print(f"\nSIGTERM during transcription: worker gone after {shutdown:.1f} s")
    assert shutdown < 15
    # The stage went back to the broker: the next worker takes it at once (its holder is gone),
    # without waiting for the lease (120 s) to run out.
    rescuer = stack.start_worker()
    try:
        job = wait_for_job(stack.client, job_id, timeout=90)
    finally:
        rescuer.stop()
    assert job["status"] == "completed", job
    assert runs_of(stack, job_id, "audio_transcribe")[-1] == "succeeded"
    counts = tally(stack, [job_id], "SIGTERM while transcribing")
    assert counts["lost"] == 0 and counts["duplicated"] == 0
