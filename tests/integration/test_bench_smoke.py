"""The benchmark suite at tiny sizes, so it cannot rot: every part runs against real processes and
writes its figures. Targets are reported by the benchmark, never asserted here (README: Performance)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(1200)  # every part, each with stacks of its own (c and j: two and three)
def test_every_part_of_the_benchmark_runs(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    run = subprocess.run([sys.executable, str(REPO / "scripts" / "bench.py"), "--smoke", "--out", str(out)],
                         capture_output=True, text=True, timeout=1200, cwd=REPO)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    print(run.stdout[-4000:])
    report = json.loads(out.read_text())
    parts = {f["part"] for f in report["figures"] if f["value"] is not None}
    figures = {f["name"]: f["value"] for f in report["figures"]}
    if shutil.which("ab") is None:  # scripts/test installs apache2-utils where it can (root, apt)
        assert "API load" in figures and parts == {"a", "b", "c", "e", "f", "g", "h", "i", "j", "k"}
        return
    assert parts == {"a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k"}, report["figures"]
    assert figures["throughput, on / off"] > 0 and figures["WER of jfk.flac, batching 4 - before"] is not None
    assert figures["speakers found, three speakers"] == 3 and figures["API processes that mapped torch"] == 0
    assert figures["messages: low tasks run before the last high one (40 low, 5 high)"] == 0
    assert figures["submit-to-completed, S3 store, jfk.flac (11 s)"] > 0
    assert figures["peak RSS growth moving 32 MB up to S3 and back"] is not None
    assert figures["openai-whisper / faster-whisper (batched)"] > 0
    assert figures["peak RSS, worker process (model loaded)"] > figures["peak RSS, API process (gunicorn worker)"] > 0
    assert figures["progress never went back"] == 1.0
    assert figures["SQL statements a job (the worker)"] > 0 and figures["database commits a job (the worker)"] > 0
    assert figures["status reads per second, 16 clients"] > 0 and figures["submits per second, 16 clients"] > 0
    assert "submits failed or non-2xx" not in figures and "status reads failed or non-2xx" not in figures
