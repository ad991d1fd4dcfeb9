"""Who is calling.

``AUTH_MODE=single_user``: one API key (``X-API-KEY`` or ``Authorization: Bearer <key>``), whose
user is an admin. ``AUTH_MODE=multi_user``: a JWT access token (``Authorization: Bearer <jwt>``,
from ``POST /api/v1/auth/login``) or a per-user API key (``X-API-KEY``, or Bearer). The user is
loaded on every request, so a disabled user, a revoked key, or a token issued before a password
change or a disable (``users.token_version``) stops working at once, in every API process.
"""

from __future__ import annotations

import functools
import hmac
from collections.abc import Callable
from typing import Any, TypeVar

import jwt
from flask import current_app, g, request
from flask_jwt_extended import decode_token

from audiojobs.api.reads import reader
from audiojobs.config import Settings
from audiojobs.db import session_scope
from audiojobs.errors import Forbidden, NotFound, Unauthorized
from audiojobs.users import service as users
from audiojobs.users.principal import Principal

F = TypeVar("F", bound=Callable[..., Any])
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="audiojobs"'}


def bearer_token() -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def presented_key() -> str | None:
    key = request.headers.get("X-API-KEY")
    return key.strip() if key else bearer_token()


def looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2


def decode_jwt(token: str, expected_type: str) -> dict[str, Any]:
    """The claims of a valid token of ``expected_type`` (access or refresh); 401 otherwise."""
    try:
        claims = decode_token(token)
    except jwt.ExpiredSignatureError:
        raise Unauthorized("the token has expired", code="token_expired", headers=CHALLENGE) from None
    except Exception:  # noqa: BLE001 - any other decoding failure (tampered, alg none, malformed) is a 401
        raise Unauthorized("the token is not valid", code="invalid_token", headers=CHALLENGE) from None
    if claims.get("type") != expected_type:
        raise Unauthorized(f"an {expected_type} token is required", code="invalid_token", headers=CHALLENGE)
    return claims


def current_version(caller: users.Caller, claims: dict[str, Any]) -> users.Caller:
    """The token was issued under the user's current token version: not before a password change or
    a disable (tokens from before token versions carry none: version 0)."""
    if claims.get("ver", 0) != caller.token_version:
        raise Unauthorized("the token was revoked (the password changed or the user was disabled); log in again",
                           code="token_revoked", headers=CHALLENGE)
    return caller


def _active(caller: users.Caller | None, how: str) -> users.Caller:
    if caller is None:
        raise Unauthorized(f"invalid {how}", headers=CHALLENGE)
    if caller.disabled:
        raise Unauthorized("this user is disabled", code="user_disabled", headers=CHALLENGE)
    return caller


def authenticate(settings: Settings) -> Principal:
    if settings.auth_mode == "single_user":
        expected = settings.api_key
        key = presented_key()
        if not key:
            raise Unauthorized("missing API key: send X-API-KEY or Authorization: Bearer <key>", headers=CHALLENGE)
        if not expected or not hmac.compare_digest(key.encode(), expected.encode()):
            raise Unauthorized("invalid API key", headers=CHALLENGE)
        return Principal(user_id=settings.single_user_id, is_admin=True, tier=settings.single_user_tier)
    header_key = request.headers.get("X-API-KEY", "").strip()
    bearer = bearer_token()
    if not header_key and not bearer:
        raise Unauthorized("missing credentials: send Authorization: Bearer <token> or X-API-KEY", headers=CHALLENGE)
    touch = None
    session = reader(settings.effective_database_url)
    if header_key or (bearer and not looks_like_jwt(bearer)):
        key = header_key or bearer or ""
        user = _active(users.caller_for_api_key(session, key), "API key")
        touch = key if user.record_use else None
    else:
        claims = decode_jwt(bearer or "", "access")
        user = current_version(_active(users.caller(session, claims.get("sub", "")), "token"), claims)
    principal = Principal(user_id=str(user.user_id), is_admin=user.is_admin, tier=user.tier)
    if touch is not None:
        with session_scope(settings.effective_database_url) as session:
            users.touch_key(session, touch)
    return principal


def current_settings() -> Settings:
    settings: Settings = current_app.config["AUDIOJOBS_SETTINGS"]
    return settings


def multi_user_only() -> None:
    if current_settings().auth_mode != "multi_user":
        raise NotFound("this endpoint exists only with AUTH_MODE=multi_user", code="multi_user_only")


def login_required(view: F) -> F:
    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        g.principal = authenticate(current_settings())
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def admin_required(view: F) -> F:
    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        principal = authenticate(current_settings())
        if not principal.is_admin:
            raise Forbidden("this endpoint is for admins")
        g.principal = principal
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
