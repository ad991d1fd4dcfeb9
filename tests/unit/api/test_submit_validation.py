"""POST /jobs/submit: every validation and auth error is a 4xx JSON body naming the field."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import redis
from flask.testing import FlaskClient

from audiojobs.config import Settings
from audiojobs.jobs.messages import queue_depth
from tests.conftest import AUTH

SUBMIT = "/api/v1/audio/jobs/submit"


def error_of(resp) -> dict:  # type: ignore[no-untyped-def]
    body = resp.get_json()
    assert body is not None, resp.data
    assert set(body) == {"error"}
    assert "Traceback" not in resp.get_data(as_text=True)
    return body["error"]


def test_submit_local_file_returns_202_with_location(client: FlaskClient, media_root: Path,
                                                     settings: Settings) -> None:
    resp = client.post(SUBMIT, json={"local_path": str(media_root / "jfk.flac")}, headers=AUTH)
    assert resp.status_code == 202
    body = resp.get_json()
    assert set(body) == {"id", "uuid", "domain", "queue", "job_type", "status"}
    assert body["domain"] == "audio" and body["status"] == "queued" and body["queue"] == "audio_cpu"
    assert resp.headers["Location"] == f"/api/v1/audio/jobs/{body['id']}"
    # The chain's first task is on the CPU queue, sent only after the row was committed.
    assert queue_depth(redis.Redis.from_url(settings.redis_url), "audio_cpu") == 1
    job = client.get(resp.headers["Location"], headers=AUTH).get_json()
    assert job["payload"] == {"url": None, "local_path": str(media_root / "jfk.flac"), "model": "whisper-1",
                              "perform_chunking": True, "perform_analysis": False, "api_name": None,
                              "language": None, "word_timestamps": False, "initial_prompt": None, "hotwords": None,
                              "vad_filter": False, "chunking": None, "analysis_prompt": None, "callback_url": None,
                              "diarize": False, "multichannel": False, "speakers": None, "min_speakers": None,
                              "max_speakers": None}


def test_submit_accepts_bearer_token_and_form_content_type(client: FlaskClient, media_root: Path) -> None:
    data = '{"local_path": "%s"}' % (media_root / "jfk.flac")
    resp = client.post(SUBMIT, data=data, content_type="application/x-www-form-urlencoded",
                       headers={"Authorization": f"Bearer {AUTH['X-API-KEY']}"})
    assert resp.status_code == 202


def test_submit_echoes_request_id(client: FlaskClient, media_root: Path) -> None:
    resp = client.post(SUBMIT, json={"local_path": str(media_root / "jfk.flac")},
                       headers={**AUTH, "X-Request-ID": "req-42"})
    assert resp.headers["X-Request-ID"] == "req-42"
    job = client.get(resp.headers["Location"], headers=AUTH).get_json()
    assert job["request_id"] == "req-42"


@pytest.mark.parametrize("headers", [{}, {"X-API-KEY": "wrong"}, {"Authorization": "Bearer wrong"},
                                     {"Authorization": "Basic " + "dGVzdDp0ZXN0"}])
def test_missing_or_wrong_key_is_401(client: FlaskClient, media_root: Path, headers: dict) -> None:
    resp = client.post(SUBMIT, json={"local_path": str(media_root / "jfk.flac")}, headers=headers)
    assert resp.status_code == 401
    assert error_of(resp)["code"] == "unauthorized"


@pytest.mark.parametrize("path", ["/api/v1/audio/jobs/1", "/api/v1/audio/jobs/1/result",
                                  "/api/v1/audio/jobs/admin/list", "/api/v1/audio/jobs/admin/summary",
                                  "/api/v1/audio/jobs/admin/owner/1/processing"])
def test_every_endpoint_needs_the_key(client: FlaskClient, path: str) -> None:
    resp = client.get(path)
    assert resp.status_code == 401
    assert error_of(resp)["code"] == "unauthorized"


def _bad(client: FlaskClient, body, expect_code: str, expect_field: str | None):  # type: ignore[no-untyped-def]
    resp = client.post(SUBMIT, json=body, headers=AUTH) if not isinstance(body, bytes) else \
        client.post(SUBMIT, data=body, headers={**AUTH, "Content-Type": "application/json"})
    assert resp.status_code == 422, resp.get_json()
    err = error_of(resp)
    assert err["code"] == expect_code
    assert err.get("field") == expect_field
    assert err["message"]
    return err


def test_neither_source(client: FlaskClient) -> None:
    _bad(client, {"model": "whisper-1"}, "missing_source", "url")


def test_both_sources(client: FlaskClient, media_root: Path) -> None:
    _bad(client, {"url": "https://example.com/a.mp3", "local_path": str(media_root / "jfk.flac")},
         "conflicting_source", "local_path")


def test_relative_local_path(client: FlaskClient) -> None:
    _bad(client, {"local_path": "media/jfk.flac"}, "local_path_not_absolute", "local_path")


def test_missing_local_path(client: FlaskClient, media_root: Path) -> None:
    _bad(client, {"local_path": str(media_root / "nope.flac")}, "local_path_not_found", "local_path")


def test_directory_local_path(client: FlaskClient, media_root: Path) -> None:
    (media_root / "sub").mkdir()
    _bad(client, {"local_path": str(media_root / "sub")}, "local_path_not_a_file", "local_path")


def test_local_path_outside_roots(client: FlaskClient, tmp_path: Path) -> None:
    outside = tmp_path / "outside.flac"
    outside.write_bytes(b"x")
    err = _bad(client, {"local_path": str(outside)}, "local_path_forbidden", "local_path")
    assert str(tmp_path) not in err["message"]


def test_dotdot_escape_is_resolved_first(client: FlaskClient, media_root: Path, tmp_path: Path) -> None:
    (tmp_path / "secret.flac").write_bytes(b"x")
    _bad(client, {"local_path": f"{media_root}/../secret.flac"}, "local_path_forbidden", "local_path")


def test_symlink_escape_is_resolved_first(client: FlaskClient, media_root: Path, tmp_path: Path) -> None:
    (tmp_path / "secret.flac").write_bytes(b"x")
    os.symlink(tmp_path / "secret.flac", media_root / "link.flac")
    _bad(client, {"local_path": str(media_root / "link.flac")}, "local_path_forbidden", "local_path")


def test_outside_roots_does_not_reveal_existence(client: FlaskClient) -> None:
    a = _bad(client, {"local_path": "/etc/passwd"}, "local_path_forbidden", "local_path")
    b = _bad(client, {"local_path": "/etc/definitely-not-here"}, "local_path_forbidden", "local_path")
    assert a == b


@pytest.mark.parametrize("url", ["ftp://example.com/a.mp3", "file:///etc/passwd", "javascript:alert(1)",
                                 "gopher://x/", "data:audio/wav;base64,AAAA"])
def test_url_scheme_other_than_http(client: FlaskClient, url: str) -> None:
    _bad(client, {"url": url}, "unsupported_url_scheme", "url")


@pytest.mark.parametrize("url", ["http://", "https:///path", "http://exa mple.com/a.mp3", "http://a:99999/x"])
def test_malformed_url(client: FlaskClient, url: str) -> None:
    _bad(client, {"url": url}, "invalid_url", "url")


def test_unknown_model(client: FlaskClient, media_root: Path) -> None:
    _bad(client, {"local_path": str(media_root / "jfk.flac"), "model": "gpt-9"}, "unknown_model", "model")


@pytest.mark.parametrize(("body", "code", "field"), [
    ({"language": "xx"}, "unknown_language", "language"),
    ({"language": "english"}, "invalid_value", "language"),
    ({"word_timestamps": "yes"}, "invalid_type", "word_timestamps"),
    ({"initial_prompt": "x" * 1001}, "invalid_value", "initial_prompt"),
    ({"vad_filter": 1}, "invalid_type", "vad_filter"),
    ({"model": "torch:tiny.en"}, "unknown_model", "model"),
    ({"chunking": {"strategy": "paragraphs"}}, "invalid_value", "chunking.strategy"),
    ({"chunking": {"strategy": "words"}}, "missing_field", "chunking.size"),
    ({"chunking": {"strategy": "time", "size": 2}}, "invalid_value", "chunking.size"),
    ({"chunking": {"strategy": "words", "size": 50, "overlap": 50}}, "invalid_value", "chunking.overlap"),
    ({"chunking": {"strategy": "words", "size": 50, "pages": 1}}, "unknown_field", "chunking.pages"),
    ({"chunking": {"strategy": "tokens", "size": "100"}}, "invalid_type", "chunking.size"),
    ({"chunking": "words"}, "invalid_type", "chunking"),
])
def test_transcription_options_are_validated(client: FlaskClient, media_root: Path, body: dict, code: str,
                                             field: str) -> None:
    _bad(client, {"local_path": str(media_root / "jfk.flac"), **body}, code, field)


def test_unknown_api_name(client: FlaskClient, media_root: Path) -> None:
    _bad(client, {"local_path": str(media_root / "jfk.flac"), "perform_analysis": True, "api_name": "nope"},
         "unknown_api_name", "api_name")


@pytest.mark.parametrize("field,value", [("perform_chunking", "yes"), ("perform_chunking", 1),
                                         ("perform_analysis", "true"), ("model", 5), ("url", 42),
                                         ("local_path", ["a"]), ("api_name", {"x": 1})])
def test_wrong_types(client: FlaskClient, media_root: Path, field: str, value: object) -> None:
    body: dict[str, object] = {"local_path": str(media_root / "jfk.flac")}
    if field in {"url", "local_path"}:
        body = {}
    body[field] = value
    _bad(client, body, "invalid_type", field)


def test_unknown_field(client: FlaskClient, media_root: Path) -> None:
    _bad(client, {"local_path": str(media_root / "jfk.flac"), "colour": "red"}, "unknown_field", "colour")


@pytest.mark.parametrize("raw,code", [(b"", "invalid_body"), (b"not json", "invalid_json"), (b"[1, 2]", "invalid_body"),
                                      (b'"a string"', "invalid_body"), (b"null", "invalid_body"),
                                      (b"\xff\xfe", "invalid_json"), (b"{", "invalid_json")])
def test_body_not_a_json_object(client: FlaskClient, raw: bytes, code: str) -> None:
    _bad(client, raw, code, None)


def test_no_job_is_created_by_a_rejected_submit(client: FlaskClient, settings: Settings) -> None:
    _bad(client, {"url": "ftp://x/y"}, "unsupported_url_scheme", "url")
    summary = client.get("/api/v1/audio/jobs/admin/summary", headers=AUTH).get_json()
    assert summary["total"] == 0
    assert queue_depth(redis.Redis.from_url(settings.redis_url), "audio_cpu") == 0


def test_local_path_disabled_when_no_roots(tmp_path: Path, sqlite_url: str, redis_url: str) -> None:
    from audiojobs.api.app import create_app
    from tests.conftest import make_settings

    settings = make_settings(sqlite_url, redis_url, tmp_path, tmp_path, AUDIO_LOCAL_ROOTS="")
    client = create_app(settings).test_client()
    (tmp_path / "a.flac").write_bytes(b"x")
    _bad(client, {"local_path": str(tmp_path / "a.flac")}, "local_path_forbidden", "local_path")


def test_wrong_method_and_unknown_route_are_json(client: FlaskClient) -> None:
    resp = client.get(SUBMIT, headers=AUTH)
    assert resp.status_code in (405, 422)
    error_of(resp)
    resp = client.delete("/api/v1/audio/jobs/admin/list", headers=AUTH)
    assert resp.status_code == 405
    error_of(resp)
    resp = client.get("/api/v1/nothing-here", headers=AUTH)
    assert resp.status_code == 404
    assert error_of(resp)["code"] == "not_found"


def test_broker_down_gives_503_and_a_failed_job(tmp_path: Path, sqlite_url: str, media_root: Path) -> None:
    from audiojobs.api.app import create_app
    from audiojobs.embedded_redis import free_port
    from tests.conftest import make_settings

    settings = make_settings(sqlite_url, f"redis://127.0.0.1:{free_port()}/0", tmp_path, media_root)
    client = create_app(settings).test_client()
    resp = client.post(SUBMIT, json={"local_path": str(media_root / "jfk.flac")}, headers=AUTH)
    assert resp.status_code == 503
    assert error_of(resp)["code"] == "broker_unavailable"
    jobs = client.get("/api/v1/audio/jobs/admin/list", headers=AUTH).get_json()["jobs"]
    assert [(j["status"], j["error_code"]) for j in jobs] == [("failed", "broker_unavailable")]


@pytest.mark.parametrize("body,field,code", [
    ({"speakers": 2}, "speakers", "invalid_option"),
    ({"diarize": True, "speakers": 2, "min_speakers": 1}, "speakers", "conflicting_option"),
    ({"diarize": True, "speakers": 2, "max_speakers": 3}, "speakers", "conflicting_option"),
    ({"diarize": True, "min_speakers": 4, "max_speakers": 2}, "min_speakers", "invalid_value"),
    ({"diarize": True, "min_speakers": 9}, "min_speakers", "invalid_value"),  # above the default maximum, 8
    ({"diarize": True, "speakers": 21}, "speakers", None),
    ({"diarize": True, "speakers": 0}, "speakers", None),
    ({"diarize": True, "max_speakers": "3"}, "max_speakers", None),
    ({"diarize": "yes"}, "diarize", None),
    ({"diarize": True, "multichannel": True}, "multichannel", "conflicting_option"),
    ({"multichannel": 1}, "multichannel", None),
])
def test_speaker_options_are_checked(client: FlaskClient, media_root: Path, body: dict, field: str,
                                     code: str | None) -> None:
    resp = client.post(SUBMIT, json={"local_path": str(media_root / "jfk.flac"), **body}, headers=AUTH)
    assert resp.status_code == 422, resp.get_json()
    error = error_of(resp)
    assert error["field"] == field and (code is None or error["code"] == code), error
    if code == "conflicting_option" and field == "multichannel":
        assert error["fields"] == ["diarize", "multichannel"] and "diarize and multichannel" in error["message"]


def test_speaker_options_are_kept_on_the_job(client: FlaskClient, media_root: Path) -> None:
    resp = client.post(SUBMIT, json={"local_path": str(media_root / "jfk.flac"), "diarize": True, "min_speakers": 2,
                                     "max_speakers": 4}, headers=AUTH)
    assert resp.status_code == 202
    payload = client.get(resp.headers["Location"], headers=AUTH).get_json()["payload"]
    assert (payload["diarize"], payload["speakers"], payload["min_speakers"], payload["max_speakers"]) == (
        True, None, 2, 4)
