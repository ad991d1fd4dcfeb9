"""Logging for every process: one line per record, JSON by default, each carrying ``job_id`` and
``request_id`` (null where there is none) from context variables the API and the stage runner set."""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar

from audiojobs.config import Settings

job_id_var: ContextVar[int | None] = ContextVar("job_id", default=None)
request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)

JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(process)d %(message)s %(job_id)s %(request_id)s"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [job=%(job_id)s req=%(request_id)s] %(message)s"


class ContextFilter(logging.Filter):
    """Adds job_id and request_id to every record that does not carry them already."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "job_id", None) is None:
            record.job_id = job_id_var.get()
        if getattr(record, "request_id", None) is None:
            record.request_id = request_id_var.get()
        return True


def formatter(log_format: str) -> logging.Formatter:
    if log_format == "json":
        from pythonjsonlogger.json import JsonFormatter

        return JsonFormatter(JSON_FIELDS, rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
                             timestamp=False)
    return logging.Formatter(TEXT_FORMAT)


def configure(settings: Settings) -> None:
    """Route every logger through one stderr handler in AUDIOJOBS_LOG_FORMAT at AUDIOJOBS_LOG_LEVEL."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(settings.log_format))
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(settings.log_level.upper())
    for noisy in ("gunicorn.error", "celery", "kombu", "amqp"):
        logging.getLogger(noisy).handlers = []
        logging.getLogger(noisy).propagate = True
