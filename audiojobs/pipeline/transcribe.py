"""audio_transcribe: the WAV through the job's Whisper model, and, when the job asks, who spoke
when (``diarize``) or each channel on its own as one speaker (``multichannel``); runs on the
transcription (GPU) queue."""

from __future__ import annotations

import logging
import time
import wave
from dataclasses import replace

from audiojobs import metrics
from audiojobs.errors import DiarizationUnavailable, InvalidMedia
from audiojobs.pipeline.context import CHANNELS_NAME, TRANSCRIPT_NAME, WAV_NAME, Outcome, StageContext
from audiojobs.pipeline.convert import wav_duration
from audiojobs.redis_client import redis_client
from audiojobs.transcription import diarize
from audiojobs.transcription.batching import BatchingBackend
from audiojobs.transcription.interfaces import (
    Segment,
    SegmentCallback,
    TranscribeOptions,
    TranscriptionBackend,
    TranscriptionResult,
)
from audiojobs.transcription.registry import get_backend
from audiojobs.transcription.wav import SAMPLE_RATE, read_wav

log = logging.getLogger(__name__)

# The share of the stage's progress that diarization reports, when the job asked for it.
DIARIZE_SHARE = 0.2
MAX_CHANNELS = 8  # multichannel: one transcription per channel


def run(ctx: StageContext) -> Outcome:
    wav = ctx.fetch(WAV_NAME)  # from the store, unless this host has the copy audio_convert made
    backend = get_backend(ctx.payload.get("model", "whisper-1"), ctx.settings)
    started = time.perf_counter()
    duration = wav_duration(wav)
    diarizing = bool(ctx.payload.get("diarize"))
    if diarizing and not diarize.available():
        raise DiarizationUnavailable("this worker cannot tell speakers apart: install audiojobs[diarize] on it")
    share = 1.0 - DIARIZE_SHARE if diarizing else 1.0
    batched = bool(getattr(backend, "uses_batches", lambda _path: False)(str(wav)))
    log.info("job %s: %.1f s of audio, %s", ctx.job_id, duration,
             "decoded in batches of windows" if batched else "decoded window by window")

    def on_segment(end: float) -> None:
        ctx.check_stopped()  # stop at once if the job was cancelled or taken over
        elapsed = time.perf_counter() - started
        done = min(end, duration)
        ctx.report_progress({"percent": round(100 * share * done / duration, 1) if duration else 0.0,
                             "audio_seconds_done": round(done, 2),
                             "eta_seconds": round(elapsed / done * (duration - done), 1) if done > 0 else None})

    options = TranscribeOptions.from_payload(ctx.payload)
    if ctx.payload.get("multichannel"):
        result = _per_channel(ctx, backend, options, on_segment)
    elif isinstance(backend, BatchingBackend):  # windows decoded together with other jobs' windows
        result = backend.transcribe(str(wav), options=options, on_segment=on_segment, priority=ctx.level,
                                    check=lambda _end: ctx.check_stopped())
    else:
        result = backend.transcribe(str(wav), options=options, on_segment=on_segment)
    if diarizing:
        result = _with_speakers(ctx, str(wav), result, share)
    ctx.report_progress({"percent": 100.0, "audio_seconds_done": round(result.duration, 2), "eta_seconds": 0.0},
                        force=True)
    ctx.check_stopped()
    if result.duration > 0:
        metrics.observe_rtf(redis_client(ctx.settings), backend.name, (time.perf_counter() - started) / result.duration)
    ctx.write_json(TRANSCRIPT_NAME, result.to_dict())
    return Outcome.DONE


def _per_channel(ctx: StageContext, backend: TranscriptionBackend, options: TranscribeOptions,
                 on_segment: SegmentCallback) -> TranscriptionResult:
    """Each channel transcribed on its own, its segments and words the speaker ``channel_<i>``;
    all of them in time order."""
    import numpy as np

    path = ctx.fetch(CHANNELS_NAME)
    with wave.open(str(path), "rb") as channels:
        count, frames = channels.getnchannels(), channels.readframes(channels.getnframes())
    if count > MAX_CHANNELS:
        raise InvalidMedia(f"multichannel takes at most {MAX_CHANNELS} channels; this file has {count}")
    samples = np.frombuffer(frames, dtype=np.int16).reshape(-1, count)
    seconds = len(samples) / SAMPLE_RATE
    segments: list[Segment] = []
    parts: list[TranscriptionResult] = []
    for index in range(count):
        mono = ctx.path(f"channel_{index}.wav")
        with wave.open(str(mono), "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(SAMPLE_RATE)
            out.writeframes(np.ascontiguousarray(samples[:, index]).tobytes())
        try:
            part = backend.transcribe(str(mono), options=options, on_segment=_share(on_segment, index, count, seconds))
        finally:
            mono.unlink(missing_ok=True)
        name = f"channel_{index}"
        segments += [replace(seg, speaker=name, words=[replace(w, speaker=name) for w in seg.words]
                             if seg.words is not None else None) for seg in part.segments]
        parts.append(part)
    segments.sort(key=lambda seg: (seg.start, seg.end))
    language = next((p.language for p in parts if p.language), None)
    return TranscriptionResult(language=language, duration=seconds, model=parts[0].model, segments=segments)


def _share(on_segment: SegmentCallback, index: int, count: int, seconds: float) -> SegmentCallback:
    """Channel ``index`` of ``count`` reports the part of the stage's progress it covers."""
    return lambda end: on_segment((index + end / seconds) * seconds / count if seconds else 0.0)


def _with_speakers(ctx: StageContext, wav: str, result: TranscriptionResult, share: float) -> TranscriptionResult:
    """The transcript with every segment and word given its speaker (diarization's own share of
    the progress, cancellable between batches)."""
    samples = read_wav(wav)
    if samples is None:  # audio_convert always writes 16 kHz mono 16-bit PCM
        raise DiarizationUnavailable("the converted audio is not 16 kHz mono PCM")
    payload = ctx.payload
    began = time.perf_counter()

    def on_batch(done: float) -> None:
        ctx.check_stopped()
        ctx.report_progress({"percent": round(100 * (share + (1 - share) * done), 1), "diarization": round(done, 3),
                             "audio_seconds_done": round(result.duration, 2)})

    turns = diarize.diarize(samples, ctx.settings.model_path, speakers=payload.get("speakers"),
                            min_speakers=payload.get("min_speakers") or 1,
                            max_speakers=payload.get("max_speakers") or 8, progress=on_batch)
    log.info("job %s: %d speakers in %d turns (%.2f s)", ctx.job_id, len({t.speaker for t in turns}), len(turns),
             time.perf_counter() - began)
    segments = diarize.label_segments(result.segments, turns)
    return replace(result, segments=segments)
