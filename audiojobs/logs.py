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


class ContextFilter(logging.Filter):
    """Adds job_id and request_id to every record that does not carry them already."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "job_id", None) is None:
            record.job_id = job_id_var.get()
        if getattr(record, "request_id", None) is None:
            record.request_id = request_id_var.get()
        return True


class TextFormatter(logging.Formatter):
    """For a person at a terminal: ``14:03:22 INFO  access  GET /api/v1/audio/jobs 200 3.1 ms
    [req 1b2c3d4e]``; the job and request only when there is one."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-5s %(short_name)-9s %(message)s", datefmt="%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        record.short_name = record.name.removeprefix("audiojobs.").split(".")[-1][:9]
        line = super().format(record)
        job_id, request_id = getattr(record, "job_id", None), getattr(record, "request_id", None)
        context = " ".join(filter(None, (f"job {job_id}" if job_id is not None else "",
                                         f"req {str(request_id)[:8]}" if request_id else "")))
        return f"{line}  [{context}]" if context else line


def resolved_format(log_format: str) -> str:
    """``auto``: text when this process writes to a terminal, JSON when to a file, pipe or collector."""
    if log_format != "auto":
        return log_format
    return "text" if sys.stderr.isatty() else "json"


def formatter(log_format: str) -> logging.Formatter:
    if resolved_format(log_format) == "json":
        from pythonjsonlogger.json import JsonFormatter

        return JsonFormatter(JSON_FIELDS, rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
                             timestamp=False)
    return TextFormatter()


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
