"""POST /jobs/batch and GET /jobs/batches/{id}: all or nothing, each item checked as a submit, the
refusal naming the item, idempotent, owner or admin only."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask.testing import FlaskClient

from audiojobs.api.app import create_app
from audiojobs.config import Settings
from audiojobs.db import session_scope
from audiojobs.jobs.models import Job
from audiojobs.quotas import minutes
from tests.conftest import AUTH, make_settings, make_users

BATCH = "/api/v1/audio/jobs/batch"


def _jobs(settings: Settings) -> int:
    with session_scope(settings.effective_database_url) as session:
        return session.scalar(sa.select(sa.func.count()).select_from(Job)) or 0


def _client(tmp_path: Path, sqlite_url: str, redis_url: str, media_root: Path, **env: str) -> tuple[FlaskClient,
                                                                                                   Settings]:
    settings = make_settings(sqlite_url, redis_url, tmp_path, media_root, **env)
    return create_app(settings).test_client(), settings


def test_a_batch_makes_every_job_over_the_defaults(client: FlaskClient, settings: Settings, media_root: Path) -> None:
    jfk = str(media_root / "jfk.flac")
    body = {"items": [{"local_path": jfk}, {"local_path": jfk, "perform_chunking": True}, {"local_path": jfk}],
            "defaults": {"perform_chunking": False, "language": "en"}}
    resp = client.post(BATCH, json=body, headers=AUTH)
    assert resp.status_code == 202, resp.get_json()
    made = resp.get_json()
    assert resp.headers["Location"] == f"/api/v1/audio/jobs/batches/{made['batch_id']}"
    assert [job["status"] for job in made["jobs"]] == ["queued"] * 3
    batch = client.get(resp.headers["Location"], headers=AUTH).get_json()
    assert batch["total"] == 3 and batch["counts"]["queued"] == 3 and set(batch["counts"]) >= {"completed", "failed"}
    assert [job["id"] for job in batch["jobs"]] == [job["id"] for job in made["jobs"]]
    assert [job["payload"]["perform_chunking"] for job in batch["jobs"]] == [False, True, False]
    assert {job["payload"]["language"] for job in batch["jobs"]} == {"en"}


@pytest.mark.parametrize("body,field,code", [
    ({"items": [{"local_path": "JFK"}, {"url": "ftp://example.com/a.mp3"}]}, "items[1].url", None),
    ({"items": [{"local_path": "JFK"}, {"local_path": "/etc/passwd"}]}, "items[1].local_path", None),
    ({"items": [{"local_path": "JFK"}, "not an object"]}, "items[1]", None),
    ({"items": [{"local_path": "JFK", "colour": "red"}]}, "items[0].colour", "unknown_field"),
    ({"items": [{"local_path": "JFK"}], "defaults": {"model": 5}}, "items[0].model", "invalid_type"),
    ({"items": []}, "items", None),
    ({"items": [{"local_path": "JFK"}], "extra": 1}, "extra", "unknown_field"),
    ({"items": [{"local_path": "JFK"}] * 3}, "items", "too_many_items"),
])
def test_an_invalid_item_refuses_the_whole_batch(tmp_path: Path, sqlite_url: str, redis_url: str,
                                                 media_root: Path, body: dict, field: str, code: str | None) -> None:
    client, settings = _client(tmp_path, sqlite_url, redis_url, media_root, AUDIO_BATCH_MAX_ITEMS=2)
    items = [({**item, "local_path": str(media_root / "jfk.flac")} if isinstance(item, dict)
              and item.get("local_path") == "JFK" else item) for item in body["items"]]
    resp = client.post(BATCH, json={**body, "items": items}, headers=AUTH)
    assert resp.status_code == 422, resp.get_json()
    error = resp.get_json()["error"]
    assert error["field"] == field and (code is None or error["code"] == code), error
    assert _jobs(settings) == 0  # none made


def test_caps_and_quotas_apply_per_item_and_name_it(tmp_path: Path, sqlite_url: str, redis_url: str,
                                                    media_root: Path) -> None:
    jfk = {"local_path": str(media_root / "jfk.flac")}
    client, settings = _client(tmp_path, sqlite_url, redis_url, media_root, AUDIO_MAX_QUEUED_PER_USER=3)
    assert client.post(BATCH, json={"items": [jfk]}, headers=AUTH).status_code == 202
    resp = client.post(BATCH, json={"items": [jfk, jfk, jfk]}, headers=AUTH)  # 1 + 3 > 3 queued
    assert resp.status_code == 429 and resp.get_json()["error"]["field"] == "items[2]", resp.get_json()
    assert _jobs(settings) == 1

    client, settings = _client(tmp_path / "b", sqlite_url, redis_url, media_root,
                               AUDIO_TIER_LIMITS_JSON='{"premium": {"max_file_mb": 0.2, "daily_minutes": 1}}')
    small = media_root / "small.flac"
    small.write_bytes(b"\0" * 1024)
    resp = client.post(BATCH, json={"items": [{"local_path": str(small)}, jfk]}, headers=AUTH)
    assert resp.status_code == 413 and resp.get_json()["error"]["field"] == "items[1].local_path"
    with session_scope(settings.effective_database_url) as session:
        minutes.reserve(session, settings.single_user_id, 1.0, None, minutes.utc_today())
    resp = client.post(BATCH, json={"items": [{"local_path": str(small)}]}, headers=AUTH)
    assert resp.status_code == 402 and resp.get_json()["error"]["field"] == "items[0]"
    assert int(resp.headers["Retry-After"]) <= 86400
    assert _jobs(settings) == 1  # the first client's one job, nothing since


def test_the_same_idempotency_key_replays_the_batch(client: FlaskClient, settings: Settings, media_root: Path) -> None:
    body = {"items": [{"local_path": str(media_root / "jfk.flac")}] * 2}
    key = {**AUTH, "Idempotency-Key": "nightly-2026-12-01"}
    first = client.post(BATCH, json=body, headers=key)
    again = client.post(BATCH, json=body, headers=key)
    assert first.status_code == again.status_code == 202 and again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json() == first.get_json() and _jobs(settings) == 2
    other = client.post(BATCH, json={"items": body["items"][:1]}, headers=key)
    assert other.status_code == 409 and other.get_json()["error"]["code"] == "idempotency_key_reused"


def test_only_the_owner_or_an_admin_reads_a_batch(tmp_path: Path, sqlite_url: str, redis_url: str,
                                                  media_root: Path) -> None:
    settings = make_settings(sqlite_url, redis_url, tmp_path, media_root, AUTH_MODE="multi_user")
    made = make_users(settings, ("alice", "user"), ("bob", "user"), ("root", "admin"))
    keys = {name: header for name, (header, _id) in made.items()}
    for _header, user_id in made.values():
        (media_root / user_id).mkdir()
        (media_root / user_id / "a.flac").write_bytes((media_root / "jfk.flac").read_bytes())
    alice_id = made["alice"][1]
    client = create_app(settings).test_client()
    resp = client.post(BATCH, json={"items": [{"local_path": str(media_root / str(alice_id) / "a.flac")}]},
                       headers=keys["alice"])
    assert resp.status_code == 202, resp.get_json()
    location = resp.headers["Location"]
    assert client.get(location, headers=keys["alice"]).status_code == 200
    assert client.get(location, headers=keys["bob"]).status_code == 404
    assert client.get(location, headers=keys["root"]).get_json()["total"] == 1
    assert client.get("/api/v1/audio/jobs/batches/not-a-batch", headers=keys["root"]).status_code == 404
    assert dt.datetime.fromisoformat(resp.get_json()["created_at"].replace("Z", "+00:00")).tzinfo is not None
