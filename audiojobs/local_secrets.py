"""Secrets ``scripts/run-local`` generates once and keeps under ``var/`` (mode 0600)."""

from __future__ import annotations

import dataclasses
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

from audiojobs.embedded_redis import url_file

if TYPE_CHECKING:
    from audiojobs.config import Settings


def read_secret(path: Path) -> str | None:
    try:
        value = path.read_text().strip()
    except FileNotFoundError:
        return None
    return value or None


def read_or_create_secret(path: Path, make: str = "token") -> str:
    """The secret in ``path``, created first if missing. Safe when several processes race: the
    file is written aside and linked into place, so everyone ends up reading the same value."""
    existing = read_secret(path)
    if existing:
        return existing
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(32) if make == "token" else f"admin:{secrets.token_urlsafe(18)}"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value + "\n")
    try:
        os.link(tmp, path)  # fails if another process got there first
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    winner = read_secret(path)
    assert winner is not None
    return winner


def api_key_path(var_dir: Path) -> Path:
    return var_dir / "api_key"


def flower_auth_path(var_dir: Path) -> Path:
    return var_dir / "flower_auth"


def jwt_secret_path(var_dir: Path) -> Path:
    return var_dir / "jwt_secret"


def with_local_secrets(settings: Settings) -> Settings:
    """``settings`` with what ``audiojobs up`` keeps in ``var/`` filled in where the environment left
    it empty: the API key, the JWT secret and the embedded Redis's URL. Reads only; creates nothing.
    For entry points (the WSGI module), never for ``create_app``."""
    var = settings.var_path
    return dataclasses.replace(
        settings,
        api_key=settings.api_key or read_secret(api_key_path(var)),
        jwt_secret=settings.jwt_secret or read_secret(jwt_secret_path(var)),
        redis_url=settings.redis_url or read_secret(url_file(var)))
