"""Flower, as operators run it (`audiojobs flower`): authenticated, showing the workers and the
stage tasks of a finished job."""

from __future__ import annotations

import ast
import os
import signal
import subprocess
import sys
import time

import pytest
import requests

from audiojobs.embedded_redis import free_port
from audiojobs.local_stack import node_name
from tests.conftest import AUTH, wait_for_job
from tests.integration.conftest import Stack

pytestmark = pytest.mark.integration
STAGES = ["audio_download", "audio_convert", "audio_transcribe", "audio_chunk", "audio_analyze", "audio_store"]


@pytest.mark.parametrize("bare_stack", ["sqlite"], indirect=True)
def test_flower_shows_workers_and_the_stage_tasks_of_a_job(bare_stack: Stack) -> None:
    stack = bare_stack
    port = free_port()
    auth = ("ops", "flower-test-password")
    env = {**stack.env, "FLOWER_PORT": str(port), "FLOWER_BASIC_AUTH": ":".join(auth)}
    log_path = stack.tmp / "flower.log"
    with open(log_path, "ab") as log:
        flower = subprocess.Popen([sys.executable, "-m", "audiojobs.cli", "flower"], env=env, stdout=log,
                                  stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    worker = None
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"{base}/api/workers", timeout=2).status_code == 401:
                    break
            except requests.ConnectionError:
                pass
            assert flower.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.3)
        worker = stack.start_worker()
        resp = stack.client.post("/api/v1/audio/jobs/submit", json={"local_path": str(stack.media_root / "jfk.flac")},
                                 headers=AUTH)
        job_id = resp.get_json()["id"]
        assert wait_for_job(stack.client, job_id)["status"] == "completed"
        deadline = time.monotonic() + 30
        while True:
            tasks = requests.get(f"{base}/api/tasks", auth=auth, timeout=5).json()
            # args as Flower shows them: "[1, 1]", or "(1, 1)" for the chain's first task
            ours = {t["name"].removeprefix("audiojobs."): t for t in tasks.values()
                    if t.get("args") and ast.literal_eval(t["args"])[0] == job_id}
            if set(ours) == set(STAGES) and all(t["state"] == "SUCCESS" for t in ours.values()):
                break
            assert time.monotonic() < deadline, [(t["name"], t["state"], t.get("args")) for t in tasks.values()]
            time.sleep(0.5)
        workers = requests.get(f"{base}/api/workers", auth=auth, params={"refresh": "1"}, timeout=10).json()
        # The node name the worker really has: NAME-ID@HOST (see local_stack.node_name).
        assert node_name(worker.name).replace("%h", os.uname().nodename) in workers, list(workers)
        assert requests.get(f"{base}/api/tasks", timeout=5).status_code == 401  # no credentials, no data
    finally:
        if worker is not None:
            worker.stop()
        os.killpg(flower.pid, signal.SIGTERM)
        flower.wait(timeout=20)
