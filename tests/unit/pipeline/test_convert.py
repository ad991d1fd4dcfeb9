"""audio_convert with a real ffmpeg on real and hostile media."""

from __future__ import annotations

import os
import signal
import subprocess
import wave
from pathlib import Path

import pytest

from audiojobs.config import Settings
from audiojobs.errors import InvalidMedia
from audiojobs.pipeline.convert import exit_waiter, to_wav
from tests.media import corrupt_file, jfk_as, video_with_jfk, video_without_audio
from tests.services import JFK_FLAC

SETTINGS = Settings.from_env({})


def _check_wav(path: Path) -> None:
    with wave.open(str(path)) as wav:
        assert (wav.getnchannels(), wav.getframerate(), wav.getsampwidth()) == (1, 16000, 2)


@pytest.mark.parametrize("make", ["flac", "mp3-stereo-44k", "ogg", "webm-video"])
def test_converts_audio_and_video_to_16k_mono(tmp_path: Path, make: str) -> None:
    source = {
        "flac": lambda: JFK_FLAC,
        "mp3-stereo-44k": lambda: jfk_as(tmp_path / "a.mp3", "-ac", "2", "-ar", "44100"),
        "ogg": lambda: jfk_as(tmp_path / "a.ogg", "-c:a", "libvorbis"),
        "webm-video": lambda: video_with_jfk(tmp_path / "v.webm"),
    }[make]()
    duration = to_wav(source, tmp_path / "out.wav", SETTINGS)
    assert abs(duration - 11.0) < 0.2
    _check_wav(tmp_path / "out.wav")


@pytest.mark.parametrize("make,reason", [("corrupt", "can be decoded"), ("video-only", "no audio stream"),
                                         ("empty", "can be decoded")])
def test_non_audio_is_invalid_media_with_a_readable_message(tmp_path: Path, make: str, reason: str) -> None:
    source = {
        "corrupt": lambda: corrupt_file(tmp_path / "bad.mp3"),
        "video-only": lambda: video_without_audio(tmp_path / "silent.webm"),
        "empty": lambda: (tmp_path / "empty.wav").write_bytes(b"") and tmp_path / "empty.wav",
    }[make]()
    source = source if isinstance(source, Path) else tmp_path / "empty.wav"
    with pytest.raises(InvalidMedia) as info:
        to_wav(source, tmp_path / "out.wav", SETTINGS)
    assert info.value.code == "invalid_media"
    assert reason in info.value.message
    assert str(tmp_path) not in info.value.message  # no server paths in what users read
    assert not (tmp_path / "out.wav").exists() and not list(tmp_path.glob(".out.wav*"))


def test_exit_waiter_wakes_when_the_process_exits_and_times_out_while_it_runs() -> None:
    with subprocess.Popen(["sleep", "30"]) as running:
        with exit_waiter(running) as wait:
            assert wait(0.2) is False
            running.kill()
            assert wait(10) is True
        assert running.returncode == -signal.SIGKILL
    with subprocess.Popen(["true"]) as quick, exit_waiter(quick) as wait:
        assert wait(10) is True and quick.returncode == 0


def test_a_stop_while_ffmpeg_runs_kills_it_and_leaves_nothing(tmp_path: Path) -> None:
    source = tmp_path / "never-written.wav"
    os.mkfifo(source)  # ffmpeg waits on it for ever: only the stop check ends the decode
    calls: list[int] = []

    def stop() -> None:
        calls.append(1)
        raise RuntimeError("cancelled")

    with pytest.raises(RuntimeError, match="cancelled"):
        to_wav(source, tmp_path / "out.wav", SETTINGS, check_stopped=stop)
    assert calls == [1]
    assert not (tmp_path / "out.wav").exists() and not list(tmp_path.glob(".out.wav*"))
