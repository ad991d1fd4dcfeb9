"""Cross-job batching with the real model on the CPU: several jobs' windows in one pass, each job
with its own transcript, priority order, cancel and error."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from audiojobs.config import Settings
from audiojobs.pipeline.convert import to_wav
from audiojobs.transcription.batching import ARRIVALS, Batcher, BatchingBackend, Request
from audiojobs.transcription.faster_whisper_backend import FasterWhisperBackend, speech_slice
from audiojobs.transcription.interfaces import TranscribeOptions, TranscriptionResult
from audiojobs.transcription.registry import get_backend
from audiojobs.transcription.wav import read_wav
from tests.conftest import word_error_rate
from tests.services import JFK_FLAC, JFK_TEXT
from tests.speakers import pyannote_sample, write_wav


@pytest.fixture(scope="module")
def model() -> FasterWhisperBackend:
    backend = get_backend("whisper-1", Settings.from_env({"AUDIO_WHISPER_CPU_THREADS": "2"}))
    assert isinstance(backend, FasterWhisperBackend)
    return backend


@pytest.fixture(scope="module")
def wavs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """jfk.flac; 30 s of two other people; and a minute's worth of JFK with pauses (two windows)."""
    tmp = tmp_path_factory.mktemp("batching")
    settings = Settings.from_env({})
    jfk, sample = tmp / "jfk.wav", tmp / "sample.wav"
    to_wav(JFK_FLAC, jfk, settings)
    to_wav(pyannote_sample()[0], sample, settings)
    audio = read_wav(str(jfk))
    assert audio is not None
    pause = np.zeros(8000, dtype=np.float32)
    longer = write_wav(np.concatenate([audio, pause] * 5), tmp / "jfk-x5.wav")  # 57 s: under the 60-s line
    return {"jfk": jfk, "sample": sample, "jfk-x5": longer}


def together(backend: BatchingBackend, paths: list[Path], **kwargs: Any) -> list[Any]:
    """Transcribe every path at once, one thread each (as a threads pool runs jobs); results or errors."""
    out: list[Any] = [None] * len(paths)

    def run(i: int) -> None:
        try:
            out[i] = backend.transcribe(str(paths[i]), **kwargs)
        except Exception as exc:  # noqa: BLE001 - the test looks at each job's own outcome
            out[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(paths))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    return out


def test_jobs_decoded_together_equal_each_alone(model: FasterWhisperBackend, wavs: dict[str, Path]) -> None:
    backend = BatchingBackend(model, max_items=4, wait_ms=50)
    alone = {name: backend.transcribe(str(path)) for name, path in wavs.items()}
    steps = backend.batcher.steps
    paths = [wavs["jfk"], wavs["sample"], wavs["jfk-x5"], wavs["jfk"], wavs["sample"]]
    results = together(backend, paths)
    windows = sum(len(speech_slice(read_wav(str(p)), vad=False).windows) for p in paths)
    print(f"\n{len(paths)} jobs, {windows} windows: {backend.batcher.steps - steps} passes")
    assert backend.batcher.steps - steps < windows  # windows of different jobs shared passes
    for path, result in zip(paths, results, strict=True):
        assert isinstance(result, TranscriptionResult), result
        expected = alone[next(name for name, p in wavs.items() if p == path)]
        assert [s.text for s in result.segments] == [s.text for s in expected.segments]
        # Where a segment starts may move by one of Whisper's 0.02-s timestamp steps: which windows
        # share a pass varies from run to run, and int8 products of other batch shapes round otherwise.
        starts = zip([s.start for s in result.segments], [s.start for s in expected.segments], strict=True)
        assert all(abs(got - want) <= 0.02 + 1e-6 for got, want in starts), (result.segments, expected.segments)
        assert result.duration == expected.duration and result.language == "en"
    # Against today's unbatched decoding of the same files: the same words (fixture speech).
    sequential = model.transcribe(str(wavs["jfk"]))
    assert abs(word_error_rate(JFK_TEXT, alone["jfk"].text) - word_error_rate(JFK_TEXT, sequential.text)) <= 0.01
    five, reference = model.transcribe(str(wavs["jfk-x5"])), " ".join([JFK_TEXT] * 5)
    batched_wer = word_error_rate(reference, alone["jfk-x5"].text)
    sequential_wer = word_error_rate(reference, five.text)
    print(f"WER of five JFKs: batched {batched_wer:.3f}, sequential {sequential_wer:.3f}")
    assert batched_wer <= sequential_wer + 0.01
    assert alone["jfk-x5"].segments[-1].end > 50  # times are the file's, not the pass's


def test_words_and_times_map_back_to_the_file(model: FasterWhisperBackend, wavs: dict[str, Path]) -> None:
    backend = BatchingBackend(model, max_items=4, wait_ms=50)
    opts = TranscribeOptions(word_timestamps=True)
    first, second = together(backend, [wavs["jfk-x5"], wavs["jfk"]], options=opts)
    assert isinstance(first, TranscriptionResult) and isinstance(second, TranscriptionResult)
    for result in (first, second):
        words = [w for s in result.segments for w in s.words or []]
        assert words and all(a.start <= b.start for a, b in zip(words, words[1:], strict=False))
        assert 0 <= words[0].start and words[-1].end <= result.duration + 0.5
    assert first.segments[-1].end > 50 > second.segments[-1].end


def test_higher_levels_go_first(model: FasterWhisperBackend, wavs: dict[str, Path]) -> None:
    """One window a pass: while a level-9 job is decoded, a level-2 job and then a level-6 job come;
    the level-6 job's window goes first."""
    batcher = Batcher(model, max_items=1, wait_ms=0)
    audio = read_wav(str(wavs["jfk"]))
    done: list[str] = []
    requests = {name: Request(piece=speech_slice(audio), options=TranscribeOptions(), language="en", priority=level)
                for name, level in (("busy", 9), ("low", 2), ("high", 6))}
    for name in ("busy", "low", "high"):
        batcher.submit(requests[name])

    def wait(name: str) -> None:
        while requests[name].results.get(timeout=120)[0] != "done":
            pass
        done.append(name)

    threads = [threading.Thread(target=wait, args=(name,)) for name in requests]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert done[1:] == ["high", "low"]


def test_a_job_that_stops_leaves_at_the_next_window(model: FasterWhisperBackend, wavs: dict[str, Path]) -> None:
    """The job's thread stops after its first segment (a cancel): none of its later windows is
    decoded, and its batch-mate finishes."""
    backend = BatchingBackend(model, max_items=1, wait_ms=0)

    class Stop(Exception):
        pass

    def stop(_end: float) -> None:
        raise Stop

    assert len(speech_slice(read_wav(str(wavs["jfk-x5"]))).windows) >= 2
    out: list[Any] = [None, None]

    def cancelled() -> None:
        try:
            backend.transcribe(str(wavs["jfk-x5"]), on_segment=stop)
        except Stop as exc:
            out[0] = exc

    def mate() -> None:
        out[1] = backend.transcribe(str(wavs["jfk"]))

    threads = [threading.Thread(target=cancelled), threading.Thread(target=mate)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    time.sleep(0.5)  # a pass under way when the job stopped is counted too
    assert isinstance(out[0], Stop)
    assert isinstance(out[1], TranscriptionResult) and word_error_rate(JFK_TEXT, out[1].text) <= 0.1
    # The stopped job's first window (and at most one more already in a pass), and the mate's one.
    assert backend.batcher.windows <= 3


def test_one_jobs_error_does_not_fail_its_batch_mates(model: FasterWhisperBackend, wavs: dict[str, Path],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A pass that fails is decoded again job by job: only the job it belongs to gets the error."""
    backend = BatchingBackend(model, max_items=4, wait_ms=200)
    real = Batcher._generate
    poisoned = "jfk-x5"

    def generate(self: Batcher, items: list[tuple[Request, int]]) -> Any:
        if any(r.piece.seconds > 50 for r, _ in items):  # the long job's windows break any pass they are in
            raise RuntimeError(f"{poisoned} cannot be decoded")
        return real(self, items)

    monkeypatch.setattr(Batcher, "_generate", generate)
    with ARRIVALS.coming():  # the three arrive together
        results = together(backend, [wavs["jfk"], wavs[poisoned], wavs["sample"]])
    assert isinstance(results[1], RuntimeError) and poisoned in str(results[1])
    assert isinstance(results[0], TranscriptionResult) and word_error_rate(JFK_TEXT, results[0].text) <= 0.1
    assert isinstance(results[2], TranscriptionResult) and len(results[2].text.split()) > 40


def test_an_idle_batcher_waits_only_for_jobs_on_their_way(model: FasterWhisperBackend,
                                                         wavs: dict[str, Path]) -> None:
    """With a wait window of a minute: a lone job is decoded at once (nobody is on the way); a job
    whose batch-mate has started its stage waits for it, and both share one pass."""
    backend = BatchingBackend(model, max_items=4, wait_ms=60_000)
    steps = backend.batcher.steps
    assert backend.transcribe(str(wavs["jfk"])).text  # no wait: this test would take a minute
    assert backend.batcher.steps == steps + 1
    late: list[Any] = []

    def on_its_way() -> None:
        with ARRIVALS.coming():
            time.sleep(1.0)  # its stage is opening, its audio being read
            late.append(backend.transcribe(str(wavs["sample"])))

    shared = backend.batcher.shared
    assert shared == 0  # the lone job had its pass to itself
    thread = threading.Thread(target=on_its_way)
    thread.start()
    time.sleep(0.2)
    first = backend.transcribe(str(wavs["jfk"]))
    thread.join(timeout=120)
    assert first.text and late and late[0].text
    # The two shared a pass: the first waited for the one on its way. (A window whose last words that
    # pass dropped is decoded again in a pass of its own, so the passes may be more than one.)
    assert backend.batcher.shared == shared + 1
