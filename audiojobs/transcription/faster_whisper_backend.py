"""faster-whisper (CTranslate2): int8 on CPU, float16 on CUDA."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from audiojobs.transcription.interfaces import (
    Segment,
    SegmentCallback,
    TranscribeOptions,
    TranscriptionResult,
    Word,
)
from audiojobs.transcription.wav import SAMPLE_RATE, read_wav, wav_seconds


class FasterWhisperBackend:
    name = "faster-whisper"

    def __init__(self, model_ref: str, *, model_label: str, device: str = "auto",
                 compute_type: str = "default", cpu_threads: int = 0, download_root: str | None = None,
                 batch_size: int = 0, batch_min_seconds: float = 60) -> None:
        from faster_whisper import BatchedInferencePipeline, WhisperModel  # heavy: imported in workers only

        if device == "auto":
            device = "cuda" if cuda_available() else "cpu"
        if compute_type == "default":
            compute_type = "float16" if device == "cuda" else "int8"
        self.device = device
        self.compute_type = compute_type
        self.model_label = model_label
        self._model = WhisperModel(model_ref, device=device, compute_type=compute_type, cpu_threads=cpu_threads,
                                   download_root=download_root)
        self.batch_size = batch_size
        self.batch_min_seconds = batch_min_seconds
        self._batched = BatchedInferencePipeline(self._model) if batch_size > 0 else None

    def uses_batches(self, wav_path: str) -> bool:
        """Long audio is decoded in batches of VAD-cut windows: many times faster on CPU and GPU alike
        (no window waits for the one before it); short audio window by window."""
        return self._batched is not None and wav_seconds(wav_path) >= self.batch_min_seconds

    def transcribe(self, wav_path: str, *, options: TranscribeOptions | None = None,
                   on_segment: SegmentCallback | None = None) -> TranscriptionResult:
        opts = options or TranscribeOptions()
        if self._batched is not None and self.uses_batches(wav_path):
            return self._transcribe_batched(wav_path, opts, on_segment)
        audio = read_wav(wav_path)
        segments_iter, info = self._model.transcribe(
            audio if audio is not None else wav_path, language=opts.language, beam_size=5,
            word_timestamps=opts.word_timestamps,
            initial_prompt=opts.initial_prompt, hotwords=opts.hotwords, vad_filter=opts.vad_filter)
        segments = [self._segment(seg, opts, 0.0, on_segment) for seg in segments_iter]  # decodes as it goes
        return TranscriptionResult(language=info.language, duration=float(info.duration),
                                   model=self.model_label, segments=segments)

    def _transcribe_batched(self, wav_path: str, opts: TranscribeOptions,
                            on_segment: SegmentCallback | None) -> TranscriptionResult:
        """Slice by slice (``BATCH_SLICE_SECONDS``, cut in a pause): the slice's speech, without the
        silences between (as faster-whisper packs it), in 30-s windows decoded ``batch_size`` at a time;
        times mapped back to the file. Memory stays that of one slice however long the audio: the
        pipeline computes the features of all its windows up front, and 4 hours at once would take
        gigabytes."""
        assert self._batched is not None
        language = opts.language
        segments: list[Segment] = []
        duration = 0.0
        for piece in speech_slices(wav_path):
            duration = piece.offset + piece.seconds
            if not piece.windows:
                continue
            segments_iter, info = self._batched.transcribe(
                piece.speech, language=language, beam_size=5, word_timestamps=opts.word_timestamps,
                initial_prompt=opts.initial_prompt, hotwords=opts.hotwords, batch_size=self.batch_size,
                without_timestamps=False, clip_timestamps=piece.windows)
            language = language or info.language  # detected once, on the first speech, then kept
            segments.extend(self._segment(seg, opts, piece.original_time, on_segment) for seg in segments_iter)
        return TranscriptionResult(language=language, duration=duration, model=self.model_label, segments=segments)

    @staticmethod
    def _segment(seg: Any, opts: TranscribeOptions, at: Callable[[float, bool], float] | float,
                 on_segment: SegmentCallback | None) -> Segment:
        """Our segment from faster-whisper's; ``at`` maps its times to the file's (or is an offset)."""
        def when(time: float, is_end: bool = False) -> float:
            return at(time, is_end) if callable(at) else time + at

        words = None
        if opts.word_timestamps:
            words = [Word(when(float(w.start)), when(float(w.end), True), w.word, float(w.probability))
                     for w in seg.words or []]
        start = when(float(seg.start))
        segment = Segment(start, max(start, when(float(seg.end), True)), seg.text, words=words,
                          avg_logprob=float(seg.avg_logprob), compression_ratio=float(seg.compression_ratio),
                          no_speech_prob=float(seg.no_speech_prob), temperature=float(seg.temperature or 0),
                          seek=round(start * FRAMES_PER_SECOND) if callable(at) else int(seg.seek),
                          tokens=list(seg.tokens))
        if on_segment is not None:
            on_segment(segment.end)
        return segment


FRAMES_PER_SECOND = 100  # Whisper's feature frames (seek counts these)
VAD_SLICE_SECONDS = 60
BATCH_SLICE_SECONDS = 300
CLIP_SECONDS = 30  # Whisper's window


@dataclass
class SpeechSlice:
    """A slice of the file: where it starts and how long it is (s), its speech with the silences
    taken out (samples), that speech's 30-s windows and a map from speech time to file time."""

    offset: float
    seconds: float
    speech: Any
    windows: list[dict[str, float]]
    chunks: list[dict[str, int]]

    def original_time(self, time: float, is_end: bool = False) -> float:
        from faster_whisper.vad import SpeechTimestampsMap

        if not hasattr(self, "_map"):
            self._map = SpeechTimestampsMap(self.chunks, SAMPLE_RATE, time_precision=3)
        return self.offset + self._map.get_original_time(time, is_end=is_end)


def speech_slices(path: str) -> Iterator[SpeechSlice]:
    """Consecutive slices of about BATCH_SLICE_SECONDS of a WAV file. A slice ends in a pause:
    speech that runs into the slice's end is left to the next slice, so no word is cut in two."""
    import wave

    import numpy as np

    with wave.open(path, "rb") as wav:
        if wav.getframerate() != SAMPLE_RATE or wav.getnchannels() != 1 or wav.getsampwidth() != 2:
            from faster_whisper.audio import decode_audio

            audio = decode_audio(path, sampling_rate=SAMPLE_RATE)
            yield _slice(0, audio, speech_spans(audio))
            return
        total = wav.getnframes()
        start = 0
        while start < total:
            wav.setpos(start)
            pcm = np.frombuffer(wav.readframes(SAMPLE_RATE * BATCH_SLICE_SECONDS), dtype=np.int16)
            audio = pcm.astype(np.float32)
            del pcm
            audio *= 1.0 / 32768.0
            spans = speech_spans(audio)
            if start + len(audio) < total and len(spans) > 1 and spans[-1][1] > len(audio) - SAMPLE_RATE // 2:
                audio = audio[:spans.pop()[0]]  # speech runs on past the slice: the next slice starts with it
            yield _slice(start, audio, spans)
            start += len(audio)


def speech_slice(audio: Any, vad: bool = True) -> SpeechSlice:
    """All of ``audio`` (short audio) as one slice: its speech in windows of at most 30 s. Without
    ``vad`` (audio of one window), the whole of it is the one window, as sequential decoding sees it."""
    if not vad and 0 < len(audio) <= SAMPLE_RATE * CLIP_SECONDS:
        return _slice(0, audio, [(0, len(audio))])
    return _slice(0, audio, speech_spans(audio))


def _slice(start: int, audio: Any, spans: list[tuple[int, int]]) -> SpeechSlice:
    """The speech of ``spans`` packed end to end, in windows of at most 30 s of speech."""
    import numpy as np

    chunks = [{"start": begin, "end": end} for begin, end in spans]
    speech = np.concatenate([audio[begin:end] for begin, end in spans]) if spans else audio[:0]
    windows: list[list[int]] = []
    position = 0
    limit = SAMPLE_RATE * CLIP_SECONDS
    for begin, end in spans:
        length = end - begin
        if windows and position + length - windows[-1][0] <= limit:
            windows[-1][1] = position + length
        else:
            windows.append([position, position + length])
        position += length
    return SpeechSlice(offset=start / SAMPLE_RATE, seconds=len(audio) / SAMPLE_RATE, speech=speech,
                       windows=[{"start": a / SAMPLE_RATE, "end": b / SAMPLE_RATE} for a, b in windows], chunks=chunks)


def speech_spans(audio: Any) -> list[tuple[int, int]]:
    """Where the speech is (samples), each span at most 30 s.

    Silero VAD runs over a minute of audio at a time: given much more at once, its encoder holds
    activations for up to 10,000 windows together (about 370 MB more at the peak); a minute at a
    time it needs almost nothing."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    options = VadOptions(max_speech_duration_s=CLIP_SECONDS, min_silence_duration_ms=160)
    step = SAMPLE_RATE * VAD_SLICE_SECONDS
    spans: list[tuple[int, int]] = []
    for begin in range(0, len(audio), step):
        piece = audio[begin:begin + step]
        if len(piece) < SAMPLE_RATE // 10:
            break
        spans.extend((begin + t["start"], begin + t["end"]) for t in get_speech_timestamps(piece, options))
    return spans


def cuda_available() -> bool:
    try:
        import ctranslate2

        return ctranslate2.get_cuda_device_count() > 0
    except Exception:  # noqa: BLE001 - no CUDA runtime at all means CPU
        return False
