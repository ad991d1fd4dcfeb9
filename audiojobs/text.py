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
