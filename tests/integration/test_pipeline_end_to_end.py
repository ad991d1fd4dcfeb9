"""The main job end to end: HTTP API -> six-stage chain on a real worker -> stored transcript.

Runs on SQLite and on PostgreSQL, with a real Redis, real ffmpeg and the real tiny.en model.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator

import pytest

from audiojobs.jobs.states import PIPELINE
from tests.conftest import AUTH, wait_for_job, word_error_rate
from tests.integration.conftest import Stack
from tests.media import corrupt_file, jfk_repeated, varied_speech
from tests.services import JFK_FLAC, JFK_TEXT, MediaServer

pytestmark = pytest.mark.integration
SUBMIT = "/api/v1/audio/jobs/submit"
STAGES = ["audio_download", "audio_convert", "audio_transcribe", "audio_chunk", "audio_analyze", "audio_store"]


def submit(stack: Stack, **body: object) -> int:
    resp = stack.client.post(SUBMIT, json=body, headers=AUTH)
    assert resp.status_code == 202, resp.get_json()
    return int(resp.get_json()["id"])


def test_the_default_batched_decoding_path_end_to_end(bare_stack: Stack) -> None:
    """First in this module, before the ``stack`` fixture's worker exists to take the job. The
    stack's other tests decode window by window (their long clips must still be running when
    they cancel or kill); a worker on the defaults decodes a clip of a minute or more in batches."""
    clip = varied_speech(bare_stack.media_root / "minute.flac", 66)
    worker = bare_stack.start_worker(env={"AUDIO_WHISPER_BATCH_SIZE": "3", "AUDIO_WHISPER_BATCH_MIN_SECONDS": "60"})
    try:
        job = wait_for_job(bare_stack.client, submit(bare_stack, local_path=str(clip)), timeout=300)
    finally:
        worker.stop()
    assert job["status"] == "completed", job
    assert job["media_duration_seconds"] == pytest.approx(66, abs=1)
    assert "decoded in batches of windows" in worker.log()
    result = bare_stack.client.get(f"/api/v1/audio/jobs/{job['id']}/result", headers=AUTH).get_json()
    text = result["text"].lower()
    assert text.count("country") >= 8, text  # jfk.flac's sentence (two "country") about six times
    starts = [seg["start"] for seg in result["segments"]]
    assert starts == sorted(starts) and result["segments"][-1]["end"] <= 66.5  # times mapped back to the file
    assert bare_stack.leftovers(job["id"]) == []


def test_jfk_with_chunks_and_analysis(stack: Stack) -> None:
    started = time.monotonic()
    job_id = submit(stack, local_path=str(stack.media_root / "jfk.flac"), perform_analysis=True, api_name="local")
    job = wait_for_job(stack.client, job_id)
    elapsed = time.monotonic() - started
    print(f"\njfk.flac submit-to-completed ({stack.settings.effective_database_url.split(':')[0]}): {elapsed:.2f} s")
    assert job["status"] == "completed", job
    assert job["error_code"] is None and job["completed_at"] and job["started_at"]
    assert job["media_duration_seconds"] == pytest.approx(11.0, abs=0.1)
    assert [s["stage"] for s in job["stages"]] == STAGES
    assert all(s["status"] == "succeeded" for s in job["stages"])

    result = stack.client.get(f"/api/v1/audio/jobs/{job_id}/result", headers=AUTH).get_json()
    assert word_error_rate(JFK_TEXT, result["text"]) <= 0.1, result["text"]
    assert result["transcript"]["text"] == result["text"]
    assert result["language"] == "en" and result["duration"] == pytest.approx(11.0, abs=0.1)
    assert all(set(seg) == {"id", "start", "end", "text", "seek", "tokens", "temperature", "avg_logprob",
                            "compression_ratio", "no_speech_prob"} for seg in result["segments"])  # no words unasked
    assert result["chunks"] and result["chunks"][0]["start"] == 0.0
    assert result["chunks"][-1]["end"] == pytest.approx(11.0, abs=0.5)
    assert "country" in " ".join(c["text"] for c in result["chunks"]).lower()
    assert result["analysis"]["provider"] == "local" and result["analysis"]["summary"]
    assert "country" in result["analysis"]["key_phrases"]
    # Its objects and scratch copies are gone; the input is untouched.
    assert stack.leftovers(job_id) == []
    assert (stack.media_root / "jfk.flac").read_bytes() == JFK_FLAC.read_bytes()


def test_chunking_and_analysis_off(stack: Stack) -> None:
    job_id = submit(stack, local_path=str(stack.media_root / "jfk.flac"), perform_chunking=False)
    job = wait_for_job(stack.client, job_id)
    assert job["status"] == "completed"
    by_stage = {s["stage"]: s["status"] for s in job["stages"]}
    assert by_stage["audio_chunk"] == "skipped" and by_stage["audio_analyze"] == "skipped"
    result = stack.client.get(f"/api/v1/audio/jobs/{job_id}/result", headers=AUTH).get_json()
    assert result["chunks"] == [] and result["analysis"] is None
    assert word_error_rate(JFK_TEXT, result["text"]) <= 0.1


def test_corrupt_file_fails_and_the_next_job_still_completes(stack: Stack) -> None:
    bad = corrupt_file(stack.media_root / "corrupt.mp3")
    bad_id = submit(stack, local_path=str(bad))
    good_id = submit(stack, local_path=str(stack.media_root / "jfk.flac"))
    bad_job = wait_for_job(stack.client, bad_id)
    assert (bad_job["status"], bad_job["error_code"]) == ("failed", "invalid_media")
    assert "format this server can read" in bad_job["error_message"] and str(stack.tmp) not in bad_job["error_message"]
    assert bad_job["stage"] == "audio_convert"
    assert [s["stage"] for s in bad_job["stages"]] == ["audio_download", "audio_convert"]  # no later stage ran
    assert bad_job["stages"][-1]["error_code"] == "invalid_media"
    assert stack.leftovers(bad_id) == []
    assert bad.exists()
    resp = stack.client.get(f"/api/v1/audio/jobs/{bad_id}/result", headers=AUTH)
    assert resp.status_code == 409
    assert wait_for_job(stack.client, good_id)["status"] == "completed"


def test_file_deleted_after_submit_fails_not_found(stack: Stack) -> None:
    doomed = stack.media_root / "doomed.flac"
    shutil.copy(JFK_FLAC, doomed)
    resp = stack.client.post(SUBMIT, json={"local_path": str(doomed)}, headers=AUTH)
    doomed.unlink()  # gone before the worker looks, or just after it copied the file
    job = wait_for_job(stack.client, resp.get_json()["id"])
    assert job["status"] in {"completed", "failed"}
    if job["status"] == "failed":
        assert job["error_code"] == "source_not_found"


@pytest.fixture(scope="module")
def media_site(bare_stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MediaServer]:
    """A fresh site for each database the module runs on."""
    site = tmp_path_factory.mktemp("site")
    shutil.copy(JFK_FLAC, site / "speech.flac")
    shutil.copy(JFK_FLAC, site / "flaky.flac")
    server = MediaServer(site, fail_first={"flaky.flac": 1}, port=bare_stack.media_port)
    yield server
    server.stop()


def test_url_job_downloads_with_yt_dlp(stack: Stack, media_site: MediaServer) -> None:
    job_id = submit(stack, url=media_site.url("speech.flac"))
    job = wait_for_job(stack.client, job_id)
    assert job["status"] == "completed", job
    result = stack.client.get(f"/api/v1/audio/jobs/{job_id}/result", headers=AUTH).get_json()
    assert word_error_rate(JFK_TEXT, result["text"]) <= 0.1
    assert result["transcript"]["source"] == media_site.url("speech.flac")
    download = job["progress_detail"]["audio_download"]
    assert download["downloaded_bytes"] == JFK_FLAC.stat().st_size and download["status"] == "finished"
    assert job["progress_detail"]["audio_convert"]["media"]["audio_codec"] == "flac"
    assert job["progress"] == 100.0 and job["eta_seconds"] is None
    assert job["progress_detail"]["audio_transcribe"]["percent"] == 100.0


def test_url_not_found_fails_with_not_found(stack: Stack, media_site: MediaServer) -> None:
    job = wait_for_job(stack.client, submit(stack, url=media_site.url("missing.mp3")))
    assert (job["status"], job["error_code"], job["stage"]) == ("failed", "source_not_found", "audio_download")


def test_transient_download_error_is_retried_then_completes(stack: Stack, media_site: MediaServer) -> None:
    # The first requests get 503: a transient error, retried with backoff by the same chain.
    job = wait_for_job(stack.client, submit(stack, url=media_site.url("flaky.flac")), timeout=120)
    assert job["status"] == "completed", job
    assert job["retry_count"] >= 1
    downloads = [s for s in job["stages"] if s["stage"] == "audio_download"]
    assert job["retry_count"] == len(downloads) - 1
    assert all(s["status"] == "retrying" and s["error_code"] == "transient_error" for s in downloads[:-1])
    assert downloads[-1]["status"] == "succeeded"
    assert [s["stage"] for s in job["stages"]][-5:] == STAGES[1:]


def test_admin_views_count_jobs_not_stages(stack: Stack) -> None:
    summary = stack.client.get("/api/v1/audio/jobs/admin/summary", headers=AUTH).get_json()
    listed = stack.client.get("/api/v1/audio/jobs/admin/list?limit=200", headers=AUTH).get_json()["jobs"]
    assert summary["total"] == len(listed)
    assert summary["counts_by_status"]["processing"] == 0
    assert summary["counts_by_status"]["completed"] >= 3


def test_operations_views_after_real_jobs(stack: Stack) -> None:
    """/readyz, /metrics, the admin queue view and the workers' JSON log lines, after the jobs above."""
    from prometheus_client.parser import text_string_to_metric_families

    assert stack.client.get("/readyz").get_json() == {"status": "ready",
                                                      "checks": {"database": "ok", "redis": "ok", "storage": "ok"}}
    assert stack.client.get("/metrics").status_code == 401
    resp = stack.client.get("/metrics", headers=AUTH)
    assert resp.status_code == 200 and resp.mimetype == "text/plain"
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(resp.get_data(as_text=True)) for s in family.samples}
    assert samples[("audiojobs_jobs", (("status", "completed"),))] >= 3
    assert samples[("audiojobs_queue_depth", (("queue", "audio_cpu"),))] == 0
    for stage in STAGES[:3] + ["audio_store"]:
        assert samples[("audiojobs_stage_duration_seconds_count", (("stage", stage),))] >= 3, stage
    rtf_count = samples[("audiojobs_transcription_real_time_factor_count", (("backend", "faster-whisper"),))]
    rtf_sum = samples[("audiojobs_transcription_real_time_factor_sum", (("backend", "faster-whisper"),))]
    assert rtf_count >= 3 and 0 < rtf_sum / rtf_count < 2
    queues = stack.client.get("/api/v1/audio/jobs/admin/queues", headers=AUTH).get_json()
    assert set(queues["queues"]) == {"audio_control", "audio_cpu", "audio_gpu"}
    assert any(set(q) == {"audio_control", "audio_cpu", "audio_gpu"} for q in queues["workers"].values()), queues
    # Every line the worker logged through audiojobs.logs is a JSON object naming its job (or null).
    import json

    log = (stack.tmp / "worker-audio_control-audio_cpu-audio_gpu.log").read_text()
    records = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    assert records and all({"time", "level", "logger", "message", "job_id", "request_id"} <= set(r) for r in records)
    assert any(r["job_id"] is not None and "audio_transcribe started" in r["message"] for r in records)


def test_result_formats_with_word_timestamps(stack: Stack) -> None:
    job_id = submit(stack, local_path=str(stack.media_root / "jfk.flac"), language="en", word_timestamps=True,
                    initial_prompt="President Kennedy's inaugural address.", vad_filter=True,
                    chunking={"strategy": "words", "size": 8, "overlap": 2})
    assert wait_for_job(stack.client, job_id)["status"] == "completed"
    url = f"/api/v1/audio/jobs/{job_id}/result"
    chunks = stack.client.get(url, headers=AUTH).get_json()["chunks"]
    assert len(chunks) >= 3 and all(len(c["text"].split()) <= 8 and c["start"] <= c["end"] for c in chunks)
    assert chunks[0]["text"].split()[-2:] == chunks[1]["text"].split()[:2]
    verbose = stack.client.get(f"{url}?format=verbose_json", headers=AUTH).get_json()
    assert verbose["task"] == "transcribe" and verbose["language"] == "english"
    assert verbose["duration"] == pytest.approx(11.0, abs=0.1) and word_error_rate(JFK_TEXT, verbose["text"]) <= 0.1
    assert all({"avg_logprob", "no_speech_prob", "compression_ratio", "tokens"} <= set(s) for s in verbose["segments"])
    words = verbose["words"]
    assert [w["word"].strip() for w in words][:3] == ["And", "so", "my"]
    assert all(0 <= w["start"] <= w["end"] <= 11.1 for w in words)
    assert [w["start"] for w in words] == sorted(w["start"] for w in words)
    srt = stack.client.get(f"{url}?format=srt", headers=AUTH)
    assert srt.mimetype == "application/x-subrip" and srt.get_data(as_text=True).startswith("1\n00:00:")
    for block in srt.get_data(as_text=True).strip().split("\n\n"):
        lines = block.split("\n")[2:]
        assert 1 <= len(lines) <= 2 and all(len(line) <= 42 for line in lines), block
    vtt = stack.client.get(f"{url}?format=vtt", headers=AUTH)
    assert vtt.mimetype == "text/vtt" and vtt.get_data(as_text=True).startswith("WEBVTT\n\n00:00:")
    text = stack.client.get(f"{url}?format=text", headers=AUTH)
    assert text.mimetype == "text/plain" and "country" in text.get_data(as_text=True)
    bad = stack.client.get(f"{url}?format=docx", headers=AUTH)
    assert bad.status_code == 422 and bad.get_json()["error"]["field"] == "format"


def test_events_stream_follows_the_job_to_its_end(stack: Stack) -> None:
    import json

    # Long enough (33 s, decoded window by window here) for the stream to open before the job ends.
    clip = stack.media_root / "jfk-x3-events.flac"
    if not clip.exists():
        jfk_repeated(clip, 3)
    job_id = submit(stack, local_path=str(clip))
    resp = stack.client.get(f"/api/v1/audio/jobs/{job_id}/events", headers=AUTH)
    assert resp.status_code == 200 and resp.mimetype == "text/event-stream"
    events = [json.loads(block.split("data: ", 1)[1]) for block in resp.get_data(as_text=True).split("\n\n")
              if block.startswith("event: job")]
    assert events[-1]["status"] == "completed" and events[-1]["progress"] == 100.0
    progress = [e["progress"] for e in events]
    assert progress == sorted(progress) and len(events) >= 3  # it moved through the stages
    assert events[0]["status"] in {"queued", "processing"} and events[0]["progress"] < 100.0
    # Every stage from the one running when the stream opened, none skipped however short.
    stages = list(dict.fromkeys(e["stage"] for e in events))
    assert stages == [stage.value for stage in PIPELINE][-len(stages):], stages
    assert stack.client.get("/api/v1/audio/jobs/999999/events", headers=AUTH).status_code == 404


def test_cli_client_submits_waits_and_writes_subtitles(stack: Stack) -> None:
    """`audiojobs submit FILE --wait --format srt` against a real HTTP server, then status, result, cancel."""
    import subprocess
    import sys
    import threading

    from werkzeug.serving import make_server

    from audiojobs.api.app import create_app
    from tests.conftest import API_KEY

    server = make_server("127.0.0.1", 0, create_app(stack.settings), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    env = {**stack.env, "AUDIOJOBS_SERVER": f"http://127.0.0.1:{server.server_port}", "AUDIOJOBS_API_KEY": API_KEY}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "audiojobs.cli", *args], env=env, cwd=stack.tmp,
                              capture_output=True, text=True, timeout=180)

    try:
        shutil.copy(JFK_FLAC, stack.media_root / "speech.flac")
        done = cli("submit", str(stack.media_root / "speech.flac"), "--wait", "--format", "srt")
        assert done.returncode == 0, done.stderr
        print(f"\n$ audiojobs submit speech.flac --wait --format srt\n{done.stderr}")
        srt = (stack.tmp / "speech.srt").read_text()
        assert srt.startswith("1\n00:00:00,") and "country" in srt
        assert "100%" in done.stderr and "written: speech.srt" in done.stderr  # the progress bar got there
        job_id = done.stderr.split()[1]
        status = cli("status", job_id)
        assert status.returncode == 0 and f"job {job_id}: completed" in status.stdout
        assert "progress=100%" in status.stdout
        text = cli("result", job_id, "--format", "text")
        print(f"$ audiojobs status {job_id}\n{status.stdout}$ audiojobs result {job_id} --format text\n{text.stdout}")
        assert word_error_rate(JFK_TEXT, text.stdout) <= 0.1
        listed = cli("jobs", "--limit", "2", "--all")
        print(f"$ audiojobs jobs --limit 2 --all\n{listed.stdout}")
        header, *rows = listed.stdout.splitlines()
        assert listed.returncode == 0 and header.split()[:4] == ["ID", "STATUS", "STAGE", "PROGRESS"], listed.stdout
        mine = [row.split() for row in rows if row.split()[0] == job_id]
        assert mine and mine[0][1:4] == ["completed", "audio_store", "100%"] and "speech.flac" in mine[0]
        assert len(rows) == len(stack.client.get("/api/v1/audio/jobs?limit=200", headers=AUTH).get_json()["jobs"])
        failed = cli("jobs", "--status", "failed", "--all").stdout.splitlines()[1:]
        assert all(row.split()[1] == "failed" for row in failed) and job_id not in [r.split()[0] for r in failed]
        # A file outside the server's roots is uploaded instead (as it would be to another machine).
        outside = stack.tmp / "elsewhere" / "talk.flac"
        outside.parent.mkdir(exist_ok=True)
        shutil.copy(JFK_FLAC, outside)
        uploaded = cli("submit", str(outside), "--wait", "--format", "text")
        assert uploaded.returncode == 0, uploaded.stderr
        assert "uploading talk.flac" in uploaded.stderr and word_error_rate(JFK_TEXT, uploaded.stdout) <= 0.1
        job = stack.client.get("/api/v1/audio/jobs?limit=1", headers=AUTH).get_json()["jobs"][0]
        assert job["payload"]["upload"]["filename"] == "talk.flac" and job["payload"]["local_path"] is None, job
        # Several at once: one batch, a progress line per job, each result under its name.
        shutil.copy(JFK_FLAC, stack.media_root / "second.flac")
        both = cli("submit", str(stack.media_root / "speech.flac"), str(stack.media_root / "second.flac"), "--wait")
        print(f"$ audiojobs submit speech.flac second.flac --wait\n{both.stderr}{both.stdout}")
        assert both.returncode == 0, both.stderr
        assert both.stderr.startswith("batch ") and ": 2 jobs" in both.stderr.splitlines()[0]
        ids = [line.split()[1] for line in both.stderr.splitlines()[1:3]]
        for job_id_ in ids:
            assert f"job {job_id_} completed: audio_store 100%" in both.stderr
        assert both.stdout.count("==> ") == 2 and both.stdout.lower().count("ask not") == 2
        batch_id = both.stderr.split()[1].rstrip(":")
        batch = stack.client.get(f"/api/v1/audio/jobs/batches/{batch_id}", headers=AUTH).get_json()
        assert batch["counts"]["completed"] == batch["total"] == 2
        missing_file = cli("submit", str(stack.tmp / "no-such.flac"))
        assert missing_file.returncode == 1 and "no such file" in missing_file.stderr
        refused = cli("cancel", job_id)
        assert refused.returncode == 1 and "Error:" in refused.stderr and "Traceback" not in refused.stderr
        missing = cli("status", "999999")
        assert missing.returncode == 1 and "not found" in missing.stderr
    finally:
        server.shutdown()


def test_multipart_upload_is_a_job_like_any_other(stack: Stack) -> None:
    import dataclasses
    import io

    from werkzeug.test import EnvironBuilder

    from audiojobs.api.app import create_app

    def post(client, fields: dict) -> object:  # type: ignore[no-untyped-def]
        # Built by hand so the encoded body (a temporary file above 500 KB) is closed when done.
        builder = EnvironBuilder(path=SUBMIT, method="POST", data=fields, headers=AUTH,
                                 content_type="multipart/form-data")
        environ = builder.get_environ()
        try:
            return client.open(environ)
        finally:
            environ["wsgi.input"].close()
            builder.close()

    resp = post(stack.client, {"file": (io.BytesIO(JFK_FLAC.read_bytes()), "speech.flac"), "word_timestamps": "true",
                               "chunking": '{"strategy": "time", "size": 20}'})
    assert resp.status_code == 202, resp.get_json()
    job = wait_for_job(stack.client, resp.get_json()["id"])
    assert job["status"] == "completed" and job["payload"]["upload"] == {"filename": "speech.flac",
                                                                         "bytes": JFK_FLAC.stat().st_size}
    result = stack.client.get(f"/api/v1/audio/jobs/{job['id']}/result", headers=AUTH).get_json()
    assert word_error_rate(JFK_TEXT, result["text"]) <= 0.1 and result["transcript"]["source"] == "upload:speech.flac"
    assert "words" in result["segments"][0]
    for fields, status, code, field in [
        ({"file": (io.BytesIO(b""), "empty.flac")}, 422, "empty_file", "file"),
        ({"model": "whisper-1"}, 422, "missing_field", "file"),
        ({"file": (io.BytesIO(b"x" * 10), "a.mp3"), "url": "https://example.com/a.mp3"}, 422, "conflicting_source",
         "url"),
        ({"file": (io.BytesIO(b"x" * 10), "a.mp3"), "vad_filter": "maybe"}, 422, "invalid_type", "vad_filter"),
    ]:
        bad = post(stack.client, fields)
        assert bad.status_code == status and bad.get_json()["error"]["code"] == code, bad.get_json()
        assert bad.get_json()["error"].get("field") == field
    small = create_app(dataclasses.replace(stack.settings, tier_limits_json='{"premium": {"max_file_mb": 0.5}}'))
    big = post(small.test_client(), {"file": (io.BytesIO(JFK_FLAC.read_bytes()), "jfk.flac")})
    assert big.status_code == 413 and big.get_json()["error"] == {
        "code": "file_too_large", "message": "the file is larger than your tier's 0.5 MB", "field": "file"}
    huge = post(small.test_client(), {"file": (io.BytesIO(bytes(3 * 1024 * 1024)), "huge.wav")})
    assert huge.status_code == 413 and huge.get_json()["error"]["code"] == "request_too_large"  # never read in full


def test_openai_client_transcribes_through_the_compatible_endpoint(stack: Stack) -> None:
    import threading

    import openai
    from werkzeug.serving import make_server

    from audiojobs.api.app import create_app
    from tests.conftest import API_KEY

    server = make_server("127.0.0.1", 0, create_app(stack.settings), threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{server.server_port}/api/v1", api_key=API_KEY, max_retries=0)
    try:
        with open(JFK_FLAC, "rb") as audio:
            plain = client.audio.transcriptions.create(model="whisper-1", file=audio)
        assert word_error_rate(JFK_TEXT, plain.text) <= 0.1
        with open(JFK_FLAC, "rb") as audio:
            verbose = client.audio.transcriptions.create(model="whisper-1", file=audio, language="en",
                                                         response_format="verbose_json",
                                                         timestamp_granularities=["word", "segment"])
        assert verbose.language == "english" and abs(verbose.duration - 11.0) < 0.2
        assert verbose.words and verbose.words[0].word.strip() == "And" and verbose.segments
        with open(JFK_FLAC, "rb") as audio:
            srt = client.audio.transcriptions.create(model="whisper-1", file=audio, response_format="srt")
        assert str(srt).startswith("1\n00:00:00,")
        with open(JFK_FLAC, "rb") as audio, pytest.raises(openai.UnprocessableEntityError) as info:
            client.audio.transcriptions.create(model="gpt-9-transcribe", file=audio)
        assert "unknown model" in str(info.value)
    finally:
        server.shutdown()
