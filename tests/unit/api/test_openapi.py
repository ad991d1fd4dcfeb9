"""The OpenAPI document: complete, served, rendered, and true (schemathesis against the real app).

schemathesis generates valid and invalid requests for every operation from the served document and
checks each response: never a 5xx, a documented status, the documented content type and a body that
matches the documented schema.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from werkzeug.test import EnvironBuilder

from audiojobs.api.app import create_app
from tests.conftest import AUTH, make_settings

UNDOCUMENTED = {"static", "docs.openapi_json"}  # and Swagger UI's page and assets (bp_api_v1_docs.*)
COUNTS = {"cases": 0, "5xx": 0}


def test_every_route_is_in_the_document(app: Flask, client: FlaskClient) -> None:
    doc = client.get("/api/v1/openapi.json").get_json()
    assert doc["openapi"].startswith("3.1")
    documented = {(path, method.upper()) for path, ops in doc["paths"].items() for method in ops}
    for rule in app.url_map.iter_rules():
        if rule.endpoint in UNDOCUMENTED or rule.endpoint.startswith("bp_api_v1_docs"):
            continue
        path = rule.rule.replace("<", "{").replace(">", "}")
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}:
            assert (path, method) in documented, f"{method} {path} is missing from the OpenAPI document"
    submit = doc["paths"]["/api/v1/audio/jobs/submit"]["post"]
    assert submit["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/SubmitRequest")
    assert {"202", "401", "402", "413", "422", "429", "503"} <= set(submit["responses"])
    body = doc["components"]["schemas"]["SubmitRequest"]
    assert body["additionalProperties"] is False and set(body["properties"]) >= {"url", "local_path", "model"}


def test_the_document_is_generated_from_the_validating_models(client: FlaskClient) -> None:
    from audiojobs.api.schemas import SubmitRequest

    doc = client.get("/api/v1/openapi.json").get_json()
    served = doc["components"]["schemas"]["SubmitRequest"]["properties"]
    assert set(served) == set(SubmitRequest.model_fields)


def test_the_docs_page_is_swagger_ui_served_from_here(client: FlaskClient) -> None:
    """Every script and style the page loads comes from this server (no CDN: it works offline);
    tests/integration/test_docs_page.py drives it in a real browser."""
    resp = client.get("/api/v1/docs")
    assert resp.status_code == 200 and resp.mimetype == "text/html"
    page = resp.get_data(as_text=True)
    assets = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert assets and all(a.startswith("/api/v1/docs/static/") for a in assets), assets
    for asset in assets:
        with client.get(asset) as served:
            assert served.status_code == 200, asset
    assert 'url: "/api/v1/docs/openapi.json"' in page and "SwaggerUIBundle" in page
    assert client.get("/api/v1/docs/openapi.json").get_json() == client.get("/api/v1/openapi.json").get_json()


def test_operations_read_in_order_submit_first(client: FlaskClient) -> None:
    doc = client.get("/api/v1/openapi.json").get_json()
    first_path, first_ops = next(iter(doc["paths"].items()))
    assert (first_path, list(first_ops)) == ("/api/v1/audio/jobs/submit", ["post"])
    assert [tag["name"] for tag in doc["tags"]][:2] == ["jobs", "openai"]
    ids = [op["operationId"] for ops in doc["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids))


@pytest.fixture(params=["single_user", "multi_user"])
def fuzz_app(request: pytest.FixtureRequest, tmp_path: Path, sqlite_url: str, redis_url: str,
             media_root: Path) -> Iterator[tuple[Flask, dict[str, str]]]:
    """The app in either auth mode, with the credentials of an admin (who may call every route)."""
    settings_ = make_settings(sqlite_url, redis_url, tmp_path, media_root, AUTH_MODE=request.param,
                              AUDIO_EVENTS_MAX_SECONDS=1,  # event streams of queued jobs end quickly
                              AUDIO_SYNC_TIMEOUT_SECONDS=0)  # no worker here: sync transcriptions answer 202
    headers = AUTH
    if request.param == "multi_user":
        from audiojobs.db import session_scope
        from audiojobs.users import service as users

        with session_scope(settings_.effective_database_url) as session:
            admin = users.create_user(session, "root", password="pw-root-123", role="admin", tier="free",
                                      known_tiers={"free"})
            _row, key = users.create_api_key(session, admin, "fuzz")
        headers = {"X-API-KEY": key}
    yield create_app(settings_), headers


def _check(case: schemathesis.Case, auth: dict[str, str]) -> None:
    secured = bool(case.operation.definition.raw.get("security"))
    headers = {**(case.headers or {}), **auth} if secured else None
    response = case.call(headers=headers)
    COUNTS["cases"] += 1
    if response.status_code >= 500:
        COUNTS["5xx"] += 1
    case.validate_response(response, checks=[not_a_server_error, status_code_conformance, content_type_conformance,
                                             response_schema_conformance])


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_api_conforms_to_its_document(fuzz_app: tuple[Flask, dict[str, str]], mode: GenerationMode) -> None:
    """Every operation, valid and invalid inputs; the pytest plugin of schemathesis is not used (it
    lags behind pytest 9), so each operation's strategy is driven by hypothesis directly."""
    app, auth = fuzz_app
    api_schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 17
    for operation in operations:
        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=20, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def run(case: schemathesis.Case) -> None:
            _check(case, auth)

        try:
            run()
        except Unsatisfiable:
            # Nothing to get wrong: an operation without parameters or body has no invalid input.
            raw = operation.definition.raw
            assert mode is GenerationMode.NEGATIVE and not raw.get("parameters") and not raw.get("requestBody")


def _nested(depth: int, kind: str) -> bytes:
    inner = b'"x"'
    return (b"[" * depth + inner + b"]" * depth) if kind == "array" else \
        (b'{"a":' * depth + inner + b"}" * depth)


HOSTILE_BODIES = [
    ("deep arrays", _nested(5000, "array")), ("deep objects", _nested(5000, "object")),
    ("33 levels", b'{"chunking": ' + _nested(32, "object") + b"}"),
    ("non-ASCII bytes", bytes(range(128, 256)) * 64),
    ("non-ASCII JSON", '{"url": "http://exämple.com/ä", "model": "😀", "tier": "ü", "username": "ø"}'.encode()),
    ("large", b'{"url": "' + b"a" * (3 * 1024 * 1024) + b'"}'),
]


def test_hostile_bodies_on_every_json_and_multipart_endpoint(fuzz_app: tuple[Flask, dict[str, str]]) -> None:
    """Deep, large and non-ASCII bodies on every operation that takes a body: a 4xx JSON error
    (deep JSON: 400 invalid_json naming the depth limit), never a 5xx or a traceback."""
    app, auth = fuzz_app
    client = app.test_client()
    doc = client.get("/api/v1/openapi.json").get_json()
    tried = 0
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            content = op.get("requestBody", {}).get("content", {})
            if not content:
                continue
            url = path.replace("{job_id}", "1").replace("{user_id}", "1")
            for name, body in HOSTILE_BODIES:
                for media_type in content:
                    data: object = body
                    if media_type == "multipart/form-data":
                        data = {"file": (io.BytesIO(b"x" * 64), "a.mp3"), "chunking": body.decode("latin-1")}
                    # Built by hand so the encoded body (a temporary file when large) is closed.
                    builder = EnvironBuilder(path=url, method=method.upper(), data=data, headers=auth,
                                             content_type=media_type)
                    environ = builder.get_environ()
                    try:
                        resp = client.open(environ)
                    finally:
                        environ["wsgi.input"].close()
                        builder.close()
                    tried += 1
                    assert 400 <= resp.status_code < 500, (method, path, name, media_type, resp.status_code)
                    error = resp.get_json()["error"]
                    assert "Traceback" not in error["message"], error
                    if name in {"deep arrays", "deep objects", "33 levels"} and error["code"] != "multi_user_only":
                        assert (resp.status_code, error["code"]) == (400, "invalid_json"), (path, name, error)
                        assert "deeper than 32 levels" in error["message"]
    print(f"\nhostile bodies tried: {tried}, 5xx seen: 0")
    assert tried >= 40


def test_report_fuzz_counts() -> None:
    """Runs after the fuzz tests in file order; prints the figures for the closing note."""
    print(f"\nschemathesis cases run: {COUNTS['cases']}, 5xx seen: {COUNTS['5xx']}")
    assert COUNTS["cases"] > 0 and COUNTS["5xx"] == 0
