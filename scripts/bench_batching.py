"""Parts c and j of scripts/bench: cross-job batching on against off, side by side in one run.

Each side is a real stack (gunicorn, a Celery worker, Redis, the database), started afresh:

* **off**, today's path before batching: ``AUDIO_TRANSCRIBE_BATCH_MAX=1``, a prefork worker.
  Part c: two processes of one model thread each (part c's setup before batching). Part j:
  run-local's defaults before batching: two processes, each with CTranslate2's own thread count (4).
* **on**: ``AUDIO_TRANSCRIBE_BATCH_MAX=4`` (the CPU's default is off: these figures are why),
  the rest sized from the cores (sizing.py): on 2 cores one process, a threads pool of 6, 2 model
  threads.

c  throughput   100 jfk.flac jobs (11 s) from 10 users, both stacks up at once and the sides taking
                turns in four rounds (off, on, on, off, ...); CPU per job by process; the worker's CPU
                per job outside the model (its CPU per job less what the model alone costs a job
                in the same decoding, measured in a process doing nothing else); a single job's
                submit-to-completed on the idle stack (p50, p95); the raw transcribe calls in two
                processes at once, as before.
j  run-local    40 jfk.flac jobs, then 40 jobs of varied real speech (jfk.flac and 30 s of two other
                people, pyannote's sample), from 16 concurrent HTTP clients, one user (as run-local
                runs: one premium user), on run-local's defaults before this change, its defaults
                now, and batching 4: audio seconds per second; the transcripts against each other
                and the reference (WER).
"""

from __future__ import annotations

import contextlib
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent

RAW_CPU = """
import os, sys, threading, time
from audiojobs.config import Settings
from audiojobs.transcription.registry import get_backend
from audiojobs.transcription.batching import ARRIVALS, BatchingBackend
wav, threads, batch, jobs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
backend = get_backend("whisper-1", Settings.from_env({"AUDIO_WHISPER_CPU_THREADS": threads}))
if batch > 1:
    backend = BatchingBackend(backend, batch, 50)
backend.transcribe(wav)
print("ready", flush=True)
sys.stdin.readline()
before = os.times()
def run(n):
    for _ in range(n):
        with ARRIVALS.coming():  # as audio_transcribe's task does: the batcher waits for jobs on their way
            backend.transcribe(wav)
workers = [threading.Thread(target=run, args=(jobs // batch,)) for _ in range(batch)]
started = time.perf_counter()
for w in workers: w.start()
for w in workers: w.join()
after = os.times()
print((after.user - before.user + after.system - before.system) / (jobs // batch * batch),
      (time.perf_counter() - started) / (jobs // batch * batch))
"""


def model_alone(wav: Path, threads: int, batch: int, jobs: int, processes: int = 1) -> tuple[float, float]:
    """What the model alone costs (processes doing nothing else, ``processes`` of them at once, each
    with ``threads`` model threads): CPU seconds a job, and jobs a minute. One job at a time
    (batch 1), or ``batch`` jobs at once through the batcher."""
    cmd = [sys.executable, "-c", RAW_CPU, str(wav), str(threads), str(batch), str(jobs)]
    procs = [subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO)
             for _ in range(processes)]
    for proc in procs:  # every process loaded its model: all start at once
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    outs = [proc.communicate()[0].split() for proc in procs]
    cpu = statistics.mean(float(out[0]) for out in outs)
    wall = max(float(out[1]) for out in outs)  # per job, in the slowest process, load time excluded
    return cpu, 60 * processes / wall


# Shapes tried for part c's table: (processes, model threads, batch). On 2 cores the default is
# (2, 1, 1), part c's "off"; run-local before this change was (2, 4, 1).
SHAPES = [(2, 1, 1), (1, 2, 1), (2, 4, 1), (1, 1, 4), (2, 1, 4), (1, 2, 4), (1, 2, 8)]


def _latency(stack: Any, name: str, runs: int) -> list[float]:
    """Submit-to-completed of one job at a time on the idle stack."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        stack.wait(0, stack.submit(0, name), poll=0.01)
        times.append(time.perf_counter() - started)
    return times


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


SIDES: dict[str, dict[str, Any]] = {
    "off": {"env": {"AUDIO_TRANSCRIBE_BATCH_MAX": "1"}, "processes": 2, "threads": 1},
    "on": {"env": {"AUDIO_TRANSCRIBE_BATCH_MAX": "4"}, "processes": 0, "threads": 0},
}


def part_c(report: Any, tmp: Path, smoke: bool, stack_class: Any, db_url: Callable[[], Any], jfk: Path,
           wav_of: Any, parallel_raw_rate: Any) -> None:
    jobs, users, runs, rounds = (6, 3, 2, 1) if smoke else (100, 10, 10, 4)
    wav, seconds = wav_of(jfk, tmp)
    results: dict[str, dict[str, Any]] = {}
    with contextlib.ExitStack() as up:
        stacks = {}
        for side, cfg in SIDES.items():  # both up at once; the idle one costs nothing
            url, _label = up.enter_context(db_url())
            stacks[side] = up.enter_context(stack_class(
                tmp / f"stack-c-{side}", url, users, cfg["processes"], api_workers=2, media=[jfk],
                cpu_threads=cfg["threads"], extra_env=cfg["env"]))
            stacks[side].wait(0, stacks[side].submit(0, jfk.name))  # the model loaded, the pool warm
        totals = {side: {"elapsed": 0.0, "cpu": {}, "latency": [], "rates": []} for side in SIDES}
        # Rounds alternate the sides (off, on, on, off, ...): what drifts on the machine weighs on both.
        for round_ in range(rounds):
            for side in (list(SIDES) if round_ % 2 == 0 else list(reversed(SIDES))):
                stack, total = stacks[side], totals[side]
                total["latency"] += _latency(stack, jfk.name, max(1, runs // rounds))
                before = stack.cpu_seconds()
                started = time.perf_counter()
                ids = [(i % users, stack.submit(i % users, jfk.name)) for i in range(jobs // rounds)]
                for user, job_id in ids:
                    stack.wait(user, job_id, poll=0.2)
                elapsed = time.perf_counter() - started
                total["elapsed"] += elapsed
                total["rates"].append(len(ids) / elapsed * 60)
                for name, used in stack.cpu_seconds().items():
                    total["cpu"][name] = total["cpu"].get(name, 0.0) + used - before[name]
        shapes_of = {side: shape_of(stacks[side]) for side in SIDES}
    for side, total in totals.items():
        sized = shapes_of[side]
        done = jobs // rounds * rounds
        cpu = {name: used / done for name, used in total["cpu"].items()}
        model_cpu, _rate = model_alone(wav, sized["threads"], sized["batch"], 8 if smoke else 24)
        results[side] = {"rate": done / total["elapsed"] * 60, "rates": total["rates"], "cpu": cpu,
                         "latency": total["latency"], "model_cpu": model_cpu, "shape": sized,
                         "outside": cpu["worker"] - model_cpu}
    ceiling = parallel_raw_rate(jfk, tmp, 2, jobs, 1)
    off, on = results["off"], results["on"]
    for side, r in results.items():
        shape = r["shape"]
        label = f"batching {side} ({shape['pool']} x {shape['concurrency']}, batch {shape['batch']}, " \
                f"{shape['threads']} model threads)"
        report.add("c", f"throughput, {jobs} jobs from {users} users, {label}", r["rate"], "jobs/min",
                   note="rounds: " + ", ".join(f"{rate:.0f}" for rate in r["rates"]))
        for name, per_job in r["cpu"].items():
            report.add("c", f"  CPU per job, {name}, batching {side}", per_job, "s")
        report.add("c", f"  model alone, CPU per job, batching {side}", r["model_cpu"], "s")
        report.add("c", f"  worker CPU per job outside the model, batching {side}", r["outside"], "s")
        report.add("c", f"  single job on the idle stack, p50, batching {side}", _pct(r["latency"], 0.5), "s")
        report.add("c", f"  single job on the idle stack, p95, batching {side}", _pct(r["latency"], 0.95), "s",
                   note=f"{len(r['latency'])} jobs")
    report.add("c", f"raw transcribe calls in 2 processes at once, no pipeline ({seconds:.0f} s clip)", ceiling,
               "jobs/min")
    shapes = {}
    default = default_shape()
    for processes, threads, batch in dict.fromkeys([*(SHAPES[:1] + SHAPES[-2:-1] if smoke else SHAPES), default]):
        _cpu, shapes[(processes, threads, batch)] = model_alone(wav, threads, batch, 8 if smoke else 24, processes)
    best = max(shapes, key=lambda k: shapes[k])
    for (processes, threads, batch), rate in shapes.items():
        mark = " (the default)" if (processes, threads, batch) == default else ""
        report.add("c", f"  model alone: {processes} processes x {threads} threads, batch {batch}{mark}", rate,
                   "jobs/min")
    report.add("c", "the default shape is the best tried", None, "", "yes", best == default,
               note=f"best: {best[0]} x {best[1]} threads, batch {best[2]}")
    report.add("c", "throughput, on / off", on["rate"] / off["rate"], "x", ">= 1.5", on["rate"] / off["rate"] >= 1.5)
    report.add("c", "throughput on / raw calls at once", on["rate"] / ceiling, "x", "> 1", on["rate"] > ceiling)
    share = on["outside"] / off["outside"] if off["outside"] > 0 else float("nan")
    report.add("c", "worker CPU per job outside the model, on / off", share, "x", "<= 0.5", share <= 0.5)
    added = _pct(on["latency"], 0.5) - _pct(off["latency"], 0.5)
    report.add("c", "single job p50, on - off", added, "s", "<= 0.1", added <= 0.1)
    report.details["c"] = {side: {k: v for k, v in r.items()} for side, r in results.items()}
    report.details["c"]["parallel_raw_jobs_per_minute"] = ceiling
    report.details["c"]["shapes_jobs_per_minute"] = {f"{p}x{t} batch {b}": r for (p, t, b), r in shapes.items()}


def _clients(stack: Any, names: list[str], clients: int) -> float:
    """``names`` as jobs from ``clients`` concurrent HTTP clients (one user), each submitting its next
    job when its last one completed; the seconds from the first submit to the last completion."""
    work = list(enumerate(names))
    lock = threading.Lock()
    done: dict[int, dict[str, Any]] = {}

    def client() -> None:
        while True:
            with lock:
                if not work:
                    return
                index, name = work.pop(0)
            job = stack.wait(0, stack.submit(0, name), poll=0.05)
            done[index] = job

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stack.done = done
    return time.perf_counter() - started


def part_j(report: Any, tmp: Path, smoke: bool, stack_class: Any, db_url: Callable[[], Any], jfk: Path,
           wav_of: Any) -> None:
    from tests.conftest import word_error_rate
    from tests.services import JFK_TEXT
    from tests.speakers import pyannote_sample

    sample = tmp / "two-people.wav"
    sample.write_bytes(pyannote_sample()[0].read_bytes())
    jobs, clients = (6, 4) if smoke else (40, 16)
    _jw, jfk_seconds = wav_of(jfk, tmp)
    _sw, sample_seconds = wav_of(sample, tmp)
    loads = {"jfk.flac": [jfk.name] * jobs,
             "varied real speech": [(jfk.name, sample.name)[i % 2] for i in range(jobs)]}
    if smoke:
        del loads["jfk.flac"]
    seconds = {jfk.name: jfk_seconds, sample.name: sample_seconds}
    # before: run-local's defaults before this change (2 processes, CTranslate2's 4 threads each);
    # now: run-local's defaults (sized from the cores); batching: the threads pool batching 4.
    sides = {"before": ({"AUDIO_TRANSCRIBE_BATCH_MAX": "1", "AUDIO_WHISPER_CPU_THREADS": "4"}, 2),
             "now": ({}, 0), "batching 4": ({"AUDIO_TRANSCRIBE_BATCH_MAX": "4"}, 0)}
    rates: dict[str, dict[str, float]] = {}
    texts: dict[str, dict[str, str]] = {}
    for side, (env, processes) in sides.items():
        with db_url() as (url, _label), stack_class(tmp / f"stack-j-{side}", url, 1, processes, api_workers=2,
                                                     media=[jfk, sample], cpu_threads=int(env.get(
                                                         "AUDIO_WHISPER_CPU_THREADS", 0)),
                                                     extra_env=env) as stack:
            stack.wait(0, stack.submit(0, jfk.name))
            rates[side] = {}
            for load, names in loads.items():
                elapsed = _clients(stack, names, clients)
                rates[side][load] = sum(seconds[n] for n in names) / elapsed
            key = stack.users[0][1]
            texts[side] = {}
            for index, job in stack.done.items():  # the last load's jobs: one of each file
                name = loads["varied real speech"][index]
                if name not in texts[side]:
                    texts[side][name] = text_of(stack, f"/api/v1/audio/jobs/{job['id']}/result?format=text", key)
    notes = {"before": "run-local before: 2 prefork processes x 4 model threads",
             "now": "run-local now: sized from the cores", "batching 4": "a threads pool batching 4"}
    for load in loads:
        for side in sides:
            report.add("j", f"{load}, {jobs} jobs, {clients} clients, {side}", rates[side][load], "audio-s/s",
                       note=notes[side])
        ratio = rates["now"][load] / rates["before"][load]
        report.add("j", f"{load}: now / before", ratio, "x", ">= 2.5", ratio >= 2.5)
        ratio = rates["batching 4"][load] / rates["before"][load]
        report.add("j", f"{load}: batching 4 / before", ratio, "x")
    reference = {side: word_error_rate(JFK_TEXT, texts[side][jfk.name]) for side in sides}
    added = reference["batching 4"] - reference["before"]
    report.add("j", "WER of jfk.flac, batching 4 - before", added, "", "<= 0.01", added <= 0.01)
    between = word_error_rate(texts["before"][sample.name], texts["batching 4"][sample.name])
    report.add("j", "two people (30 s): words that differ, batching 4 against before", between, "",
               note="no reference transcript: the two decodings against each other")
    report.details["j"] = {"audio_seconds_per_second": rates, "texts": texts}


def default_shape() -> tuple[int, int, int]:
    """(processes, model threads, batch) of a worker started with no settings on this machine."""
    from audiojobs import sizing
    from audiojobs.config import Settings

    s = Settings.from_env({})
    plan = sizing.plan(s, [s.control_queue, s.cpu_queue, s.transcribe_queue])
    processes = plan.concurrency if plan.pool == "prefork" else 1
    return processes, plan.cpu_threads, plan.batch


def shape_of(stack: Any) -> dict[str, Any]:
    """How the stack's worker is sized: what sizing.py gives its settings and pool (as the worker
    itself computes it when it starts)."""
    from audiojobs import sizing

    settings = stack.settings
    queues = [settings.control_queue, settings.cpu_queue, settings.transcribe_queue]
    plan = sizing.plan(settings, queues, stack._workers or None)
    return {"pool": plan.pool, "concurrency": plan.concurrency, "threads": plan.cpu_threads, "batch": plan.batch}


def text_of(stack: Any, path: str, key: str) -> str:
    import urllib.request

    req = urllib.request.Request(f"{stack.base}{path}", headers={"X-API-KEY": key})  # noqa: S310 - loopback
    with urllib.request.urlopen(req, timeout=60) as resp:  # noqa: S310 - loopback
        return str(resp.read().decode())
