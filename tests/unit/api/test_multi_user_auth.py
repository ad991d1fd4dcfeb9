"""AUTH_MODE=multi_user: login, refresh, expiry, tampering, alg none, API keys, disabled users, roles."""

from __future__ import annotations

import base64
import datetime as dt
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from flask_jwt_extended import create_access_token

from audiojobs.api.app import create_app
from audiojobs.config import Settings
from audiojobs.db import session_scope
from audiojobs.quotas.tiers import tier_table
from audiojobs.users import service as users
from tests.conftest import make_settings

BASE = "/api/v1/audio/jobs"


@pytest.fixture
def mu_settings(sqlite_url: str, redis_url: str, tmp_path: Path, media_root: Path) -> Settings:
    return make_settings(sqlite_url, redis_url, tmp_path, media_root, AUTH_MODE="multi_user",
                         AUDIOJOBS_JWT_SECRET="s" * 40)


@pytest.fixture
def mu_app(mu_settings: Settings) -> Flask:
    with session_scope(mu_settings.effective_database_url) as session:
        known = set(tier_table(None))
        users.create_user(session, "alice", password="alice-password", tier="free", known_tiers=known)
        users.create_user(session, "bob", password="bob-password", tier="standard", known_tiers=known)
        users.create_user(session, "root", password="root-password", role="admin", tier="premium", known_tiers=known)
    app = create_app(mu_settings)
    app.testing = True
    return app


@pytest.fixture
def client(mu_app: Flask) -> FlaskClient:
    return mu_app.test_client()


def login(client: FlaskClient, username: str) -> dict:
    resp = client.post("/api/v1/auth/login", json={"username": username, "password": f"{username}-password"})
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def submit(client: FlaskClient, headers: dict, media_root: Path) -> int:
    """Submit the caller's own copy of jfk.flac: in multi-user mode each user reads <root>/<user_id>/."""
    user_id = client.get("/api/v1/audio/usage", headers=headers).get_json()["user_id"]
    own = media_root / user_id
    own.mkdir(exist_ok=True)
    shutil.copy(media_root / "jfk.flac", own / "jfk.flac")
    resp = client.post(f"{BASE}/submit", json={"local_path": str(own / "jfk.flac")}, headers=headers)
    assert resp.status_code == 202, resp.get_json()
    return int(resp.get_json()["id"])


def test_login_and_use_the_access_token(client: FlaskClient, media_root: Path) -> None:
    tokens = login(client, "alice")
    assert tokens["token_type"] == "bearer" and tokens["expires_in"] == 15 * 60 and tokens["refresh_token"]
    job_id = submit(client, bearer(tokens["access_token"]), media_root)
    job = client.get(f"{BASE}/{job_id}", headers=bearer(tokens["access_token"])).get_json()
    assert job["owner_user_id"] == "1"


@pytest.mark.parametrize("body", [{"username": "alice", "password": "wrong"}, {"username": "nobody", "password": "x"}])
def test_bad_credentials_are_401_with_one_message(client: FlaskClient, body: dict) -> None:
    resp = client.post("/api/v1/auth/login", json=body)
    assert resp.status_code == 401 and resp.get_json()["error"]["code"] == "invalid_credentials"


def test_login_body_is_validated(client: FlaskClient) -> None:
    resp = client.post("/api/v1/auth/login", json={"username": "alice"})
    assert resp.status_code == 422 and resp.get_json()["error"]["field"] == "password"


def test_refresh_gives_a_new_access_token_and_only_from_a_refresh_token(client: FlaskClient) -> None:
    tokens = login(client, "bob")
    resp = client.post("/api/v1/auth/refresh", headers=bearer(tokens["refresh_token"]))
    assert resp.status_code == 200
    assert client.get(f"{BASE}/admin/summary", headers=bearer(resp.get_json()["access_token"])).status_code == 403
    assert client.post("/api/v1/auth/refresh", headers=bearer(tokens["access_token"])).status_code == 401
    # A refresh token is not an access token.
    assert client.get(f"{BASE}/1", headers=bearer(tokens["refresh_token"])).status_code == 401


def test_expired_token_is_401(client: FlaskClient, mu_app: Flask) -> None:
    with mu_app.app_context():
        expired = create_access_token(identity="1", expires_delta=dt.timedelta(seconds=-5))
    resp = client.get(f"{BASE}/1", headers=bearer(expired))
    assert resp.status_code == 401 and resp.get_json()["error"]["code"] == "token_expired"


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_tampered_and_alg_none_tokens_are_401(client: FlaskClient) -> None:
    token = login(client, "alice")["access_token"]
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    forged = _b64({**claims, "sub": "3"})  # claim to be the admin
    for bad in (f"{header}.{forged}.{signature}",
                f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{forged}.",
                f"{_b64({'alg': 'HS256', 'typ': 'JWT'})}.{forged}.{signature[::-1]}"):
        resp = client.get(f"{BASE}/admin/summary", headers=bearer(bad))
        assert resp.status_code == 401 and resp.get_json()["error"]["code"] == "invalid_token", bad


def test_user_on_admin_route_is_403_and_admin_is_200(client: FlaskClient) -> None:
    user = bearer(login(client, "alice")["access_token"])
    admin = bearer(login(client, "root")["access_token"])
    for path in ("/admin/list", "/admin/summary", "/admin/owner/1/processing", "/admin/tiers/1"):
        assert client.get(f"{BASE}{path}", headers=user).status_code == 403, path
        assert client.get(f"{BASE}{path}", headers=admin).status_code == 200, path


def test_users_never_see_each_others_jobs(client: FlaskClient, media_root: Path) -> None:
    alice = bearer(login(client, "alice")["access_token"])
    bob = bearer(login(client, "bob")["access_token"])
    admin = bearer(login(client, "root")["access_token"])
    job_id = submit(client, alice, media_root)
    for method, path in (("get", f"/{job_id}"), ("get", f"/{job_id}/result"), ("post", f"/{job_id}/cancel"),
                         ("delete", f"/{job_id}")):
        resp = getattr(client, method)(f"{BASE}{path}", headers=bob)
        assert resp.status_code == 404, (method, path)
    assert client.get(f"{BASE}/{job_id}", headers=admin).status_code == 200
    assert client.post(f"{BASE}/{job_id}/cancel", headers=alice).status_code == 200


def test_api_keys_shown_once_stored_hashed_and_revocable(client: FlaskClient, mu_settings: Settings,
                                                         media_root: Path) -> None:
    alice = bearer(login(client, "alice")["access_token"])
    resp = client.post("/api/v1/auth/keys", json={"name": "laptop"}, headers=alice)
    assert resp.status_code == 201
    created = resp.get_json()
    key = created["key"]
    assert key.startswith("aj_") and created["prefix"] == key[:10]
    listed = client.get("/api/v1/auth/keys", headers=alice).get_json()["keys"]
    assert [k["name"] for k in listed] == ["laptop"] and "key" not in listed[0]
    with session_scope(mu_settings.effective_database_url) as session:
        from audiojobs.users.models import ApiKey

        assert key not in {row.key_hash for row in session.query(ApiKey)}
    submit(client, {"X-API-KEY": key}, media_root)
    submit(client, bearer(key), media_root)
    # Bob cannot revoke Alice's key; Alice can.
    bob = bearer(login(client, "bob")["access_token"])
    assert client.delete(f"/api/v1/auth/keys/{created['id']}", headers=bob).status_code == 404
    assert client.post("/api/v1/auth/keys", json={"name": "x", "user_id": 1}, headers=bob).status_code == 403
    assert client.delete(f"/api/v1/auth/keys/{created['id']}", headers=alice).status_code == 204
    resp = client.get(f"{BASE}/1", headers={"X-API-KEY": key})
    assert resp.status_code == 401


def test_admin_creates_a_key_for_another_user(client: FlaskClient) -> None:
    admin = bearer(login(client, "root")["access_token"])
    resp = client.post("/api/v1/auth/keys", json={"name": "ops", "user_id": 2}, headers=admin)
    assert resp.status_code == 201 and resp.get_json()["user_id"] == 2
    assert client.get("/api/v1/auth/keys?user_id=2", headers=admin).get_json()["keys"][0]["name"] == "ops"


def test_disabled_user_is_locked_out_at_once(client: FlaskClient, mu_settings: Settings) -> None:
    tokens = login(client, "bob")
    key = client.post("/api/v1/auth/keys", json={"name": "k"}, headers=bearer(tokens["access_token"])).get_json()["key"]
    with session_scope(mu_settings.effective_database_url) as session:
        user = users.get_user_by_name(session, "bob")
        assert user is not None
        users.set_disabled(session, user, True)
    for headers in (bearer(tokens["access_token"]), {"X-API-KEY": key}):
        resp = client.get(f"{BASE}/1", headers=headers)
        assert resp.status_code == 401 and resp.get_json()["error"]["code"] == "user_disabled"
    assert client.post("/api/v1/auth/refresh", headers=bearer(tokens["refresh_token"])).status_code == 401
    resp = client.post("/api/v1/auth/login", json={"username": "bob", "password": "bob-password"})
    assert resp.status_code == 401


def test_missing_or_garbage_credentials(client: FlaskClient) -> None:
    assert client.get(f"{BASE}/1").status_code == 401
    assert client.get(f"{BASE}/1", headers=bearer("garbage")).status_code == 401
    assert client.get(f"{BASE}/1", headers=bearer("a.b.c")).status_code == 401


def test_auth_routes_do_not_exist_in_single_user_mode(tmp_path: Path, sqlite_url: str, redis_url: str) -> None:
    single = create_app(make_settings(sqlite_url, redis_url, tmp_path, tmp_path)).test_client()
    resp = single.post("/api/v1/auth/login", json={"username": "a", "password": "b"})
    assert resp.status_code == 404 and resp.get_json()["error"]["code"] == "multi_user_only"


def test_cli_users_and_keys(tmp_path: Path, sqlite_url: str) -> None:
    env = {"DATABASE_URL": sqlite_url, "AUDIOJOBS_VAR_DIR": str(tmp_path / "var"), "PATH": "/usr/bin:/bin"}

    def cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "audiojobs.cli", *args], input=stdin, capture_output=True,
                              text=True, env=env)

    made = cli("users", "create", "carol", "--tier", "standard", "--password-stdin", stdin="carol-password\n")
    assert made.returncode == 0, made.stderr
    assert "created user carol" in made.stdout
    made = cli("users", "create", "dave", "--admin", "--password-stdin", stdin="dave-password\n")
    assert made.returncode == 0
    listed = cli("users", "list").stdout
    assert "carol" in listed and "standard" in listed and "admin" in listed
    key = cli("keys", "create", "carol").stdout.strip()
    assert key.startswith("aj_")
    assert cli("users", "create", "carol", "--password-stdin", stdin="carol-password\n").returncode != 0
    bad = cli("users", "create", "erin", "--tier", "gold", "--password-stdin", stdin="erin-password\n")
    assert bad.returncode != 0 and "unknown tier" in bad.stderr
    assert cli("keys", "create", "nobody").returncode != 0
    assert cli("users", "disable", "carol").stdout.strip() == "user carol disabled"
    assert "disabled" in next(line for line in cli("users", "list").stdout.splitlines() if "carol" in line)
    assert cli("users", "enable", "carol").returncode == 0


def test_admin_reads_and_sets_tiers(client: FlaskClient) -> None:
    admin = bearer(login(client, "root")["access_token"])
    assert client.get(f"{BASE}/admin/tiers/1", headers=admin).get_json()["tier"] == "free"
    resp = client.put(f"{BASE}/admin/tiers/1", json={"tier": "standard"}, headers=admin)
    assert resp.status_code == 200
    assert resp.get_json() == {"user_id": "1", "tier": "standard",
                               "limits": {"daily_minutes": 300, "concurrent_jobs": 3, "max_file_mb": 100,
                                          "priority": 4}}
    assert client.get(f"{BASE}/admin/owner/1/processing", headers=admin).get_json()["limit"] == 3
    resp = client.put(f"{BASE}/admin/tiers/1", json={"tier": "gold"}, headers=admin)
    assert resp.status_code == 422 and resp.get_json()["error"] == {
        "code": "unknown_tier", "message": resp.get_json()["error"]["message"], "field": "tier"}
    assert client.put(f"{BASE}/admin/tiers/99", json={"tier": "free"}, headers=admin).status_code == 404
    assert client.put(f"{BASE}/admin/tiers/1", json={"tier": 5}, headers=admin).status_code == 422


def test_bad_input_on_the_account_endpoints_is_422_naming_the_field(client: FlaskClient) -> None:
    admin = bearer(login(client, "root")["access_token"])
    cases = [("get", "/api/v1/auth/keys?user_id=abc", None, "user_id"),
             ("delete", "/api/v1/auth/keys/x1", None, "key_id"),
             ("post", "/api/v1/auth/keys", {"name": ""}, "name"),
             ("post", "/api/v1/auth/keys", {"name": "k", "user_id": "2"}, "user_id"),
             ("post", "/api/v1/auth/keys", {"name": "k", "extra": 1}, "extra"),
             ("put", f"{BASE}/admin/tiers/1", {"tier": ""}, "tier")]
    for method, path, body, field in cases:
        resp = getattr(client, method)(path, json=body, headers=admin) if body is not None else \
            getattr(client, method)(path, headers=admin)
        assert resp.status_code == 422, (path, resp.get_json())
        assert resp.get_json()["error"]["field"] == field, path
    resp = client.post("/api/v1/auth/login", data="username=a&password=b",
                       content_type="application/x-www-form-urlencoded")
    assert resp.status_code == 422 and resp.get_json()["error"]["code"] == "invalid_json"


def test_a_keys_last_use_is_recorded_to_the_minute(client: FlaskClient, mu_settings: Settings) -> None:
    import sqlalchemy as sa

    from audiojobs.users.models import ApiKey

    token = login(client, "alice")["access_token"]
    key = client.post("/api/v1/auth/keys", json={"name": "laptop"}, headers=bearer(token)).get_json()["key"]

    def last_used() -> dt.datetime | None:
        with session_scope(mu_settings.effective_database_url) as session:
            return session.scalar(sa.select(ApiKey.last_used_at).where(ApiKey.name == "laptop"))

    assert last_used() is None
    assert client.get("/api/v1/audio/usage", headers={"X-API-KEY": key}).status_code == 200
    first = last_used()
    assert first is not None
    assert client.get("/api/v1/audio/usage", headers={"X-API-KEY": key}).status_code == 200
    assert last_used() == first  # within the minute: no write
    with session_scope(mu_settings.effective_database_url) as session:
        session.execute(sa.update(ApiKey).where(ApiKey.name == "laptop")
                        .values(last_used_at=first - dt.timedelta(minutes=2)))
    assert client.get("/api/v1/audio/usage", headers={"X-API-KEY": key}).status_code == 200
    assert last_used() > first - dt.timedelta(minutes=2)  # type: ignore[operator]
