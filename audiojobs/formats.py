"""A stored transcript in the forms people use: json, verbose_json (OpenAI's shape), text, srt, vtt.

Subtitle cues keep to a line width, a number of lines and a duration; a long segment is split at
word boundaries, timed by its word timestamps when the job asked for them, else in proportion to
the characters spoken.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from typing import Any

from audiojobs.transcription.languages import LANGUAGES

FORMATS = ("json", "verbose_json", "text", "srt", "vtt")
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


def verbose_json(transcript: dict[str, Any]) -> dict[str, Any]:
    """OpenAI's ``verbose_json``: task, language (a name), duration, text, segments, words when asked for."""
    body: dict[str, Any] = {"task": "transcribe",
                            "language": LANGUAGES.get(transcript.get("language") or "", transcript.get("language")),
                            "duration": transcript["duration"], "text": transcript["text"],
                            "segments": [{k: v for k, v in seg.items() if k != "words"}
                                         for seg in transcript["segments"]]}
    words = [w for seg in transcript["segments"] for w in seg.get("words") or []]
    if any("words" in seg for seg in transcript["segments"]):
        body["words"] = [{"word": w["word"], "start": w["start"], "end": w["end"]} for w in words]
    return body


def _timed_words(seg: dict[str, Any]) -> list[tuple[str, float, float]]:
    """(word, start, end) for a segment: its own word timestamps, else spread by characters."""
    if seg.get("words"):
        return [(w["word"].strip(), float(w["start"]), float(w["end"])) for w in seg["words"] if w["word"].strip()]
    words = seg["text"].split()
    total = sum(len(w) + 1 for w in words) or 1
    start, span = float(seg["start"]), max(0.0, float(seg["end"]) - float(seg["start"]))
    timed, done = [], 0
    for word in words:
        begin = start + span * done / total
        done += len(word) + 1
        timed.append((word, begin, start + span * done / total))
    return timed


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
                out.append(_cue(current, style))
                current = [word]
            else:
                current = candidate
        if current:
            out.append(_cue(current, style))
    return out


def _cue(words: list[tuple[str, float, float]], style: SubtitleStyle) -> Cue:
    text = " ".join(w for w, _s, _e in words)
    return Cue(words[0][1], max(words[-1][2], words[0][1]), textwrap.wrap(text, style.max_line_chars,
                                                                         break_long_words=True))


def _stamp(seconds: float, separator: str) -> str:
    millis = int(round(max(0.0, seconds) * 1000))
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def srt(segments: list[dict[str, Any]], style: SubtitleStyle = SubtitleStyle()) -> str:
    blocks = [f"{i}\n{_stamp(c.start, ',')} --> {_stamp(c.end, ',')}\n" + "\n".join(c.lines)
              for i, c in enumerate(cues(segments, style), start=1)]
    return "\n\n".join(blocks) + ("\n" if blocks else "")


def vtt(segments: list[dict[str, Any]], style: SubtitleStyle = SubtitleStyle()) -> str:
    blocks = [f"{_stamp(c.start, '.')} --> {_stamp(c.end, '.')}\n" + "\n".join(c.lines)
              for c in cues(segments, style)]
    return "WEBVTT\n\n" + "\n\n".join(blocks) + ("\n" if blocks else "")


def text(transcript: dict[str, Any]) -> str:
    return str(transcript["text"]).strip() + "\n"
