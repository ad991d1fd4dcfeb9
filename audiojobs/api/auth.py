"""Who is calling. Single-user mode: one API key (``X-API-KEY`` or a Bearer token), and its user is admin."""

from __future__ import annotations

import functools
import hmac
from collections.abc import Callable
from typing import Any, TypeVar

from flask import current_app, g, request

from audiojobs.config import Settings
from audiojobs.errors import Forbidden, Unauthorized
from audiojobs.jobs.service import Principal

F = TypeVar("F", bound=Callable[..., Any])


def presented_key() -> str | None:
    key = request.headers.get("X-API-KEY")
    if key:
        return key.strip()
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def authenticate(settings: Settings) -> Principal:
    if settings.auth_mode != "single_user":
        raise Unauthorized("AUTH_MODE=multi_user is not available in this release", code="auth_mode_unsupported")
    expected = settings.api_key
    key = presented_key()
    if not key:
        raise Unauthorized("missing API key: send X-API-KEY or Authorization: Bearer <key>",
                           headers={"WWW-Authenticate": 'Bearer realm="audiojobs"'})
    if not expected or not hmac.compare_digest(key.encode(), expected.encode()):
        raise Unauthorized("invalid API key", headers={"WWW-Authenticate": 'Bearer realm="audiojobs"'})
    return Principal(user_id=settings.single_user_id, is_admin=True)


def current_settings() -> Settings:
    settings: Settings = current_app.config["AUDIOJOBS_SETTINGS"]
    return settings


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
