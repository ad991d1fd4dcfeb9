"""The real faster-whisper backend with the bundled tiny.en weights."""

from __future__ import annotations

from pathlib import Path

import pytest

from audiojobs.config import Settings
from audiojobs.errors import ModelUnavailable
from audiojobs.pipeline.convert import to_wav
from audiojobs.transcription.registry import bundled_model_path, get_backend, parse_model
from tests.conftest import word_error_rate
from tests.services import JFK_FLAC, JFK_TEXT

SETTINGS = Settings.from_env({})


def test_whisper_1_means_the_default_model() -> None:
    assert parse_model("whisper-1", SETTINGS)[1] == "tiny.en"
    assert parse_model("base", SETTINGS)[1] == "base"
    assert bundled_model_path("tiny.en") is not None
    assert bundled_model_path("large-v3") is None


def test_transcribes_jfk_with_low_word_error_rate(tmp_path: Path) -> None:
    wav = tmp_path / "jfk.wav"
    to_wav(JFK_FLAC, wav, SETTINGS)
    ends: list[float] = []
    result = get_backend("whisper-1", SETTINGS).transcribe(str(wav), on_segment=ends.append)
    assert word_error_rate(JFK_TEXT, result.text) <= 0.1, result.text
    assert result.language == "en" and abs(result.duration - 11.0) < 0.1 and result.model == "tiny.en"
    assert result.segments and all(s.start < s.end for s in result.segments)
    assert ends == sorted(ends) and ends[-1] == result.segments[-1].end


def test_model_is_loaded_once_per_process() -> None:
    assert get_backend("whisper-1", SETTINGS) is get_backend("tiny.en", SETTINGS)


def test_missing_model_path_is_model_unavailable(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailable):
        get_backend(str(tmp_path / "no-such-model"), SETTINGS)
