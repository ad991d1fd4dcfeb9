"""Diarization on real recorded speech of three people (tests/speakers.py): the error rate and the
speaker count, estimated and given; segments split at each change; the formats that show speakers."""

from __future__ import annotations

from pathlib import Path

import pytest

from audiojobs import formats
from audiojobs.analysis.interfaces import AnalysisResult
from audiojobs.analysis.local import LocalAnalysisProvider
from audiojobs.analysis.transcripts import analyze_transcript
from audiojobs.config import Settings
from audiojobs.transcription import diarize
from audiojobs.transcription.interfaces import Segment, Word
from tests.services import JFK_FLAC
from tests.speakers import RATE, der, samples_of, three_speakers, two_speakers

TARGETS = {"two": (2, 0.15), "three": (3, 0.25)}  # speakers, largest DER (collar 0.25 s)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model directory of this module's own: the encoder's ONNX file is made in it once."""
    return tmp_path_factory.mktemp("models")


@pytest.mark.parametrize("clip", ["two", "three"])
def test_speakers_are_told_apart_on_real_speech(clip: str, model_dir: Path) -> None:
    audio, reference = two_speakers() if clip == "two" else three_speakers()
    count, limit = TARGETS[clip]
    seconds = len(audio) / RATE
    found = {}
    for given in (None, count):
        turns = diarize.diarize(audio, model_dir, speakers=given)
        found[given] = ({t.speaker for t in turns}, der(reference, [(t.start, t.end, t.speaker) for t in turns],
                                                        seconds))
    print(f"\n{clip} speakers ({seconds:.0f} s): estimated {len(found[None][0])} speakers, DER {found[None][1]:.3f}; "
          f"given {count}: DER {found[count][1]:.3f} (target <= {limit})")
    assert found[None][0] == found[count][0] == set("ABC"[:count])
    assert found[None][1] <= limit and found[count][1] <= limit


def test_one_voice_is_one_speaker(model_dir: Path) -> None:
    turns = diarize.diarize(samples_of(JFK_FLAC), model_dir)
    assert {t.speaker for t in turns} == {"A"} and turns[0].start < 1.0 and turns[-1].end > 9.0


def test_a_segment_is_split_where_its_words_change_speaker() -> None:
    words = [Word(0.0, 0.4, " Hello", 0.9), Word(0.5, 0.9, " there.", 0.9), Word(1.2, 1.6, " Hi", 0.8),
             Word(1.7, 2.2, " you.", 0.8)]
    segments = [Segment(0.0, 2.3, " Hello there. Hi you.", words=words, avg_logprob=-0.2, tokens=[1, 2]),
                Segment(2.5, 4.0, " And me.", words=None)]
    turns = [diarize.Turn(0.0, 1.0, "A"), diarize.Turn(1.1, 2.3, "B"), diarize.Turn(2.4, 4.2, "A")]
    split = diarize.label_segments(segments, turns)
    assert [(s.start, s.end, s.text, s.speaker) for s in split] == [
        (0.0, 0.9, " Hello there.", "A"), (1.2, 2.3, " Hi you.", "B"), (2.5, 4.0, " And me.", "A")]
    assert [w.speaker for w in split[0].words or []] == ["A", "A"] and split[1].avg_logprob == -0.2
    assert split[0].tokens is None  # the decoder's tokens belong to the whole segment
    # Without word timestamps the words are timed by their characters' share of the segment.
    plain = [Segment(0.0, 2.0, " One two three four", avg_logprob=-0.1), Segment(2.5, 4.0, " And me.")]
    without = diarize.label_segments(plain, [diarize.Turn(0.0, 1.0, "A"), diarize.Turn(1.0, 4.0, "B")])
    assert [(round(s.start, 3), round(s.end, 3), s.text, s.speaker, s.words) for s in without] == [
        (0.0, 0.842, " One two", "A", None), (0.842, 2.0, " three four", "B", None),  # "One two": 8 of 19 chars
        (2.5, 4.0, " And me.", "B", None)]


def test_the_formats_show_who_spoke() -> None:
    segments = [{"id": 0, "start": 0.0, "end": 1.5, "text": " Hello there.", "speaker": "A"},
                {"id": 1, "start": 1.6, "end": 3.0, "text": " Hi.", "speaker": "B"},
                {"id": 2, "start": 3.1, "end": 4.0, "text": " How are you?", "speaker": "B"}]
    transcript = {"text": "Hello there. Hi. How are you?", "segments": segments, "duration": 4.0, "language": "en"}
    assert formats.speakers(segments) == [{"label": "A", "total_seconds": 1.5, "first_start": 0.0},
                                          {"label": "B", "total_seconds": 2.3, "first_start": 1.6}]
    assert formats.speakers([{k: v for k, v in s.items() if k != "speaker"} for s in segments]) is None
    assert formats.text(transcript) == "A: Hello there.\nB: Hi. How are you?\n"
    assert "1\n00:00:00,000 --> 00:00:01,500\n[A] Hello there.\n" in formats.srt(segments)
    assert "00:00:01.600 --> 00:00:03.000\n<v B>Hi.</v>\n" in formats.vtt(segments)
    body = formats.diarized_json(transcript)
    assert body["task"] == "transcribe" and body["duration"] == 4.0
    assert body["segments"][1] == {"type": "transcript.text.segment", "id": "seg_1", "start": 1.6, "end": 3.0,
                                   "text": "Hi.", "speaker": "B"}


def test_an_analysis_reads_turns_and_says_how_long_each_spoke(settings: Settings) -> None:
    segments = [{"id": 0, "start": 0.0, "end": 6.0, "text": " The budget was approved on Monday.", "speaker": "A"},
                {"id": 1, "start": 6.2, "end": 9.0, "text": " The budget needs a second review.", "speaker": "B"}]
    transcript = {"text": "The budget was approved on Monday. The budget needs a second review.",
                  "segments": segments, "duration": 9.0}
    local = analyze_transcript(LocalAnalysisProvider(), transcript, None, settings)
    assert local.summary.endswith("\n\nSpeaking time: A 6.0 s, B 2.8 s.")
    assert not {"a", "b"} & {p.lower() for p in local.key_phrases}  # the local provider read the plain text

    class Recorder:
        name, model, read = "recorder", None, ""

        def analyze(self, text: str, prompt: str | None = None) -> AnalysisResult:
            Recorder.read = text
            return AnalysisResult(provider=self.name, model=None, summary="Two people on the budget.")

    llm = analyze_transcript(Recorder(), transcript, "who disagrees?", settings)  # type: ignore[arg-type]
    assert Recorder.read == "A: The budget was approved on Monday.\nB: The budget needs a second review.\n"
    assert llm.summary == "Two people on the budget.\n\nSpeaking time: A 6.0 s, B 2.8 s."


def test_the_mel_spectrogram_is_the_one_the_encoder_was_trained_on() -> None:
    """faster-whisper's filter bank and STFT give resemblyzer's (librosa's) numbers."""
    import warnings

    import numpy as np

    audio = samples_of(JFK_FLAC)[:3 * RATE]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from resemblyzer.audio import wav_to_mel_spectrogram

        expected = wav_to_mel_spectrogram(audio)
    found = diarize.mel(audio)
    assert found.shape == expected.shape == (301, 40)
    assert np.allclose(found, expected, rtol=1e-3, atol=1e-7)


def test_the_onnx_encoder_gives_the_torch_encoders_voice_prints(model_dir: Path) -> None:
    """CPU workers run the encoder exported to ONNX (no torch in their process): the same numbers,
    and resemblyzer's own level and hyperparameters."""
    import warnings

    import numpy as np

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from resemblyzer import hparams
        from resemblyzer.audio import normalize_volume

    assert (diarize.MEL_WINDOW_MS, diarize.MEL_STEP_MS, diarize.MEL_BANDS, diarize.LEVEL_DBFS, RATE) == (
        hparams.mel_window_length, hparams.mel_window_step, hparams.mel_n_channels, hparams.audio_norm_target_dBFS,
        hparams.sampling_rate)
    audio = samples_of(JFK_FLAC)
    for quiet in (audio * 0.05, audio, audio * 3):
        assert np.allclose(diarize.at_level(quiet), normalize_volume(quiet, -30, increase_only=True), atol=1e-6)
    onnx = diarize.embedder(model_dir)
    assert diarize.onnx_path(model_dir).exists()
    batch = np.stack([diarize.mel(audio[i * RATE:i * RATE + 25600])[:160] for i in range(4)])
    torch_prints = diarize._torch_encoder("cpu")(batch)
    assert np.abs(onnx(batch) - torch_prints).max() < 1e-4
    assert np.allclose(np.linalg.norm(torch_prints, axis=1), 1.0, atol=1e-5)
