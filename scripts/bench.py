"""The benchmark suite: every figure a ratio or a rate measured side by side in one run (these
machines are noisy), printed as a table and written to var/bench/bench.json.

  a  backends     faster-whisper (as jobs run it: batched for long audio, and window by window)
                  against openai-whisper, same tiny.en weights, same ~5-minute clip of speech
  b  overhead     submit-to-completed through the API and the whole chain against the raw transcribe
                  call on the same file in one process (jfk.flac, 11 s, and a 60-s clip), per stage
  c  throughput   100 jobs from 10 users, cross-job batching on (the worker sized from the cores)
                  against off (two prefork processes of one model thread): jobs/min, CPU per job by
                  process and outside the model, a single job's latency (bench_batching.py)
  d  api          submits and status reads per second, p50 and p99, 16 concurrent clients (ApacheBench)
                  against gunicorn on PostgreSQL
  e  memory       peak RSS of an API process and of a worker process with the model loaded
  f  long         a 30-minute file end to end, its progress sampled every second, against the raw call
  g  storage      the same jobs with the file store and with an S3 store (rclone serve s3 on 127.0.0.1),
                  side by side: submit-to-completed of jfk.flac and of the 5-minute clip; a process's
                  peak memory while a 1 GB file goes up to the S3 store and back
  h  priorities   Celery message priorities on the Redis transport against one queue per level: the
                  start order of a low backlog overtaken by high tasks, and the rates (bench_priorities.py)
  j  run-local    40 jfk.flac jobs and 40 of varied real speech from 16 HTTP clients, run-local's
                  defaults now against before batching: audio-s/s, WER on against off (bench_batching.py)
  i  speakers     diarization on five minutes of three people: audio_transcribe with diarize against
                  without, the worker's peak RSS, the error rate and speakers found (bench_speakers.py)
  k  profile      where a short job's worker CPU goes outside the model: py-spy on a solo worker, the
                  Python CPU a job by package, SQL statements and commits a job (bench_profile.py)

Usage: scripts/bench [--only a,b,...] [--smoke] [--long-minutes 30] [--clip-minutes 5] [--out PATH]
``--smoke`` runs every part at tiny sizes (scripts/test does, so the suite cannot rot).
The clips are made from ../shared/fixtures/audio/jfk.flac at varying tempo and pitch.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from audiojobs import sizing  # noqa: E402
from audiojobs.config import Settings, environ_with  # noqa: E402
from audiojobs.embedded_redis import free_port, redis_command, wait_for_redis  # noqa: E402
from audiojobs.jobs.states import FINAL_STATUS_VALUES  # noqa: E402
from audiojobs.local_stack import WORKER_ENV, api_cmd, worker_cmd  # noqa: E402
from audiojobs.pipeline.convert import to_wav  # noqa: E402
from audiojobs.transcription.interfaces import TranscribeOptions  # noqa: E402
from audiojobs.transcription.registry import bundled_model_path, get_backend  # noqa: E402

JFK = REPO.parent / "shared" / "fixtures" / "audio" / "jfk.flac"
CONVERTER = REPO.parent / "shared" / "models" / "ct2_whisper_to_openai.py"
MODEL_DIR = REPO / ".cache" / "models"
TIERS = '{"bench": {"daily_minutes": null, "concurrent_jobs": 10, "max_file_mb": 2000}}'


@dataclass
class Figure:
    part: str
    name: str
    value: float | None
    unit: str
    target: str = ""
    met: bool | None = None
    note: str = ""


@dataclass
class Report:
    figures: list[Figure] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def add(self, part: str, name: str, value: float | None, unit: str, target: str = "",
            met: bool | None = None, note: str = "") -> None:
        self.figures.append(Figure(part, name, None if value is None else round(value, 4), unit, target, met, note))

    def table(self) -> str:
        lines = [f"{'':2} {'figure':<60} {'value':>12} {'unit':<10} {'target':<16} met"]
        for f in self.figures:
            value = "-" if f.value is None else f"{f.value:,.3f}".rstrip("0").rstrip(".")
            met = {True: "yes", False: "NO", None: ""}[f.met]
            lines.append(f"{f.part:2} {f.name:<60} {value:>12} {f.unit:<10} {f.target:<16} {met}"
                         + (f"  ({f.note})" if f.note else ""))
        return "\n".join(lines)


# --- media and raw transcription -------------------------------------------------------------
def make_clip(target: Path, seconds: float) -> Path:
    from tests.media import varied_speech  # the same generator the tests use

    return varied_speech(target, seconds)


def ensure_checkpoint() -> Path:
    """openai-whisper weights converted from the bundled tiny.en (cached; never committed)."""
    target = MODEL_DIR / "tiny.en.pt"
    if not target.is_file():
        MODEL_DIR.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, str(CONVERTER), str(bundled_model_path("tiny.en")), str(target)], check=True,
                       capture_output=True)
    return MODEL_DIR


def timed(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def wav_of(path: Path, tmp: Path) -> tuple[Path, float]:
    wav = tmp / f"{path.stem}.wav"
    if not wav.exists():
        to_wav(path, wav, Settings.from_env({}))
    import wave

    with wave.open(str(wav)) as w:
        return wav, w.getnframes() / w.getframerate()


# --- a stack of real processes --------------------------------------------------------------
class Stack:
    """Redis, a database (PostgreSQL when one is reachable, else SQLite), gunicorn and a Celery
    worker, in multi-user mode with ``users`` users who each have an API key and their own media."""

    def __init__(self, tmp: Path, db_url: str, users: int, worker_processes: int, api_workers: int,
                 media: list[Path], cpu_threads: int, extra_env: dict[str, str] | None = None,
                 worker_cmd_filter: Callable[[list[str]], list[str]] | None = None) -> None:
        self.tmp = tmp
        self.redis_port, self.api_port = free_port(), free_port()
        self.media_root = tmp / "media"
        self.env = {"AUDIOJOBS_VAR_DIR": str(tmp / "var"), "DATABASE_URL": db_url,
                    "REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0", "AUTH_MODE": "multi_user",
                    "AUDIOJOBS_JWT_SECRET": "b" * 40, "AUDIO_TIER_LIMITS_JSON": TIERS,
                    "AUDIOJOBS_DEFAULT_TIER": "bench", "AUDIOJOBS_SINGLE_USER_TIER": "bench",
                    "AUDIO_MAX_QUEUED_PER_USER": "1000000", "AUDIO_LOCAL_ROOTS": str(self.media_root),
                    "AUDIO_RATE_LIMIT": "",  # the benchmark measures the pipeline, not the abuse limits
                    "AUDIOJOBS_PORT": str(self.api_port), "AUDIOJOBS_API_WORKERS": str(api_workers),
                    "AUDIOJOBS_LOG_LEVEL": "warning", "AUDIO_WHISPER_CPU_THREADS": str(cpu_threads),
                    **(extra_env or {})}
        self.settings = Settings.from_env(self.env)
        self.base = f"http://127.0.0.1:{self.api_port}"
        self.users: list[tuple[str, str]] = []  # (user id, API key)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._n_users, self._workers, self._media = users, worker_processes, media
        self._worker_cmd_filter = worker_cmd_filter or (lambda cmd: cmd)  # part k runs it under a wrapper

    def __enter__(self) -> Stack:
        from audiojobs.db import session_scope
        from audiojobs.migrate import upgrade
        from audiojobs.quotas.tiers import tier_table
        from audiojobs.users import service as users

        self.procs["redis"] = subprocess.Popen(redis_command(self.tmp / "redis", self.redis_port, persist=False),
                                               stdout=subprocess.DEVNULL, start_new_session=True)
        wait_for_redis(self.env["REDIS_URL"])
        upgrade(self.env["DATABASE_URL"])
        with session_scope(self.settings.effective_database_url) as session:
            for i in range(self._n_users):
                user = users.create_user(session, f"bench{i}", password=None, tier="bench",
                                         known_tiers=set(tier_table(TIERS)))
                _row, key = users.create_api_key(session, user, "bench")
                session.flush()
                self.users.append((str(user.id), key))
        for user_id, _key in self.users:  # in multi-user mode a user reads only <root>/<user id>/
            (self.media_root / user_id).mkdir(parents=True)
            for path in self._media:
                os.link(path, self.media_root / user_id / path.name)
        child_env = environ_with(self.env)
        self._log = open(self.tmp / "stack.log", "wb")  # noqa: SIM115 - lives as long as the processes
        self.procs["worker"] = subprocess.Popen(self._worker_cmd_filter(worker_cmd(self.settings, self._workers)),
                                                env={**child_env, **WORKER_ENV},
                                                stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs["api"] = subprocess.Popen(api_cmd(self.settings), env=child_env, stdout=self._log,
                                             stderr=subprocess.STDOUT, start_new_session=True)
        from audiojobs.local_stack import wait_for_http

        wait_for_http(f"{self.base}/healthz", 60, self.procs["api"])
        return self

    def __exit__(self, *_exc: object) -> None:
        """Each process with its children: SIGTERM, then SIGKILL after 15 s (the worker may hold a
        queue of benchmark jobs; nothing here is kept)."""
        for name in ("api", "worker", "redis"):
            proc = self.procs.get(name)
            if proc is None or proc.poll() is not None:
                continue
            for sig in (signal.SIGCONT, signal.SIGTERM):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self._log.close()

    def call(self, method: str, path: str, key: str, body: dict[str, Any] | None = None) -> Any:
        req = urllib.request.Request(f"{self.base}{path}", method=method,  # noqa: S310 - loopback
                                     headers={"X-API-KEY": key, "Content-Type": "application/json"},
                                     data=json.dumps(body).encode() if body is not None else None)
        with urllib.request.urlopen(req, timeout=60) as resp:  # noqa: S310 - loopback
            return json.loads(resp.read())

    def submit(self, user: int, name: str, **options: Any) -> int:
        user_id, key = self.users[user]
        body = {"local_path": str(self.media_root / user_id / name), **options}
        return int(self.call("POST", "/api/v1/audio/jobs/submit", key, body)["id"])

    def job(self, user: int, job_id: int) -> dict[str, Any]:
        return self.call("GET", f"/api/v1/audio/jobs/{job_id}", self.users[user][1])  # type: ignore[no-any-return]

    def wait(self, user: int, job_id: int, poll: float = 0.02,
             on_poll: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        while (job := self.job(user, job_id))["status"] not in FINAL_STATUS_VALUES:
            if on_poll is not None:
                on_poll(job)
            time.sleep(poll)
        if job["status"] != "completed":
            raise SystemExit(f"job {job_id} ended {job['status']}: {job['error_code']}: {job['error_message']}")
        return job

    def pids(self, name: str) -> list[int]:
        import psutil

        return [child.pid for child in psutil.Process(self.procs[name].pid).children(recursive=True)]

    def cpu_seconds(self) -> dict[str, float]:
        """CPU time (user + system, finished children included) used so far by each part of the
        stack, and by the PostgreSQL server processes when the database is one."""
        import psutil

        def used(proc: psutil.Process) -> float:
            try:
                t = proc.cpu_times()
            except psutil.Error:
                return 0.0
            return t.user + t.system + t.children_user + t.children_system

        totals = {}
        for name in ("worker", "api", "redis"):
            top = psutil.Process(self.procs[name].pid)
            totals[name] = used(top) + sum(used(child) for child in top.children(recursive=True))
        # Of the worker's, its main process (it consumes the broker and hands tasks to the pool).
        main = psutil.Process(self.procs["worker"].pid).cpu_times()
        totals["worker main process"] = main.user + main.system
        totals["postgres"] = sum(used(p) for p in psutil.process_iter(["name"]) if p.info["name"] == "postgres")
        return totals


def peak_rss_mb(pid: int) -> float:
    """VmHWM: the most resident memory the process ever had."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024  # type: ignore[union-attr]


@contextmanager
def database(tmp: Path) -> Iterator[tuple[str, str]]:
    """A fresh PostgreSQL database, dropped afterwards: on AUDIOJOBS_TEST_PG_URL, else the server on
    127.0.0.1:5432 (database test), else a private one from the pgserver wheel (as the tests do)."""
    from tests.services import PostgresServer

    server = PostgresServer(tmp)
    url = server.create_database()
    try:
        yield url, "PostgreSQL" + (" (private pgserver)" if server._pgserver else f" ({server.admin_url})")
    finally:
        server.drop_database(url)
        server.stop()


# --- the parts -------------------------------------------------------------------------------
def part_a(report: Report, clip: Path, tmp: Path) -> None:
    settings = Settings.from_env({"AUDIO_MODEL_DIR": str(ensure_checkpoint())})
    wav, seconds = wav_of(clip, tmp)
    short, _ = wav_of(JFK, tmp)
    opts = TranscribeOptions(language="en")
    backends = {
        "faster-whisper (batched, as jobs run it)": get_backend("faster-whisper:tiny.en", settings),
        "faster-whisper (window by window)": get_backend("faster-whisper:tiny.en", Settings.from_env(
            {"AUDIO_WHISPER_BATCH_SIZE": "0"})),
        "openai-whisper": get_backend("openai-whisper:tiny.en", settings),
    }
    for backend in backends.values():
        backend.transcribe(str(short))  # warm-up: weights in memory, kernels chosen
    rtf = {name: timed(lambda b=backend: b.transcribe(str(wav), options=opts)) / seconds  # type: ignore[misc]
           for name, backend in backends.items()}
    for name, value in rtf.items():
        report.add("a", f"real-time factor, {name}", value, "s/s", note=f"{seconds:.0f} s clip")
    fw, fw_seq, ow = rtf.values()
    report.add("a", "openai-whisper / faster-whisper (batched)", ow / fw, "x", ">= 2.5", ow / fw >= 2.5)
    report.add("a", "openai-whisper / faster-whisper (window by window)", ow / fw_seq, "x", "",
               note="the same decoding, no batching")
    report.details["a"] = {"audio_seconds": seconds, "real_time_factor": rtf,
                           "compute_type": {n: getattr(b, "compute_type", "") for n, b in backends.items()}}


def raw_seconds(path: Path, tmp: Path, runs: int, cpu_threads: int) -> list[float]:
    wav, _ = wav_of(path, tmp)
    backend = get_backend("whisper-1", Settings.from_env({"AUDIO_WHISPER_CPU_THREADS": str(cpu_threads)}))
    backend.transcribe(str(wav))  # warm-up
    return [timed(lambda: backend.transcribe(str(wav))) for _ in range(runs)]


def part_b(report: Report, stack: Stack, clips: dict[str, Path], tmp: Path, runs: int, threads: int) -> None:
    details: dict[str, Any] = {}
    stack.wait(0, stack.submit(0, JFK.name))  # warms the worker processes (model load)
    stack.wait(0, stack.submit(0, JFK.name))
    _wav, minute = wav_of(clips["minute"], tmp)
    for label, path in (("jfk.flac (11 s)", JFK), (f"a {minute:.0f}-s clip", clips["minute"])):
        raw = statistics.median(raw_seconds(path, tmp, runs, threads))
        totals: list[float] = []
        stages: dict[str, list[float]] = {}
        for _ in range(runs):
            started = time.perf_counter()
            job = stack.wait(0, stack.submit(0, path.name))
            totals.append(time.perf_counter() - started)
            for run in job["stages"]:
                stages.setdefault(run["stage"], []).append(run["duration_seconds"])
        e2e = statistics.median(totals)
        overhead = e2e - raw
        report.add("b", f"raw transcribe, {label}", raw, "s")
        report.add("b", f"submit-to-completed, {label}", e2e, "s")
        report.add("b", f"overhead per job, {label}", overhead, "s", "<= 0.5 s", overhead <= 0.5)
        if path is clips["minute"]:
            report.add("b", f"overhead share, {label}", 100 * overhead / raw, "%", "<= 10 %", overhead / raw <= 0.10)
        means = {stage: statistics.mean(values) for stage, values in stages.items()}
        for stage, mean in means.items():
            report.add("b", f"  {stage}, {label}", mean, "s", note="mean")
        details[label] = {"raw_seconds": raw, "end_to_end": totals, "stage_means": means}
    report.details["b"] = details


PARALLEL_RAW = """
import sys, time
from audiojobs.config import Settings
from audiojobs.transcription.registry import get_backend
backend = get_backend("whisper-1", Settings.from_env({"AUDIO_WHISPER_CPU_THREADS": sys.argv[2]}))
backend.transcribe(sys.argv[1])
print("ready", flush=True)
sys.stdin.readline()
for _ in range(int(sys.argv[3])):
    backend.transcribe(sys.argv[1])
"""


def parallel_raw_rate(path: Path, tmp: Path, processes: int, jobs: int, threads: int) -> float:
    """Raw transcribe calls in ``processes`` processes at once, no pipeline: the most jobs a minute
    this machine can transcribe, whatever the pipeline does (cores shared with caches, memory bus)."""
    wav, _ = wav_of(path, tmp)
    each = max(1, jobs // processes)
    procs = [subprocess.Popen([sys.executable, "-c", PARALLEL_RAW, str(wav), str(threads), str(each)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO)
             for _ in range(processes)]
    for proc in procs:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    started = time.perf_counter()
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    for proc in procs:
        proc.wait(timeout=1200)
    return each * processes / (time.perf_counter() - started) * 60


def ab(url: str, key: str, requests: int, concurrency: int, body: Path | None = None) -> dict[str, float]:
    """ApacheBench (Debian's apache2-utils): requests per second, p50 and p99 in ms, failures."""
    cmd = ["ab", "-q", "-n", str(requests), "-c", str(concurrency), "-H", f"X-API-KEY: {key}"]
    if body is not None:
        cmd += ["-p", str(body), "-T", "application/json"]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, timeout=600, check=True).stdout
    rate = float(re.search(r"Requests per second:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    # ab counts a body whose length differs from the first one's as "failed" (job ids grow a digit):
    # only connection, receive and exception failures, and non-2xx answers, are failures here.
    failed = sum(int(n) for n in re.findall(r"(?:Connect|Receive|Exceptions): (\d+)", out))
    non2xx = re.search(r"Non-2xx responses:\s+(\d+)", out)
    pct = {int(p): float(ms) for p, ms in re.findall(r"^\s+(\d+)%\s+(\d+)", out, re.MULTILINE)}
    return {"rate": rate, "p50": pct[50], "p99": pct[99], "failed": failed + (int(non2xx.group(1)) if non2xx else 0)}


def part_d(report: Report, stack: Stack, reads: int, submits: int, tmp: Path) -> None:
    if shutil.which("ab") is None:
        report.add("d", "API load", None, "", note="skipped: ab (apache2-utils) is not installed")
        return
    user_id, key = stack.users[0]
    job_id = stack.submit(0, JFK.name)
    stack.wait(0, job_id)
    # The floor under every figure here: the same HTTP stack answering without auth or a database.
    bare = ab(f"{stack.base}/healthz", key, reads, 16)
    report.add("d", "GET /healthz per second, 16 clients (no auth, no database)", bare["rate"], "req/s",
               note="what gunicorn and Flask give on these cores")
    status = ab(f"{stack.base}/api/v1/audio/jobs/{job_id}", key, reads, 16)
    body = tmp / "submit.json"
    body.write_text(json.dumps({"local_path": str(stack.media_root / user_id / JFK.name)}))
    os.killpg(stack.procs["worker"].pid, signal.SIGSTOP)  # the jobs submitted now wait in the queue
    submit = ab(f"{stack.base}/api/v1/audio/jobs/submit", key, submits, 16, body)
    for label, found, target in (("status reads", status, 1000), ("submits", submit, 300)):
        report.add("d", f"{label} per second, 16 clients", found["rate"], "req/s", f">= {target}",
                   found["rate"] >= target)
        report.add("d", f"{label} p50 latency", found["p50"], "ms")
        report.add("d", f"{label} p99 latency", found["p99"], "ms", "< 100 ms", found["p99"] < 100)
        if found["failed"]:
            report.add("d", f"{label} failed or non-2xx", found["failed"], "requests", "0", False)
    report.details["d"] = {"healthz": bare, "status": status, "submit": submit,
                           "api_workers": stack.settings.api_workers}


def part_e(report: Report, stack: Stack) -> None:
    api = max(peak_rss_mb(pid) for pid in stack.pids("api"))
    worker = max(peak_rss_mb(pid) for pid in stack.pids("worker"))
    report.add("e", "peak RSS, API process (gunicorn worker)", api, "MB", "<= 150 MB", api <= 150)
    report.add("e", "peak RSS, worker process (model loaded)", worker, "MB", "<= 700 MB", worker <= 700)
    report.details["e"] = {"api_mb": api, "worker_mb": worker}


def raw_library_seconds(path: Path, threads: int) -> float:
    """faster-whisper's own BatchedInferencePipeline on the file as submitted (it decodes it too)."""
    from faster_whisper import BatchedInferencePipeline, WhisperModel

    settings = Settings.from_env({})
    model = WhisperModel(bundled_model_path("tiny.en"), device="cpu", compute_type="int8", cpu_threads=threads)
    pipeline = BatchedInferencePipeline(model)
    started = time.perf_counter()
    segments, _info = pipeline.transcribe(str(path), beam_size=5, batch_size=settings.whisper_batch_size,
                                          without_timestamps=False)
    for _segment in segments:
        pass
    return time.perf_counter() - started


def part_f(report: Report, stack: Stack, clip: Path, tmp: Path, threads: int) -> None:
    _wav, seconds = wav_of(clip, tmp)
    raw = raw_library_seconds(clip, threads)
    samples: list[tuple[float, float]] = []
    started = time.perf_counter()

    def sample(job: dict[str, Any]) -> None:
        if job.get("stage") == "audio_transcribe" and job.get("progress") is not None:
            samples.append((time.perf_counter() - started, float(job["progress"])))

    job = stack.wait(0, stack.submit(0, clip.name), poll=1.0, on_poll=sample)
    e2e = time.perf_counter() - started
    transcribe = next(r["duration_seconds"] for r in job["stages"] if r["stage"] == "audio_transcribe")
    report.add("f", f"raw library real-time factor, {seconds / 60:.0f}-minute file", raw / seconds, "s/s",
               note="faster-whisper's BatchedInferencePipeline on the file")
    report.add("f", "job real-time factor, submit-to-completed", e2e / seconds, "s/s")
    report.add("f", "job / raw", e2e / raw, "x", "<= 1.10", e2e / raw <= 1.10)
    report.add("f", "  of which audio_transcribe", transcribe, "s")
    values = [p for _t, p in samples]
    steady = all(b >= a for a, b in zip(values, values[1:], strict=False))
    longest_still = 0.0
    for (t0, p0), (t1, p1) in zip(samples, samples[1:], strict=False):
        if p1 == p0:
            longest_still = max(longest_still, t1 - t0)
    report.add("f", "progress samples while transcribing (1 s apart)", len(samples), "")
    report.add("f", "progress never went back", float(steady), "", "1", steady)
    report.add("f", "longest time progress stood still", longest_still, "s")
    report.details["f"] = {"audio_seconds": seconds, "raw_seconds": raw, "end_to_end_seconds": e2e,
                           "progress_samples": samples}


RSS_PROBE = """
import json, re, sys
from pathlib import Path
from audiojobs.storage.s3 import S3Store

def status(field):
    return int(re.search(field + r":\\s+(\\d+) kB", Path("/proc/self/status").read_text()).group(1)) / 1024

store = S3Store("audiojobs", "bench-rss/", sys.argv[1])
store.put_bytes("warm", b"x")  # the client is made and boto3 imported before the baseline
store.get_bytes("warm")
before = status("VmHWM")
store.put_file("big", Path(sys.argv[2]))
store.fetch_file("big", Path(sys.argv[2] + ".back"))
print(json.dumps({"before_mb": before, "peak_mb": status("VmHWM")}))
store.delete_prefix("")
"""


def part_g(report: Report, tmp: Path, clips: dict[str, Path], runs: int, big_mb: int) -> None:
    """Both stores side by side in one run: a stack on each, up at once, their jobs interleaved
    (file, S3, S3, file, ...) so that whatever drifts on the machine meanwhile (the clock, the
    other core's load) weighs on both alike; each pair's difference is one sample. The stage
    columns say where a difference comes from: the transcription varies by more from one run to
    the next than the storage costs, so the end-to-end medians alone measure mostly noise."""
    from contextlib import ExitStack

    from tests.services import S3Server

    server = S3Server(tmp / "s3")
    try:
        _wav, clip_seconds = wav_of(clips["clip"], tmp)
        labels = {"jfk.flac (11 s)": JFK, f"a {clip_seconds:.0f}-s clip": clips["clip"]}
        samples: dict[tuple[str, str], list[tuple[float, dict[str, float]]]] = {}
        with ExitStack() as stacks:
            up: dict[str, Stack] = {}
            for kind in ("file", "s3"):
                extra = {} if kind == "file" else {**server.env, "AUDIO_STORAGE_URL": "s3://audiojobs/bench"}
                (tmp / f"g-{kind}").mkdir()
                db_url, _label = stacks.enter_context(database(tmp / f"g-{kind}"))
                up[kind] = stacks.enter_context(Stack(tmp / f"g-{kind}", db_url, 1, 2, api_workers=1, cpu_threads=1,
                                                      media=list(labels.values()), extra_env=extra))
            for stack in up.values():
                for _ in range(2):
                    stack.wait(0, stack.submit(0, JFK.name))  # warm: the model loaded in both processes
            for label, path in labels.items():
                for run in range(runs):
                    for kind in (("file", "s3") if run % 2 == 0 else ("s3", "file")):
                        stack = up[kind]
                        started = time.perf_counter()
                        job = stack.wait(0, stack.submit(0, path.name))
                        stages = {r["stage"].removeprefix("audio_"): r["duration_seconds"] for r in job["stages"]}
                        samples.setdefault((kind, label), []).append((time.perf_counter() - started, stages))
        for label in labels:
            file_runs, s3_runs = samples[("file", label)], samples[("s3", label)]
            file_s = statistics.median(e for e, _ in file_runs)
            s3_s = statistics.median(e for e, _ in s3_runs)
            paired = statistics.median(s - f for (s, _), (f, _) in zip(s3_runs, file_runs, strict=True))
            outside = {kind: statistics.median(e - st["transcribe"] for e, st in runs_)
                       for kind, runs_ in (("file", file_runs), ("s3", s3_runs))}
            short = label.split(" (")[0]
            report.add("g", f"submit-to-completed, file store, {label}", file_s, "s")
            report.add("g", f"submit-to-completed, S3 store, {label}", s3_s, "s")
            for stage in ("download", "convert", "transcribe", "store"):
                report.add("g", f"  audio_{stage}, file store, {short}",
                           statistics.median(st[stage] for _, st in file_runs), "s",
                           note=f"S3: {statistics.median(st[stage] for _, st in s3_runs):.3f} s")
            report.add("g", f"  all but audio_transcribe, file store, {short}", outside["file"], "s",
                       note=f"S3: {outside['s3']:.3f} s")
            storage = outside["s3"] - outside["file"]
            if label.startswith("jfk"):
                report.add("g", f"S3 - file, per job (median of pairs), {short}", paired, "s", "<= 0.15 s",
                           paired <= 0.15)
                report.add("g", f"S3 - file outside the model, per job, {short}", storage, "s", "<= 0.15 s",
                           storage <= 0.15)
            else:
                report.add("g", f"S3 - file, per job (median of pairs) / file, {short}", 100 * paired / file_s, "%",
                           note="mostly the model's run-to-run spread")
                share = 100 * storage / file_s
                report.add("g", f"S3 - file outside the model / file, {short}", share, "%", "<= 5 %", share <= 5)
        big = tmp / "big.bin"
        with open(big, "wb") as out:  # real bytes, not a sparse file: what a long recording is
            block = os.urandom(1024 * 1024)
            for _ in range(big_mb):
                out.write(block)
        env = {**os.environ, **server.env}
        probe = json.loads(subprocess.run([sys.executable, "-c", RSS_PROBE, server.endpoint, str(big)], env=env,
                                          capture_output=True, text=True, check=True, cwd=REPO).stdout)
        growth = probe["peak_mb"] - probe["before_mb"]
        report.add("g", f"peak RSS growth moving {big_mb} MB up to S3 and back", growth, "MB", "<= 50 MB",
                   growth <= 50)
        report.details["g"] = {"runs": {f"{kind} {label}": v for (kind, label), v in samples.items()}, "rss": probe}
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="a,b,c,d,e,f,g,h,i,j,k", help="parts to run, e.g. b,c")
    parser.add_argument("--smoke", action="store_true", help="every part at tiny sizes (used by scripts/test)")
    parser.add_argument("--clip-minutes", type=float, default=5.0, help="the clip of part a")
    parser.add_argument("--long-minutes", type=float, default=30.0, help="the file of part f")
    parser.add_argument("--runs", type=int, default=5, help="jobs per file in part b")
    parser.add_argument("--out", type=Path, default=REPO / "var" / "bench" / "bench.json")
    args = parser.parse_args()
    parts = set(args.only.split(","))
    os.environ.setdefault("AUDIOJOBS_LOG_LEVEL", "warning")
    smoke = args.smoke
    jobs, users, runs = (6, 3, 1) if smoke else (100, 10, args.runs)
    reads, submits = (200, 100) if smoke else (5000, 2000)
    # The worker as every start sizes it (sizing.py): on 2 cores one process, a batching threads
    # pool, 2 model threads; the raw calls compared with it use as many threads.
    threads, processes = sizing.cores(), 0
    report = Report()
    begun = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="audiojobs-bench-") as tmp_name:
        tmp = Path(tmp_name)
        clips = {"clip": make_clip(tmp / "clip-5min.flac", 20 if smoke else args.clip_minutes * 60),
                 "minute": make_clip(tmp / "clip-60s.flac", 20 if smoke else 60),
                 "long": make_clip(tmp / "long.flac", 70 if smoke else args.long_minutes * 60)}
        if "a" in parts:
            part_a(report, clips["clip"], tmp)
            print(report.table(), flush=True)
        if parts & {"b", "d", "e", "f"}:
            with database(tmp) as (db_url, db_label):
                report.details["database"] = db_label
                with Stack(tmp, db_url, users, processes, api_workers=2, cpu_threads=threads,
                           media=[JFK, clips["minute"], clips["long"]]) as stack:
                    if "b" in parts:
                        part_b(report, stack, clips, tmp, runs, threads)
                    if "f" in parts:
                        part_f(report, stack, clips["long"], tmp, threads)
                    if "d" in parts:
                        part_d(report, stack, reads, submits, tmp)
                    if "e" in parts:
                        part_e(report, stack)
        if parts & {"c", "j"}:
            import bench_batching

            if "c" in parts:
                bench_batching.part_c(report, tmp, smoke, Stack, lambda: database(tmp), JFK, wav_of, parallel_raw_rate)
                print(report.table(), flush=True)
            if "j" in parts:
                bench_batching.part_j(report, tmp, smoke, Stack, lambda: database(tmp), JFK, wav_of)
                print(report.table(), flush=True)
        if "g" in parts:
            part_g(report, tmp, clips, runs, big_mb=32 if smoke else 1024)
            print(report.table(), flush=True)
        if "h" in parts:
            from bench_priorities import part_h

            part_h(report, tmp, smoke)
        if "i" in parts:
            from bench_speakers import part_i

            with database(tmp) as (db_url, _label):
                part_i(report, tmp, smoke, Stack, db_url, peak_rss_mb)
        if "k" in parts:
            from bench_profile import part_k

            with database(tmp) as (db_url, _label):
                part_k(report, tmp, smoke, Stack, db_url, JFK)
            print(report.table(), flush=True)
    elapsed = time.perf_counter() - begun
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    print(f"\naudiojobs benchmarks ({'smoke' if smoke else 'full'}), {machine}, {elapsed / 60:.1f} min")
    print(report.table())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": machine, "smoke": smoke, "minutes": elapsed / 60,
                                    "figures": [f.__dict__ for f in report.figures], "details": report.details},
                                   indent=2, default=str))
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
