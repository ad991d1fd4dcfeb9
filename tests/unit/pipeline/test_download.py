"""audio_download: local copies inside the sandbox, and real yt-dlp downloads from a loopback server."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from audiojobs.config import Settings
from audiojobs.db import utcnow
from audiojobs.errors import DownloadFailed, ForbiddenSource, SourceNotFound, SourceTooLarge
from audiojobs.jobs.attempts import Attempt
from audiojobs.jobs.states import Stage
from audiojobs.pipeline import download
from audiojobs.pipeline.context import StageContext
from audiojobs.pipeline.guard import AttemptGuard
from tests.services import JFK_FLAC, MediaServer

JOB_UUID = "00000000-0000-4000-8000-000000000007"


def stored_source(ctx: StageContext) -> Path:
    """The object the stage stored as the job's source (the file store keeps it on this disk)."""
    key = ctx.outputs["source"]
    assert key.startswith(f"jobs/{JOB_UUID}/audio_download/1/source.")
    path = ctx.store.local_path(key)
    assert path is not None
    return path


def scratch_files(ctx: StageContext) -> list[str]:
    return sorted(p.name for p in ctx.job_dir.rglob("*") if p.is_file()) if ctx.job_dir.exists() else []


@pytest.fixture
def media_server(tmp_path: Path) -> Iterator[MediaServer]:
    site = tmp_path / "site"
    site.mkdir()
    shutil.copy(JFK_FLAC, site / "jfk.flac")
    (site / "page.html").write_text("<html><body>no media here</body></html>")
    server = MediaServer(site)
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _database(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", sqlite_url)  # the stage reads the owner's tier limits


def _ctx(tmp_path: Path, payload: dict, roots: str = "", **env: str) -> StageContext:
    import os

    settings = Settings.from_env({"AUDIO_WORK_DIR": str(tmp_path / "work"), "AUDIO_LOCAL_ROOTS": roots,
                                  "AUDIO_DOWNLOAD_TIMEOUT": "5", "DATABASE_URL": os.environ["DATABASE_URL"], **env})
    attempt = Attempt(job_id=7, stage=Stage.DOWNLOAD, run_id=1, attempt=1, fence=1, dispatch=1, payload=payload,
                      started_at=utcnow(), job_uuid=JOB_UUID)
    # The guard's heartbeat thread is not started: these tests exercise the stage function alone.
    return StageContext(settings=settings, attempt=attempt, guard=AttemptGuard(settings, attempt))


def test_local_file_is_copied_into_the_store(tmp_path: Path, media_root: Path) -> None:
    ctx = _ctx(tmp_path, {"local_path": str(media_root / "jfk.flac")}, roots=str(media_root))
    download.run(ctx)
    copied = stored_source(ctx)
    assert copied.name == "source.flac" and copied.read_bytes() == JFK_FLAC.read_bytes()
    assert sorted(p.name for p in media_root.iterdir()) == ["jfk.flac"]  # nothing written next to the input
    assert scratch_files(ctx) == []  # the store is this disk: no second copy, no scratch files left


def test_local_file_swapped_for_a_symlink_after_submit_is_refused(tmp_path: Path, media_root: Path) -> None:
    (tmp_path / "secret").write_text("secret")
    os.remove(media_root / "jfk.flac")
    os.symlink(tmp_path / "secret", media_root / "jfk.flac")
    ctx = _ctx(tmp_path, {"local_path": str(media_root / "jfk.flac")}, roots=str(media_root))
    with pytest.raises(ForbiddenSource):
        download.run(ctx)


def test_local_file_gone_is_not_found(tmp_path: Path, media_root: Path) -> None:
    ctx = _ctx(tmp_path, {"local_path": str(media_root / "gone.flac")}, roots=str(media_root))
    with pytest.raises(SourceNotFound):
        download.run(ctx)


def test_direct_media_url_is_downloaded_with_yt_dlp(tmp_path: Path, media_server: MediaServer) -> None:
    ctx = _ctx(tmp_path, {"url": media_server.url("jfk.flac")}, AUDIO_URL_ALLOW_HOSTS=media_server.allow_entry)
    download.run(ctx)
    assert stored_source(ctx).read_bytes() == JFK_FLAC.read_bytes()
    assert scratch_files(ctx) == []  # the attempt's download dir is gone


def test_missing_url_is_not_found(tmp_path: Path, media_server: MediaServer) -> None:
    with pytest.raises(SourceNotFound):
        download.run(_ctx(tmp_path, {"url": media_server.url("nope.mp3")},
                          AUDIO_URL_ALLOW_HOSTS=media_server.allow_entry))


def test_page_without_media_fails_clearly(tmp_path: Path, media_server: MediaServer) -> None:
    with pytest.raises(DownloadFailed) as info:
        download.run(_ctx(tmp_path, {"url": media_server.url("page.html")},
                          AUDIO_URL_ALLOW_HOSTS=media_server.allow_entry))
    assert info.value.code == "download_failed"


def test_non_http_url_is_refused_even_in_the_worker(tmp_path: Path) -> None:
    with pytest.raises(ForbiddenSource):
        download.run(_ctx(tmp_path, {"url": "file:///etc/passwd"}))


def test_files_over_the_tier_limit_are_refused(tmp_path: Path, media_root: Path, media_server: MediaServer) -> None:
    tiny = '{"free": {"max_file_mb": 0.5}}'  # jfk.flac is 1.1 MB; the owner "" gets the default tier
    with pytest.raises(SourceTooLarge):
        download.run(_ctx(tmp_path, {"local_path": str(media_root / "jfk.flac")}, roots=str(media_root),
                          AUDIO_TIER_LIMITS_JSON=tiny))
    with pytest.raises(SourceTooLarge):
        download.run(_ctx(tmp_path, {"url": media_server.url("jfk.flac")}, AUDIO_TIER_LIMITS_JSON=tiny,
                          AUDIO_URL_ALLOW_HOSTS=media_server.allow_entry))
    assert scratch_files(_ctx(tmp_path, {})) == []
    assert list(_ctx(tmp_path, {}).store.list_objects("jobs/")) == []  # nothing stored
