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
    celery = producer_app(settings)
    settings = celery.conf.audiojobs_settings  # the embedded Redis, if one was started, is in here
    app = Flask(__name__)
    app.config["AUDIOJOBS_SETTINGS"] = settings
    app.config["JSON_SORT_KEYS"] = False
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["celery"] = celery
    api.init_app(app)
    return app
