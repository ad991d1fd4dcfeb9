"""audio_download: bring the job's media into its own work directory.

``local_path``: checked again (the file may have moved since submit), opened without following
symlinks and copied. ``url``: fetched with yt-dlp, whose generic extractor also takes direct
media links; audio-only where the site offers it.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

from audiojobs.db import session_scope
from audiojobs.errors import (
    DownloadFailed,
    FileTooLarge,
    ForbiddenSource,
    SourceNotFound,
    TransientStageError,
    ValidationError,
)
from audiojobs.pipeline.context import SOURCE_STEM, Outcome, StageContext
from audiojobs.quotas.limits import limits_for
from audiojobs.sources import check_local_path, check_url

log = logging.getLogger(__name__)


def run(ctx: StageContext) -> Outcome:
    job_dir = ctx.ensure_job_dir()
    for stale in job_dir.glob(f"{SOURCE_STEM}.*"):  # a re-run starts clean
        stale.unlink()
    with session_scope(ctx.settings.effective_database_url) as session:
        limits = limits_for(session, ctx.settings, ctx.attempt.owner_user_id)
    if ctx.payload.get("local_path"):
        copy_local(ctx.payload["local_path"], ctx, limits.max_file_bytes)
    else:
        fetch_url(ctx.payload["url"], ctx, limits.max_file_bytes)
    return Outcome.DONE


def _too_large(max_bytes: int) -> FileTooLarge:
    return FileTooLarge(f"the file is larger than your tier's {max_bytes / 1024 / 1024:g} MB")


def copy_local(raw_path: str, ctx: StageContext, max_bytes: int) -> Path:
    try:
        source = check_local_path(raw_path, ctx.settings.resolved_local_roots)
    except ValidationError as exc:
        if exc.code == "local_path_not_found":
            raise SourceNotFound("the local file no longer exists") from None
        raise ForbiddenSource(exc.message, code="forbidden_path") from None
    name = f"{SOURCE_STEM}{source.suffix.lower()[:16]}"
    scratch = ctx.scratch(name)
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(source, flags)
    except FileNotFoundError:
        raise SourceNotFound("the local file no longer exists") from None
    except OSError as exc:
        raise ForbiddenSource(f"the local file cannot be opened ({exc.strerror})", code="forbidden_path") from None
    with os.fdopen(fd, "rb") as src:
        if os.fstat(src.fileno()).st_size > max_bytes:
            raise _too_large(max_bytes)
        copied = 0
        with open(scratch, "wb") as dst:
            while block := src.read(1024 * 1024):
                copied += len(block)
                if copied > max_bytes:  # the file grew after the check
                    dst.close()
                    scratch.unlink(missing_ok=True)
                    raise _too_large(max_bytes)
                dst.write(block)
                ctx.check_stopped()
    return scratch.replace(ctx.path(name))


class _YtDlpLogger:
    """Send yt-dlp's chatter to our log instead of the worker's stdout."""

    def debug(self, msg: str) -> None:
        log.debug("yt-dlp: %s", msg)

    def info(self, msg: str) -> None:
        log.debug("yt-dlp: %s", msg)

    def warning(self, msg: str) -> None:
        log.info("yt-dlp: %s", msg)

    def error(self, msg: str) -> None:
        log.info("yt-dlp: %s", msg)


def fetch_url(url: str, ctx: StageContext, max_bytes: int) -> Path:
    try:
        check_url(url)
    except ValidationError as exc:
        raise ForbiddenSource(exc.message) from None
    import yt_dlp  # heavy: imported in workers only

    download_dir = ctx.scratch("download")  # private to this attempt; moved into place at the end
    options: dict[str, Any] = {
        "outtmpl": {"default": str(download_dir / f"{SOURCE_STEM}.%(ext)s")},
        "progress_hooks": [lambda progress: _on_progress(progress, ctx, max_bytes)],
        "format": "bestaudio/best",
        "noplaylist": True,
        "playlist_items": "1",
        "quiet": True,
        "no_warnings": True,
        "noprogress": True,
        "logger": _YtDlpLogger(),
        "socket_timeout": ctx.settings.download_timeout,
        "retries": 2,
        "fragment_retries": 2,
        "overwrites": True,
        "cachedir": False,
        "restrictfilenames": True,
    }
    try:
        with yt_dlp.YoutubeDL(options) as ydl:
            info = ydl.extract_info(url, download=True)
        downloads = (info or {}).get("requested_downloads") or []
        paths = [Path(d["filepath"]) for d in downloads if d.get("filepath")]
        if not paths or not paths[0].is_file():
            raise DownloadFailed("the URL yielded no media file")
        return paths[0].replace(ctx.path(paths[0].name))
    except yt_dlp.utils.DownloadError as exc:
        raise _classify_download_error(str(exc)) from None
    finally:
        shutil.rmtree(download_dir, ignore_errors=True)


def _on_progress(progress: dict[str, Any], ctx: StageContext, max_bytes: int) -> None:
    """Stop when the job was cancelled, or when a download of unannounced size grows too large."""
    ctx.check_stopped()
    if (progress.get("downloaded_bytes") or 0) > max_bytes:
        raise _too_large(max_bytes)


def _classify_download_error(message: str) -> Exception:
    text = message.removeprefix("ERROR: ").strip()
    lowered = text.lower()
    if "http error 404" in lowered or "http error 410" in lowered:
        return SourceNotFound(f"the URL was not found: {text}")
    if any(s in lowered for s in ("http error 5", "timed out", "temporary failure", "connection reset",
                                  "connection refused", "remote end closed")):
        return TransientStageError(f"download failed, will retry: {text}")
    if "unsupported url" in lowered:
        return DownloadFailed(f"no audio or video found at the URL: {text}")
    return DownloadFailed(f"download failed: {text}")
