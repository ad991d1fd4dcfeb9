"""The ``local_path`` sandbox: which server files a user's job may read, and opening them safely.

At submit the API resolves the path (symlinks, ``..``) and requires it to lie inside one of the
caller's roots: ``AUDIO_LOCAL_ROOTS``, and in multi-user mode ``<root>/<user_id>/`` for a user who is
not an admin. The roots are checked before the file's existence, so nobody can probe for files
outside them. The job remembers the root and the file's identity (device, inode and change time).

The worker opens the file again one path component at a time below that root, never following a
symlink, and checks it is still the same regular file: a path swapped after submit (a symlink
planted, the file replaced) fails the job with ``forbidden_path`` instead of reading elsewhere.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from audiojobs.config import Settings
from audiojobs.errors import ValidationError


@dataclass(frozen=True)
class LocalFile:
    path: Path  # resolved
    root: Path  # the root it was found under
    identity: str  # see identity_of
    size: int


def roots_for(settings: Settings, user_id: str, is_admin: bool) -> tuple[Path, ...]:
    """The directories ``user_id``'s ``local_path`` may point into."""
    roots = settings.resolved_local_roots
    if settings.auth_mode == "multi_user" and not is_admin:
        return tuple(root / user_id for root in roots)
    return roots


def _invalid(message: str, code: str) -> ValidationError:
    return ValidationError(message, code=code, field="local_path")


def check_local_path(raw: str, roots: Iterable[Path]) -> LocalFile:
    """The file ``raw`` names when it is a readable, non-empty regular file inside ``roots``."""
    roots = tuple(roots)
    if "\x00" in raw:
        raise _invalid("local_path contains a NUL byte", "invalid_local_path")
    if len(raw) > 4096:
        raise _invalid("local_path is longer than 4096 characters", "invalid_local_path")
    if not os.path.isabs(raw):
        raise _invalid("local_path must be an absolute path", "local_path_not_absolute")
    if not roots:
        raise _invalid("local_path is disabled on this server (AUDIO_LOCAL_ROOTS is empty)", "local_path_forbidden")
    resolved = Path(os.path.realpath(raw))
    root = next((r for r in roots if resolved == r or resolved.is_relative_to(r)), None)
    if root is None:
        raise _invalid("local_path is outside the directories you may read", "local_path_forbidden")
    try:
        info = os.stat(resolved)  # stat, not open: a FIFO must not block us
    except FileNotFoundError:
        raise _invalid("local_path does not exist", "local_path_not_found") from None
    except OSError:
        raise _invalid("local_path cannot be read by the server", "local_path_unreadable") from None
    if not stat.S_ISREG(info.st_mode):
        raise _invalid("local_path is not a regular file (a directory, device, FIFO or socket)",
                       "local_path_not_a_file")
    if not os.access(resolved, os.R_OK):
        raise _invalid("local_path is not readable by the server", "local_path_unreadable")
    if info.st_size == 0:
        raise _invalid("local_path is an empty file", "local_path_empty")
    return LocalFile(resolved, root, identity_of(info), info.st_size)


def identity_of(info: os.stat_result) -> str:
    """Which file this is and which version of it: a file replaced or changed since has another."""
    return f"{info.st_dev}:{info.st_ino}:{info.st_ctime_ns}"


class Swapped(Exception):
    """The file at the path is no longer the one checked at submit."""


def open_checked(path: Path, root: Path, identity: str | None) -> int:
    """A read-only descriptor of ``path`` opened below ``root`` without following any symlink.

    Raises FileNotFoundError when it is gone, Swapped when a component became a symlink or the
    file is not the one with ``identity`` any more.
    """
    relative = path.relative_to(root)
    nofollow = os.O_NOFOLLOW
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in relative.parts[:-1]:
            try:
                next_fd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | nofollow, dir_fd=fd)
            except NotADirectoryError:
                raise Swapped(f"{part} is no longer a directory") from None
            except OSError as exc:
                if exc.errno == errno.ELOOP:  # a symlink where a directory was
                    raise Swapped(f"{part} became a symlink") from None
                raise
            os.close(fd)
            fd = next_fd
        try:
            file_fd = os.open(relative.parts[-1], os.O_RDONLY | nofollow | os.O_NONBLOCK, dir_fd=fd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise Swapped("the file became a symlink") from None
            raise
    finally:
        os.close(fd)
    info = os.fstat(file_fd)
    if not stat.S_ISREG(info.st_mode) or (identity is not None and identity_of(info) != identity):
        os.close(file_fd)
        raise Swapped("the file was replaced after the job was submitted")
    os.set_blocking(file_fd, True)
    return file_fd
