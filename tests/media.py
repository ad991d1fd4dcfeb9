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


# Tempo and pitch of each repetition in varied_speech: the same words never sound the same twice in
# a row, so Whisper does not fall into the repetition loops (and temperature fallbacks) that a plain
# loop of one clip provokes, and a long clip decodes at the pace real speech does.
_VARIATIONS = [(1.0, 1.0), (0.9, 1.06), (1.12, 0.95), (0.95, 0.92), (1.06, 1.1), (0.85, 1.0), (1.18, 1.04)]


def varied_speech(target: Path, seconds: float) -> Path:
    """About ``seconds`` of speech made from jfk.flac: repetitions at varying tempo and pitch with
    short pauses between them (jfk.flac is 11 s)."""
    count = max(1, round(seconds / 11.8))
    parts = []
    for i in range(count):
        tempo, pitch = _VARIATIONS[i % len(_VARIATIONS)]
        parts.append(f"[0:a]aresample=16000,asetrate={round(16000 * pitch)},aresample=16000,atempo={tempo / pitch:.4f},"
                     f"apad=pad_dur={0.4 + 0.3 * (i % 3):.1f}[p{i}]")
    graph = ";".join(parts) + ";" + "".join(f"[p{i}]" for i in range(count)) + f"concat=n={count}:v=0:a=1[out]"
    ffmpeg("-i", str(JFK_FLAC), "-filter_complex", graph, "-map", "[out]", "-t", str(seconds), "-ac", "1",
           "-c:a", "flac", str(target))
    return target
