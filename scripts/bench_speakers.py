"""Part i of scripts/bench: what diarization costs and how well it does, on about five minutes of
real speech of three people (tests/speakers.py's three-speaker clip, five times over; one time in
the smoke run), through a real stack (gunicorn, one worker process, Redis, the database).

Jobs with ``diarize`` and without alternate on the same file; the figures: ``audio_transcribe``'s
time with against without (medians), the worker process's peak RSS, the diarization error rate of
the turns on the two- and three-speaker clips (pyannote.metrics, collar 0.25 s), the speakers found
(by those and in the job's result), and whether the API processes ever mapped torch.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any


def _transcribe_seconds(job: dict[str, Any]) -> float:
    return float(next(s["duration_seconds"] for s in job["stages"]
                      if s["stage"] == "audio_transcribe" and s["status"] == "succeeded"))


def _maps_torch(pid: int) -> bool:
    try:
        return "torch" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


def _turn_error(report: Any, model_dir: Path) -> None:
    """The diarization error rate of the speaker turns themselves (in this process), on the two-
    and the three-speaker clip, the count estimated."""
    from audiojobs.transcription import diarize
    from tests.speakers import RATE, der, three_speakers, two_speakers

    for name, (audio, reference), limit in (("two", two_speakers(), 0.15), ("three", three_speakers(), 0.25)):
        turns = diarize.diarize(audio, model_dir)
        error = der(reference, [(t.start, t.end, t.speaker) for t in turns], len(audio) / RATE)
        count = len({t.speaker for t in turns})
        report.add("i", f"DER, {name} speakers ({len(audio) / RATE:.0f} s), count estimated", error, "",
                   f"<= {limit}", error <= limit)
        report.add("i", f"speakers found, {name} speakers", count, "", name, count == {"two": 2, "three": 3}[name])


def part_i(report: Any, tmp: Path, smoke: bool, stack_class: Any, db_url: str, peak_rss_mb: Any) -> None:
    import numpy as np

    from tests.speakers import RATE, three_speakers, write_wav

    clip, _reference = three_speakers()
    repeats = 1 if smoke else 5
    audio = np.concatenate([clip] * repeats)
    path = write_wav(audio, tmp / "speakers.wav")
    seconds = len(audio) / RATE
    runs = 1 if smoke else 3
    with stack_class(tmp / "stack-i", db_url, users=1, worker_processes=1, api_workers=1, media=[path],
                     cpu_threads=0) as stack:
        # The model loaded before anything is timed, and the worker's peak memory without diarization.
        stack.wait(0, stack.submit(0, path.name, language="en"))
        plain = [_transcribe_seconds(stack.wait(0, stack.submit(0, path.name, language="en")))]
        plain_mb = max(peak_rss_mb(pid) for pid in stack.pids("worker"))
        stack.wait(0, stack.submit(0, path.name, language="en", diarize=True))  # the voice encoder loaded
        diarized, last = [], None
        for run in range(runs):
            last = stack.wait(0, stack.submit(0, path.name, language="en", diarize=True))
            diarized.append(_transcribe_seconds(last))
            if run < runs - 1:
                plain.append(_transcribe_seconds(stack.wait(0, stack.submit(0, path.name, language="en"))))
        assert last is not None
        result = stack.call("GET", f"/api/v1/audio/jobs/{last['id']}/result", stack.users[0][1])
        worker_mb = max(peak_rss_mb(pid) for pid in stack.pids("worker"))
        api_torch = any(_maps_torch(pid) for pid in [stack.procs["api"].pid, *stack.pids("api")])
        worker_torch = any(_maps_torch(pid) for pid in [stack.procs["worker"].pid, *stack.pids("worker")])
    speakers = len(result["speakers"] or [])
    _turn_error(report, tmp / "models")
    without, with_ = statistics.median(plain), statistics.median(diarized)
    added = 100 * (with_ - without) / without
    label = f"{seconds:.0f} s of three people"
    report.add("i", f"audio_transcribe without diarize, {label}", without, "s", note=f"(median of {runs})")
    report.add("i", f"audio_transcribe with diarize, {label}", with_, "s", note=f"(median of {runs})")
    report.add("i", "time diarization adds", added, "%", "<= 25 %", added <= 25)
    report.add("i", "peak RSS, worker process, before any diarization", plain_mb, "MB")
    report.add("i", "peak RSS, worker process (model and voice encoder loaded)", worker_mb, "MB", "< 900 MB",
               worker_mb < 900)
    report.add("i", "API processes that mapped torch", int(api_torch), "", "0", not api_torch)
    report.add("i", "CPU worker processes that mapped torch (the encoder runs on onnxruntime)", int(worker_torch),
               "", "0", not worker_torch)
    report.add("i", "speakers in the result (3 speak)", speakers, "", "3", speakers == 3)
    report.details["i"] = {"seconds": seconds, "plain": plain, "diarized": diarized, "worker_mb": worker_mb,
                           "worker_plain_mb": plain_mb,
                           "speakers": result["speakers"]}
