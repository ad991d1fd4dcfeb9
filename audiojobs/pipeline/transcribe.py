"""audio_transcribe: the WAV through the job's Whisper model, and, when the job asks (``diarize``),
who spoke when; runs on the transcription (GPU) queue."""

from __future__ import annotations

import logging
import time
from dataclasses import replace

from audiojobs import metrics
from audiojobs.errors import DiarizationUnavailable
from audiojobs.pipeline.context import TRANSCRIPT_NAME, WAV_NAME, Outcome, StageContext
from audiojobs.pipeline.convert import wav_duration
from audiojobs.redis_client import redis_client
from audiojobs.transcription.interfaces import TranscribeOptions, TranscriptionResult
from audiojobs.transcription.registry import get_backend
from audiojobs.transcription.wav import read_wav

log = logging.getLogger(__name__)

# The share of the stage's progress that diarization reports, when the job asked for it.
DIARIZE_SHARE = 0.2


def run(ctx: StageContext) -> Outcome:
    wav = ctx.fetch(WAV_NAME)  # from the store, unless this host has the copy audio_convert made
    backend = get_backend(ctx.payload.get("model", "whisper-1"), ctx.settings)
    started = time.perf_counter()
    duration = wav_duration(wav)
    diarizing = bool(ctx.payload.get("diarize"))
    if diarizing and not _diarization_installed():
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
    if diarizing:  # words place each speaker change inside a segment
        options = replace(options, word_timestamps=True)
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


def _diarization_installed() -> bool:
    from audiojobs.transcription import diarize

    return diarize.available()


def _with_speakers(ctx: StageContext, wav: str, result: TranscriptionResult, share: float) -> TranscriptionResult:
    """The transcript with every segment and word given its speaker (diarization's own share of
    the progress, cancellable between batches)."""
    from audiojobs.transcription import diarize

    samples = read_wav(wav)
    if samples is None:  # audio_convert always writes 16 kHz mono 16-bit PCM
        raise DiarizationUnavailable("the converted audio is not 16 kHz mono PCM")
    payload = ctx.payload
    began = time.perf_counter()

    def on_batch(done: float) -> None:
        ctx.check_stopped()
        ctx.report_progress({"percent": round(100 * (share + (1 - share) * done), 1), "diarization": round(done, 3),
                             "audio_seconds_done": round(result.duration, 2)})

    turns = diarize.diarize(samples, speakers=payload.get("speakers"), min_speakers=payload.get("min_speakers") or 1,
                            max_speakers=payload.get("max_speakers") or 8, progress=on_batch)
    log.info("job %s: %d speakers in %d turns (%.2f s)", ctx.job_id, len({t.speaker for t in turns}), len(turns),
             time.perf_counter() - began)
    segments = diarize.label_segments(result.segments, turns, keep_words=bool(payload.get("word_timestamps")))
    return replace(result, segments=segments)
