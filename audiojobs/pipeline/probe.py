"""Media validation before audio_convert: container, codecs, duration, and a first decoded second.

Uses PyAV (FFmpeg's libraries in-process), so nothing is spawned and nothing is written. A file
that is not media, has no audio stream, does not decode, or announces an absurd or over-limit
duration fails the job with ``invalid_media`` and a message a user can act on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audiojobs.errors import InvalidMedia

# Enough to find the streams of any sane file; a file that needs more is not worth decoding.
PROBE_OPTIONS = {"probesize": str(20 * 1024 * 1024), "analyzeduration": str(30 * 1000 * 1000)}
MAX_STREAMS = 64


@dataclass(frozen=True)
class MediaInfo:
    container: str
    audio_codec: str
    duration: float | None  # seconds, when the container says
    sample_rate: int
    channels: int
    has_video: bool

    def to_dict(self) -> dict[str, object]:
        return {"container": self.container, "audio_codec": self.audio_codec, "duration": self.duration,
                "sample_rate": self.sample_rate, "channels": self.channels, "has_video": self.has_video}


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} minutes"


def probe(path: Path, max_duration: int) -> MediaInfo:
    """What ``path`` holds, or InvalidMedia saying why it cannot be transcribed."""
    import av  # worker only

    try:
        container = av.open(str(path), options=PROBE_OPTIONS)
    except (av.FFmpegError, UnicodeDecodeError, ValueError):
        raise InvalidMedia("the file is not audio or video in a format this server can read") from None
    with container:
        streams = list(container.streams)
        if len(streams) > MAX_STREAMS:
            raise InvalidMedia(f"the file has {len(streams)} streams; at most {MAX_STREAMS} are accepted")
        audio = [s for s in streams if s.type == "audio"]
        has_video = any(s.type == "video" for s in streams)
        if not audio:
            raise InvalidMedia("the file has no audio stream" + (" (it is video only)" if has_video else ""))
        stream = audio[0]
        ctx: Any = stream.codec_context
        if ctx is None or not ctx.name:
            raise InvalidMedia("the audio stream uses a codec this server cannot decode")
        duration = _duration(container, stream)
        if duration is not None and duration > max_duration:
            raise InvalidMedia(f"the media is {_minutes(duration)} long; the limit is {_minutes(max_duration)}")
        sample_rate = int(ctx.sample_rate or 0)
        if not 1000 <= sample_rate <= 768000:
            raise InvalidMedia(f"the audio stream has an unusable sample rate ({sample_rate} Hz)")
        decoded = _decode_first_second(container, stream, sample_rate)
        if decoded == 0:
            raise InvalidMedia("the audio stream contains no decodable sound")
        return MediaInfo(container=container.format.name, audio_codec=ctx.name, duration=duration,
                         sample_rate=sample_rate, channels=int(ctx.channels or 0), has_video=has_video)


def _duration(container: object, stream: object) -> float | None:
    raw = getattr(container, "duration", None)
    seconds: float | None = raw / 1_000_000 if raw else None
    if seconds is None and getattr(stream, "duration", None) and getattr(stream, "time_base", None):
        seconds = float(stream.duration * stream.time_base)  # type: ignore[attr-defined]
    if seconds is not None and (math.isnan(seconds) or seconds < 0):
        raise InvalidMedia("the file announces an impossible duration")
    return seconds


def _decode_first_second(container: object, stream: object, sample_rate: int) -> int:
    import av

    samples = 0
    frames = 0
    try:
        for frame in container.decode(stream):  # type: ignore[attr-defined]
            samples += frame.samples
            frames += 1
            if samples >= sample_rate or frames >= 200:
                break
    except (av.FFmpegError, ValueError, MemoryError):
        if samples == 0:
            raise InvalidMedia("the audio stream is corrupt and cannot be decoded") from None
    return samples
