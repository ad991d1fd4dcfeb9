"""audio_convert: ffmpeg turns any audio or video into 16 kHz mono 16-bit WAV; records the duration.
A multichannel job also gets every channel, 16 kHz 16-bit, in ``channels.wav``."""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import subprocess
import tempfile
import time
import wave
from collections.abc import Callable, Iterator
from pathlib import Path

from audiojobs import metrics
from audiojobs.config import Settings
from audiojobs.db import session_scope
from audiojobs.errors import InvalidMedia, QuotaExceeded, StageError
from audiojobs.jobs import service
from audiojobs.pipeline.context import CHANNELS_NAME, WAV_NAME, Outcome, StageContext
from audiojobs.pipeline.guard import AttemptStopped
from audiojobs.pipeline.probe import probe
from audiojobs.quotas import minutes
from audiojobs.quotas.limits import limits_for
from audiojobs.redis_client import redis_client
from audiojobs.transcription.wav import SAMPLE_RATE


def ffmpeg_binary(settings: Settings) -> str:
    """A system ffmpeg when there is one, else the binary imageio-ffmpeg ships."""
    if settings.ffmpeg_binary:
        return settings.ffmpeg_binary
    found = shutil.which("ffmpeg")
    if found:
        return found
    try:
        import imageio_ffmpeg
    except ImportError:
        raise StageError("no ffmpeg on this worker (install ffmpeg or imageio-ffmpeg)",
                         code="ffmpeg_missing") from None
    return str(imageio_ffmpeg.get_ffmpeg_exe())


@contextlib.contextmanager
def exit_waiter(proc: subprocess.Popen[bytes]) -> Iterator[Callable[[float], bool]]:
    """``wait(seconds)``: True once ``proc`` has exited, False after ``seconds``. It wakes the moment
    the process exits (a pidfd, Linux 5.3+); ``Popen.wait(timeout)`` polls with sleeps of up to
    50 ms instead, which a 20-ms ffmpeg run then spends waiting. Elsewhere it falls back to that."""
    try:
        pidfd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        def poll_wait(seconds: float) -> bool:
            try:
                proc.wait(timeout=seconds)
            except subprocess.TimeoutExpired:
                return False
            return True

        yield poll_wait
        return
    try:
        def pidfd_wait(seconds: float) -> bool:
            select.select([pidfd], [], [], seconds)
            return proc.poll() is not None

        yield pidfd_wait
    finally:
        os.close(pidfd)


def to_wav(source: Path, target: Path, settings: Settings, check_stopped: Callable[[], None] | None = None,
           mono: bool = True) -> float:
    """Decode ``source`` into ``target``; the duration in seconds. InvalidMedia if it is not audio.

    ``check_stopped`` is called about every half second while ffmpeg runs; if it raises, ffmpeg
    is killed and the exception propagates. ``mono=False`` keeps every channel (multichannel jobs).
    """
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    # -t: a file that decodes longer than it announced (or announced nothing) stops just past the limit.
    cmd = [ffmpeg_binary(settings), "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
           "-i", str(source), "-t", str(settings.max_duration + 1),
           "-map", "0:a:0", "-vn", "-sn", "-dn", *(["-ac", "1"] if mono else []), "-ar", str(SAMPLE_RATE),
           "-c:a", "pcm_s16le", "-f", "wav", str(tmp)]
    deadline = time.monotonic() + settings.stage_time_limit
    with tempfile.TemporaryFile() as stderr, subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=stderr) as proc:
        try:
            with exit_waiter(proc) as wait:
                while not wait(0.5):
                    if time.monotonic() > deadline:
                        raise InvalidMedia("decoding the media took too long")
                    if check_stopped is not None:
                        check_stopped()
        except BaseException:
            proc.kill()
            tmp.unlink(missing_ok=True)
            raise
        stderr.seek(0)
        errors = stderr.read().decode(errors="replace")
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise InvalidMedia(f"the file is not audio or video that can be decoded: {_reason(errors, source)}")
    duration = wav_duration(tmp)
    if duration <= 0:
        tmp.unlink(missing_ok=True)
        raise InvalidMedia("the file contains no audio samples")
    if duration > settings.max_duration:
        tmp.unlink(missing_ok=True)
        raise InvalidMedia(f"the media is longer than the limit of {settings.max_duration / 60:g} minutes")
    tmp.replace(target)
    return duration


def wav_duration(path: Path) -> float:
    try:
        with wave.open(str(path), "rb") as wav:
            return wav.getnframes() / float(wav.getframerate())
    except (wave.Error, EOFError) as exc:
        raise InvalidMedia(f"the decoded audio is unreadable ({exc})") from None


def _reason(stderr: str, source: Path) -> str:
    """ffmpeg's last error line, without server paths."""
    if "matches no streams" in stderr:
        return "it has no audio stream"
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    text = lines[-1] if lines else "unknown decoder error"
    for path in (str(source), str(source.parent)):
        text = text.replace(path, source.name if path == str(source) else "")
    return text[:300]


def run(ctx: StageContext) -> Outcome:
    source = ctx.source_file()
    info = probe(source, ctx.settings.max_duration)  # invalid media fails here, before ffmpeg runs
    ctx.report_progress({"media": info.to_dict()}, force=True)  # what the probe found
    duration = to_wav(source, ctx.path(WAV_NAME), ctx.settings, ctx.check_stopped)
    needed = round(duration / 60, 4)
    today = minutes.utc_today()
    with session_scope(ctx.settings.effective_database_url) as session:
        if not service.set_media_duration(session, ctx.attempt, duration):
            raise AttemptStopped(service.attempt_lost_reason(session, ctx.attempt) or "taken_over")
        limit = limits_for(session, ctx.settings, ctx.attempt.owner_user_id).daily_minutes
        # Reserved now that the duration is known, before transcription spends any compute.
        charged = service.charge_minutes(session, ctx.attempt, needed, limit, today)
        used, started = minutes.usage(session, ctx.attempt.owner_user_id, today)
    if charged is None:
        raise AttemptStopped("taken_over")
    if not charged:
        metrics.count_refusal(redis_client(ctx.settings), "quota_exceeded_in_pipeline")
        raise QuotaExceeded(f"this file needs {needed:g} minutes; {max(0.0, (limit or 0) - used):g} of today's "
                            f"{limit:g} are left (they reset at 00:00 UTC)")
    minutes.mirror(redis_client(ctx.settings), ctx.attempt.owner_user_id, today, used, started)
    if ctx.payload.get("multichannel"):  # each channel is transcribed on its own
        to_wav(source, ctx.path(CHANNELS_NAME), ctx.settings, ctx.check_stopped, mono=False)
        ctx.publish(CHANNELS_NAME, ctx.path(CHANNELS_NAME))
    ctx.publish(WAV_NAME, ctx.path(WAV_NAME))
    return Outcome.DONE
