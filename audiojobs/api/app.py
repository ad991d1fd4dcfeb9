"""The Flask app factory: hooks, error handlers and every route module's blueprint. Does no I/O:
it reads no files and starts nothing.

Everything it needs is in the settings it is given: ``REDIS_URL`` (``audiojobs up`` and the
``audiojobs`` commands start or find a Redis and pass it on), the API key and, in multi-user mode,
the JWT secret (the entry points read those from ``var/`` where ``audiojobs up`` keeps them; see
:func:`audiojobs.local_secrets.with_local_secrets`).
"""

from __future__ import annotations

import datetime as dt
import secrets

from flask import Flask
from flask_jwt_extended import JWTManager

from audiojobs import api
from audiojobs.api import admin, openapi, quotas, ratelimits, webhooks
from audiojobs.api.accounts import accounts
from audiojobs.api.health import health
from audiojobs.api.jobs import jobs
from audiojobs.api.openai_compat import openai_compat
from audiojobs.celery_app import producer_app
from audiojobs.checks import check_settings
from audiojobs.config import Settings, get_settings
from audiojobs.errors import ConfigError
from audiojobs.jobs import events as job_events


def create_app(settings: Settings | None = None) -> Flask:
    """The Flask app: blueprints, error handlers, database and Celery wiring."""
    settings = check_settings(settings or get_settings())
    if not settings.redis_url:
        raise ConfigError("REDIS_URL is unset: the API needs the broker (`audiojobs up` and `audiojobs api` "
                          "start or find one and pass it on)")
    if settings.auth_mode == "multi_user" and not settings.jwt_secret:
        raise ConfigError("AUDIOJOBS_JWT_SECRET is unset: multi-user mode signs tokens with it (`audiojobs up` "
                          "and `audiojobs api` keep one in var/jwt_secret)")
    app = Flask("audiojobs")
    app.config["AUDIOJOBS_SETTINGS"] = settings
    app.config["JSON_SORT_KEYS"] = False
    app.config["MAX_CONTENT_LENGTH"] = settings.max_request_bytes
    app.config["PROPAGATE_EXCEPTIONS"] = False
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["celery"] = producer_app(settings)
    job_events.publish_to(settings)  # the jobs this API changes (submit, cancel) are announced too
    _init_jwt(app, settings)
    api.init_app(app)
    # In reading order: the OpenAPI document and the docs page list the operations in this order.
    app.register_blueprint(jobs, url_prefix="/api/v1/audio")
    app.register_blueprint(openai_compat, url_prefix="/api/v1/audio")
    for feature in (webhooks, quotas, admin):
        app.register_blueprint(feature.routes, url_prefix="/api/v1/audio")
    app.register_blueprint(accounts, url_prefix="/api/v1/auth")
    app.register_blueprint(health)
    openapi.init_app(app)
    ratelimits.init_app(app, settings)
    return app


def _init_jwt(app: Flask, settings: Settings) -> None:
    app.config.update(
        # Single-user mode issues no tokens; a random key keeps the extension from accepting any.
        JWT_SECRET_KEY=settings.jwt_secret or secrets.token_urlsafe(32),
        JWT_ALGORITHM="HS256",
        JWT_DECODE_ALGORITHMS=["HS256"],  # never "none"
        JWT_ACCESS_TOKEN_EXPIRES=dt.timedelta(minutes=settings.jwt_access_minutes),
        JWT_REFRESH_TOKEN_EXPIRES=dt.timedelta(days=settings.jwt_refresh_days),
        JWT_TOKEN_LOCATION=["headers"],
    )
    JWTManager(app)
