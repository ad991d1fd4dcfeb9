"""Cross-job batching: the 30-s windows of several jobs decoded in one pass of the model.

A transcription worker that batches runs Celery's threads pool: each job keeps its own task
thread, and with it everything a job has on its own (its stage run, lease and heartbeat, fencing,
progress, cancel, error and retry). Only the model call is shared. A job's thread cuts its audio
into windows of speech (Silero VAD, as for long files), hands them to the process's ``Batcher``
and waits for its segments, reporting progress and checking for cancel as they come.

The batcher's one decoding thread takes up to ``AUDIO_TRANSCRIBE_BATCH_MAX`` windows a step: the
next window of every waiting job, highest priority level first, then oldest first, and more
windows of the same jobs while slots are left. Jobs that arrive while a step runs join the next
step; once idle, it waits at most ``AUDIO_TRANSCRIBE_BATCH_WAIT_MS`` after the first arrival for
others. Windows whose jobs ask for the same decoding (language, prompt, hotwords, word timestamps)
go through faster-whisper's batched pipeline together (one CTranslate2 ``generate`` over all of
them). A job that was cancelled, or whose thread gave up, leaves before the next step. A step that
fails is decoded again job by job, so an error reaches only the job it belongs to.

Long files (``AUDIO_WHISPER_BATCH_MIN_SECONDS`` and more) keep their own batched decoding in their
own thread (``FasterWhisperBackend``): they have windows enough to fill a batch of their own.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from audiojobs.transcription.faster_whisper_backend import (
    CLIP_SECONDS,
    FasterWhisperBackend,
    SpeechSlice,
    speech_slice,
)
from audiojobs.transcription.interfaces import (
    Segment,
    SegmentCallback,
    TranscribeOptions,
    TranscriptionResult,
)
from audiojobs.transcription.wav import SAMPLE_RATE, read_wav, wav_seconds

log = logging.getLogger(__name__)

FOLLOW_UP_SECONDS = 1.0  # speech left after a window's last segment that is decoded again
POLL_SECONDS = 0.25  # how often a waiting job's thread checks for cancel between segments
SLOT = SAMPLE_RATE * CLIP_SECONDS  # each window of a step sits in a slot of its own, 30 s apart
FRAMES_PER_SLOT = 100 * CLIP_SECONDS  # faster-whisper's ``seek`` of a slot (100 frames a second)


class Arrivals:
    """Jobs on their way to the batcher (their transcription stage started, their windows not yet
    submitted): an idle batcher waits for them, up to the wait window, and for nobody else; so a
    lone job on an idle worker does not wait at all."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._local = threading.local()
        self.count = 0

    @contextmanager
    def coming(self) -> Iterator[None]:
        with self._lock:
            self.count += 1
        self._local.counted = True
        try:
            yield
        finally:
            self.arrived()

    def arrived(self) -> None:
        """This thread's job is submitted (or gave up): it is no longer on its way."""
        if getattr(self._local, "counted", False):
            self._local.counted = False
            with self._lock:
                self.count -= 1


ARRIVALS = Arrivals()


@dataclass(eq=False)
class Request:
    """One job's windows of speech, waiting in the batcher; its thread reads ``results``."""

    piece: SpeechSlice
    options: TranscribeOptions
    language: str | None
    priority: int = 0
    arrived: float = field(default_factory=time.monotonic)
    taken: int = 0  # windows handed to a step so far
    left: threading.Event = field(default_factory=threading.Event)  # the job's thread gave up
    results: queue.SimpleQueue[tuple[str, Any]] = field(default_factory=queue.SimpleQueue)

    windows: list[dict[str, float]] = field(default_factory=list)  # the piece's, and follow-ups

    def __post_init__(self) -> None:
        self.windows = list(self.piece.windows)

    @property
    def decoding(self) -> tuple[object, ...]:
        """Windows of requests with equal keys can share one generate call."""
        o = self.options
        return self.language, o.initial_prompt, o.hotwords, o.word_timestamps

    @property
    def windows_left(self) -> int:
        return len(self.windows) - self.taken


class Batcher:
    """The windows of every job of this process, decoded ``max_items`` at a time by one thread."""

    def __init__(self, backend: FasterWhisperBackend, max_items: int, wait_ms: int) -> None:
        from faster_whisper import BatchedInferencePipeline

        self.backend = backend
        self.max_items = max(1, max_items)
        self.wait = max(0, wait_ms) / 1000
        self._pipeline = BatchedInferencePipeline(backend._model)  # its own: it keeps per-call state
        self._waiting: list[Request] = []
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self.steps = 0  # decoding passes so far (the tests and the benchmark read them)
        self.windows = 0
        self.shared = 0  # passes that decoded windows of more than one job

    def submit(self, request: Request) -> None:
        ARRIVALS.arrived()
        with self._cond:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="transcribe-batcher", daemon=True)
                self._thread.start()
            self._waiting.append(request)
            self._cond.notify_all()

    def _run(self) -> None:
        while True:
            step = self._next_step()
            try:
                self._decode(step)
            except Exception as exc:  # noqa: BLE001 - never let the decoding thread die: jobs would wait forever
                log.exception("a batched decoding step failed outside any job")
                for request in dict.fromkeys(r for r, _ in step):
                    self._fail(request, exc)

    def _next_step(self) -> list[tuple[Request, int]]:
        """Up to ``max_items`` (request, window) pairs: every job's next window by level, then
        arrival; then more windows of the same jobs while slots are left."""
        with self._cond:
            while True:
                self._waiting = [r for r in self._waiting if not r.left.is_set() and r.windows_left > 0]
                if not self._waiting:
                    self._cond.wait()
                    continue
                fresh = [r.arrived for r in self._waiting if r.taken == 0]
                room = sum(r.windows_left for r in self._waiting) < self.max_items
                if fresh and room and ARRIVALS.count > 0:  # others are on their way: a moment for them
                    remaining = min(fresh) + self.wait - time.monotonic()
                    if remaining > 0:
                        self._cond.wait(min(remaining, 0.005))
                        continue
                break
            order = sorted(self._waiting, key=lambda r: (-r.priority, r.arrived))
            step: list[tuple[Request, int]] = []
            while len(step) < self.max_items and any(r.windows_left for r in order):
                for request in order:
                    if request.windows_left and len(step) < self.max_items:
                        step.append((request, request.taken))
                        request.taken += 1
            return step

    def _decode(self, step: list[tuple[Request, int]]) -> None:
        groups: dict[tuple[object, ...], list[tuple[Request, int]]] = {}
        for item in step:
            groups.setdefault(item[0].decoding, []).append(item)
        for items in groups.values():
            try:
                self._deliver(items, self._generate(items))
            except Exception as exc:  # noqa: BLE001 - decoded again job by job: the error stays with its job
                if len({id(r) for r, _ in items}) == 1:
                    self._fail(items[0][0], exc)
                    continue
                log.warning("a batched step failed (%r); its jobs are decoded one by one", exc)
                for request in dict.fromkeys(r for r, _ in items):
                    mine = [item for item in items if item[0] is request]
                    try:
                        self._deliver(mine, self._generate(mine))
                    except Exception as inner:  # noqa: BLE001 - this job's own error
                        self._fail(request, inner)
        for request in dict.fromkeys(r for r, _ in step):
            if not request.left.is_set() and request.windows_left == 0:
                request.results.put(("done", None))

    def _generate(self, items: list[tuple[Request, int]]) -> list[tuple[list[Segment], float | None]]:
        """The windows of ``items`` in one batched pass: each window's segments in file time, and
        where (in the job's speech) its last segment ended."""
        import numpy as np

        audio = np.zeros(SLOT * len(items), dtype=np.float32)
        clips = []
        for slot, (request, index) in enumerate(items):
            window = request.windows[index]
            begin, end = round(window["start"] * SAMPLE_RATE), round(window["end"] * SAMPLE_RATE)
            part = request.piece.speech[begin:end][:SLOT]
            audio[slot * SLOT: slot * SLOT + len(part)] = part
            clips.append({"start": float(slot * CLIP_SECONDS), "end": slot * CLIP_SECONDS + len(part) / SAMPLE_RATE})
        first = items[0][0]
        opts = first.options
        self._pipeline.last_speech_timestamp = 0.0
        segments, _info = self._pipeline.transcribe(
            audio, language=first.language, beam_size=5, word_timestamps=opts.word_timestamps,
            initial_prompt=opts.initial_prompt, hotwords=opts.hotwords, batch_size=len(items),
            without_timestamps=False, clip_timestamps=clips)
        out: list[tuple[list[Segment], float | None]] = [([], None) for _ in items]
        for seg in segments:
            slot = min(len(items) - 1, int(seg.seek) // FRAMES_PER_SLOT)
            request, index = items[slot]
            shift = request.windows[index]["start"] - slot * CLIP_SECONDS
            out[slot][0].append(FasterWhisperBackend._segment(seg, opts, _to_file_time(request.piece, shift), None))
            out[slot] = (out[slot][0], float(seg.end) + shift)
        jobs = len({id(r) for r, _ in items})
        self.steps += 1
        self.windows += len(items)
        self.shared += jobs > 1
        log.info("batched pass %d: %d windows of %d jobs", self.steps, len(items), jobs)
        return out

    @staticmethod
    def _deliver(items: list[tuple[Request, int]], decoded: list[tuple[list[Segment], float | None]]) -> None:
        """Each window's segments to its job. A window whose text stopped short of its end (the
        model's last words came without a closing timestamp, and a batched pass drops them) is
        decoded again from where its text ended, as sequential decoding seeks back: a follow-up
        window of the same job, in a later pass."""
        for (request, index), (segments, last_end) in zip(items, decoded, strict=True):
            for segment in segments:
                request.results.put(("segment", segment))
            start, end = request.windows[index]["start"], request.windows[index]["end"]
            if last_end is not None and last_end > start + 0.1 and end - last_end >= FOLLOW_UP_SECONDS:
                request.windows.append({"start": last_end, "end": end})

    def _fail(self, request: Request, exc: BaseException) -> None:
        request.left.set()
        request.results.put(("error", exc))


def _to_file_time(piece: SpeechSlice, shift: float) -> Callable[[float, bool], float]:
    """A time in a step's slot -> the time in the job's file."""
    def at(time: float, is_end: bool = False) -> float:
        return piece.original_time(time + shift, is_end)

    return at


class BatchingBackend:
    """faster-whisper with cross-job batching: short audio through the process's ``Batcher``, long
    audio decoded on its own (batched within the file), as ``FasterWhisperBackend`` does it."""

    name = "faster-whisper"

    def __init__(self, inner: FasterWhisperBackend, max_items: int, wait_ms: int) -> None:
        self.inner = inner
        self.model_label = inner.model_label
        self.device = inner.device
        self.compute_type = inner.compute_type
        self.batcher = Batcher(inner, max_items, wait_ms)

    def uses_batches(self, wav_path: str) -> bool:
        """Short audio shares batched passes; long audio is batched within the file when that is on."""
        return wav_seconds(wav_path) < self.inner.batch_min_seconds or self.inner.uses_batches(wav_path)

    def transcribe(self, wav_path: str, *, options: TranscribeOptions | None = None,
                   on_segment: SegmentCallback | None = None, priority: int = 0,
                   check: SegmentCallback | None = None) -> TranscriptionResult:
        """``check`` is called about every POLL_SECONDS while the job waits for the batcher (it
        raises to stop); ``on_segment`` after each segment, as for every backend."""
        opts = options or TranscribeOptions()
        if wav_seconds(wav_path) >= self.inner.batch_min_seconds:  # long: batched within the file
            return self.inner.transcribe(wav_path, options=opts, on_segment=on_segment)
        audio = read_wav(wav_path)
        if audio is None:  # not 16 kHz mono PCM: the library decodes it, window by window
            return self.inner.transcribe(wav_path, options=opts, on_segment=on_segment)
        # One window's worth is decoded whole (as without batching); longer audio is cut in pauses.
        piece = speech_slice(audio, vad=opts.vad_filter)
        language = opts.language
        model = self.inner._model
        if not model.model.is_multilingual:
            language = "en"
        elif language is None and piece.windows:
            language = model.detect_language(audio=piece.speech[:SLOT])[0]
        request = Request(piece=piece, options=opts, language=language, priority=priority)
        segments: list[Segment] = []
        if piece.windows:
            self.batcher.submit(request)
            try:
                self._collect(request, segments, on_segment, check)
            finally:
                request.left.set()  # done, failed or stopped: nothing more of it is decoded
        segments.sort(key=lambda seg: seg.start)  # follow-up windows come after later windows
        return TranscriptionResult(language=language, duration=piece.seconds, model=self.model_label,
                                   segments=segments)

    @staticmethod
    def _collect(request: Request, segments: list[Segment], on_segment: SegmentCallback | None,
                 check: SegmentCallback | None) -> None:
        while True:
            try:
                kind, value = request.results.get(timeout=POLL_SECONDS)
            except queue.Empty:
                if check is not None:
                    check(segments[-1].end if segments else 0.0)
                continue
            if kind == "done":
                return
            if kind == "error":
                raise value
            segments.append(value)
            if on_segment is not None:
                on_segment(value.end)


class OneAtATime:
    """A backend that cannot batch (openai-whisper) in a batching worker: its jobs take turns."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = inner.name
        self.model_label = inner.model_label
        self._lock = threading.Lock()

    def transcribe(self, wav_path: str, *, options: TranscribeOptions | None = None,
                   on_segment: SegmentCallback | None = None) -> TranscriptionResult:
        with self._lock:
            result: TranscriptionResult = self.inner.transcribe(wav_path, options=options, on_segment=on_segment)
            return result
