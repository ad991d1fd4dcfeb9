"""audio_transcribe goes to its own (GPU) queue: a CPU-only worker leaves it waiting there."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis as redis_lib

from audiojobs.jobs.messages import queue_depth, queue_keys
from tests.conftest import AUTH, wait_for_job, word_error_rate
from tests.integration.conftest import Stack
from tests.services import JFK_TEXT

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
        wait_for_job(stack.client, job_id, timeout=10, until=lambda b: queue_depth(broker, "audio_gpu") == 1)
        assert queue_depth(broker, "audio_cpu") == 0
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


@pytest.mark.parametrize("bare_stack", ["sqlite"], indirect=True)
def test_gpu_worker_transcribes_with_both_backends_and_hands_back_other_stages(
        bare_stack: Stack, openai_model_dir: Path) -> None:
    """`audiojobs gpu-worker` consumes only the transcribe queue. A stage misrouted to it (here: a
    download message moved onto audio_gpu by hand) goes back to the CPU queue and runs there."""
    stack = bare_stack
    broker = redis_lib.Redis.from_url(stack.settings.redis_url)
    gpu_worker = stack.start_worker(gpu=True, env={"AUDIO_MODEL_DIR": str(openai_model_dir)})
    cpu_worker = None
    try:
        submit = "/api/v1/audio/jobs/submit"
        path = str(stack.media_root / "jfk.flac")
        misrouted = stack.client.post(submit, json={"local_path": path}, headers=AUTH).get_json()["id"]
        assert queue_depth(broker, "audio_cpu") == 1
        level_list = next(key for key in queue_keys(["audio_cpu"]) if broker.llen(key))  # the job's level's list
        # The download message, now misrouted (into audio_gpu's list of the same level).
        assert broker.lmove(level_list, level_list.replace("audio_cpu", "audio_gpu", 1), "RIGHT", "LEFT")
        deadline = time.monotonic() + 30
        while b"handed back to audio_cpu" not in gpu_worker.log_path.read_bytes():
            assert time.monotonic() < deadline, gpu_worker.log()
            time.sleep(0.2)
        job = stack.client.get(f"/api/v1/audio/jobs/{misrouted}", headers=AUTH).get_json()
        assert job["status"] == "queued" and job["stages"] == []  # handed back untouched
        pytorch = stack.client.post(submit, json={"local_path": path, "model": "openai-whisper:tiny.en"},
                                    headers=AUTH).get_json()["id"]
        cpu_worker = stack.start_worker(queues="audio_control,audio_cpu")
        results = {}
        for job_id in (misrouted, pytorch):
            job = wait_for_job(stack.client, job_id, timeout=120)
            assert job["status"] == "completed", job
            runs = {s["stage"]: s["worker_id"] for s in job["stages"]}
            assert runs["audio_transcribe"] != runs["audio_download"] == runs["audio_store"]
            results[job_id] = stack.client.get(f"/api/v1/audio/jobs/{job_id}/result", headers=AUTH).get_json()
        for result in results.values():
            assert word_error_rate(JFK_TEXT, result["text"]) <= 0.1, result["text"]
        assert "openai-whisper" in gpu_worker.log() and "faster-whisper" in gpu_worker.log()
        assert "no GPU found: on the CPU, sized from its cores" in gpu_worker.log()
    finally:
        if cpu_worker is not None:
            cpu_worker.stop()
        gpu_worker.stop()
