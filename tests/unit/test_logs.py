"""Log lines: JSON for services, readable text at a terminal, and no line per health poll."""

from __future__ import annotations

import io
import json
import logging
import sys

import pytest
from flask.testing import FlaskClient

from audiojobs.logs import ContextFilter, TextFormatter, formatter, resolved_format
from tests.conftest import AUTH


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_auto_is_text_on_a_terminal_and_json_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stderr", _Terminal())
    assert resolved_format("auto") == "text" and isinstance(formatter("auto"), TextFormatter)
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert resolved_format("auto") == "json" and resolved_format("text") == "text"


def _line(fmt: logging.Formatter, name: str, message: str, **context: object) -> str:
    record = logging.LogRecord(name, logging.INFO, __file__, 1, message, None, None)
    for key, value in context.items():
        setattr(record, key, value)
    ContextFilter().filter(record)
    return fmt.format(record)


def test_text_lines_read_easily_and_name_the_job_only_when_there_is_one() -> None:
    plain = _line(TextFormatter(), "audiojobs.access", "GET /api/v1/audio/jobs 200 3.1 ms",
                  request_id="1b2c3d4e-5f60-4718-9abc-def012345678")
    assert plain.endswith("INFO  access    GET /api/v1/audio/jobs 200 3.1 ms  [req 1b2c3d4e]"), plain
    assert "None" not in _line(TextFormatter(), "celery.worker", "ready", job_id=None, request_id="")
    assert "  [job 12" in _line(TextFormatter(), "audiojobs.pipeline.runner", "started", job_id=12)
    data = json.loads(_line(formatter("json"), "audiojobs.access", "x", job_id=12))
    assert data["job_id"] == 12 and data["logger"] == "audiojobs.access"


def test_health_polls_leave_no_access_line(client: FlaskClient, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="audiojobs.access"):
        for _ in range(3):
            client.get("/healthz")
        client.get("/api/v1/audio/usage", headers=AUTH)
    lines = [r.getMessage() for r in caplog.records if r.name == "audiojobs.access"]
    assert len(lines) == 1 and lines[0].startswith("GET /api/v1/audio/usage 200"), lines
