"""audio_download against hostile URLs and misbehaving servers: real yt-dlp, real sockets.

Every request goes through the guarded egress proxy; a canary server on loopback, whose port is
allowed, proves no refused URL (nor any redirect) ever reached it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from audiojobs.config import Settings
from audiojobs.db import utcnow
from audiojobs.errors import DownloadFailed, ForbiddenSource, InvalidMedia, SourceTooLarge, StageError
from audiojobs.jobs.attempts import Attempt
from audiojobs.jobs.states import Stage
from audiojobs.pipeline import download
from audiojobs.pipeline.context import StageContext
from audiojobs.pipeline.guard import AttemptGuard
from audiojobs.pipeline.probe import probe
from tests.hostile import HOSTILE_URLS, machine_name_is_local
from tests.media import corrupt_file, jfk_as, video_with_jfk, video_without_audio
from tests.services import JFK_FLAC, MediaServer


@pytest.fixture(autouse=True)
def _database(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", sqlite_url)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[MediaServer]:
    root = tmp_path / "site"
    root.mkdir()
    shutil.copy(JFK_FLAC, root / "jfk.flac")
    jfk_as(root / "jfk.mp3", "-c:a", "libmp3lame", "-b:a", "64k")
    video_with_jfk(root / "talk.webm")
    (root / "empty.mp3").touch()
    server = MediaServer(root)
    yield server
    server.stop()


def _ctx(tmp_path: Path, url: str, **env: str) -> StageContext:
    settings = Settings.from_env({"AUDIO_WORK_DIR": str(tmp_path / "work"), "AUDIO_DOWNLOAD_TIMEOUT": "2",
                                  "DATABASE_URL": os.environ["DATABASE_URL"], **env})
    attempt = Attempt(job_id=7, stage=Stage.DOWNLOAD, run_id=1, attempt=1, fence=1, dispatch=1, payload={"url": url},
                      started_at=utcnow(), job_uuid="00000000-0000-4000-8000-000000000007")
    return StageContext(settings=settings, attempt=attempt, guard=AttemptGuard(settings, attempt))


def _stored(ctx: StageContext) -> Path:
    """The media the stage stored as the job's source (the file store keeps it on this disk)."""
    path = ctx.store.local_path(ctx.outputs["source"])
    assert path is not None
    return path


def _leftovers(tmp_path: Path) -> list[str]:
    """Files in the job's scratch directory and objects in the store."""
    ctx = _ctx(tmp_path, "")
    scratch = sorted(p.name for p in ctx.job_dir.rglob("*") if p.is_file()) if ctx.job_dir.exists() else []
    return scratch + [key.rsplit("/", 1)[1] for key, _when in ctx.store.list_objects("jobs/")]


def test_every_hostile_url_is_refused_by_the_worker(tmp_path: Path, site: MediaServer, canary: MediaServer) -> None:
    """The worker re-checks everything (a job may predate a settings change) and judges what only it can
    see: DNS answers and redirects."""
    env = {"AUDIO_URL_ALLOW_HOSTS": site.allow_entry, "AUDIO_URL_ALLOW_PORTS": f"80,443,{canary.port}",
           "AUDIO_URL_DENY_HOSTS": "blocked.example.com"}
    refused = 0
    for case in HOSTILE_URLS:
        if case.template.startswith("http://{hostname}") and not machine_name_is_local():
            continue
        url = case.url(canary.port, site.allow_entry)
        with pytest.raises(ForbiddenSource) as info:
            download.run(_ctx(tmp_path, url, **env))
        assert info.value.code == "forbidden_url", (case.why, info.value)
        assert "Traceback" not in info.value.message
        assert _leftovers(tmp_path) == [], case.why
        refused += 1
    # The allowed server saw only the redirects it was asked for; nothing reached the canary.
    assert all(name == "redirect" for name in site.requests), site.requests
    assert refused == len(HOSTILE_URLS) or refused == len(HOSTILE_URLS) - 1
    print(f"\nhostile URLs refused by the worker: {refused} (of {len(HOSTILE_URLS)} in the table)")


def test_a_refused_redirect_names_the_reason(tmp_path: Path, site: MediaServer, canary: MediaServer) -> None:
    url = site.url(f"redirect?to=http://127.0.0.1:{canary.port}/a.mp3")
    with pytest.raises(ForbiddenSource) as info:
        download.run(_ctx(tmp_path, url, AUDIO_URL_ALLOW_HOSTS=site.allow_entry,
                          AUDIO_URL_ALLOW_PORTS=f"80,443,{canary.port}"))
    assert "loopback" in info.value.message


def test_direct_mp3_is_downloaded(tmp_path: Path, site: MediaServer) -> None:
    ctx = _ctx(tmp_path, site.url("jfk.mp3"), AUDIO_URL_ALLOW_HOSTS=site.allow_entry)
    download.run(ctx)
    assert _stored(ctx).name == "source.mp3"
    info = probe(_stored(ctx), 3600)
    assert info.audio_codec.startswith("mp3") and not info.has_video and info.duration == pytest.approx(11, abs=0.3)


def test_webm_video_keeps_its_audio_track(tmp_path: Path, site: MediaServer) -> None:
    ctx = _ctx(tmp_path, site.url("talk.webm"), AUDIO_URL_ALLOW_HOSTS=site.allow_entry)
    download.run(ctx)
    info = probe(_stored(ctx), 3600)
    assert info.has_video and info.audio_codec == "vorbis"
    from audiojobs.pipeline.convert import to_wav

    assert to_wav(_stored(ctx), tmp_path / "out.wav", ctx.settings) == pytest.approx(11, abs=0.3)


def test_server_lying_about_content_length_fails_cleanly(tmp_path: Path, site: MediaServer) -> None:
    with pytest.raises(StageError) as info:
        download.run(_ctx(tmp_path, site.url("lying/jfk.flac"), AUDIO_URL_ALLOW_HOSTS=site.allow_entry))
    assert info.value.code in {"download_failed", "transient_error"}
    assert _leftovers(tmp_path) == []


def test_endless_stream_is_cut_off_at_the_tier_limit(tmp_path: Path, site: MediaServer) -> None:
    with pytest.raises(SourceTooLarge):
        download.run(_ctx(tmp_path, site.url("forever.mp3"), AUDIO_URL_ALLOW_HOSTS=site.allow_entry,
                          AUDIO_TIER_LIMITS_JSON='{"free": {"max_file_mb": 2}}'))
    # Cut off, not read for the minute it would stream (GBs on loopback); socket buffers hold a few MB.
    assert site.bytes_streamed < 64 * 1024 * 1024
    assert _leftovers(tmp_path) == []


def test_endless_stream_is_cut_off_at_the_time_limit(tmp_path: Path, site: MediaServer) -> None:
    with pytest.raises(DownloadFailed) as info:
        download.run(_ctx(tmp_path, site.url("forever.mp3"), AUDIO_URL_ALLOW_HOSTS=site.allow_entry,
                          AUDIO_DOWNLOAD_MAX_SECONDS="2", AUDIO_TIER_LIMITS_JSON='{"free": {"max_file_mb": 100000}}'))
    assert info.value.code == "download_timeout"
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("name", ["slow.mp3", "silent.mp3"])
def test_a_server_that_stops_answering_is_a_download_timeout(tmp_path: Path, site: MediaServer, name: str) -> None:
    """Headers then silence, or no answer at all: download_timeout, retried like a network blip."""
    with pytest.raises(StageError) as info:
        download.run(_ctx(tmp_path, site.url(name), AUDIO_URL_ALLOW_HOSTS=site.allow_entry))
    assert (info.value.code, info.value.transient) == ("download_timeout", True)
    assert "did not answer within 2 s (AUDIO_DOWNLOAD_TIMEOUT)" in info.value.message
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("target", ["file:///etc/passwd", "gopher://127.0.0.1:70/_x", "ftp://127.0.0.1/a.mp3"])
def test_a_redirect_to_another_scheme_is_forbidden(tmp_path: Path, site: MediaServer, target: str) -> None:
    with pytest.raises(ForbiddenSource) as info:
        download.run(_ctx(tmp_path, site.url(f"redirect?to={target}"), AUDIO_URL_ALLOW_HOSTS=site.allow_entry))
    assert info.value.code == "forbidden_url" and "redirected" in info.value.message
    assert _leftovers(tmp_path) == []


def test_404_and_empty_files(tmp_path: Path, site: MediaServer) -> None:
    with pytest.raises(StageError) as info:
        download.run(_ctx(tmp_path, site.url("missing.mp3"), AUDIO_URL_ALLOW_HOSTS=site.allow_entry))
    assert info.value.code == "source_not_found"
    with pytest.raises(InvalidMedia):
        download.run(_ctx(tmp_path, site.url("empty.mp3"), AUDIO_URL_ALLOW_HOSTS=site.allow_entry))
    assert _leftovers(tmp_path) == []


# --- media validation -------------------------------------------------------------------------
def _absurd_flac(target: Path) -> Path:
    """jfk.flac whose STREAMINFO claims 2**36-1 samples: 433 hours at 44.1 kHz in a 1 MB file."""
    data = bytearray(JFK_FLAC.read_bytes())
    assert data[:4] == b"fLaC" and data[4] & 0x7F == 0  # the first metadata block is STREAMINFO
    packed = int.from_bytes(data[18:26], "big")  # 20 bits rate, 3 channels, 5 bits per sample, 36 samples
    data[18:26] = (packed | (2**36 - 1)).to_bytes(8, "big")
    target.write_bytes(bytes(data))
    return target


def test_probe_refuses_what_cannot_be_transcribed(tmp_path: Path) -> None:
    cases = [
        (corrupt_file(tmp_path / "garbage.mp3"), 3600, "not audio or video"),
        (video_without_audio(tmp_path / "silent.webm"), 3600, "no audio stream (it is video only)"),
        (_absurd_flac(tmp_path / "absurd.flac"), 14400, "long; the limit is"),
        (jfk_as(tmp_path / "long.flac"), 5, "long; the limit is"),
        (Path(shutil.copy(JFK_FLAC, tmp_path / "cut.flac")), 3600, None),
    ]
    truncated = tmp_path / "cut.flac"
    truncated.write_bytes(JFK_FLAC.read_bytes()[:200])  # the header and no frames
    cases[-1] = (truncated, 3600, "")
    for path, limit, expected in cases:
        with pytest.raises(InvalidMedia) as info:
            probe(path, limit)
        assert info.value.code == "invalid_media"
        assert expected is None or expected in info.value.message, (path.name, info.value.message)
        assert str(tmp_path) not in info.value.message
    assert probe(JFK_FLAC, 3600).duration == pytest.approx(11.0, abs=0.05)
