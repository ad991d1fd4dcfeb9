"""Both backends behind one interface, with real weights on the CPU: faster-whisper with the
bundled tiny.en, openai-whisper with a checkpoint converted from the same weights."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from audiojobs.config import Settings
from audiojobs.errors import ModelUnavailable
from audiojobs.pipeline.convert import to_wav
from audiojobs.transcription.registry import get_backend, is_allowed_model, parse_model
from tests.conftest import word_error_rate
from tests.services import JFK_FLAC, JFK_TEXT


@pytest.fixture(scope="module")
def jfk_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    wav = tmp_path_factory.mktemp("wav") / "jfk.wav"
    to_wav(JFK_FLAC, wav, Settings.from_env({}))
    return wav


def test_model_names() -> None:
    settings = Settings.from_env({})
    assert parse_model("whisper-1", settings) == ("faster-whisper", "tiny.en")
    assert parse_model("openai-whisper:whisper-1", settings) == ("openai-whisper", "tiny.en")
    assert parse_model("faster-whisper:large-v3", settings) == ("faster-whisper", "large-v3")
    assert parse_model("base", Settings.from_env({"AUDIO_WHISPER_BACKEND": "openai-whisper"})) == (
        "openai-whisper", "base")
    assert is_allowed_model("openai-whisper:tiny.en", settings) and is_allowed_model("large-v3", settings)
    assert not is_allowed_model("openai-whisper:/etc/passwd", settings)
    assert not is_allowed_model("torch:tiny.en", settings) and not is_allowed_model("tiny.en:", settings)


@pytest.mark.parametrize("backend", ["faster-whisper", "openai-whisper"])
def test_each_backend_transcribes_jfk(backend: str, jfk_wav: Path, openai_model_dir: Path) -> None:
    settings = Settings.from_env({"AUDIO_MODEL_DIR": str(openai_model_dir), "AUDIO_WHISPER_BACKEND": backend})
    model = get_backend("whisper-1", settings)
    started = time.perf_counter()
    ends: list[float] = []
    result = model.transcribe(str(jfk_wav), on_segment=ends.append)
    elapsed = time.perf_counter() - started
    print(f"\n{backend} tiny.en on the CPU ({model.compute_type}): jfk.flac (11 s) in {elapsed:.2f} s, "
          f"real-time factor {elapsed / result.duration:.3f}")
    assert model.name == backend and model.device == "cpu"
    assert model.compute_type == ("int8" if backend == "faster-whisper" else "float32")
    assert word_error_rate(JFK_TEXT, result.text) <= 0.1, result.text
    assert result.language == "en" and result.duration == pytest.approx(11.0, abs=0.1)
    assert result.model == "tiny.en" and ends and ends[-1] == result.segments[-1].end


def test_forcing_a_backend_by_prefix(jfk_wav: Path, openai_model_dir: Path) -> None:
    settings = Settings.from_env({"AUDIO_MODEL_DIR": str(openai_model_dir)})
    model = get_backend("openai-whisper:tiny.en", settings)
    assert model.name == "openai-whisper" and model.model_label == "tiny.en"
    assert get_backend("openai-whisper:whisper-1", settings) is model  # loaded once per process


def test_openai_whisper_without_weights_is_model_unavailable(tmp_path: Path) -> None:
    settings = Settings.from_env({"AUDIO_MODEL_DIR": str(tmp_path)})  # no tiny.en.pt, no network
    with pytest.raises(ModelUnavailable):
        get_backend("openai-whisper:small", settings)
    with pytest.raises(ModelUnavailable, match="no model file"):
        get_backend(f"openai-whisper:{tmp_path / 'missing.pt'}", settings)


def test_long_audio_is_decoded_in_batches(tmp_path: Path, jfk_wav: Path) -> None:
    from tests.media import varied_speech

    wav = tmp_path / "long.wav"
    to_wav(varied_speech(tmp_path / "long.flac", 95), wav, Settings.from_env({}))
    reference = " ".join([JFK_TEXT] * 8)  # eight repetitions of jfk.flac, at varying tempo and pitch
    model = get_backend("faster-whisper:tiny.en", Settings.from_env({}))
    assert model.uses_batches(str(wav)) and not model.uses_batches(str(jfk_wav))  # 95 s and 11 s; 60 s the line
    off = get_backend("faster-whisper:tiny.en", Settings.from_env({"AUDIO_WHISPER_BATCH_SIZE": "0"}))
    assert not off.uses_batches(str(wav))
    ends: list[float] = []
    started = time.perf_counter()
    result = model.transcribe(str(wav), on_segment=ends.append)
    elapsed = time.perf_counter() - started
    error_rate = word_error_rate(reference, result.text)
    print(f"\n95 s of speech in batches: {elapsed:.1f} s (real-time factor {elapsed / result.duration:.3f}), "
          f"WER {error_rate:.3f}, {len(ends)} segments")
    assert error_rate <= 0.1, result.text
    assert len(ends) > 8 and ends == sorted(ends)  # progress (and cancel checks) still come segment by segment
    assert ends[-1] == pytest.approx(result.duration, abs=5)


def test_long_audio_is_batched_slice_by_slice_without_cutting_words(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Slices end in a pause (BATCH_SLICE_SECONDS is 5 minutes; 40 s here, so 95 s make three)."""
    from audiojobs.transcription import faster_whisper_backend as fwb
    from tests.media import varied_speech

    wav = tmp_path / "long.wav"
    to_wav(varied_speech(tmp_path / "long.flac", 95), wav, Settings.from_env({}))
    monkeypatch.setattr(fwb, "BATCH_SLICE_SECONDS", 40)
    slices = list(fwb.speech_slices(str(wav)))
    assert len(slices) >= 3 and slices[0].offset == 0.0
    for piece, following in zip(slices, slices[1:], strict=False):
        assert following.offset == pytest.approx(piece.offset + piece.seconds)  # nothing skipped or read twice
    for piece in slices:  # speech only, in windows of at most 30 s, mapped back inside the slice
        assert len(piece.speech) == sum(c["end"] - c["start"] for c in piece.chunks)
        assert all(w["end"] - w["start"] <= 30.001 for w in piece.windows)
        assert piece.offset <= piece.original_time(0.0) <= piece.original_time(len(piece.speech) / fwb.SAMPLE_RATE,
                                                                                  True) <= piece.offset + piece.seconds
    model = get_backend("faster-whisper:tiny.en", Settings.from_env({}))
    result = model.transcribe(str(wav))
    starts = [segment.start for segment in result.segments]
    assert starts == sorted(starts) and result.duration == pytest.approx(fwb.wav_seconds(str(wav)), abs=0.01)
    assert word_error_rate(" ".join([JFK_TEXT] * 8), result.text) <= 0.1, result.text
