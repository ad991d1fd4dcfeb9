"""openai-whisper (PyTorch): fp32 on CPU, fp16 on CUDA.

Weights: a checkpoint file (``name.pt`` in ``AUDIO_MODEL_DIR``, or a path), else the model name,
which openai-whisper downloads into ``AUDIO_MODEL_DIR`` where a network allows.
"""

from __future__ import annotations

from typing import Any

from audiojobs.transcription.interfaces import (
    Segment,
    SegmentCallback,
    TranscribeOptions,
    TranscriptionResult,
    Word,
)
from audiojobs.transcription.wav import read_wav


class OpenAIWhisperBackend:
    name = "openai-whisper"

    def __init__(self, model_ref: str, *, model_label: str, device: str = "auto", download_root: str | None = None,
                 cpu_threads: int = 0) -> None:
        import torch  # heavy: imported in workers only
        import whisper

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if cpu_threads:
            torch.set_num_threads(cpu_threads)
        self.device = device
        self.compute_type = "float16" if device == "cuda" else "float32"
        self.model_label = model_label
        self._model = whisper.load_model(model_ref, device=device, download_root=download_root)
        # Load the tokenizer now (it is cached for the process): whisper leaves its vocabulary file
        # for the garbage collector to close, which would warn in the middle of a job.
        import gc
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            whisper.tokenizer.get_tokenizer(self._model.is_multilingual, num_languages=self._model.num_languages)
            gc.collect()

    def transcribe(self, wav_path: str, *, options: TranscribeOptions | None = None,
                   on_segment: SegmentCallback | None = None) -> TranscriptionResult:
        import whisper

        opts = options or TranscribeOptions()
        audio = read_wav(wav_path)
        if audio is None:  # not the WAV audio_convert writes: whisper decodes it with ffmpeg
            audio = whisper.load_audio(wav_path)
        duration = len(audio) / whisper.audio.SAMPLE_RATE
        kwargs: dict[str, Any] = {"language": opts.language, "fp16": self.device == "cuda", "beam_size": 5,
                                  "verbose": None, "word_timestamps": opts.word_timestamps,
                                  "initial_prompt": opts.initial_prompt}
        # openai-whisper has no per-segment hook: the callback runs once the whole file is decoded
        # (a cancelled job stops then, and its result is dropped).
        result = whisper.transcribe(self._model, audio, **kwargs)
        segments = [Segment(float(s["start"]), float(s["end"]), s["text"],
                            words=[Word(float(w["start"]), float(w["end"]), w["word"], float(w["probability"]))
                                   for w in s.get("words", [])] if opts.word_timestamps else None,
                            avg_logprob=float(s["avg_logprob"]), compression_ratio=float(s["compression_ratio"]),
                            no_speech_prob=float(s["no_speech_prob"]), temperature=float(s["temperature"]),
                            seek=int(s["seek"]), tokens=list(s["tokens"]))
                    for s in result["segments"]]
        if on_segment is not None:
            for seg in segments:
                on_segment(seg.end)
        return TranscriptionResult(language=result.get("language"), duration=duration, model=self.model_label,
                                   segments=segments)
