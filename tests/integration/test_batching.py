"""Cross-job batching on a real worker: jobs share the model's passes, and each keeps its own run,
lease, cancel and rescue (nothing lost, nothing done twice)."""

from __future__ import annotations

import datetime as dt
import os
import re
import signal
from pathlib import Path

import pytest
import sqlalchemy as sa

from audiojobs.db import session_scope
from audiojobs.jobs.models import StageRun
from tests.conftest import AUTH, stage_running, wait_for_job, word_error_rate
from tests.integration.conftest import Stack
from tests.integration.test_faults import runs_of, sigterm_while_transcribing, submit, tally, wait_all_final
from tests.media import jfk_repeated, varied_speech
from tests.services import JFK_TEXT
from tests.speakers import pyannote_sample

pytestmark = pytest.mark.integration
TRANSCRIBE = "audio_transcribe"
BATCH_4 = {"AUDIO_TRANSCRIBE_BATCH_MAX": "4"}  # on the CPU batching is off unless asked for


def passes(log: str) -> list[tuple[int, int]]:
    """(windows, jobs) of every batched pass the worker logged."""
    return [(int(w), int(j)) for w, j in re.findall(r"batched pass \d+: (\d+) windows of (\d+) jobs", log)]


def transcribe_spans(stack: Stack, job_ids: list[int]) -> list[tuple[str, dt.datetime, dt.datetime]]:
    with session_scope(stack.settings.effective_database_url) as session:
        rows = session.execute(sa.select(StageRun.worker_id, StageRun.started_at, StageRun.finished_at).where(
            StageRun.job_id.in_(job_ids), StageRun.stage == TRANSCRIBE, StageRun.status == "succeeded")).all()
    return [(w, s, f) for w, s, f in rows]


def test_jobs_share_passes_and_each_keeps_its_own_run(bare_stack: Stack) -> None:
    """Eight jobs of two recordings (JFK; two other people talking) on one transcription worker of
    four threads: they are decoded several at a time, each transcript as good as alone, each job
    with one run of its own."""
    stack = bare_stack
    sample, _rttm = pyannote_sample()
    (stack.media_root / "sample.wav").write_bytes(sample.read_bytes())
    transcriber = stack.start_worker(queues="audio_gpu", concurrency=4, env=BATCH_4)
    cpu = stack.start_worker(queues="audio_control,audio_cpu", concurrency=2)
    try:
        assert "pool threads x 4: model threads" in transcriber.log() and ", batch 4" in transcriber.log()
        jfk = [submit(stack, stack.media_root / "jfk.flac") for _ in range(6)]
        other = [submit(stack, stack.media_root / "sample.wav") for _ in range(2)]
        wait_all_final(stack, jfk + other, timeout=240)
        log = transcriber.log_path.read_text(errors="replace")
    finally:
        cpu.stop()
        transcriber.stop()
    assert tally(stack, jfk + other, "batched jobs") == {"submitted": 8, "completed": 8, "lost": 0, "duplicated": 0}
    for job_id in jfk + other:
        assert runs_of(stack, job_id, TRANSCRIBE) == ["succeeded"]
    texts = {job_id: stack.client.get(f"/api/v1/audio/jobs/{job_id}/result?format=text", headers=AUTH).get_data(
        as_text=True) for job_id in jfk + other}
    for job_id in jfk:
        assert word_error_rate(JFK_TEXT, texts[job_id]) <= 0.15, texts[job_id]
    assert len({texts[j] for j in other}) == 1 and len(texts[other[0]].split()) > 40  # the same words, both times
    shared = [(w, j) for w, j in passes(log) if j > 1]
    print(f"\npasses (windows, jobs): {passes(log)}")
    assert shared, log  # some passes decoded several jobs' windows together
    spans = transcribe_spans(stack, jfk + other)
    assert len({worker for worker, _s, _f in spans}) == 1  # one process, one model
    starts, ends = sorted(s for _w, s, _f in spans), sorted(f for _w, _s, f in spans)
    assert starts[1] < ends[0]  # at least two transcriptions ran at once


@pytest.mark.parametrize("bare_stack", ["sqlite"], indirect=True)
def test_a_cancelled_job_leaves_its_batch_and_the_others_finish(bare_stack: Stack, tmp_path: Path) -> None:
    stack = bare_stack
    clip = varied_speech(tmp_path / "varied-55.flac", 55)  # two windows of speech, decoded together
    (stack.media_root / clip.name).write_bytes(clip.read_bytes())
    env = {"AUDIO_WHISPER_CPU_THREADS": "1", "AUDIO_TRANSCRIBE_BATCH_MAX": "2"}
    transcriber = stack.start_worker(queues="audio_gpu", concurrency=3, env=env)
    cpu = stack.start_worker(queues="audio_control,audio_cpu", concurrency=2)
    try:
        jobs = [submit(stack, stack.media_root / clip.name) for _ in range(3)]
        victim = jobs[0]
        wait_for_job(stack.client, victim, timeout=90, until=stage_running(TRANSCRIBE))
        resp = stack.client.post(f"/api/v1/audio/jobs/{victim}/cancel", headers=AUTH)
        assert resp.status_code == 200, resp.get_json()
        wait_all_final(stack, jobs, timeout=240)
    finally:
        cpu.stop()
        transcriber.stop()
    assert stack.client.get(f"/api/v1/audio/jobs/{victim}", headers=AUTH).get_json()["status"] == "cancelled"
    assert runs_of(stack, victim, TRANSCRIBE) in (["cancelled"], ["succeeded"])  # stopped, or done just before
    for job_id in jobs[1:]:
        job = stack.client.get(f"/api/v1/audio/jobs/{job_id}", headers=AUTH).get_json()
        assert job["status"] == "completed", job
        assert runs_of(stack, job_id, TRANSCRIBE) == ["succeeded"]


def test_batching_worker_sigkilled_mid_pass_every_job_completes_once(bare_stack: Stack, tmp_path: Path) -> None:
    """A batching worker killed while it holds several jobs: each is rescued and completed once."""
    stack = bare_stack
    clip = varied_speech(tmp_path / "varied-50.flac", 50)
    (stack.media_root / clip.name).write_bytes(clip.read_bytes())
    env = {"JOBS_LEASE_SECONDS": "600", "AUDIO_WHISPER_CPU_THREADS": "1", **BATCH_4}
    beat = stack.start_beat(env)
    cpu = stack.start_worker(queues="audio_control,audio_cpu", concurrency=2, env=env)
    victim = stack.start_worker(queues="audio_gpu", concurrency=4, env=env)
    try:
        jobs = [submit(stack, stack.media_root / clip.name) for _ in range(3)]
        for job_id in jobs:
            wait_for_job(stack.client, job_id, timeout=90, until=stage_running(TRANSCRIBE))
        os.killpg(victim.proc.pid, signal.SIGKILL)
        victim.proc.wait()
        victim.stop()  # closes its log
        rescuer = stack.start_worker(queues="audio_gpu", concurrency=4, env=env)
        try:
            wait_all_final(stack, jobs, timeout=240)
        finally:
            rescuer.stop()
    finally:
        cpu.stop()
        beat.stop()
    counts = tally(stack, jobs, "SIGKILL of a batching worker")
    assert counts == {"submitted": 3, "completed": 3, "lost": 0, "duplicated": 0}
    for job_id in jobs:
        assert runs_of(stack, job_id, TRANSCRIBE) == ["lost", "succeeded"]
        text = stack.client.get(f"/api/v1/audio/jobs/{job_id}/result?format=text", headers=AUTH).get_data(as_text=True)
        assert word_error_rate(" ".join([JFK_TEXT] * 4), text) <= 0.25, text


@pytest.mark.parametrize("bare_stack", ["sqlite"], indirect=True)
def test_sigterm_stops_a_batching_worker_within_bounded_time(bare_stack: Stack, tmp_path: Path) -> None:
    """A threads pool cannot kill its tasks as prefork kills its processes: past the soft shutdown,
    running stages stop at their next safe point, and the stage goes back to the broker."""
    stack = bare_stack
    clip = jfk_repeated(tmp_path / "jfk-x8.flac", 8)  # 88 s: its own decoding, window by window here
    (stack.media_root / clip.name).write_bytes(clip.read_bytes())
    env = {"AUDIO_WORKER_SOFT_SHUTDOWN_SECONDS": "2", **BATCH_4}
    job_id, shutdown = sigterm_while_transcribing(stack, stack.start_worker(concurrency=3, env=env),
                                                  stack.media_root / clip.name, wait=60)
    print(f"\nSIGTERM to a batching worker during transcription: gone after {shutdown:.1f} s")
    assert shutdown < 15
    rescuer = stack.start_worker(concurrency=3, env=env)
    try:
        job = wait_for_job(stack.client, job_id, timeout=120)
    finally:
        rescuer.stop()
    assert job["status"] == "completed", job
    assert runs_of(stack, job_id, TRANSCRIBE)[-1] == "succeeded"
    assert tally(stack, [job_id], "SIGTERM to a batching worker") == {"submitted": 1, "completed": 1, "lost": 0,
                                                                        "duplicated": 0}
