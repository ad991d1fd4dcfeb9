"""Hostile input that only shows once a worker looks: every such job ends ``failed`` with its code,
its work directory gone, and the jobs around it unharmed.

The jobs are submitted with no worker running, the files are tampered with, then a real worker
drains the queue: the order of events is fixed, not a race.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import AUTH, _redis_dbs, wait_for_job
from tests.hostile import machine_name, machine_name_is_local
from tests.integration.conftest import Stack, build_stack
from tests.media import video_without_audio
from tests.services import JFK_FLAC, MediaServer, RedisServer

pytestmark = pytest.mark.integration
SUBMIT = "/api/v1/audio/jobs/submit"


@pytest.fixture(scope="module")
def hostile_stack(tmp_path_factory: pytest.TempPathFactory, test_redis: RedisServer) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("hostile")
    with build_stack("sqlite", tmp, test_redis.url(next(_redis_dbs) % 15 + 1), None) as stack:
        yield stack


def _submit(stack: Stack, **body: object) -> int:
    resp = stack.client.post(SUBMIT, json=body, headers=AUTH)
    assert resp.status_code == 202, resp.get_json()
    return int(resp.get_json()["id"])


def test_late_refusals_fail_the_job_and_leave_nothing(hostile_stack: Stack, tmp_path: Path) -> None:
    stack = hostile_stack
    site = tmp_path / "site"
    site.mkdir()
    shutil.copy(JFK_FLAC, site / "jfk.flac")
    video_without_audio(site / "mute.webm")
    server = MediaServer(site, port=stack.media_port)
    root = stack.media_root
    outside = tmp_path / "outside.flac"
    shutil.copy(JFK_FLAC, outside)
    for name in ("swap-link.flac", "swap-file.flac", "swap-dir/a.flac", "good.flac"):
        (root / name).parent.mkdir(exist_ok=True)
        shutil.copy(JFK_FLAC, root / name)
    expected: dict[int, tuple[str, str | None]] = {}
    try:
        expected[_submit(stack, url=server.url("redirect?to=http://169.254.169.254/latest/meta-data/"))] = (
            "failed", "forbidden_url")
        for elsewhere in ("file:///etc/passwd", "gopher://127.0.0.1:70/_x"):  # schemes the proxy never sees
            expected[_submit(stack, url=server.url(f"redirect?to={elsewhere}"))] = ("failed", "forbidden_url")
        if machine_name_is_local():
            expected[_submit(stack, url=f"http://{machine_name()}/jfk.flac")] = (
                "failed", "forbidden_url")
        expected[_submit(stack, url=server.url("mute.webm"))] = ("failed", "invalid_media")
        expected[_submit(stack, local_path=str(root / "swap-link.flac"))] = ("failed", "forbidden_path")
        expected[_submit(stack, local_path=str(root / "swap-file.flac"))] = ("failed", "forbidden_path")
        expected[_submit(stack, local_path=str(root / "swap-dir" / "a.flac"))] = ("failed", "forbidden_path")
        good = _submit(stack, local_path=str(root / "good.flac"))
        expected[good] = ("completed", None)
        expected[_submit(stack, url=server.url("jfk.flac"))] = ("completed", None)
        # After submit, before any worker: a symlink planted where the file was; the file replaced by
        # another; a directory on the path replaced by a symlink to one outside the roots.
        (root / "swap-link.flac").unlink()
        os.symlink(outside, root / "swap-link.flac")
        (root / "swap-file.flac").unlink()
        shutil.copy(JFK_FLAC, root / "swap-file.flac")  # same bytes, another file
        shutil.move(root / "swap-dir", tmp_path / "moved-dir")
        os.symlink(tmp_path / "moved-dir", root / "swap-dir")
        worker = stack.start_worker()
        try:
            for job_id, (status, code) in expected.items():
                job = wait_for_job(stack.client, job_id, timeout=120)
                assert (job["status"], job["error_code"]) == (status, code), job
                if status == "failed":
                    assert job["stage"] in {"audio_download", "audio_convert"}
                    assert str(tmp_path) not in (job["error_message"] or "")
                assert stack.leftovers(job_id) == [], job_id
        finally:
            worker.stop()
    finally:
        server.stop()
    assert outside.read_bytes() == JFK_FLAC.read_bytes()  # never read, never written
    assert sorted(p.name for p in root.iterdir()) == ["good.flac", "jfk.flac", "swap-dir", "swap-file.flac",
                                                      "swap-link.flac"]  # nothing written next to the inputs
    print(f"\nlate hostile jobs failed cleanly: {sum(1 for s, _ in expected.values() if s == 'failed')}")


def test_a_server_that_never_answers_ends_the_job_download_timeout(tmp_path_factory: pytest.TempPathFactory,
                                                                   test_redis: RedisServer) -> None:
    """It takes the connection and sends nothing: each try ends after AUDIO_DOWNLOAD_TIMEOUT, is
    retried like a network blip, and the job ends ``download_timeout`` (not ``transient_error``)."""
    tmp = tmp_path_factory.mktemp("silent")
    extra = {"AUDIO_DOWNLOAD_TIMEOUT": "2", "AUDIO_JOBS_MAX_RETRIES": "1"}
    with build_stack("sqlite", tmp, test_redis.url(next(_redis_dbs) % 15 + 1), None, extra_env=extra) as stack:
        (tmp / "site").mkdir()
        server = MediaServer(tmp / "site", port=stack.media_port)
        worker = stack.start_worker()
        beat = stack.start_beat()  # the reaper sends the retry when it is due
        try:
            job = wait_for_job(stack.client, _submit(stack, url=server.url("silent.mp3")), timeout=120)
        finally:
            beat.stop()
            worker.stop()
            server.stop()
    assert (job["status"], job["error_code"]) == ("failed", "download_timeout"), job
    assert job["retry_count"] == job["max_retries"] + 1 == 2  # tried, retried once, then failed
    assert "did not answer within 2 s (AUDIO_DOWNLOAD_TIMEOUT)" in job["error_message"]
    assert {e["code"] for e in job["attempt_errors"]} == {"download_timeout"}, job["attempt_errors"]
