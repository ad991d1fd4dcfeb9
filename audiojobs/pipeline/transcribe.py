"""audio_transcribe: the WAV through the job's Whisper model; runs on the transcription (GPU) queue."""

from __future__ import annotations

from audiojobs.pipeline.context import TRANSCRIPT_NAME, WAV_NAME, StageContext
from audiojobs.transcription.registry import get_backend


def run(ctx: StageContext) -> None:
    wav = ctx.path(WAV_NAME)
    if not wav.is_file():
        from audiojobs.errors import StageError

        raise StageError("the converted audio is missing from the job's work directory", code="work_dir_missing")
    backend = get_backend(ctx.payload.get("model", "whisper-1"), ctx.settings)
    result = backend.transcribe(str(wav), language=ctx.payload.get("language"))
    ctx.write_json(TRANSCRIPT_NAME, result.to_dict())
