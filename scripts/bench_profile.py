"""Part k of scripts/bench: where a short job's worker CPU goes outside the model (issue 17, item 2).

One stack whose worker is a single solo-pool process (every stage runs in the process watched),
started through this file's ``--worker`` wrapper, which counts the SQL statements and commits the
worker sends. jfk.flac jobs one after another; py-spy samples the worker at 200 Hz with ``--gil``:
only the thread holding the GIL, i.e. Python at work (the model's native code and the waits on
the database release it). Samples inside the model call are left out; the rest is grouped by the
package of the innermost frame.

k  Python CPU a job outside the model, in all and by package (SQLAlchemy, redis-py, Celery with
   kombu, audiojobs, the rest); SQL statements and commits a job. Where py-spy cannot attach (no
   ptrace permission), the CPU figures are left out and the counts remain.
"""

from __future__ import annotations

import collections
import re
import runpy
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

RATE = 200  # py-spy samples a second
MODEL_FRAMES = ("generate_with_fallback", "WhisperModel.encode", "ctranslate2")
PACKAGES = {"sqlalchemy": "SQLAlchemy", "psycopg2": "SQLAlchemy", "redis": "redis-py", "celery": "Celery, kombu",
            "kombu": "Celery, kombu", "audiojobs": "audiojobs"}


def worker_main(counts_file: str, celery_args: list[str]) -> None:
    """Run ``celery`` with ``celery_args`` in this process, counting what it sends to the database."""
    import sqlalchemy as sa
    from sqlalchemy.engine import Engine

    counts = collections.Counter[str]()
    sa.event.listen(Engine, "before_cursor_execute", lambda *_a: counts.update(["statements"]))
    sa.event.listen(Engine, "commit", lambda *_a: counts.update(["commits"]))

    sys.argv = ["celery", *celery_args]
    try:
        runpy.run_module("celery", run_name="__main__", alter_sys=True)
    finally:  # the worker's warm shutdown ends in SystemExit, which passes here
        Path(counts_file).write_text(f"{counts['statements']} {counts['commits']}")


def _group(raw: Path) -> tuple[collections.Counter[str], int]:
    """py-spy's collapsed stacks: samples outside the model by package, and the model's."""
    groups: collections.Counter[str] = collections.Counter()
    model = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if any(mark in frame for frame in frames for mark in MODEL_FRAMES):
            model += int(count)
            continue
        leaf = re.search(r"\((\w+)/", frames[-1])
        groups[PACKAGES.get(leaf.group(1) if leaf else "", "the rest")] += int(count)
    return groups, model


def part_k(report: Any, tmp: Path, smoke: bool, stack_class: Any, db_url: str, jfk: Path) -> None:
    jobs = 3 if smoke else 60
    counts = tmp / "k-counts.txt"

    def solo_worker(base: list[str]) -> list[str]:
        cmd = list(base)
        cmd[cmd.index("-P") + 1] = "solo"
        at = cmd.index("-m")  # python -m celery ... -> python bench_profile.py --worker COUNTS ...
        return [*cmd[:at], str(Path(__file__).resolve()), "--worker", str(counts), *cmd[at + 2:]]

    err = b"py-spy is not installed"
    spy_bin = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    with stack_class(tmp / "stack-k", db_url, 1, 1, api_workers=1, media=[jfk], cpu_threads=1,
                     extra_env={"AUDIO_TRANSCRIBE_BATCH_MAX": "1"}, worker_cmd_filter=solo_worker) as stack:
        stack.wait(0, stack.submit(0, jfk.name))  # the model loaded
        raw = tmp / "k-pyspy.txt"
        spy = subprocess.Popen([spy_bin, "record", "--gil", "-r", str(RATE), "-f", "raw", "-o", str(raw),
                                "--pid", str(stack.procs["worker"].pid)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) if Path(spy_bin).exists() else None
        time.sleep(1)
        for _ in range(jobs):
            stack.wait(0, stack.submit(0, jfk.name), poll=0.05)
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            _out, err = spy.communicate(timeout=120)
    statements, commits = (int(n) for n in counts.read_text().split())
    per_job = jobs + 1  # the counts include the warm-up job
    if spy is not None and raw.exists():
        groups, model = _group(raw)
        report.add("k", "Python CPU a job outside the model (GIL held)", sum(groups.values()) / RATE / jobs * 1000,
                   "ms", note=f"model call {model / RATE / jobs * 1000:.0f} ms of GIL")
        for name in ("SQLAlchemy", "redis-py", "Celery, kombu", "audiojobs", "the rest"):
            report.add("k", f"  of which {name}", groups[name] / RATE / jobs * 1000, "ms")
    else:
        report.add("k", "Python CPU a job outside the model (GIL held)", None, "ms",
                   note=f"py-spy could not sample: {err.decode(errors='replace')[-200:]}")
    report.add("k", "SQL statements a job (the worker)", statements / per_job, "")
    report.add("k", "database commits a job (the worker)", commits / per_job, "")


if __name__ == "__main__" and sys.argv[1:2] == ["--worker"]:
    worker_main(sys.argv[2], sys.argv[3:])
