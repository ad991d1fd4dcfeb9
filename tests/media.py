"""Make test media from the shared fixtures with a real ffmpeg."""

from __future__ import annotations

import subprocess
from pathlib import Path

from audiojobs.config import Settings
from audiojobs.pipeline.convert import ffmpeg_binary
from tests.services import JFK_FLAC


def ffmpeg(*args: str) -> None:
    subprocess.run([ffmpeg_binary(Settings.from_env({})), "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
                    *args], check=True)


def jfk_as(target: Path, *extra: str) -> Path:
    ffmpeg("-i", str(JFK_FLAC), *extra, str(target))
    return target


def video_with_jfk(target: Path) -> Path:
    ffmpeg("-f", "lavfi", "-i", "color=c=blue:s=160x120:d=11", "-i", str(JFK_FLAC), "-shortest",
           "-c:v", "libvpx", "-c:a", "libvorbis", str(target))
    return target


def video_without_audio(target: Path) -> Path:
    ffmpeg("-f", "lavfi", "-i", "color=c=red:s=64x64:d=2", "-c:v", "libvpx", str(target))
    return target


def corrupt_file(target: Path) -> Path:
    target.write_bytes(b"\x00\x01garbage, not audio" * 512)
    return target


def jfk_repeated(target: Path, times: int) -> Path:
    """jfk.flac played ``times`` times in a row (11 s each): long enough to catch a stage mid-way."""
    ffmpeg("-stream_loop", str(times - 1), "-i", str(JFK_FLAC), "-c:a", "flac", str(target))
    return target
