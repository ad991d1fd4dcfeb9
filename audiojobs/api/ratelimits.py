"""Rate limits, with flask-limiter, counted in Redis so that every API process shares them.

* ``AUDIO_RATE_LIMIT``: every caller's requests, per API key or user (a JWT counts for its user,
  across tokens), per client address without credentials. Liveness, readiness and the docs page's
  assets are not counted.
* ``AUDIO_LOGIN_RATE_LIMIT`` and ``AUDIO_LOGIN_ADDRESS_RATE_LIMIT``: failed logins (401) per
  username and per client address. Past either, ``/auth/login`` answers 429 even to the right
  password until the window moves on (a lockout). A username that does not exist is counted and
  locked out the same way, so a lockout says nothing about whether it exists.

Over a limit: 429 ``rate_limited`` with ``Retry-After`` (seconds). Should Redis be unreachable the
counts go on in the process's memory, so an outage of the limiter never refuses a request.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Any

import flask
import jwt
from flask import Flask, current_app, request
from flask.typing import ResponseReturnValue
from flask_jwt_extended import decode_token
from flask_limiter import Limiter, RateLimitExceeded

from audiojobs.api import error_response
from audiojobs.api.auth import bearer_token, looks_like_jwt
from audiojobs.api.schemas import load_json
from audiojobs.config import Settings
from audiojobs.errors import AudioJobsError

EXEMPT_ENDPOINTS = {"health.healthz", "health.readyz"}


def caller_key() -> str:
    """Whose request this is: the user of a valid JWT, else the presented key, else the address."""
    key = request.headers.get("X-API-KEY", "").strip()
    bearer = bearer_token()
    if not key and bearer and looks_like_jwt(bearer):
        try:
            return f"user:{decode_token(bearer)['sub']}"
        except (jwt.PyJWTError, KeyError, ValueError):
            pass  # not a token of ours: counted by what was presented
    presented = key or bearer
    if presented:
        return "key:" + hashlib.sha256(presented.encode()).hexdigest()[:32]
    return f"address:{request.remote_addr or 'unknown'}"


def login_username() -> str:
    """The username a login names (read from its body: the limit is checked before the view runs)."""
    try:
        body = load_json(request.get_data(cache=True), "the request body")
    except AudioJobsError:
        body = None
    name = body.get("username") if isinstance(body, dict) else None
    return "login-user:" + (name.strip().lower()[:64] if isinstance(name, str) else "")


def login_address() -> str:
    return f"login-address:{request.remote_addr or 'unknown'}"


def _exempt() -> bool:
    return request.endpoint in EXEMPT_ENDPOINTS or request.path.startswith("/api/v1/docs/static/")


def _failed(response: flask.Response) -> bool:
    return response.status_code == 401


def init_app(app: Flask, settings: Settings) -> None:
    """Attach this app's limiter (after its routes are registered: the login limits wrap that view)."""
    limiter = Limiter(caller_key, app=app, storage_uri=settings.redis_url, strategy="moving-window",
                      key_prefix="audiojobs:ratelimit", default_limits=[settings.rate_limit] if settings.rate_limit
                      else [], default_limits_exempt_when=_exempt, swallow_errors=True,
                      in_memory_fallback_enabled=True, headers_enabled=False)
    app.extensions["audiojobs_limiter"] = limiter
    login: Callable[..., Any] = app.view_functions["accounts.login"]
    for limit, key, scope in ((settings.login_rate_limit, login_username, "login-user"),
                              (settings.login_address_rate_limit, login_address, "login-address")):
        if limit:
            login = limiter.limit(limit, key_func=key, deduct_when=_failed, scope=scope, override_defaults=False)(login)
    app.view_functions["accounts.login"] = login
    app.register_error_handler(RateLimitExceeded, _rate_limited)


def _rate_limited(exc: RateLimitExceeded) -> ResponseReturnValue:
    current = current_app.extensions["audiojobs_limiter"].current_limit
    retry = max(1, int(current.reset_at - time.time())) if current is not None else 60
    return error_response(429, "rate_limited", f"too many requests ({exc.description}); try again in {retry} s",
                          headers={"Retry-After": str(retry)})
