"""The WAV audio_convert writes is read straight into samples: the same samples faster-whisper's own
decoder gives for it, and no shortcut for anything else."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from audiojobs.config import Settings
from audiojobs.pipeline.convert import to_wav
from audiojobs.transcription.wav import read_wav, wav_seconds
from tests.media import jfk_as
from tests.services import JFK_FLAC


def test_our_wav_reads_as_the_samples_the_library_would_decode(tmp_path: Path) -> None:
    from faster_whisper.audio import decode_audio

    wav = tmp_path / "audio.wav"
    to_wav(JFK_FLAC, wav, Settings.from_env({}))
    ours = read_wav(str(wav))
    assert ours is not None and ours.dtype == np.float32
    theirs = decode_audio(str(wav), sampling_rate=16000)
    assert ours.shape == theirs.shape
    assert float(np.max(np.abs(ours - theirs))) < 1e-4
    assert abs(wav_seconds(str(wav)) - 11.0) < 0.1


@pytest.mark.parametrize("make", ["flac", "wav-44k-stereo"])
def test_anything_else_is_left_to_the_library(tmp_path: Path, make: str) -> None:
    path = JFK_FLAC if make == "flac" else jfk_as(tmp_path / "a.wav", "-ac", "2", "-ar", "44100")
    assert read_wav(str(path)) is None
