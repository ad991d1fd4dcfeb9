"""Checks on where a job's media comes from; the API runs them at submit, the worker again.

``local_path`` must be absolute and, once symlinks and ``..`` are resolved, inside one of the
configured roots. The roots are checked before the file's existence, so nobody can probe for
files outside them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlsplit

from audiojobs.errors import ValidationError

ALLOWED_URL_SCHEMES = frozenset({"http", "https"})
MAX_URL_LENGTH = 2048


def check_local_path(raw: str, roots: Iterable[Path]) -> Path:
    """The resolved path of a readable regular file inside ``roots``; ValidationError otherwise."""
    roots = tuple(roots)
    if "\x00" in raw:
        raise ValidationError("local_path contains a NUL byte", code="invalid_local_path", field="local_path")
    if not os.path.isabs(raw):
        raise ValidationError("local_path must be an absolute path", code="local_path_not_absolute",
                              field="local_path")
    if not roots:
        raise ValidationError("local_path is disabled on this server (AUDIO_LOCAL_ROOTS is empty)",
                              code="local_path_forbidden", field="local_path")
    resolved = Path(os.path.realpath(raw))
    if not any(resolved == root or resolved.is_relative_to(root) for root in roots):
        raise ValidationError("local_path is outside the directories this server may read",
                              code="local_path_forbidden", field="local_path")
    if not resolved.exists():
        raise ValidationError("local_path does not exist", code="local_path_not_found", field="local_path")
    if not resolved.is_file():
        raise ValidationError("local_path is not a regular file", code="local_path_not_a_file", field="local_path")
    if not os.access(resolved, os.R_OK):
        raise ValidationError("local_path is not readable by the server", code="local_path_unreadable",
                              field="local_path")
    return resolved


def check_url(raw: str) -> str:
    """``raw`` if it is an http(s) URL with a host; ValidationError otherwise."""
    if len(raw) > MAX_URL_LENGTH:
        raise ValidationError(f"url is longer than {MAX_URL_LENGTH} characters", code="invalid_url", field="url")
    if any(ch.isspace() or ord(ch) < 32 for ch in raw):
        raise ValidationError("url contains whitespace or control characters", code="invalid_url", field="url")
    try:
        parts = urlsplit(raw)
        hostname = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        raise ValidationError("url is not a valid URL", code="invalid_url", field="url") from None
    if parts.scheme.lower() not in ALLOWED_URL_SCHEMES:
        raise ValidationError("url must use http or https", code="unsupported_url_scheme", field="url")
    if not hostname:
        raise ValidationError("url has no host", code="invalid_url", field="url")
    return raw
