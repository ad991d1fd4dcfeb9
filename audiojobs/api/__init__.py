"""HTTP only: parse and validate, call a service, serialise. Knows nothing of Whisper or torch."""

from __future__ import annotations

import logging
import re
import time
import uuid

import sqlalchemy.exc
from flask import Flask, Response, current_app, g, jsonify, request
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException

from audiojobs.api.docs_csp import docs_page_csp
from audiojobs.api.reads import close_reader
from audiojobs.errors import AudioJobsError
from audiojobs.logs import job_id_var, request_id_var

log = logging.getLogger(__name__)
access_log = logging.getLogger("audiojobs.access")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def init_app(app: Flask) -> None:
    """The hooks and error handlers every route shares (the routes are registered by api/app.py)."""
    app.before_request(_assign_request_id)
    app.after_request(_echo_request_id)
    app.after_request(_security_headers)
    app.teardown_request(close_reader)
    app.register_error_handler(AudioJobsError, _handle_app_error)
    app.register_error_handler(HTTPException, _handle_http_error)
    app.register_error_handler(sqlalchemy.exc.OperationalError, _handle_database_down)
    app.register_error_handler(Exception, _handle_unexpected)


def _assign_request_id() -> None:
    given = request.headers.get("X-Request-ID", "")
    g.request_id = given if _REQUEST_ID.match(given) else str(uuid.uuid4())
    g.started = time.perf_counter()
    request_id_var.set(g.request_id)
    job_id_var.set(None)


def _echo_request_id(response: Response) -> Response:
    response.headers["X-Request-ID"] = getattr(g, "request_id", "")
    elapsed = (time.perf_counter() - g.started) * 1000 if "started" in g else 0.0
    if request.endpoint in QUIET_ENDPOINTS and response.status_code < 400:
        return response  # health polls (load balancers, run-local, compose) are not worth a line each
    access_log.info("%s %s %s %.1f ms", request.method, request.path, response.status_code, elapsed,
                    extra={"status": response.status_code, "duration_ms": round(elapsed, 1)})
    return response


QUIET_ENDPOINTS = {"health.healthz", "health.readyz"}


SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
}


def _security_headers(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if response.mimetype == "text/html":  # the docs page: its scripts from here, its one inline script by hash
        response.headers["Content-Security-Policy"] = docs_page_csp(response.get_data(as_text=True))
    response.headers.setdefault("Cache-Control", "no-store")
    return response


def error_response(status: int, code: str, message: str, field: str | None = None,
                   headers: dict[str, str] | None = None) -> ResponseReturnValue:
    body: dict[str, object] = {"code": code, "message": message}
    if field is not None:
        body["field"] = field
    return jsonify({"error": body}), status, headers or {}


def _handle_app_error(exc: AudioJobsError) -> ResponseReturnValue:
    return jsonify(exc.to_dict()), exc.http_status, exc.headers


def _handle_http_error(exc: HTTPException) -> ResponseReturnValue:
    if exc.code == 413:
        limit = current_app.config.get("MAX_CONTENT_LENGTH")
        return error_response(413, "request_too_large", f"the request body is larger than {limit} bytes")
    code = re.sub(r"[^a-z0-9]+", "_", (exc.name or "error").lower()).strip("_")
    headers = {"Allow": exc.get_response().headers["Allow"]} if exc.code == 405 else None
    return error_response(exc.code or 500, code, exc.description or exc.name, headers=headers)


def _handle_database_down(exc: sqlalchemy.exc.OperationalError) -> ResponseReturnValue:
    log.warning("database unavailable: %s", exc.orig)
    return error_response(503, "database_unavailable", "the database is unavailable; try again shortly",
                          headers={"Retry-After": "5"})


def _handle_unexpected(exc: Exception) -> ResponseReturnValue:
    log.exception("unhandled error on %s %s", request.method, request.path)
    return error_response(500, "internal_error", "an unexpected error occurred; it has been logged")
