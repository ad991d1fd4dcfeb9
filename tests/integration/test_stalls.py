"""The stall watchdog with a real worker: a message a live worker holds keeps its job alive; one
held by a worker that was killed outright does not, and the job is rescued and completes once."""

from __future__ import annotations

import datetime as dt
import os
import signal
import time

import pytest
import redis as redis_lib
import sqlalchemy as sa

from audiojobs.celery_app import producer_app
from audiojobs.db import session_scope, utcnow
from audiojobs.jobs import messages
from audiojobs.jobs.flow import pipeline_for
from audiojobs.jobs.models import Job
from audiojobs.pipeline import broker, reaper
from tests.conftest import AUTH, wait_for_job
from tests.integration.conftest import Stack

pytestmark = pytest.mark.integration


def _unchanged_for(stack: Stack, job_id: int, seconds: float) -> None:
    with session_scope(stack.settings.effective_database_url) as s:
        s.execute(sa.update(Job).where(Job.id == job_id).values(updated_at=utcnow() - dt.timedelta(seconds=seconds)))


def _two_passes(stack: Stack, celery: object) -> int:
    """Two reaper passes, far enough apart for the watchdog to confirm; how many jobs it rescued."""
    rescued = reaper.reap(stack.settings, celery).stalled  # type: ignore[arg-type]
    time.sleep(broker.CONFIRM_SECONDS)
    return rescued + reaper.reap(stack.settings, celery).stalled  # type: ignore[arg-type]


def test_a_message_held_by_a_live_worker_keeps_its_job_and_a_dead_workers_does_not(bare_stack: Stack) -> None:
    stack = bare_stack
    settings = stack.settings
    celery = producer_app(settings)
    client = redis_lib.Redis.from_url(settings.redis_url or "")
    reaper.reap(settings, celery)  # the broker epoch is recorded: nothing below is a broker loss
    resp = stack.client.post("/api/v1/audio/jobs/submit", json={"local_path": str(stack.media_root / "jfk.flac")},
                             headers=AUTH)
    assert resp.status_code == 202
    job_id = resp.get_json()["id"]
    # Its message leaves the queue and comes back as one a worker must hold for a minute (as a
    # retry's countdown is held): in Redis's unacked set, not in any queue.
    assert client.delete(*messages.queue_keys([settings.cpu_queue])) == 1
    pipeline_for(celery, job_id, 1).apply_async(countdown=60)
    worker = stack.start_worker()
    try:
        deadline = time.monotonic() + 20
        while not messages.scan(client, [settings.cpu_queue]).taken:
            assert time.monotonic() < deadline, "the worker did not take the message"
            time.sleep(0.2)
        _unchanged_for(stack, job_id, settings.effective_stall_seconds + 60)
        assert _two_passes(stack, celery) == 0  # held by a live worker: waiting, not stalled
        os.killpg(worker.proc.pid, signal.SIGKILL)  # the worker dies with the message in its hands
        worker.proc.wait()
    finally:
        worker.stop()
    found = messages.scan(client, [settings.cpu_queue])
    assert (job_id, 1) in found.taken  # still in unacked, until the visibility timeout (hours)
    assert _two_passes(stack, celery) == 1
    with session_scope(settings.effective_database_url) as s:
        job = s.get(Job, job_id)
        assert job is not None and (job.dispatch, job.stall_rescues) == (2, 1)
    rescuer = stack.start_worker()
    try:
        done = wait_for_job(stack.client, job_id, timeout=90)
    finally:
        rescuer.stop()
    assert done["status"] == "completed", done
    assert [e["code"] for e in done["attempt_errors"]] == ["stalled"]
    assert all(s["attempt"] == 1 for s in done["stages"]), done["stages"]  # nothing ran twice
