"""audio_chunk: sentence-aware chunks of the transcript, each with start and end seconds.

Segments are cut at sentence ends; the pieces are joined into whole sentences (a sentence may
span segments); sentences are packed greedily into chunks of at most ``max_chars``, each chunk
repeating whole trailing sentences of the previous one up to ``overlap_chars``. A sentence longer
than ``max_chars`` is cut at word boundaries, its times interpolated by character position.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from audiojobs.pipeline.context import CHUNKS_NAME, TRANSCRIPT_NAME, Outcome, StageContext
from audiojobs.text import split_sentences

SENTENCE_ENDINGS = (".", "!", "?", "…", '."', '?"', '!"')


@dataclass(frozen=True)
class Span:
    text: str
    start: float
    end: float


def sentences_from_segments(segments: list[dict[str, Any]]) -> list[Span]:
    pieces: list[Span] = []
    for seg in segments:
        text, start, end = seg["text"].strip(), float(seg["start"]), float(seg["end"])
        if not text:
            continue
        parts = split_sentences(text)
        pieces.extend(_spread(parts, start, end, len(text)))
    sentences: list[Span] = []
    pending: list[Span] = []
    for piece in pieces:
        pending.append(piece)
        if piece.text.endswith(SENTENCE_ENDINGS):
            sentences.append(_join(pending))
            pending = []
    if pending:
        sentences.append(_join(pending))
    return sentences


def _spread(parts: list[str], start: float, end: float, total_chars: int) -> list[Span]:
    """Give each part of a segment a share of its time in proportion to its length."""
    spans = []
    cursor = start
    length = max(1, sum(len(p) for p in parts) or total_chars)
    for part in parts:
        share = (end - start) * len(part) / length
        spans.append(Span(part, round(cursor, 3), round(cursor + share, 3)))
        cursor += share
    return spans


def _join(spans: list[Span]) -> Span:
    return Span(" ".join(s.text for s in spans), spans[0].start, spans[-1].end)


def _split_long(sentence: Span, max_chars: int) -> list[Span]:
    words = sentence.text.split()
    pieces: list[list[str]] = [[]]
    for word in words:
        candidate = " ".join([*pieces[-1], word])
        if pieces[-1] and len(candidate) > max_chars:
            pieces.append([word])
        else:
            pieces[-1].append(word)
    texts = [" ".join(p)[:max_chars] for p in pieces if p]
    return _spread(texts, sentence.start, sentence.end, len(sentence.text))


def chunk_sentences(sentences: list[Span], max_chars: int, overlap_chars: int) -> list[Span]:
    units: list[Span] = []
    for sentence in sentences:
        units.extend(_split_long(sentence, max_chars) if len(sentence.text) > max_chars else [sentence])
    chunks: list[list[Span]] = []
    current: list[Span] = []
    fresh = 0  # units in ``current`` that are not overlap from the previous chunk
    for unit in units:
        if current and len(_text(current + [unit])) > max_chars:
            if fresh:
                chunks.append(current)
            current = _overlap(current, overlap_chars, max_chars - len(unit.text) - 1)
            fresh = 0
        current.append(unit)
        fresh += 1
    if current and fresh:
        chunks.append(current)
    return [Span(_text(c), c[0].start, c[-1].end) for c in chunks]


def _text(units: list[Span]) -> str:
    return " ".join(u.text for u in units)


def _overlap(previous: list[Span], overlap_chars: int, room: int) -> list[Span]:
    """Trailing whole units of ``previous`` that fit both the overlap budget and the room left."""
    kept: list[Span] = []
    for unit in reversed(previous[1:]):  # never the whole previous chunk: each chunk must advance
        if len(_text([unit, *kept])) > min(overlap_chars, room):
            break
        kept.insert(0, unit)
    return kept


def run(ctx: StageContext) -> Outcome:
    """Write chunks.json (empty, and SKIPPED, when the job asked for no chunking)."""
    if not ctx.payload.get("perform_chunking", True):
        ctx.write_json(CHUNKS_NAME, [])
        return Outcome.SKIPPED
    transcript = ctx.read_json(TRANSCRIPT_NAME)
    sentences = sentences_from_segments(transcript["segments"])
    chunks = chunk_sentences(sentences, ctx.settings.chunk_max_chars, ctx.settings.chunk_overlap_chars)
    ctx.write_json(CHUNKS_NAME, [
        {"index": i, "text": c.text, "start": c.start, "end": c.end} for i, c in enumerate(chunks)
    ])
    return Outcome.DONE
