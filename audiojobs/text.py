"""Small text helpers shared by chunking and analysis."""

from __future__ import annotations

import re

# Whisper punctuates its output, so terminal punctuation followed by space is a sentence end.
_SENTENCE_END = re.compile(r"(?<=[.!?…])[\"')\]]*\s+")
_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*", re.UNICODE)


def split_sentences(text: str) -> list[str]:
    """Sentences of ``text``, whitespace-trimmed, empty ones dropped."""
    return [s.strip() for s in _SENTENCE_END.split(text.strip()) if s.strip()]


def words(text: str) -> list[str]:
    """Lower-cased words of ``text`` (letters and digits, inner apostrophes kept)."""
    return [w.lower() for w in _WORD.findall(text)]


def spread_words(text: str, start: float, end: float) -> list[tuple[str, float, float]]:
    """(word, start, end) for each word of ``text`` spoken from ``start`` to ``end``, each given a
    share of the time in proportion to its characters (when no word timestamps are known)."""
    parts = text.split()
    total = sum(len(w) + 1 for w in parts) or 1
    span = max(0.0, end - start)
    timed, done = [], 0
    for word in parts:
        begin = start + span * done / total
        done += len(word) + 1
        timed.append((word, begin, start + span * done / total))
    return timed
