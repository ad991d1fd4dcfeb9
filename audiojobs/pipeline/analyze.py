"""audio_analyze: the transcript through the analysis provider named by ``api_name``."""

from __future__ import annotations

from contextlib import closing

from audiojobs.analysis.registry import get_provider
from audiojobs.analysis.transcripts import analyze_transcript
from audiojobs.pipeline.context import ANALYSIS_NAME, TRANSCRIPT_NAME, Outcome, StageContext


def run(ctx: StageContext) -> Outcome:
    """Store analysis.json; SKIPPED (and no analysis stored) when the job asked for none."""
    if not ctx.payload.get("perform_analysis", False):
        return Outcome.SKIPPED
    transcript = ctx.read_json(TRANSCRIPT_NAME)
    api_name = ctx.payload.get("api_name") or ctx.settings.analysis_default_api
    with closing(get_provider(api_name, ctx.settings)) as provider:
        result = analyze_transcript(provider, transcript, ctx.payload.get("analysis_prompt"), ctx.settings)
    ctx.check_stopped()
    ctx.write_json(ANALYSIS_NAME, result.to_dict())
    return Outcome.DONE
