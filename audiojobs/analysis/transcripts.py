"""What an analysis reads of a transcript. With speakers (``diarize``), an LLM provider reads it turn
by turn (``A: …``, one line per turn) and every summary ends with how long each speaker talked; the
local provider reads the plain text (speaker labels would become its key phrases)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from audiojobs import formats
from audiojobs.analysis.cache import analyze_cached
from audiojobs.analysis.interfaces import AnalysisProvider, AnalysisResult
from audiojobs.config import Settings


def analyze_transcript(provider: AnalysisProvider, transcript: dict[str, Any], prompt: str | None,
                       settings: Settings) -> AnalysisResult:
    """``transcript``: its ``text`` and ``segments`` as stored."""
    who = formats.speakers(transcript.get("segments") or [])
    text = transcript["text"] if who is None or provider.name == "local" else formats.text(transcript)
    result = analyze_cached(provider, text, prompt, settings)
    if who is None:
        return result
    talked = ", ".join(f"{s['label']} {s['total_seconds']:.1f} s" for s in who)
    return replace(result, summary=f"{result.summary.rstrip()}\n\nSpeaking time: {talked}.")
