"""Priorities through the HTTP API (multi-user, real Redis): each tier's default level, an admin's
``priority`` on submit, batch and form, ``PUT /jobs/{id}/priority`` sending a waiting message again
at the new level, and 403 ``priority_forbidden`` for everyone else."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import redis as redis_lib
from flask.testing import FlaskClient

from audiojobs.api.app import create_app
from audiojobs.config import Settings
from audiojobs.jobs import messages
from audiojobs.pipeline import broker
from tests.conftest import make_settings, make_users

JOBS = "/api/v1/audio/jobs"


@pytest.fixture
def users(tmp_path: Path, sqlite_url: str, redis_url: str,
          media_root: Path) -> tuple[FlaskClient, Settings, dict[str, dict[str, str]], dict[str, str]]:
    """A client, its settings, each person's headers and a file each may submit."""
    settings = make_settings(sqlite_url, redis_url, tmp_path, media_root, AUTH_MODE="multi_user",
                             AUDIO_TIER_LIMITS_JSON='{"standard": {"priority": 5}}')
    made = make_users(settings, ("free", "user"), ("standard", "user", "standard"),
                      ("premium", "user", "premium"), ("root", "admin", "premium"))
    files = {}
    for name, (_header, user_id) in made.items():
        (media_root / user_id).mkdir()
        files[name] = str(media_root / user_id / "a.flac")
        Path(files[name]).write_bytes((media_root / "jfk.flac").read_bytes())
    return (create_app(settings).test_client(), settings, {name: header for name, (header, _id) in made.items()},
            files)


def _levels_in_broker(settings: Settings) -> dict[int, int]:
    client = redis_lib.Redis.from_url(settings.redis_url or "")
    found = messages.scan(client, broker.stage_queues(settings)).queued
    return {job_id: queued.level for (job_id, _dispatch), queued in found.items()}


def test_each_tier_submits_at_its_level_and_only_an_admin_chooses(users: tuple[FlaskClient, Settings, dict[
        str, dict[str, str]], dict[str, str]]) -> None:
    client, settings, headers, files = users
    levels = {}
    for name in ("free", "standard", "premium"):
        resp = client.post(f"{JOBS}/submit", json={"local_path": files[name]}, headers=headers[name])
        assert resp.status_code == 202, resp.get_json()
        levels[name] = client.get(f"{JOBS}/{resp.get_json()['id']}", headers=headers[name]).get_json()["priority"]
        assert client.get("/api/v1/audio/usage", headers=headers[name]).get_json()["priority"] == levels[name]
    assert levels == {"free": 2, "standard": 5, "premium": 6}  # standard's from AUDIO_TIER_LIMITS_JSON

    refused = client.post(f"{JOBS}/submit", json={"local_path": files["premium"], "priority": 9},
                          headers=headers["premium"])
    assert refused.status_code == 403
    assert refused.get_json()["error"]["code"] == "priority_forbidden"
    assert refused.get_json()["error"]["field"] == "priority"
    batch = client.post(f"{JOBS}/batch", json={"items": [{"local_path": files["free"]},
                                                         {"local_path": files["free"], "priority": 0}]},
                        headers=headers["free"])
    assert batch.status_code == 403 and batch.get_json()["error"]["field"] == "items[1].priority"

    chosen = client.post(f"{JOBS}/submit", json={"local_path": files["root"], "priority": 8}, headers=headers["root"])
    assert chosen.status_code == 202
    assert client.get(f"{JOBS}/{chosen.get_json()['id']}", headers=headers["root"]).get_json()["priority"] == 8
    # A small upload: werkzeug's test client spools a large body to a file it never closes.
    form = client.post(f"{JOBS}/submit", data={"file": (io.BytesIO(b"fLaC" + b"\0" * 4092), "a.flac"),
                                               "priority": "0"}, headers=headers["root"],
                       content_type="multipart/form-data")
    assert form.status_code == 202
    assert client.get(f"{JOBS}/{form.get_json()['id']}", headers=headers["root"]).get_json()["priority"] == 0
    for bad in (10, -1, "7", 2.5, True):
        resp = client.post(f"{JOBS}/submit", json={"local_path": files["root"], "priority": bad},
                           headers=headers["root"])
        assert resp.status_code == 422 and resp.get_json()["error"]["field"] == "priority", (bad, resp.get_json())
    # One worker-less broker: every admitted job's first message waits at its level.
    in_broker = _levels_in_broker(settings)
    assert sorted(in_broker.values()) == [0, 2, 5, 6, 8]


def test_an_admin_changes_a_waiting_jobs_level_and_its_message_follows(users: tuple[FlaskClient, Settings, dict[
        str, dict[str, str]], dict[str, str]]) -> None:
    client, settings, headers, files = users
    job_id = client.post(f"{JOBS}/submit", json={"local_path": files["free"]}, headers=headers["free"]).get_json()["id"]
    waiting = client.post(f"{JOBS}/submit", json={"local_path": files["free"]},
                          headers=headers["free"]).get_json()["id"]  # free: one slot, so this one waits for it
    assert _levels_in_broker(settings) == {job_id: 2}

    resp = client.put(f"{JOBS}/{job_id}/priority", json={"priority": 9}, headers=headers["root"])
    assert resp.status_code == 200 and resp.get_json()["priority"] == 9
    assert _levels_in_broker(settings) == {job_id: 9}  # sent again at 9; the level-2 message is gone
    assert client.put(f"{JOBS}/{waiting}/priority", json={"priority": 1}, headers=headers["root"]).status_code == 200
    assert client.get(f"{JOBS}/{waiting}", headers=headers["free"]).get_json()["priority"] == 1

    forbidden = client.put(f"{JOBS}/{job_id}/priority", json={"priority": 9}, headers=headers["free"])
    assert forbidden.status_code == 403 and forbidden.get_json()["error"]["code"] == "priority_forbidden"
    assert client.put(f"{JOBS}/999999/priority", json={"priority": 3}, headers=headers["root"]).status_code == 404
    for body, field in (({"priority": 12}, "priority"), ({}, "priority"), ({"priority": 3, "x": 1}, "x")):
        bad = client.put(f"{JOBS}/{job_id}/priority", json=body, headers=headers["root"])
        assert bad.status_code == 422 and bad.get_json()["error"]["field"] == field, bad.get_json()
    assert client.post(f"{JOBS}/{job_id}/cancel", headers=headers["free"]).status_code == 200
    final = client.put(f"{JOBS}/{job_id}/priority", json={"priority": 3}, headers=headers["root"])
    assert final.status_code == 409 and final.get_json()["error"]["code"] == "job_final"
