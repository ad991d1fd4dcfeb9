"""audio_transcribe: the WAV through the job's Whisper model; runs on the transcription (GPU) queue."""

from __future__ import annotations

import time

from audiojobs import metrics
from audiojobs.pipeline.admission import redis_client
from audiojobs.pipeline.context import TRANSCRIPT_NAME, WAV_NAME, Outcome, StageContext
from audiojobs.transcription.interfaces import TranscribeOptions
from audiojobs.transcription.registry import get_backend


def run(ctx: StageContext) -> Outcome:
    wav = ctx.path(WAV_NAME)
    if not wav.is_file():
        from audiojobs.errors import StageError

        raise StageError("the converted audio is missing from the job's work directory", code="work_dir_missing")
    backend = get_backend(ctx.payload.get("model", "whisper-1"), ctx.settings)
    # Between segments: stop at once if the job was cancelled or taken over.
    started = time.perf_counter()
    result = backend.transcribe(str(wav), options=TranscribeOptions.from_payload(ctx.payload),
                                on_segment=lambda _end: ctx.check_stopped())
    ctx.check_stopped()
    if result.duration > 0:
        metrics.observe_rtf(redis_client(ctx.settings), backend.name, (time.perf_counter() - started) / result.duration)
    ctx.write_json(TRANSCRIPT_NAME, result.to_dict())
    return Outcome.DONE
