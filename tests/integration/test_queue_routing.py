"""audio_transcribe goes to its own (GPU) queue: a CPU-only worker leaves it waiting there."""

from __future__ import annotations

import pytest
import redis as redis_lib

from tests.conftest import AUTH, wait_for_job
from tests.integration.conftest import Stack

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("bare_stack", ["sqlite"], indirect=True)  # routing does not depend on the database
def test_transcription_waits_for_a_worker_on_the_transcribe_queue(bare_stack: Stack) -> None:
    stack = bare_stack
    broker = redis_lib.Redis.from_url(stack.settings.redis_url)
    cpu_worker = stack.start_worker(queues="audio_cpu")
    try:
        resp = stack.client.post("/api/v1/audio/jobs/submit", json={"local_path": str(stack.media_root / "jfk.flac")},
                                 headers=AUTH)
        job_id = resp.get_json()["id"]
        job = wait_for_job(stack.client, job_id, timeout=30,
                           until=lambda b: any(s["stage"] == "audio_convert" and s["status"] == "succeeded"
                                               for s in b["stages"]))
        assert job["status"] == "processing"
        wait_for_job(stack.client, job_id, timeout=10, until=lambda b: broker.llen("audio_gpu") == 1)
        assert broker.llen("audio_cpu") == 0
        gpu_worker = stack.start_worker(queues="audio_gpu")
        try:
            job = wait_for_job(stack.client, job_id)
        finally:
            gpu_worker.stop()
        assert job["status"] == "completed"
        runs = {s["stage"]: s["worker_id"] for s in job["stages"]}
        # Transcription ran in the GPU-queue worker, every other stage in the CPU-queue worker.
        assert runs["audio_transcribe"] != runs["audio_convert"]
        assert runs["audio_convert"] == runs["audio_store"]
    finally:
        cpu_worker.stop()
