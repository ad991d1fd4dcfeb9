"""A stored transcript in the forms people use: json, verbose_json (OpenAI's shape), diarized_json
(OpenAI's, for jobs with ``diarize``), text, srt, vtt.

Subtitle cues keep to a line width, a number of lines and a duration; a long segment is split at
word boundaries, timed by its word timestamps when the job asked for them, else in proportion to
the characters spoken. With speakers, an SRT cue starts ``[A] ``, a VTT cue is a voice span
``<v A>…``, and text has one line per speaker turn (``A: …``).
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from typing import Any

from audiojobs.text import spread_words
from audiojobs.transcription.languages import LANGUAGES

FORMATS = ("json", "verbose_json", "diarized_json", "text", "srt", "vtt")
MIME = {"text": "text/plain", "srt": "application/x-subrip", "vtt": "text/vtt"}


@dataclass(frozen=True)
class SubtitleStyle:
    max_line_chars: int = 42
    max_lines: int = 2
    max_seconds: float = 7.0


@dataclass(frozen=True)
class Cue:
    start: float
    end: float
    lines: list[str]
    speaker: str | None = None


def speakers(segments: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """Who spoke, in order of first appearance: label, total seconds, first start; None when the
    transcript has no speakers (the job did not ask for them)."""
    found: dict[str, dict[str, Any]] = {}
    for seg in segments:
        name = seg.get("speaker")
        if name is None:
            continue
        entry = found.setdefault(name, {"label": name, "total_seconds": 0.0, "first_start": float(seg["start"])})
        entry["total_seconds"] += max(0.0, float(seg["end"]) - float(seg["start"]))
    if not found:
        return None
    return [{**entry, "total_seconds": round(entry["total_seconds"], 3)} for entry in found.values()]


def diarized_json(transcript: dict[str, Any]) -> dict[str, Any]:
    """OpenAI's ``diarized_json``: task, duration, text, and segments with their speaker."""
    return {"task": "transcribe", "duration": transcript["duration"], "text": transcript["text"],
            "segments": [{"type": "transcript.text.segment", "id": f"seg_{index}", "start": seg["start"],
                          "end": seg["end"], "text": seg["text"].strip(), "speaker": seg.get("speaker")}
                         for index, seg in enumerate(transcript["segments"])]}


def verbose_json(transcript: dict[str, Any]) -> dict[str, Any]:
    """OpenAI's ``verbose_json``: task, language (a name), duration, text, segments, words when asked for."""
    body: dict[str, Any] = {"task": "transcribe",
                            "language": LANGUAGES.get(transcript.get("language") or "", transcript.get("language")),
                            "duration": transcript["duration"], "text": transcript["text"],
                            "segments": [{k: v for k, v in seg.items() if k != "words"}
                                         for seg in transcript["segments"]]}
    words = [w for seg in transcript["segments"] for w in seg.get("words") or []]
    if any("words" in seg for seg in transcript["segments"]):
        body["words"] = [{"word": w["word"], "start": w["start"], "end": w["end"],
                          **({"speaker": w["speaker"]} if "speaker" in w else {})} for w in words]
    return body


def _timed_words(seg: dict[str, Any]) -> list[tuple[str, float, float]]:
    """(word, start, end) for a segment: its own word timestamps, else spread by characters."""
    if seg.get("words"):
        return [(w["word"].strip(), float(w["start"]), float(w["end"])) for w in seg["words"] if w["word"].strip()]
    return spread_words(seg["text"], float(seg["start"]), float(seg["end"]))


def cues(segments: list[dict[str, Any]], style: SubtitleStyle = SubtitleStyle()) -> list[Cue]:
    out: list[Cue] = []
    for seg in segments:
        current: list[tuple[str, float, float]] = []
        for word in _timed_words(seg):
            candidate = [*current, word]
            text = " ".join(w for w, _s, _e in candidate)
            lines = textwrap.wrap(text, style.max_line_chars, break_long_words=True)
            too_long = current and (len(lines) > style.max_lines or word[2] - current[0][1] > style.max_seconds)
            if too_long:
                out.append(_cue(current, style, seg.get("speaker")))
                current = [word]
            else:
                current = candidate
        if current:
            out.append(_cue(current, style, seg.get("speaker")))
    return out


def _cue(words: list[tuple[str, float, float]], style: SubtitleStyle, speaker: str | None = None) -> Cue:
    text = " ".join(w for w, _s, _e in words)
    return Cue(words[0][1], max(words[-1][2], words[0][1]), textwrap.wrap(text, style.max_line_chars,
                                                                         break_long_words=True), speaker)


def _said(cue: Cue, before: str, after: str = "") -> str:
    """The cue's lines, the first one after the speaker's mark (``before`` with {} for the label)."""
    if cue.speaker is None:
        return "\n".join(cue.lines)
    return before.format(cue.speaker) + "\n".join(cue.lines) + after


def _stamp(seconds: float, separator: str) -> str:
    millis = int(round(max(0.0, seconds) * 1000))
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def srt(segments: list[dict[str, Any]], style: SubtitleStyle = SubtitleStyle()) -> str:
    blocks = [f"{i}\n{_stamp(c.start, ',')} --> {_stamp(c.end, ',')}\n" + _said(c, "[{}] ")
              for i, c in enumerate(cues(segments, style), start=1)]
    return "\n\n".join(blocks) + ("\n" if blocks else "")


def vtt(segments: list[dict[str, Any]], style: SubtitleStyle = SubtitleStyle()) -> str:
    blocks = [f"{_stamp(c.start, '.')} --> {_stamp(c.end, '.')}\n" + _said(c, "<v {}>", "</v>")
              for c in cues(segments, style)]
    return "WEBVTT\n\n" + "\n\n".join(blocks) + ("\n" if blocks else "")


def text(transcript: dict[str, Any]) -> str:
    """The plain text; with speakers, one line per speaker turn: ``A: …``."""
    if speakers(transcript["segments"]) is None:
        return str(transcript["text"]).strip() + "\n"
    turns: list[tuple[str, list[str]]] = []
    for seg in transcript["segments"]:
        said = seg["text"].strip()
        if not said:
            continue
        if turns and turns[-1][0] == seg.get("speaker"):
            turns[-1][1].append(said)
        else:
            turns.append((seg.get("speaker") or "?", [said]))
    return "".join(f"{name}: {' '.join(parts)}\n" for name, parts in turns)
