"""create_app does no I/O: it starts nothing, reads and writes no file."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from audiojobs.api.app import create_app
from audiojobs.config import Settings
from audiojobs.errors import ConfigError
from audiojobs.local_secrets import with_local_secrets


def test_create_app_needs_its_broker_and_starts_none(tmp_path: Path) -> None:
    settings = Settings.from_env({"AUDIOJOBS_VAR_DIR": str(tmp_path / "var")})
    with pytest.raises(ConfigError, match="REDIS_URL is unset"):
        create_app(settings)
    assert not (tmp_path / "var").exists()  # no embedded Redis was started, no secret written


def test_multi_user_needs_a_jwt_secret_and_writes_none(tmp_path: Path) -> None:
    settings = Settings.from_env({"AUDIOJOBS_VAR_DIR": str(tmp_path / "var"), "AUTH_MODE": "multi_user",
                                  "REDIS_URL": "redis://127.0.0.1:1/0"})
    with pytest.raises(ConfigError, match="AUDIOJOBS_JWT_SECRET"):
        create_app(settings)
    assert not (tmp_path / "var").exists()
    app = create_app(dataclasses.replace(settings, jwt_secret="s" * 40))  # the broker is not contacted
    assert app.config["JWT_SECRET_KEY"] == "s" * 40
    assert not (tmp_path / "var").exists()


def test_the_entry_point_reads_what_audiojobs_up_keeps(tmp_path: Path) -> None:
    var = tmp_path / "var"
    (var / "redis").mkdir(parents=True)
    (var / "api_key").write_text("kept-key\n")
    (var / "jwt_secret").write_text("kept-secret\n")
    (var / "redis" / "redis.url").write_text("redis://127.0.0.1:7/0\n")
    filled = with_local_secrets(Settings.from_env({"AUDIOJOBS_VAR_DIR": str(var)}))
    assert (filled.api_key, filled.jwt_secret, filled.redis_url) == ("kept-key", "kept-secret", "redis://127.0.0.1:7/0")
    given = with_local_secrets(Settings.from_env({"AUDIOJOBS_VAR_DIR": str(var), "AUDIOJOBS_API_KEY": "env-key"}))
    assert given.api_key == "env-key"  # the environment wins
