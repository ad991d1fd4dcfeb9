"""Submit-time limits (402 minutes, 413 file size, 429 backlog) and GET /usage."""

from __future__ import annotations

from pathlib import Path

from flask.testing import FlaskClient

from audiojobs.api.app import create_app
from audiojobs.db import session_scope
from audiojobs.quotas import minutes
from tests.conftest import AUTH, make_settings

SUBMIT = "/api/v1/audio/jobs/submit"
TIERS = '{"tiny": {"daily_minutes": 1, "concurrent_jobs": 1, "max_file_mb": 0.5}}'


def _client(sqlite_url: str, redis_url: str, tmp_path: Path, media_root: Path, **env: str) -> FlaskClient:
    env = {"AUDIO_TIER_LIMITS_JSON": TIERS, "AUDIOJOBS_SINGLE_USER_TIER": "tiny", **env}
    settings = make_settings(sqlite_url, redis_url, tmp_path, media_root, **env)
    return create_app(settings).test_client()


def test_file_over_the_tier_limit_is_413(sqlite_url: str, redis_url: str, tmp_path: Path, media_root: Path) -> None:
    client = _client(sqlite_url, redis_url, tmp_path, media_root)
    resp = client.post(SUBMIT, json={"local_path": str(media_root / "jfk.flac")}, headers=AUTH)  # 1.1 MB
    assert resp.status_code == 413
    assert resp.get_json()["error"]["code"] == "file_too_large" and resp.get_json()["error"]["field"] == "local_path"


def test_no_minutes_left_is_402_with_the_reset_time(sqlite_url: str, redis_url: str, tmp_path: Path,
                                                    media_root: Path) -> None:
    client = _client(sqlite_url, redis_url, tmp_path, media_root,
                     AUDIO_TIER_LIMITS_JSON='{"tiny": {"daily_minutes": 1, "concurrent_jobs": 1, "max_file_mb": 5}}')
    with session_scope(sqlite_url) as session:
        assert minutes.reserve(session, "1", 1.0, limit=1.0, day=minutes.utc_today())
    resp = client.post(SUBMIT, json={"local_path": str(media_root / "jfk.flac")}, headers=AUTH)
    assert resp.status_code == 402
    error = resp.get_json()["error"]
    assert error["code"] == "quota_exceeded" and error["resets_at"].endswith("T00:00:00Z")
    assert int(resp.headers["Retry-After"]) > 0
    usage = client.get("/api/v1/audio/usage", headers=AUTH).get_json()
    assert usage["minutes_used"] == 1.0 and usage["minutes_remaining"] == 0.0 and usage["tier"] == "tiny"
    assert usage["resets_at"] == error["resets_at"]


def test_backlog_over_the_limit_is_429(sqlite_url: str, redis_url: str, tmp_path: Path, media_root: Path) -> None:
    client = _client(sqlite_url, redis_url, tmp_path, media_root, AUDIO_MAX_QUEUED_PER_USER="2",
                     AUDIO_TIER_LIMITS_JSON='{"tiny": {"daily_minutes": 10, "concurrent_jobs": 1, "max_file_mb": 5}}')
    body = {"local_path": str(media_root / "jfk.flac")}
    assert [client.post(SUBMIT, json=body, headers=AUTH).status_code for _ in range(2)] == [202, 202]
    resp = client.post(SUBMIT, json=body, headers=AUTH)
    assert resp.status_code == 429 and resp.headers["Retry-After"] == "30"
    assert resp.get_json()["error"]["code"] == "too_many_queued_jobs"


def test_usage_of_an_unlimited_tier(client: FlaskClient) -> None:
    usage = client.get("/api/v1/audio/usage", headers=AUTH).get_json()
    assert usage["tier"] == "premium" and usage["minutes_limit"] is None and usage["minutes_remaining"] is None
    assert usage["jobs_started"] == 0 and usage["concurrent_jobs_limit"] == 10
    assert client.get("/api/v1/audio/usage").status_code == 401
