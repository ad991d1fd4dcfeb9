"""audio_transcribe: the WAV through the job's Whisper model; runs on the transcription (GPU) queue."""

from __future__ import annotations

import logging
import time

from audiojobs import metrics
from audiojobs.pipeline.context import TRANSCRIPT_NAME, WAV_NAME, Outcome, StageContext
from audiojobs.pipeline.convert import wav_duration
from audiojobs.redis_client import redis_client
from audiojobs.transcription.interfaces import TranscribeOptions
from audiojobs.transcription.registry import get_backend

log = logging.getLogger(__name__)


def run(ctx: StageContext) -> Outcome:
    wav = ctx.fetch(WAV_NAME)  # from the store, unless this host has the copy audio_convert made
    backend = get_backend(ctx.payload.get("model", "whisper-1"), ctx.settings)
    started = time.perf_counter()
    duration = wav_duration(wav)
    batched = bool(getattr(backend, "uses_batches", lambda _path: False)(str(wav)))
    log.info("job %s: %.1f s of audio, %s", ctx.job_id, duration,
             "decoded in batches of windows" if batched else "decoded window by window")

    def on_segment(end: float) -> None:
        ctx.check_stopped()  # stop at once if the job was cancelled or taken over
        elapsed = time.perf_counter() - started
        done = min(end, duration)
        ctx.report_progress({"percent": round(100 * done / duration, 1) if duration else 0.0,
                             "audio_seconds_done": round(done, 2),
                             "eta_seconds": round(elapsed / done * (duration - done), 1) if done > 0 else None})

    result = backend.transcribe(str(wav), options=TranscribeOptions.from_payload(ctx.payload), on_segment=on_segment)
    ctx.report_progress({"percent": 100.0, "audio_seconds_done": round(result.duration, 2), "eta_seconds": 0.0},
                        force=True)
    ctx.check_stopped()
    if result.duration > 0:
        metrics.observe_rtf(redis_client(ctx.settings), backend.name, (time.perf_counter() - started) / result.duration)
    ctx.write_json(TRANSCRIPT_NAME, result.to_dict())
    return Outcome.DONE
