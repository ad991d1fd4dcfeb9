"""Side-by-side figures for one file: the raw faster-whisper transcribe time in one process, and a
job's submit-to-completed time through the real stack (gunicorn API, Redis, one warm worker).

Usage: scripts/bench [--runs N] [--file PATH]   (prints a table and writes var/bench/overhead.json)
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from audiojobs.config import Settings, environ_with
from audiojobs.embedded_redis import free_port, redis_command, wait_for_redis
from audiojobs.local_stack import api_cmd, wait_for_http, worker_cmd
from audiojobs.migrate import upgrade
from audiojobs.pipeline.convert import to_wav
from audiojobs.transcription.registry import get_backend

REPO = Path(__file__).resolve().parent.parent
DEFAULT_FILE = REPO.parent / "shared" / "fixtures" / "audio" / "jfk.flac"


def raw_transcribe_seconds(path: Path, runs: int, tmp: Path) -> list[float]:
    settings = Settings.from_env({})
    wav = tmp / "raw.wav"
    to_wav(path, wav, settings)
    backend = get_backend("whisper-1", settings)
    backend.transcribe(str(wav))  # warm-up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        backend.transcribe(str(wav))
        times.append(time.perf_counter() - start)
    return times


def call(method: str, url: str, key: str, body: dict | None = None) -> dict:
    req = urllib.request.Request(url, method=method,  # noqa: S310 - loopback
                                 headers={"X-API-KEY": key, "Content-Type": "application/json"},
                                 data=json.dumps(body).encode() if body is not None else None)
    with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 - loopback
        return json.loads(resp.read())


def end_to_end_seconds(path: Path, runs: int, tmp: Path) -> tuple[list[float], dict[str, float]]:
    media = tmp / "media"
    media.mkdir()
    shutil.copy(path, media / path.name)
    redis_port, api_port = free_port(), free_port()
    env = {"AUDIOJOBS_VAR_DIR": str(tmp / "var"), "DATABASE_URL": f"sqlite:///{tmp / 'bench.db'}",
           "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0", "AUDIOJOBS_API_KEY": "bench-key",
           "AUDIO_LOCAL_ROOTS": str(media), "AUDIOJOBS_PORT": str(api_port), "AUDIOJOBS_API_WORKERS": "1",
           "AUDIOJOBS_LOG_LEVEL": "warning"}
    settings = Settings.from_env(env)
    procs = [subprocess.Popen(redis_command(tmp / "redis", redis_port, persist=False))]
    try:
        wait_for_redis(env["REDIS_URL"])
        upgrade(env["DATABASE_URL"])
        child_env = environ_with(env)
        log = open(tmp / "stack.log", "wb")  # noqa: SIM115 - lives as long as the processes
        procs.append(subprocess.Popen(worker_cmd(settings, concurrency=1), env=child_env, stdout=log,
                                      stderr=subprocess.STDOUT))
        api = subprocess.Popen(api_cmd(settings), env=child_env, stdout=log, stderr=subprocess.STDOUT)
        procs.append(api)
        base = f"http://127.0.0.1:{api_port}"
        wait_for_http(f"{base}/healthz", 60, api)
        totals, stage_sums = [], {}
        for i in range(runs + 1):  # the first job warms the worker (model load) and is not counted
            start = time.perf_counter()
            job_id = call("POST", f"{base}/api/v1/audio/jobs/submit", "bench-key",
                          {"local_path": str(media / path.name)})["id"]
            while (job := call("GET", f"{base}/api/v1/audio/jobs/{job_id}", "bench-key"))["status"] not in {
                    "completed", "failed", "cancelled"}:
                time.sleep(0.02)
            elapsed = time.perf_counter() - start
            if job["status"] != "completed":
                raise SystemExit(f"job {job_id} ended {job['status']}: {job['error_message']}")
            if i:
                totals.append(elapsed)
                for run in job["stages"]:
                    stage_sums[run["stage"]] = stage_sums.get(run["stage"], 0.0) + run["duration_seconds"]
        return totals, {stage: total / runs for stage, total in stage_sums.items()}
    finally:
        for proc in reversed(procs):
            proc.terminate()
            proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--file", type=Path, default=DEFAULT_FILE)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="audiojobs-bench-") as tmp_name:
        tmp = Path(tmp_name)
        raw = raw_transcribe_seconds(args.file, args.runs, tmp)
        e2e, stages = end_to_end_seconds(args.file, args.runs, tmp)
    raw_med, e2e_med = statistics.median(raw), statistics.median(e2e)
    rows = [("raw faster-whisper transcribe (one process, model loaded)", raw_med),
            ("submit-to-completed via API + chain (warm worker)", e2e_med),
            ("overhead per job", e2e_med - raw_med)]
    rows += [(f"  stage {stage} (mean)", seconds) for stage, seconds in stages.items()]
    print(f"\n{args.file.name}, median of {args.runs} runs")
    for label, seconds in rows:
        print(f"  {label:58} {seconds:7.3f} s")
    out = REPO / "var" / "bench"
    out.mkdir(parents=True, exist_ok=True)
    (out / "overhead.json").write_text(json.dumps({
        "file": args.file.name, "runs": args.runs, "raw_seconds": raw, "end_to_end_seconds": e2e,
        "stage_mean_seconds": stages, "python": sys.version.split()[0]}, indent=2))


if __name__ == "__main__":
    main()
