"""README command 1 as a user runs it: `audiojobs up` (what scripts/run-local execs) on embedded
defaults — SQLite under var/, a Redis it starts itself — then curl-like HTTP calls.
Also the all-in-one mode: `audiojobs api` with AUDIO_JOBS_WORKER_ENABLED=true and no other worker."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from audiojobs.embedded_redis import free_port
from tests.conftest import word_error_rate
from tests.services import JFK_FLAC, JFK_TEXT

pytestmark = pytest.mark.integration


def http(method: str, url: str, key: str | None = None, body: dict | None = None,
         headers: dict | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(url, method=method, data=json.dumps(body).encode() if body is not None else None,
                                 headers={**({"X-API-KEY": key} if key else {}), **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        return exc.code, json.loads(raw) if raw.startswith(b"{") else {"raw": raw.decode(errors="replace")}


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AUDIO", "REDIS_URL", "DATABASE_URL", "FLOWER", "JOBS_", "AUTH_MODE"))}
    env.update(PYTHONUNBUFFERED="1", **extra)
    return env


def wait_for_output(log: Path, pattern: str, proc: subprocess.Popen, timeout: float) -> re.Match:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        match = re.search(pattern, text)
        if match:
            return match
        assert proc.poll() is None, f"exited early with {proc.returncode}:\n{text[-4000:]}"
        time.sleep(0.2)
    raise AssertionError(f"{pattern!r} not printed within {timeout} s:\n{log.read_text()[-4000:]}")


def stop(proc: subprocess.Popen) -> int:
    proc.send_signal(signal.SIGINT)
    try:
        return proc.wait(timeout=40)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise


def wait_completed(base: str, key: str, job_id: int, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, job = http("GET", f"{base}/api/v1/audio/jobs/{job_id}", key)
        assert status == 200
        if job["status"] in {"completed", "failed", "cancelled"}:
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} not final within {timeout} s")


def start_up(tmp_path: Path, **extra: str) -> tuple[subprocess.Popen, Path, int, int]:
    """`audiojobs up` as a user runs it, on embedded defaults under tmp_path/var: (process, its log,
    API port, Flower port)."""
    port, flower_port = free_port(), free_port()
    env = clean_env(AUDIOJOBS_VAR_DIR=str(tmp_path / "var"), AUDIOJOBS_PORT=str(port), FLOWER_PORT=str(flower_port),
                    AUDIOJOBS_API_WORKERS="1", AUDIOJOBS_WORKER_CONCURRENCY="1", **extra)
    log = tmp_path / "up.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "audiojobs.cli", "up"], env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    return proc, log, port, flower_port


def test_up_serves_the_whole_system_on_embedded_defaults(tmp_path: Path) -> None:
    inbox = tmp_path / "var" / "inbox"
    proc, log, port, flower_port = start_up(tmp_path)
    try:
        key = wait_for_output(log, r"API key\s+(\S+)", proc, 90).group(1)
        roots = wait_for_output(log, r"Local roots\s+(\S+)", proc, 5).group(1).split(":")
        assert str(inbox) in roots and str(Path.home()) not in roots  # the home directory only when asked
        assert (tmp_path / "var" / "api_key").read_text().strip() == key
        assert re.search(r"Redis\s+redis://127\.0\.0\.1:\d+/0\s+\(embedded", log.read_text())
        assert "curl -s -X POST" in log.read_text()
        sample = inbox / "jfk.flac"
        sample.write_bytes(JFK_FLAC.read_bytes())
        base = f"http://127.0.0.1:{port}"

        started = time.monotonic()
        status, body = http("POST", f"{base}/api/v1/audio/jobs/submit", key, {"local_path": str(sample)},
                            headers={"Content-Type": "application/json"})
        assert status == 202, body
        job = wait_completed(base, key, body["id"], timeout=30)
        print(f"\nrun-local: jfk.flac submit-to-completed {time.monotonic() - started:.2f} s (cold worker)")
        assert job["status"] == "completed", job
        status, result = http("GET", f"{base}/api/v1/audio/jobs/{body['id']}/result", key)
        assert status == 200 and word_error_rate(JFK_TEXT, result["text"]) <= 0.1

        # Issue 12's first start: the reaper's first pass finds a new Redis, not a lost one, and
        # sends nothing again (the job ran each stage once).
        wait_for_output(log, r"new broker, epoch recorded", proc, 30)
        assert "came back empty" not in log.read_text()
        assert all(s["attempt"] == 1 for s in job["stages"]), job["stages"]

        assert http("GET", f"{base}/api/v1/audio/jobs/1", None)[0] == 401
        assert (tmp_path / "var" / "audiojobs.db").is_file()

        # Flower runs on its port, behind basic auth.
        flower_auth = (tmp_path / "var" / "flower_auth").read_text().strip()
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{flower_port}/api/workers", timeout=5)
                raise AssertionError("Flower answered without credentials")
            except urllib.error.HTTPError as exc:
                assert exc.code == 401
                break
            except urllib.error.URLError:
                assert time.monotonic() < deadline, "Flower did not start"
                time.sleep(0.5)
        token = base64.b64encode(flower_auth.encode()).decode()
        req = urllib.request.Request(f"http://127.0.0.1:{flower_port}/api/workers",
                                     headers={"Authorization": f"Basic {token}"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.status == 200
    finally:
        code = stop(proc)
    assert code == 0, log.read_text()[-3000:]
    # Ctrl-C stopped everything: nothing listens any more.
    time.sleep(0.5)
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2)


def test_api_with_worker_enabled_processes_jobs_alone(tmp_path: Path, redis_url: str) -> None:
    port = free_port()
    media = tmp_path / "media"
    media.mkdir()
    (media / "jfk.flac").write_bytes(JFK_FLAC.read_bytes())
    env = clean_env(AUDIOJOBS_VAR_DIR=str(tmp_path / "var"), AUDIOJOBS_PORT=str(port), AUDIOJOBS_API_WORKERS="1",
                    AUDIO_JOBS_WORKER_ENABLED="true", REDIS_URL=redis_url, AUDIOJOBS_API_KEY="k" * 20,
                    AUDIO_LOCAL_ROOTS=str(media), AUDIOJOBS_WORKER_CONCURRENCY="1")
    subprocess.run([sys.executable, "-m", "audiojobs.cli", "db", "upgrade"], env=env, check=True, capture_output=True)
    log = tmp_path / "api.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "audiojobs.cli", "api"], env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for_output(log, r" ready\.", proc, 60)  # the worker the API service started
        wait_for_output(log, r"Booting worker", proc, 30)  # gunicorn
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(f"{base}/healthz", timeout=2)
                break
            except urllib.error.URLError:
                assert time.monotonic() < deadline
                time.sleep(0.2)
        status, body = http("POST", f"{base}/api/v1/audio/jobs/submit", "k" * 20,
                            {"local_path": str(media / "jfk.flac")})
        assert status == 202, body
        job = wait_completed(base, "k" * 20, body["id"], timeout=60)
        assert job["status"] == "completed"
        assert all(s["worker_id"] for s in job["stages"])
    finally:
        code = stop(proc)
    assert code == 0, log.read_text()[-3000:]


def _child_pids(parent: int, needle: str) -> list[int]:
    """Direct children of ``parent`` whose command line contains ``needle``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            continue
        if ppid == parent and needle in cmdline:
            found.append(int(entry.name))
    return found


def test_up_restarts_a_worker_killed_by_sigkill_and_its_job_completes_once(tmp_path: Path) -> None:
    """The OOM killer's way: SIGKILL to the worker's main process while a job transcribes. `up`
    restarts the worker (nothing else stops), the reaper sees the stage's holder is gone, and the job
    completes on the restarted worker, its transcription run twice and stored once."""
    from tests.media import jfk_repeated

    inbox = tmp_path / "var" / "inbox"
    # Window by window: long enough to be caught mid-way.
    proc, log, port, _flower = start_up(tmp_path, AUDIO_REAPER_INTERVAL_SECONDS="1", AUDIO_WHISPER_BATCH_SIZE="0")
    try:
        key = wait_for_output(log, r"API key\s+(\S+)", proc, 90).group(1)
        inbox.mkdir(parents=True, exist_ok=True)
        sample = jfk_repeated(inbox / "long.flac", 8)  # 88 s
        base = f"http://127.0.0.1:{port}"
        status, body = http("POST", f"{base}/api/v1/audio/jobs/submit", key, {"local_path": str(sample)},
                            headers={"Content-Type": "application/json"})
        assert status == 202, body
        job_id = body["id"]
        deadline = time.monotonic() + 60
        while True:
            job = http("GET", f"{base}/api/v1/audio/jobs/{job_id}", key)[1]
            if any(s["stage"] == "audio_transcribe" and s["status"] == "running" for s in job["stages"]):
                break
            assert time.monotonic() < deadline, job
            time.sleep(0.2)
        (worker,) = _child_pids(proc.pid, " worker ")
        os.kill(worker, signal.SIGKILL)
        wait_for_output(log, r"worker exited with code -9; restarting it in", proc, 10)
        wait_for_output(log, r"worker restarted", proc, 10)
        job = wait_completed(base, key, job_id, timeout=180)  # the API answered all along
        assert proc.poll() is None, "up stopped"
        assert job["status"] == "completed", job
        runs = [(s["stage"], s["status"]) for s in job["stages"]]
        assert runs.count(("audio_transcribe", "succeeded")) == 1, runs
        assert ("audio_transcribe", "lost") in runs, runs
        for stage in ("audio_download", "audio_convert", "audio_chunk", "audio_store"):
            assert runs.count((stage, "succeeded")) == 1, runs
        assert runs.count(("audio_analyze", "skipped")) == 1, runs  # no analysis was asked for
        status, result = http("GET", f"{base}/api/v1/audio/jobs/{job_id}/result", key)
        assert status == 200 and word_error_rate(" ".join([JFK_TEXT] * 8), result["text"]) <= 0.15
        print(f"\nworker SIGKILLed mid-transcription under `up`: restarted, job completed once "
              f"(attempt errors: {[e['code'] for e in job['attempt_errors']]})")
    finally:
        code = stop(proc)
    assert code == 0, log.read_text()[-3000:]
    assert not _child_pids(proc.pid, "")  # Ctrl-C still stops everything
