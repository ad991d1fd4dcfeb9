"""Hostile input at the API: URLs, local paths and request bodies. Every refusal is a 4xx JSON body
naming the field, with no job row, no traceback and no server path in it."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from audiojobs.api import SECURITY_HEADERS
from audiojobs.api.app import create_app
from tests.conftest import AUTH, make_settings
from tests.hostile import HOSTILE_URLS, machine_name_is_local
from tests.services import JFK_FLAC, MediaServer

SUBMIT = "/api/v1/audio/jobs/submit"


def _client(tmp_path: Path, sqlite_url: str, redis_url: str, root: Path, **env: str) -> FlaskClient:
    settings = make_settings(sqlite_url, redis_url, tmp_path, root, **env)
    app = create_app(settings)
    app.testing = True
    return app.test_client()


def _no_jobs(client: FlaskClient) -> bool:
    return client.get("/api/v1/audio/jobs/admin/summary", headers=AUTH).get_json()["total"] == 0


def _error(resp, status: int) -> dict:  # type: ignore[no-untyped-def]
    text = resp.get_data(as_text=True)
    assert resp.status_code == status, text
    assert "Traceback" not in text and "/tmp/" not in text and "site-packages" not in text
    body = resp.get_json()
    assert set(body) == {"error"} and body["error"]["code"] and body["error"]["message"]
    return body["error"]


def test_hostile_urls_are_refused_at_submit(tmp_path: Path, sqlite_url: str, redis_url: str, media_root: Path,
                                            canary: MediaServer) -> None:
    media = "127.0.0.1:9"  # the allowed entry; nothing listens there, and submit connects to nothing anyway
    client = _client(tmp_path, sqlite_url, redis_url, media_root, AUDIO_URL_ALLOW_HOSTS=media,
                     AUDIO_URL_ALLOW_PORTS=f"80,443,{canary.port}", AUDIO_URL_DENY_HOSTS="blocked.example.com")
    refused = 0
    for case in HOSTILE_URLS:
        if case.when != "submit":
            continue
        url = case.url(canary.port, media)
        error = _error(client.post(SUBMIT, json={"url": url}, headers=AUTH), 422)
        assert (error["code"], error["field"]) == (case.code, "url"), (case.why, url, error)
        refused += 1
    assert refused >= 30
    assert _no_jobs(client)
    print(f"\nhostile URLs refused at submit: {refused}")


def test_late_hostile_urls_pass_submit(tmp_path: Path, sqlite_url: str, redis_url: str, media_root: Path,
                                       canary: MediaServer) -> None:
    """Names and redirects look harmless until resolved: the worker refuses them (test_download_hostile)."""
    if not machine_name_is_local():
        pytest.skip("this machine's name does not resolve to a local address")
    media = "127.0.0.1:9"
    client = _client(tmp_path, sqlite_url, redis_url, media_root, AUDIO_URL_ALLOW_HOSTS=media,
                     AUDIO_URL_ALLOW_PORTS=f"80,443,{canary.port}")
    for case in HOSTILE_URLS:
        if case.when == "late":
            resp = client.post(SUBMIT, json={"url": case.url(canary.port, media)}, headers=AUTH)
            assert resp.status_code == 202, (case.why, resp.get_json())


def test_allowed_host_entry_lifts_only_its_own_host_and_port(tmp_path: Path, sqlite_url: str, redis_url: str,
                                                             media_root: Path) -> None:
    client = _client(tmp_path, sqlite_url, redis_url, media_root, AUDIO_URL_ALLOW_HOSTS="127.0.0.1:8081,intranet")
    assert client.post(SUBMIT, json={"url": "http://127.0.0.1:8081/a.mp3"}, headers=AUTH).status_code == 202
    assert client.post(SUBMIT, json={"url": "http://intranet/a.mp3"}, headers=AUTH).status_code == 202
    for url in ("http://127.0.0.1:8082/a.mp3", "http://127.0.0.1/a.mp3", "http://intranet:8081/a.mp3",
                "http://[::1]:8081/a.mp3"):
        assert _error(client.post(SUBMIT, json={"url": url}, headers=AUTH), 422)["code"] == "forbidden_url", url


# --- local_path -------------------------------------------------------------------------------
@pytest.fixture
def sandbox(tmp_path: Path) -> Path:
    """roots/: alice's directory 1/ and bob's 2/, each with jfk.flac; secrets outside the roots."""
    root = tmp_path / "roots"
    for user in ("1", "2"):
        (root / user).mkdir(parents=True)
        shutil.copy(JFK_FLAC, root / user / "jfk.flac")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.flac").write_bytes(JFK_FLAC.read_bytes())
    return root


@pytest.fixture
def mu_client(tmp_path: Path, sqlite_url: str, redis_url: str, sandbox: Path) -> Iterator[tuple[FlaskClient, dict]]:
    from audiojobs.db import session_scope
    from audiojobs.users import service as users

    settings = make_settings(sqlite_url, redis_url, tmp_path, sandbox, AUTH_MODE="multi_user",
                             AUDIO_TIER_LIMITS_JSON='{"free": {"max_file_mb": 5}}')
    with session_scope(settings.effective_database_url) as session:
        for name in ("alice", "bob"):
            users.create_user(session, name, password=f"pw-{name}-123", tier="free", known_tiers={"free"})
    app = create_app(settings)
    app.testing = True
    client = app.test_client()
    token = client.post("/api/v1/auth/login", json={"username": "alice", "password": "pw-alice-123"}).get_json()
    yield client, {"Authorization": f"Bearer {token['access_token']}"}


def test_hostile_paths_are_refused_at_submit(mu_client: tuple[FlaskClient, dict], sandbox: Path,
                                             tmp_path: Path) -> None:
    client, alice = mu_client
    own = sandbox / "1"
    os.symlink(tmp_path / "outside" / "secret.flac", own / "link-out.flac")
    os.symlink(sandbox / "2" / "jfk.flac", own / "link-bob.flac")
    os.mkfifo(own / "pipe.flac")
    (own / "empty.flac").touch()
    (own / "subdir").mkdir()
    with open(own / "sparse.flac", "wb") as sparse:
        sparse.truncate(50 * 1024**3)  # 50 GB of nothing, 0 bytes on disk
    cases = [
        (str(own / ".." / "2" / "jfk.flac"), 422, "local_path_forbidden", "'..' into another user's dir"),
        (str(own / ".." / ".." / "outside" / "secret.flac"), 422, "local_path_forbidden", "'..' out of the roots"),
        (str(own / "link-out.flac"), 422, "local_path_forbidden", "symlink to outside the roots"),
        (str(own / "link-bob.flac"), 422, "local_path_forbidden", "symlink into another user's dir"),
        (str(sandbox / "2" / "jfk.flac"), 422, "local_path_forbidden", "another user's file"),
        (str(sandbox / "2" / "missing.flac"), 422, "local_path_forbidden", "no probing another user's dir"),
        ("/etc/passwd", 422, "local_path_forbidden", "a system file"),
        ("/dev/zero", 422, "local_path_forbidden", "a device outside the roots"),
        (str(own / "subdir"), 422, "local_path_not_a_file", "a directory"),
        (str(own), 422, "local_path_not_a_file", "the root itself"),
        (str(own / "pipe.flac"), 422, "local_path_not_a_file", "a FIFO (must not block)"),
        (str(own / "empty.flac"), 422, "local_path_empty", "a 0-byte file"),
        (str(own / "sparse.flac"), 413, "file_too_large", "a huge sparse file"),
        (str(own / "missing.flac"), 422, "local_path_not_found", "a missing file"),
        ("relative/jfk.flac", 422, "local_path_not_absolute", "a relative path"),
        (str(own / "jfk.flac") + "\x00.txt", 422, "invalid_local_path", "a NUL byte"),
    ]
    for path, status, code, why in cases:
        error = _error(client.post(SUBMIT, json={"local_path": path}, headers=alice), status)
        assert (error["code"], error.get("field")) == (code, "local_path"), (why, error)
        assert str(tmp_path) not in error["message"], why
    assert client.get("/api/v1/audio/jobs/admin/summary", headers=alice).status_code == 403
    listed = client.post(SUBMIT, json={"local_path": str(own / "jfk.flac")}, headers=alice)
    assert listed.status_code == 202  # alice's own file is fine
    print(f"\nhostile paths refused at submit: {len(cases)}")


def test_device_file_inside_a_root_is_refused(tmp_path: Path, sqlite_url: str, redis_url: str) -> None:
    client = _client(tmp_path, sqlite_url, redis_url, Path("/dev"))
    for device in ("/dev/null", "/dev/zero", "/dev/urandom"):
        error = _error(client.post(SUBMIT, json={"local_path": device}, headers=AUTH), 422)
        assert error["code"] == "local_path_not_a_file", device
    assert _no_jobs(client)


# --- bodies and headers -----------------------------------------------------------------------
def test_request_bodies_are_limited_and_must_be_json_objects(client: FlaskClient) -> None:
    big = b'{"url": "http://example.com/' + b"a" * (2 * 1024 * 1024) + b'"}'
    error = _error(client.post(SUBMIT, data=big, headers={**AUTH, "Content-Type": "application/json"}), 413)
    assert error["code"] == "request_too_large"
    for body, code in ((b"[1, 2]", "invalid_body"), (b'"text"', "invalid_body"), (b"null", "invalid_body"),
                       (b"{not json", "invalid_json"), (b"\xff\xfe", "invalid_json"), (b"", "invalid_body")):
        assert _error(client.post(SUBMIT, data=body, headers=AUTH), 422)["code"] == code, body
    error = _error(client.post(SUBMIT, json={"url": "http://example.com/a.mp3", "colour": "red"}, headers=AUTH), 422)
    assert (error["code"], error["field"]) == ("unknown_field", "colour")
    error = _error(client.post(SUBMIT, json={"url": 5}, headers=AUTH), 422)
    assert (error["code"], error["field"]) == ("invalid_type", "url")


def test_every_response_carries_security_headers(client: FlaskClient) -> None:
    for resp in (client.get("/healthz"), client.get("/api/v1/audio/jobs/1", headers=AUTH),
                 client.post(SUBMIT, data=b"[]", headers=AUTH), client.get("/nowhere"),
                 client.get("/api/v1/openapi.json")):
        for name, value in SECURITY_HEADERS.items():
            assert resp.headers[name] == value, (resp.request.path, name)
        assert resp.headers["Cache-Control"] == "no-store"
    # The docs page (Swagger UI) runs scripts: this server's files and its one inline script, by hash.
    policy = dict(part.strip().split(" ", 1) for part in
                  client.get("/api/v1/docs").headers["Content-Security-Policy"].split(";"))
    assert policy["default-src"] == "'none'" and policy["connect-src"] == "'self'"
    assert re.fullmatch(r"'self' 'sha256-[A-Za-z0-9+/]+=*'", policy["script-src"]), policy["script-src"]


def test_unknown_routes_and_methods_are_json(client: FlaskClient) -> None:
    assert _error(client.get("/api/v1/audio/nope", headers=AUTH), 404)["code"] == "not_found"
    resp = client.put(SUBMIT, json={}, headers=AUTH)
    assert _error(resp, 405)["code"] == "method_not_allowed" and "POST" in resp.headers["Allow"]
