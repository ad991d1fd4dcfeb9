"""faster-whisper (CTranslate2): int8 on CPU, float16 on CUDA."""

from __future__ import annotations

from audiojobs.transcription.interfaces import (
    Segment,
    SegmentCallback,
    TranscribeOptions,
    TranscriptionResult,
    Word,
)


class FasterWhisperBackend:
    name = "faster-whisper"

    def __init__(self, model_ref: str, *, model_label: str, device: str = "auto",
                 compute_type: str = "default", cpu_threads: int = 0, download_root: str | None = None,
                 batch_size: int = 0, batch_min_seconds: float = 60) -> None:
        from faster_whisper import BatchedInferencePipeline, WhisperModel  # heavy: imported in workers only

        if device == "auto":
            device = "cuda" if _cuda_available() else "cpu"
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
            segments_iter, info = self._batched.transcribe(
                wav_path, language=opts.language, beam_size=5, word_timestamps=opts.word_timestamps,
                initial_prompt=opts.initial_prompt, hotwords=opts.hotwords, batch_size=self.batch_size,
                without_timestamps=False)
        else:
            segments_iter, info = self._model.transcribe(
                wav_path, language=opts.language, beam_size=5, word_timestamps=opts.word_timestamps,
                initial_prompt=opts.initial_prompt, hotwords=opts.hotwords, vad_filter=opts.vad_filter)
        segments: list[Segment] = []
        for seg in segments_iter:  # a generator: decoding happens as we iterate
            words = None
            if opts.word_timestamps:
                words = [Word(float(w.start), float(w.end), w.word, float(w.probability)) for w in seg.words or []]
            segments.append(Segment(float(seg.start), float(seg.end), seg.text, words=words,
                                    avg_logprob=float(seg.avg_logprob), compression_ratio=float(seg.compression_ratio),
                                    no_speech_prob=float(seg.no_speech_prob), temperature=float(seg.temperature or 0),
                                    seek=int(seg.seek), tokens=list(seg.tokens)))
            if on_segment is not None:
                on_segment(float(seg.end))
        return TranscriptionResult(language=info.language, duration=float(info.duration),
                                   model=self.model_label, segments=segments)


def wav_seconds(path: str) -> float:
    """The length of a WAV file from its header (0 when it is not one: then no batching)."""
    import wave

    try:
        with wave.open(path, "rb") as wav:
            return wav.getnframes() / float(wav.getframerate())
    except (wave.Error, OSError, EOFError, ZeroDivisionError):
        return 0.0


def _cuda_available() -> bool:
    try:
        import ctranslate2

        return ctranslate2.get_cuda_device_count() > 0
    except Exception:  # noqa: BLE001 - no CUDA runtime at all means CPU
        return False
