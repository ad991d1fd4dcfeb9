"""audio_download: bring the job's media into the object store.

``local_path``: checked again (the file may have moved since submit), opened without following
symlinks and copied. ``url``: fetched with yt-dlp, whose generic extractor also takes direct
media links; audio-only where the site offers it.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any

from audiojobs.config import Settings
from audiojobs.db import session_scope
from audiojobs.errors import (
    ArtifactMissing,
    DownloadFailed,
    ForbiddenSource,
    InvalidMedia,
    SourceNotFound,
    SourceTooLarge,
    TransientStageError,
)
from audiojobs.net.egress import EgressProxy
from audiojobs.net.urlguard import Refused, UrlPolicy
from audiojobs.pipeline.context import Outcome, StageContext
from audiojobs.quotas.limits import limits_for
from audiojobs.sources import Swapped, open_checked
from audiojobs.storage import SOURCE_STEM

log = logging.getLogger(__name__)
NO_ADAPTER = re.compile(r"No connection adapters were found for '([^']+)'")


def run(ctx: StageContext) -> Outcome:
    if ctx.payload.get("upload"):
        if not ctx.has(SOURCE_STEM):  # the API stored the upload before the job was queued
            raise ArtifactMissing("the uploaded file is missing from the object store")
        return Outcome.DONE
    job_dir = ctx.ensure_job_dir()
    for stale in job_dir.glob(f"{SOURCE_STEM}.*"):  # a re-run starts clean
        stale.unlink()
    with session_scope(ctx.settings.effective_database_url) as session:
        limits = limits_for(session, ctx.settings, ctx.attempt.owner_user_id)
    if ctx.payload.get("local_path"):
        media = copy_local(ctx.payload, ctx, limits.max_file_bytes)
    else:
        media = fetch_url(ctx.payload["url"], ctx, limits.max_file_bytes)
    ctx.check_stopped()
    ctx.publish(SOURCE_STEM, media)
    return Outcome.DONE


def _too_large(max_bytes: int) -> SourceTooLarge:
    return SourceTooLarge(f"the file is larger than your tier's {max_bytes / 1024 / 1024:g} MB")


def _forbidden_path(message: str) -> ForbiddenSource:
    return ForbiddenSource(message, code="forbidden_path")


def copy_local(payload: dict[str, Any], ctx: StageContext, max_bytes: int) -> Path:
    """Copy the submitted file into the job's work dir, opened below its root without following symlinks."""
    source = Path(payload["local_path"])
    configured = ctx.settings.resolved_local_roots
    root = Path(payload.get("_local_root") or next((r for r in configured if source.is_relative_to(r)), "/"))
    if not any(root == r or root.is_relative_to(r) for r in configured) or not source.is_relative_to(root):
        raise _forbidden_path("local_path is no longer inside the directories this server may read")
    name = f"{SOURCE_STEM}{source.suffix.lower()[:16]}"
    scratch = ctx.scratch(name)
    try:
        fd = open_checked(source, root, payload.get("_local_file_id"))
    except FileNotFoundError:
        raise SourceNotFound("the local file no longer exists") from None
    except Swapped as exc:
        raise _forbidden_path(f"the local file was changed after submit ({exc}); it was not read") from None
    except OSError as exc:
        raise _forbidden_path(f"the local file cannot be opened ({exc.strerror})") from None
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
    """Download ``url`` with yt-dlp, every request through the guarded egress proxy."""
    policy = UrlPolicy.from_settings(ctx.settings)
    try:
        policy.check_url(url)
    except Refused as refusal:
        raise ForbiddenSource(refusal.message) from None
    import yt_dlp  # heavy: imported in workers only

    settings = ctx.settings
    download_dir = ctx.scratch("download")  # private to this attempt; moved into place at the end
    too_long: list[str] = []
    with EgressProxy(policy, connect_timeout=settings.download_timeout,
                     deadline_seconds=settings.download_max_seconds,
                     max_bytes=max_bytes + 1024 * 1024) as proxy:
        options: dict[str, Any] = {
            "proxy": proxy.url,
            "outtmpl": {"default": str(download_dir / f"{SOURCE_STEM}.%(ext)s")},
            "progress_hooks": [lambda progress: _on_progress(progress, ctx, max_bytes, proxy)],
            "match_filter": lambda info, *_a, **_k: _check_duration(info, settings.max_duration, too_long),
            "format": "bestaudio/best",
            "noplaylist": True,
            "playlist_items": "1",
            "quiet": True,
            "no_warnings": True,
            "noprogress": True,
            "logger": _YtDlpLogger(),
            "socket_timeout": settings.download_timeout,
            "retries": 1,
            "fragment_retries": 1,
            "extractor_retries": 0,
            "overwrites": True,
            "cachedir": False,
            "restrictfilenames": True,
            # Downloaders that run their own network code (ffmpeg, aria2c) would bypass the proxy.
            "external_downloader": {"default": "native"},
            "hls_prefer_native": True,
        }
        try:
            with yt_dlp.YoutubeDL(options) as ydl:
                info = ydl.extract_info(url, download=True)
            if too_long:
                raise InvalidMedia(too_long[0])
            if proxy.cut_off:  # a stream with no length that the proxy cut looks complete to yt-dlp
                raise _explain_failure("", proxy, max_bytes, settings, policy)
            downloads = (info or {}).get("requested_downloads") or []
            paths = [Path(d["filepath"]) for d in downloads if d.get("filepath")]
            if not paths or not paths[0].is_file():
                raise DownloadFailed("the URL yielded no media file")
            if paths[0].stat().st_size == 0:
                raise InvalidMedia("the URL served an empty file")
            if paths[0].stat().st_size > max_bytes:
                raise _too_large(max_bytes)
            return paths[0].replace(ctx.path(paths[0].name))
        except yt_dlp.utils.YoutubeDLError as exc:  # DownloadError, and RequestError (a redirect to file:)
            raise _explain_failure(str(exc), proxy, max_bytes, settings, policy) from None
        finally:
            shutil.rmtree(download_dir, ignore_errors=True)


def _check_duration(info: dict[str, Any], max_duration: int, too_long: list[str]) -> str | None:
    """yt-dlp's match filter: skip media whose announced duration is over the limit."""
    duration = info.get("duration")
    if isinstance(duration, (int, float)) and duration > max_duration:
        too_long.append(f"the media is {duration / 60:.1f} minutes long; the limit is {max_duration / 60:g} minutes")
        return too_long[-1]
    return None


def _on_progress(progress: dict[str, Any], ctx: StageContext, max_bytes: int, proxy: EgressProxy) -> None:
    """Stop when the job was cancelled, when the download grows too large or takes too long."""
    ctx.check_stopped()
    done = progress.get("downloaded_bytes") or 0
    if done > max_bytes or (progress.get("total_bytes") or 0) > max_bytes:
        raise _too_large(max_bytes)
    if proxy.time_left() <= 0:
        raise DownloadFailed(f"the download took longer than {ctx.settings.download_max_seconds} s",
                             code="download_timeout")
    total = progress.get("total_bytes") or progress.get("total_bytes_estimate")
    ctx.report_progress({"downloaded_bytes": done, "total_bytes": total, "status": progress.get("status")},
                        force=progress.get("status") == "finished")


def _explain_failure(message: str, proxy: EgressProxy, max_bytes: int, settings: Settings,
                     policy: UrlPolicy) -> Exception:
    if proxy.refusals:
        first = proxy.refusals[0]
        if first.code == "host_not_found":
            return DownloadFailed(first.message, code="host_not_found")
        return ForbiddenSource(first.message)
    if proxy.cut_off == "size":
        return _too_large(max_bytes)
    if proxy.cut_off == "time":
        return DownloadFailed(f"the download took longer than {settings.download_max_seconds} s "
                              "(AUDIO_DOWNLOAD_MAX_SECONDS)", code="download_timeout")
    # A redirect to a scheme the proxy never sees (file:, gopher:, ftp:): yt-dlp has no adapter for it.
    elsewhere = NO_ADAPTER.search(message)
    if elsewhere is not None:
        try:
            policy.check_url(elsewhere.group(1))
        except Refused as refusal:
            return ForbiddenSource(f"the URL redirected to a refused target: {refusal.message}")
        return DownloadFailed(f"the URL redirected to {elsewhere.group(1).split(':', 1)[0]}:, which is not fetched")
    if "timed out" in message.lower():
        return TransientStageError(f"the server did not answer within {settings.download_timeout} s "
                                   "(AUDIO_DOWNLOAD_TIMEOUT); will retry", code="download_timeout")
    return _classify_download_error(message)


def _classify_download_error(message: str) -> Exception:
    text = message.removeprefix("ERROR: ").strip()
    lowered = text.lower()
    if "http error 404" in lowered or "http error 410" in lowered:
        return SourceNotFound(f"the URL was not found: {text}")
    if any(s in lowered for s in ("http error 5", "temporary failure", "connection reset",
                                  "connection refused", "remote end closed")):
        return TransientStageError(f"download failed, will retry: {text}")
    if "did not get any data blocks" in lowered:
        return InvalidMedia("the URL served an empty file")
    if "unsupported url" in lowered:
        return DownloadFailed(f"no audio or video found at the URL: {text}")
    return DownloadFailed(f"download failed: {text}")
