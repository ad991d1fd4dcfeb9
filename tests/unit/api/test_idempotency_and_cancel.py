"""Idempotency-Key on submit, and the cancel/delete endpoints' errors (no worker needed)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis
from flask.testing import FlaskClient

from audiojobs.config import Settings
from audiojobs.jobs.messages import queue_depth
from tests.conftest import AUTH

SUBMIT = "/api/v1/audio/jobs/submit"


def _submit(client: FlaskClient, body: dict, key: str | None) -> tuple[int, dict, dict]:
    headers = {**AUTH, **({"Idempotency-Key": key} if key is not None else {})}
    resp = client.post(SUBMIT, json=body, headers=headers)
    return resp.status_code, resp.get_json(), dict(resp.headers)


def test_same_key_same_body_returns_the_same_job(client: FlaskClient, media_root: Path, settings: Settings) -> None:
    body = {"local_path": str(media_root / "jfk.flac")}
    status1, job1, _ = _submit(client, body, "order-1")
    status2, job2, headers2 = _submit(client, body, "order-1")
    assert (status1, status2) == (202, 202)
    assert job1 == job2 and headers2["Idempotent-Replayed"] == "true"
    # The default-filled body is the same request.
    status3, job3, _ = _submit(client, {**body, "model": "whisper-1", "perform_chunking": True}, "order-1")
    assert status3 == 202 and job3["id"] == job1["id"]
    summary = client.get("/api/v1/audio/jobs/admin/summary", headers=AUTH).get_json()
    assert summary["total"] == 1
    assert queue_depth(redis.Redis.from_url(settings.redis_url), "audio_cpu") == 1  # enqueued once


def test_same_key_other_body_is_409(client: FlaskClient, media_root: Path) -> None:
    _submit(client, {"local_path": str(media_root / "jfk.flac")}, "k-2")
    status, body, _ = _submit(client, {"local_path": str(media_root / "jfk.flac"), "perform_analysis": True}, "k-2")
    assert status == 409
    assert body["error"]["code"] == "idempotency_key_reused" and body["error"]["field"] == "Idempotency-Key"


def test_no_key_makes_a_new_job_each_time(client: FlaskClient, media_root: Path) -> None:
    body = {"local_path": str(media_root / "jfk.flac")}
    assert _submit(client, body, None)[1]["id"] != _submit(client, body, None)[1]["id"]


def test_concurrent_submits_with_one_key_make_one_job(client: FlaskClient, media_root: Path) -> None:
    body = {"local_path": str(media_root / "jfk.flac")}
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(lambda _i: _submit(client, body, "race"), range(6)))
    assert {status for status, _, _ in results} == {202}
    assert len({job["id"] for _, job, _ in results}) == 1


@pytest.mark.parametrize("key", ["", "x" * 256, "bad\tkey", "ключ"])
def test_malformed_key_is_422(client: FlaskClient, media_root: Path, key: str) -> None:
    status, body, _ = _submit(client, {"local_path": str(media_root / "jfk.flac")}, key)
    assert status == 422 and body["error"]["field"] == "Idempotency-Key"


@pytest.mark.parametrize("method,path,status", [("post", "/api/v1/audio/jobs/9999/cancel", 404),
                                                ("delete", "/api/v1/audio/jobs/9999", 404),
                                                ("post", "/api/v1/audio/jobs/abc/cancel", 422),
                                                ("delete", "/api/v1/audio/jobs/abc", 422)])
def test_cancel_and_delete_unknown_or_bad_ids(client: FlaskClient, method: str, path: str, status: int) -> None:
    resp = getattr(client, method)(path, headers=AUTH)
    assert resp.status_code == status and "error" in resp.get_json()
    assert getattr(client, method)(path).status_code == 401
