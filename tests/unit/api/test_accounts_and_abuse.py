"""Accounts and abuse (multi-user mode): changing a password, logging out and disabling a user
revoke tokens at once in every API process; failed logins are throttled per username and per client
address; every caller's requests are limited. Two apps on one database and one Redis stand for two
API processes: each has its own limiter and its own connections."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from audiojobs.api.app import create_app
from audiojobs.config import Settings
from audiojobs.db import session_scope
from audiojobs.quotas.tiers import tier_table
from audiojobs.users import service as users
from tests.conftest import make_settings

LOGIN = "/api/v1/auth/login"
USAGE = "/api/v1/audio/usage"


def _settings(tmp_path: Path, sqlite_url: str, redis_url: str, media_root: Path, **limits: str) -> Settings:
    return make_settings(sqlite_url, redis_url, tmp_path, media_root, AUTH_MODE="multi_user", **limits)


def _two_processes(settings: Settings) -> tuple[FlaskClient, FlaskClient]:
    with session_scope(settings.effective_database_url) as session:
        known = set(tier_table(None))
        for name, role in (("alice", "user"), ("bob", "user"), ("root", "admin")):
            users.create_user(session, name, password=f"{name}-password", role=role, tier="free", known_tiers=known)
    apps: list[Flask] = [create_app(settings), create_app(settings)]
    return apps[0].test_client(), apps[1].test_client()


def _login(client: FlaskClient, name: str, password: str | None = None) -> dict:
    resp = client.post(LOGIN, json={"username": name, "password": password or f"{name}-password"})
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json()


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def pair(tmp_path: Path, sqlite_url: str, redis_url: str, media_root: Path) -> tuple[FlaskClient, FlaskClient]:
    return _two_processes(_settings(tmp_path, sqlite_url, redis_url, media_root))


def test_a_password_change_revokes_every_earlier_token_in_every_process(pair: tuple[FlaskClient, FlaskClient]) -> None:
    a, b = pair
    phone, laptop = _login(a, "alice"), _login(b, "alice")
    bob = _login(a, "bob")
    resp = b.post("/api/v1/auth/password", headers=_bearer(laptop["access_token"]),
                  json={"current_password": "wrong-password", "new_password": "a-new-password"})
    assert resp.status_code == 401 and resp.get_json()["error"]["code"] == "invalid_credentials"
    resp = b.post("/api/v1/auth/password", headers=_bearer(laptop["access_token"]),
                  json={"current_password": "alice-password", "new_password": "short"})
    assert resp.status_code == 422 and resp.get_json()["error"]["field"] == "new_password"
    resp = b.post("/api/v1/auth/password", headers=_bearer(laptop["access_token"]),
                  json={"current_password": "alice-password", "new_password": "a-new-password"})
    assert resp.status_code == 200, resp.get_json()
    fresh = resp.get_json()
    for client in (a, b):  # both processes refuse every token from before, access and refresh
        for old in (phone, laptop):
            resp = client.get(USAGE, headers=_bearer(old["access_token"]))
            assert resp.status_code == 401 and resp.get_json()["error"]["code"] == "token_revoked"
            resp = client.post("/api/v1/auth/refresh", headers=_bearer(old["refresh_token"]))
            assert resp.status_code == 401 and resp.get_json()["error"]["code"] == "token_revoked"
        assert client.get(USAGE, headers=_bearer(fresh["access_token"])).status_code == 200
        assert client.get(USAGE, headers=_bearer(bob["access_token"])).status_code == 200  # others untouched
    assert a.post(LOGIN, json={"username": "alice", "password": "alice-password"}).status_code == 401
    _login(b, "alice", "a-new-password")


def test_logout_revokes_the_refresh_token_everywhere(pair: tuple[FlaskClient, FlaskClient]) -> None:
    a, b = pair
    one, other = _login(a, "alice"), _login(a, "alice")
    assert a.post("/api/v1/auth/logout", headers=_bearer(one["refresh_token"])).status_code == 204
    resp = b.post("/api/v1/auth/refresh", headers=_bearer(one["refresh_token"]))
    assert resp.status_code == 401 and resp.get_json()["error"]["code"] == "token_revoked"
    assert b.post("/api/v1/auth/logout", headers=_bearer(one["refresh_token"])).status_code == 204  # twice: fine
    assert b.post("/api/v1/auth/refresh", headers=_bearer(other["refresh_token"])).status_code == 200
    resp = a.post("/api/v1/auth/logout", headers=_bearer(one["access_token"]))  # an access token is not one
    assert resp.status_code == 401 and resp.get_json()["error"]["code"] == "invalid_token"


def test_disabling_a_user_revokes_their_tokens_for_good(pair: tuple[FlaskClient, FlaskClient],
                                                        tmp_path: Path, sqlite_url: str) -> None:
    a, b = pair
    tokens = _login(a, "bob")
    with session_scope(sqlite_url) as session:
        user = users.get_user_by_name(session, "bob")
        assert user is not None
        users.set_disabled(session, user, True)
    assert b.get(USAGE, headers=_bearer(tokens["access_token"])).get_json()["error"]["code"] == "user_disabled"
    with session_scope(sqlite_url) as session:
        user = users.get_user_by_name(session, "bob")
        assert user is not None
        users.set_disabled(session, user, False)
    # Enabled again, the user logs in anew; what was issued before the disable stays refused.
    assert b.get(USAGE, headers=_bearer(tokens["access_token"])).get_json()["error"]["code"] == "token_revoked"
    assert b.get(USAGE, headers=_bearer(_login(a, "bob")["access_token"])).status_code == 200


def test_hammering_login_locks_the_username_without_saying_whether_it_exists(
        tmp_path: Path, sqlite_url: str, redis_url: str, media_root: Path) -> None:
    a, b = _two_processes(_settings(tmp_path, sqlite_url, redis_url, media_root, AUDIO_LOGIN_RATE_LIMIT="5/minute",
                                    AUDIO_LOGIN_ADDRESS_RATE_LIMIT="12/minute"))
    seen: dict[str, Counter[int]] = {}
    bodies: dict[str, dict] = {}
    for name in ("alice", "nobody-by-this-name"):
        seen[name] = Counter()
        for attempt in range(30):  # as fast as the test client goes, alternating processes
            resp = (a, b)[attempt % 2].post(LOGIN, json={"username": name, "password": f"guess-{attempt}"})
            seen[name][resp.status_code] += 1
            if resp.status_code == 429:
                bodies[name] = resp.get_json()["error"]
                assert 1 <= int(resp.headers["Retry-After"]) <= 60
    print(f"\nlogin hammering, 30 wrong passwords each: {dict((k, dict(v)) for k, v in seen.items())}")
    assert seen["alice"] == seen["nobody-by-this-name"] == Counter({401: 5, 429: 25})
    # A lockout reads the same for both (but for the seconds left).
    assert re.sub(r"\d+ s", "N s", str(bodies["alice"])) == re.sub(r"\d+ s", "N s", str(bodies["nobody-by-this-name"]))
    assert bodies["alice"]["code"] == "rate_limited"
    resp = a.post(LOGIN, json={"username": "alice", "password": "alice-password"})
    assert resp.status_code == 429  # locked out: even the right password waits
    _login(b, "bob")  # another username from the same address still gets in (2 failures left)
    for attempt in range(2):
        assert a.post(LOGIN, json={"username": f"user{attempt}", "password": "x"}).status_code == 401
    resp = a.post(LOGIN, json={"username": "bob", "password": "bob-password"})
    assert resp.status_code == 429  # 12 failures from this address: it waits, whichever name it tries


def test_every_callers_requests_are_limited_across_processes(tmp_path: Path, sqlite_url: str, redis_url: str,
                                                             media_root: Path) -> None:
    a, b = _two_processes(_settings(tmp_path, sqlite_url, redis_url, media_root, AUDIO_RATE_LIMIT="20/minute"))
    alice, bob = _login(a, "alice"), _login(a, "bob")
    with session_scope(sqlite_url) as session:
        user = users.get_user_by_name(session, "alice")
        assert user is not None
        key = {"X-API-KEY": users.create_api_key(session, user, "k")[1]}
    paths = (USAGE, "/api/v1/audio/jobs")  # every endpoint counts against one budget
    statuses = Counter((a, b)[i % 2].get(paths[i // 2 % 2], headers=_bearer(alice["access_token"])).status_code
                       for i in range(40))
    print(f"\n40 requests by one user to two endpoints at AUDIO_RATE_LIMIT=20/minute, two processes: "
          f"{dict(statuses)}")
    assert statuses == Counter({200: 20, 429: 20})
    resp = b.get(USAGE, headers=_bearer(alice["access_token"]))
    assert resp.status_code == 429 and resp.get_json()["error"]["code"] == "rate_limited"
    assert 1 <= int(resp.headers["Retry-After"]) <= 60
    assert a.get(USAGE, headers=_bearer(bob["access_token"])).status_code == 200  # another caller
    assert a.get(USAGE, headers=key).status_code == 200  # an API key counts on its own
    assert a.get("/healthz").status_code == 200 and b.get("/readyz").status_code in {200, 503}  # never counted


def test_guessing_api_keys_is_throttled_per_address(tmp_path: Path, sqlite_url: str, redis_url: str,
                                                    media_root: Path) -> None:
    a, b = _two_processes(_settings(tmp_path, sqlite_url, redis_url, media_root,
                                    AUDIO_LOGIN_ADDRESS_RATE_LIMIT="6/minute"))
    tokens = _login(a, "alice")
    assert {a.get(USAGE).status_code for _ in range(10)} == {401}  # no credential: not a guess, not counted
    statuses = [(a, b)[i % 2].get(USAGE, headers={"X-API-KEY": f"aj_guess_{i:04d}"}).status_code for i in range(10)]
    print(f"\n10 guessed API keys from one address at AUDIO_LOGIN_ADDRESS_RATE_LIMIT=6/minute: {statuses}")
    assert statuses == [401] * 6 + [429] * 4
    resp = a.get(USAGE, headers=_bearer(tokens["access_token"]))  # the address waits, whatever it sends
    assert resp.status_code == 429 and 1 <= int(resp.headers["Retry-After"]) <= 60
