"""Secrets ``scripts/run-local`` generates once and keeps under ``var/`` (mode 0600)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


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
