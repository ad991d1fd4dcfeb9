"""audiojobs: background audio and video transcription jobs over a six-stage Celery pipeline."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flask import Flask

    from audiojobs.config import Settings

__version__ = "0.1.0"


def create_app(settings: Settings | None = None) -> Flask:
    """The Flask app: blueprints, error handlers, database and Celery wiring. Does no I/O."""
    from flask import Flask

    from audiojobs import api
    from audiojobs.celery_app import producer_app
    from audiojobs.config import get_settings

    settings = settings or get_settings()
    if settings.auth_mode == "single_user" and not settings.api_key:
        import dataclasses

        from audiojobs.local_secrets import api_key_path, read_secret

        # The key scripts/run-local generated, if any; with none every request gets 401.
        settings = dataclasses.replace(settings, api_key=read_secret(api_key_path(settings.var_path)))
    if settings.auth_mode == "multi_user" and not settings.jwt_secret:
        import dataclasses

        from audiojobs.local_secrets import jwt_secret_path, read_or_create_secret

        settings = dataclasses.replace(settings, jwt_secret=read_or_create_secret(jwt_secret_path(settings.var_path)))
    celery = producer_app(settings)
    settings = celery.conf.audiojobs_settings  # the embedded Redis, if one was started, is in here
    app = Flask(__name__)
    app.config["AUDIOJOBS_SETTINGS"] = settings
    app.config["JSON_SORT_KEYS"] = False
    app.config["MAX_CONTENT_LENGTH"] = settings.max_request_bytes
    app.config["PROPAGATE_EXCEPTIONS"] = False
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["celery"] = celery
    _init_jwt(app, settings)
    api.init_app(app)
    return app


def _init_jwt(app: Flask, settings: Settings) -> None:
    import datetime as dt
    import secrets

    from flask_jwt_extended import JWTManager

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
