"""Cancellation: queued, while converting, while transcribing. Then delete."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from audiojobs.db import session_scope
from audiojobs.jobs.models import StageRun, Transcript
from tests.conftest import AUTH, stage_running, wait_for_job
from tests.integration.conftest import Stack
from tests.media import varied_speech

pytestmark = pytest.mark.integration
BASE = "/api/v1/audio/jobs"


def submit(stack: Stack, path: Path) -> int:
    resp = stack.client.post(f"{BASE}/submit", json={"local_path": str(path)}, headers=AUTH)
    assert resp.status_code == 202
    return int(resp.get_json()["id"])


def cancel(stack: Stack, job_id: int) -> dict:
    resp = stack.client.post(f"{BASE}/{job_id}/cancel", headers=AUTH)
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert body["status"] == "cancelled" and body["cancelled_at"]
    return body


def open_or_running_runs(stack: Stack, job_id: int) -> list[str]:
    with session_scope(stack.settings.effective_database_url) as session:
        return list(session.scalars(sa.select(StageRun.stage).where(
            StageRun.job_id == job_id, StageRun.finished_at.is_(None))))


def assert_cleanly_cancelled(stack: Stack, job_id: int, within: float = 10) -> dict:
    """Final, no result, no files, no running stage, and the owner's processing count back to 0."""
    deadline = time.monotonic() + within
    while open_or_running_runs(stack, job_id) or stack.leftovers(job_id):
        assert time.monotonic() < deadline, "the running stage did not stop"
        time.sleep(0.2)
    job = stack.client.get(f"{BASE}/{job_id}", headers=AUTH).get_json()
    assert job["status"] == "cancelled" and job["error_code"] == "cancelled"
    assert stack.client.get(f"{BASE}/{job_id}/result", headers=AUTH).status_code == 409
    with session_scope(stack.settings.effective_database_url) as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Transcript)
                              .where(Transcript.job_id == job_id)) == 0
    owner = job["owner_user_id"]
    processing = stack.client.get(f"{BASE}/admin/owner/{owner}/processing", headers=AUTH).get_json()
    assert processing["processing"] == 0
    return job


@pytest.fixture(scope="module")
def long_audio(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return varied_speech(tmp_path_factory.mktemp("long") / "varied-330s.flac", 330)  # 5.5 minutes


def test_cancel_while_queued_never_starts(bare_stack: Stack) -> None:
    job_id = submit(bare_stack, bare_stack.media_root / "jfk.flac")  # no worker yet: it waits in the queue
    cancel(bare_stack, job_id)
    worker = bare_stack.start_worker()
    try:
        time.sleep(3)  # the worker receives the message, and ignores it
        job = assert_cleanly_cancelled(bare_stack, job_id)
        assert job["stages"] == [] and job["started_at"] is None
    finally:
        worker.stop()


def test_cancel_while_converting(bare_stack: Stack) -> None:
    worker = bare_stack.start_worker(app="tests.fault_apps", env={"AUDIOJOBS_TEST_FAULT": "slow_convert"})
    try:
        job_id = submit(bare_stack, bare_stack.media_root / "jfk.flac")
        wait_for_job(bare_stack.client, job_id, timeout=30, until=stage_running("audio_convert"))
        started = time.monotonic()
        cancel(bare_stack, job_id)
        job = assert_cleanly_cancelled(bare_stack, job_id)
        assert time.monotonic() - started < 5
        assert [(s["stage"], s["status"]) for s in job["stages"]][-1] == ("audio_convert", "cancelled")
    finally:
        worker.stop()


def test_cancel_while_transcribing_stops_between_segments(bare_stack: Stack, long_audio: Path) -> None:
    path = bare_stack.media_root / "long-cancel.flac"
    path.write_bytes(long_audio.read_bytes())
    worker = bare_stack.start_worker()
    try:
        job_id = submit(bare_stack, path)
        wait_for_job(bare_stack.client, job_id, timeout=60, until=stage_running("audio_transcribe"))
        time.sleep(7)  # into decoding: 5.5 minutes of audio take ~50 s here, a 30-s window every ~5 s
        started = time.monotonic()
        cancel(bare_stack, job_id)
        # A 30-s window decodes in 1-7 s here (longer with temperature fallbacks, more on a loaded
        # machine); the check runs after each window, so the stage stops at the next boundary.
        job = assert_cleanly_cancelled(bare_stack, job_id, within=25)
        stopped_in = time.monotonic() - started
        print(f"\ncancel while transcribing: stage stopped and files gone in {stopped_in:.2f} s")
        assert [(s["stage"], s["status"]) for s in job["stages"]][-1] == ("audio_transcribe", "cancelled")
        # Well before the ~45 s or more that the transcription had left.
        assert stopped_in < 25
        # The next job runs normally on the same worker.
        follow = submit(bare_stack, bare_stack.media_root / "jfk.flac")
        assert wait_for_job(bare_stack.client, follow)["status"] == "completed"
    finally:
        worker.stop()


def test_cancel_final_is_409_and_delete_removes_results(bare_stack: Stack) -> None:
    worker = bare_stack.start_worker()
    try:
        job_id = submit(bare_stack, bare_stack.media_root / "jfk.flac")
        assert wait_for_job(bare_stack.client, job_id)["status"] == "completed"
    finally:
        worker.stop()
    resp = bare_stack.client.post(f"{BASE}/{job_id}/cancel", headers=AUTH)
    assert resp.status_code == 409 and resp.get_json()["error"]["code"] == "job_final"
    resp = bare_stack.client.delete(f"{BASE}/{job_id}", headers=AUTH)
    assert resp.status_code == 204
    assert bare_stack.client.get(f"{BASE}/{job_id}", headers=AUTH).status_code == 404
    assert bare_stack.client.get(f"{BASE}/{job_id}/result", headers=AUTH).status_code == 404
    with session_scope(bare_stack.settings.effective_database_url) as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Transcript)
                              .where(Transcript.job_id == job_id)) == 0
    assert bare_stack.client.delete(f"{BASE}/{job_id}", headers=AUTH).status_code == 404


def test_delete_of_an_active_job_is_409(bare_stack: Stack) -> None:
    job_id = submit(bare_stack, bare_stack.media_root / "jfk.flac")  # no worker: stays queued
    resp = bare_stack.client.delete(f"{BASE}/{job_id}", headers=AUTH)
    assert resp.status_code == 409 and resp.get_json()["error"]["code"] == "job_not_final"
    cancel(bare_stack, job_id)
    assert bare_stack.client.delete(f"{BASE}/{job_id}", headers=AUTH).status_code == 204
