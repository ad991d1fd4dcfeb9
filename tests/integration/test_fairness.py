"""Many users, fairly: concurrency caps under racing workers, slots freed after a SIGKILL, minute
quotas, strict round-robin, and the daily reset. AUTH_MODE=multi_user, real workers and beat."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as redis_lib
import sqlalchemy as sa

from audiojobs.db import session_scope
from audiojobs.jobs.models import Job, StageRun
from audiojobs.quotas import minutes
from audiojobs.quotas.slots import slots_key
from audiojobs.quotas.tiers import tier_table
from audiojobs.users import service as users
from tests.conftest import _redis_dbs, stage_running, wait_for_job
from tests.integration.conftest import Stack, build_stack
from tests.media import ffmpeg, jfk_repeated
from tests.services import JFK_FLAC, PostgresServer, RedisServer

pytestmark = pytest.mark.integration
SUBMIT = "/api/v1/audio/jobs/submit"
TIERS = ('{"capped": {"daily_minutes": null, "concurrent_jobs": 2, "max_file_mb": 100},'
         ' "single": {"daily_minutes": null, "concurrent_jobs": 1, "max_file_mb": 100},'
         ' "onemin": {"daily_minutes": 1, "concurrent_jobs": 3, "max_file_mb": 100},'
         ' "bulk": {"daily_minutes": null, "concurrent_jobs": 10, "max_file_mb": 100}}')


def multi_user_env(**extra: str) -> dict[str, str]:
    return {"AUTH_MODE": "multi_user", "AUDIOJOBS_JWT_SECRET": "j" * 40, "AUDIO_TIER_LIMITS_JSON": TIERS, **extra}


@pytest.fixture
def mu_stack(request: pytest.FixtureRequest, tmp_path: Path, test_redis: RedisServer,
             postgres: PostgresServer) -> Iterator[Stack]:
    extra = getattr(request, "param", {})
    with build_stack("postgresql", tmp_path, test_redis.url(next(_redis_dbs) % 15 + 1), postgres,
                     extra_env=multi_user_env(**extra)) as stack:
        yield stack


def add_user(stack: Stack, name: str, tier: str) -> dict[str, str]:
    """A user with an API key: the headers to submit as them."""
    with session_scope(stack.settings.effective_database_url) as session:
        user = users.create_user(session, name, password=f"{name}-password", tier=tier,
                                 known_tiers=set(tier_table(TIERS)))
        _row, key = users.create_api_key(session, user, "test")
    return {"X-API-KEY": key}


def own_copy(stack: Stack, headers: dict[str, str], path: Path) -> Path:
    """``path`` in the user's own directory: in multi-user mode a user reads only <root>/<user_id>/."""
    user_id = stack.client.get("/api/v1/audio/usage", headers=headers).get_json()["user_id"]
    target = stack.media_root / user_id / path.name
    if not target.exists():
        target.parent.mkdir(exist_ok=True)
        shutil.copy(path, target)
    return target


def submit(stack: Stack, headers: dict[str, str], path: Path) -> int:
    resp = stack.client.post(SUBMIT, json={"local_path": str(own_copy(stack, headers, path))}, headers=headers)
    assert resp.status_code == 202, resp.get_json()
    return int(resp.get_json()["id"])


def wait_final(stack: Stack, job_ids: list[int], timeout: float) -> dict[int, Job]:
    deadline = time.monotonic() + timeout
    while True:
        with session_scope(stack.settings.effective_database_url) as session:
            jobs = {j.id: j for j in session.scalars(sa.select(Job).where(Job.id.in_(job_ids)))}
        if all(j.status in {"completed", "failed", "cancelled"} for j in jobs.values()):
            return jobs
        assert time.monotonic() < deadline, {j.id: (j.status, j.stage) for j in jobs.values()}
        time.sleep(0.5)


def processing_intervals(stack: Stack, job_ids: list[int]) -> dict[int, tuple[dt.datetime, dt.datetime]]:
    """Each job's time in processing: its first stage's start to its last stage's end."""
    with session_scope(stack.settings.effective_database_url) as session:
        rows = session.execute(sa.select(StageRun.job_id, sa.func.min(StageRun.started_at),
                                         sa.func.max(StageRun.finished_at))
                               .where(StageRun.job_id.in_(job_ids)).group_by(StageRun.job_id)).all()
    return {job_id: (start, end) for job_id, start, end in rows}


def max_overlap(intervals: list[tuple[dt.datetime, dt.datetime]]) -> int:
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    best = current = 0
    for _when, delta in events:
        current += delta
        best = max(best, current)
    return best


def first_start(stack: Stack, job_id: int) -> dt.datetime:
    with session_scope(stack.settings.effective_database_url) as session:
        started = session.scalar(sa.select(sa.func.min(StageRun.started_at)).where(StageRun.job_id == job_id))
    assert started is not None, f"job {job_id} never started"
    return started


def test_five_users_six_jobs_cap_two_three_workers(mu_stack: Stack) -> None:
    stack = mu_stack
    headers = {f"user{i}": add_user(stack, f"user{i}", "capped") for i in range(5)}
    workers = [stack.start_worker(concurrency=1) for _ in range(3)]
    beat = stack.start_beat()
    try:
        jobs: dict[str, list[int]] = {name: [] for name in headers}
        for _round in range(6):
            for name, h in headers.items():
                jobs[name].append(submit(stack, h, stack.media_root / "jfk.flac"))
        all_ids = [j for ids in jobs.values() for j in ids]
        final = wait_final(stack, all_ids, timeout=400)
    finally:
        beat.stop()
        for worker in workers:
            worker.stop()
    assert {j.status for j in final.values()} == {"completed"}
    intervals = processing_intervals(stack, all_ids)
    per_user = {name: max_overlap([intervals[j] for j in ids]) for name, ids in jobs.items()}
    overall = max_overlap(list(intervals.values()))
    print(f"\nmax jobs in processing at once, per user (cap 2): {per_user}; all users together: {overall}")
    assert all(n <= 2 for n in per_user.values()), per_user
    assert overall >= 2  # the three workers did run jobs side by side


@pytest.mark.parametrize("mu_stack", [{"AUDIO_JOBS_MAX_RETRIES": "0", "JOBS_LEASE_SECONDS": "5"}],
                         indirect=True)
def test_slot_of_a_sigkilled_worker_is_usable_again_within_the_lease(mu_stack: Stack, tmp_path: Path) -> None:
    stack = mu_stack
    h = add_user(stack, "solo", "single")
    long_audio = jfk_repeated(stack.media_root / "long.flac", 8)
    beat = stack.start_beat()
    victim = stack.start_worker()
    try:
        held = submit(stack, h, long_audio)
        waiting = submit(stack, h, stack.media_root / "jfk.flac")
        wait_for_job(stack.client, held, timeout=60, until=stage_running("audio_transcribe"), headers=h)
        job = stack.client.get(f"/api/v1/audio/jobs/{waiting}", headers=h).get_json()
        assert job["status"] == "queued" and job["stages"] == []  # cap 1: it waits for the slot
        os.killpg(victim.proc.pid, signal.SIGKILL)
        victim.proc.wait()
        killed_at = time.monotonic()
        rescuer = stack.start_worker()
        try:
            done = wait_for_job(stack.client, waiting, timeout=60, headers=h)
            freed_after = time.monotonic() - killed_at
        finally:
            rescuer.stop()
    finally:
        victim.stop()
        beat.stop()
    first = stack.client.get(f"/api/v1/audio/jobs/{held}", headers=h).get_json()
    print(f"\nslot of the SIGKILLed worker's job used again {freed_after:.1f} s after the kill (lease 5 s)")
    assert (first["status"], first["error_code"]) == ("failed", "lease_expired")
    assert done["status"] == "completed"
    assert freed_after < 5 + 3 + 15  # the lease, a reaper pass or two, a worker start and the job itself
    assert redis_lib.Redis.from_url(stack.settings.redis_url).zcard(slots_key(first["owner_user_id"])) == 0


def test_one_minute_left_three_thirty_second_jobs(mu_stack: Stack) -> None:
    stack = mu_stack
    h = add_user(stack, "metered", "onemin")
    thirty = stack.media_root / "thirty.flac"
    ffmpeg("-stream_loop", "2", "-i", str(JFK_FLAC), "-t", "30", "-c:a", "flac", str(thirty))
    worker = stack.start_worker(concurrency=2)
    try:
        ids = [submit(stack, h, thirty) for _ in range(3)]
        final = wait_final(stack, ids, timeout=120)
    finally:
        worker.stop()
    outcomes = sorted((j.status, j.error_code or "") for j in final.values())
    assert outcomes == [("completed", ""), ("completed", ""), ("failed", "quota_exceeded")]
    refused = next(j for j in final.values() if j.status == "failed")
    assert refused.stage == "audio_convert"  # refused before transcription spent any compute
    with session_scope(stack.settings.effective_database_url) as session:
        ran = set(session.scalars(sa.select(StageRun.stage).where(StageRun.job_id == refused.id)))
    assert "audio_transcribe" not in ran
    usage = stack.client.get("/api/v1/audio/usage", headers=h).get_json()
    assert usage["minutes_used"] == pytest.approx(1.0) and usage["jobs_started"] == 3
    # Nothing left: the next submit is refused up front.
    assert stack.client.post(SUBMIT, json={"local_path": str(own_copy(stack, h, thirty))},
                             headers=h).status_code == 402


@pytest.mark.parametrize("mu_stack", [{"AUDIO_JOBS_OWNER_STRICT": "true", "AUDIO_STRICT_QUEUE_DEPTH": "2"}],
                         indirect=True)
def test_strict_mode_one_users_backlog_does_not_starve_another(mu_stack: Stack) -> None:
    stack = mu_stack
    heavy = add_user(stack, "heavy", "bulk")
    light = add_user(stack, "light", "bulk")
    a_jobs = [submit(stack, heavy, stack.media_root / "jfk.flac") for _ in range(30)]
    b_job = submit(stack, light, stack.media_root / "jfk.flac")
    worker = stack.start_worker(concurrency=1)
    try:
        wait_for_job(stack.client, b_job, timeout=120, headers=light)
        wait_for_job(stack.client, a_jobs[2], timeout=120, until=lambda b: bool(b["stages"]), headers=heavy)
    finally:
        worker.stop()
    b_start = first_start(stack, b_job)
    a_starts = [first_start(stack, j) for j in a_jobs[:3]]
    print(f"\nstrict mode: B started after {sum(s < b_start for s in a_starts)} of A's first three jobs")
    assert b_start < a_starts[2]
    for job_id in a_jobs:  # the rest of A's backlog is not needed
        stack.client.post(f"/api/v1/audio/jobs/{job_id}/cancel", headers=heavy)


def test_daily_reset_rebuilds_counters_and_clears_stale_slots(mu_stack: Stack) -> None:
    stack = mu_stack
    add_user(stack, "resetme", "capped")
    client = redis_lib.Redis.from_url(stack.settings.redis_url)
    today = minutes.utc_today()
    with session_scope(stack.settings.effective_database_url) as session:
        minutes.reserve(session, "1", 2.5, limit=None, day=today)
    client.zadd(slots_key("1"), {"999999": time.time() + 3600})  # a slot of a job that does not exist
    client.delete(minutes.counter_key("1", today))
    out = subprocess.run([sys.executable, "-m", "audiojobs.cli", "quotas", "reset"], env=stack.env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "stale_slots_cleared=1" in out.stdout
    assert client.zcard(slots_key("1")) == 0
    assert float(client.hget(minutes.counter_key("1", today), "minutes_used") or 0) == 2.5
    with session_scope(stack.settings.effective_database_url) as session:
        assert minutes.usage(session, "1", today)[0] == 2.5  # the ledger is untouched
