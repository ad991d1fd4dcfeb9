"""Rate limits, with flask-limiter, counted in Redis so that every API process shares them.

* ``AUDIO_RATE_LIMIT``: every caller's requests to all endpoints together, per API key or user (a
  JWT counts for its user, across tokens), per client address without credentials. Liveness,
  readiness and the docs page's assets are not counted.
* ``AUDIO_LOGIN_RATE_LIMIT``: failed logins (401) per username. Past it, ``/auth/login`` answers
  429 for that username even to the right password until the window moves on (a lockout). A
  username that does not exist is counted and locked out the same way, so a lockout says nothing
  about whether it exists.
* ``AUDIO_LOGIN_ADDRESS_RATE_LIMIT``: failed logins and rejected keys or tokens per client address,
  on every endpoint together (a request that sent no credential is not a guess and is not
  counted); past it, that address gets 429 until the window moves on, so guessing API keys is
  throttled like guessing passwords.

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
from flask_limiter import Limit, Limiter, RateLimitExceeded

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


def client_address() -> str:
    return f"address:{request.remote_addr or 'unknown'}"


def _exempt() -> bool:
    return request.endpoint in EXEMPT_ENDPOINTS or request.path.startswith("/api/v1/docs/static/")


def _failed(response: flask.Response) -> bool:
    return response.status_code == 401


def _rejected_credentials(response: flask.Response) -> bool:
    """A wrong password, key or token: a guess. A request that sent none is not one."""
    presented = request.endpoint == "accounts.login" or bool(
        request.headers.get("X-API-KEY", "").strip() or request.headers.get("Authorization", "").strip())
    return response.status_code == 401 and presented


def init_app(app: Flask, settings: Settings) -> None:
    """Attach this app's limiter (after its routes are registered: the login limits wrap that view)."""
    defaults: list[str | Callable[[], str] | Limit] = []
    if settings.rate_limit:  # one count per caller across every endpoint (shared), not one per endpoint
        defaults.append(Limit(settings.rate_limit, shared=True, scope="requests"))
    if settings.login_address_rate_limit:  # failed logins and rejected keys or tokens, on any endpoint
        defaults.append(Limit(settings.login_address_rate_limit, key_function=client_address, shared=True,
                              scope="auth-failures", deduct_when=_rejected_credentials))
    limiter = Limiter(caller_key, app=app, storage_uri=settings.redis_url, strategy="moving-window",
                      key_prefix="audiojobs:ratelimit", default_limits=defaults, default_limits_exempt_when=_exempt,
                      swallow_errors=True, in_memory_fallback_enabled=True, headers_enabled=False)
    app.extensions["audiojobs_limiter"] = limiter
    if settings.login_rate_limit:
        login: Callable[..., Any] = app.view_functions["accounts.login"]
        app.view_functions["accounts.login"] = limiter.limit(
            settings.login_rate_limit, key_func=login_username, deduct_when=_failed, scope="login-user",
            override_defaults=False)(login)
    app.register_error_handler(RateLimitExceeded, _rate_limited)


def _rate_limited(exc: RateLimitExceeded) -> ResponseReturnValue:
    current = current_app.extensions["audiojobs_limiter"].current_limit
    retry = max(1, int(current.reset_at - time.time())) if current is not None else 60
    return error_response(429, "rate_limited", f"too many requests ({exc.description}); try again in {retry} s",
                          headers={"Retry-After": str(retry)})
