from __future__ import annotations

from audiojobs.pipeline.chunk import Span, chunk, chunk_sentences, sentences_from_segments

JFK_SEGMENTS = [
    {"start": 0.0, "end": 8.0, "text": " And so, my fellow Americans ask not what your country can do for you"},
    {"start": 8.0, "end": 11.0, "text": " ask what you can do for your country."},
]


def test_a_sentence_spanning_segments_is_one_sentence() -> None:
    sentences = sentences_from_segments(JFK_SEGMENTS)
    assert len(sentences) == 1
    assert sentences[0].start == 0.0 and sentences[0].end == 11.0
    assert sentences[0].text.startswith("And so,") and sentences[0].text.endswith("country.")


def test_sentences_inside_one_segment_share_its_time() -> None:
    sentences = sentences_from_segments([{"start": 10.0, "end": 20.0, "text": "One two three. Four five six!"}])
    assert [s.text for s in sentences] == ["One two three.", "Four five six!"]
    assert sentences[0].start == 10.0 and sentences[1].end == 20.0
    assert 10.0 < sentences[0].end == sentences[1].start < 20.0


def _sentences(n: int, length: int = 40) -> list[Span]:
    return [Span(f"S{i:02d} " + "w" * (length - 5) + ".", float(i), float(i + 1)) for i in range(n)]


def test_chunks_respect_max_size_and_keep_times() -> None:
    chunks = chunk_sentences(_sentences(20), max_chars=200, overlap_chars=0)
    assert all(len(c.text) <= 200 for c in chunks)
    assert chunks[0].start == 0.0 and chunks[-1].end == 20.0
    # Without overlap every sentence appears exactly once, in order.
    joined = " ".join(c.text for c in chunks)
    assert [w for w in joined.split() if w.startswith("S")] == [f"S{i:02d}" for i in range(20)]
    assert all(a.end <= b.start for a, b in zip(chunks, chunks[1:], strict=False))


def test_overlap_repeats_whole_trailing_sentences() -> None:
    chunks = chunk_sentences(_sentences(20), max_chars=200, overlap_chars=90)
    assert len(chunks) > 1
    for prev, nxt in zip(chunks, chunks[1:], strict=False):
        first = nxt.text.split()[0]
        assert first in prev.text  # starts with a sentence the previous chunk ended with
        assert len(nxt.text) <= 200
    seen = {w for c in chunks for w in c.text.split() if w.startswith("S")}
    assert seen == {f"S{i:02d}" for i in range(20)}


def test_overlong_sentence_is_cut_at_words_with_interpolated_times() -> None:
    long = Span(" ".join(f"word{i}" for i in range(100)) + ".", 0.0, 100.0)
    chunks = chunk_sentences([long], max_chars=120, overlap_chars=0)
    assert len(chunks) > 1 and all(len(c.text) <= 120 for c in chunks)
    assert chunks[0].start == 0.0 and abs(chunks[-1].end - 100.0) < 0.01
    starts = [c.start for c in chunks]
    assert starts == sorted(starts)
    assert " ".join(c.text for c in chunks).split() == long.text.split()


def test_empty_transcript_has_no_chunks() -> None:
    assert chunk_sentences(sentences_from_segments([]), 100, 10) == []
    assert sentences_from_segments([{"start": 0, "end": 1, "text": "   "}]) == []


LONG = [{"start": float(i * 5), "end": float(i * 5 + 5),
         "text": f" Sentence number {i} says a few plain words here."} for i in range(12)]


def test_words_strategy_counts_words_and_overlaps_them() -> None:
    from audiojobs.pipeline.chunk import chunk

    chunks = chunk(LONG, "words", size=20, overlap=5)
    assert all(len(c.text.split()) <= 20 for c in chunks) and len(chunks) > 3
    for prev, nxt in zip(chunks, chunks[1:], strict=False):
        assert prev.text.split()[-5:] == nxt.text.split()[:5]  # exactly the overlap, whole words
        assert prev.start <= nxt.start and nxt.start < prev.end
    assert chunks[0].start == 0.0 and chunks[-1].end == 60.0


def test_word_timestamps_time_word_chunks() -> None:
    from audiojobs.pipeline.chunk import chunk

    words = "one two three four".split()
    seg = {"start": 0.0, "end": 4.0, "text": " one two three four",
           "words": [{"word": f" {w}", "start": float(i), "end": i + 0.5} for i, w in enumerate(words)]}
    chunks = chunk([seg], "words", size=2, overlap=0)
    assert [(c.text, c.start, c.end) for c in chunks] == [("one two", 0.0, 1.5), ("three four", 2.0, 3.5)]


def test_tokens_strategy_uses_whispers_tokenizer() -> None:
    from audiojobs.pipeline.chunk import chunk, token_counter

    count = token_counter()
    assert count(" And so my fellow Americans") == 5  # real BPE tokens, not characters or words
    chunks = chunk(LONG, "tokens", size=30, overlap=0)
    assert all(count(" " + c.text) <= 30 for c in chunks) and len(chunks) > 3
    assert " ".join(c.text for c in chunks).split() == " ".join(s["text"] for s in LONG).split()


def test_time_strategy_packs_whole_sentences_by_seconds() -> None:
    from audiojobs.pipeline.chunk import chunk

    chunks = chunk(LONG, "time", size=15, overlap=5)
    assert all(c.end - c.start <= 15 for c in chunks)
    assert [c.start for c in chunks] == sorted(c.start for c in chunks)
    assert all(c.text.endswith(".") for c in chunks)  # whole sentences
    assert chunks[-1].end == 60.0


def test_a_diarized_sentence_never_spans_two_speakers_and_chunks_list_theirs() -> None:
    segments = [{"start": 0.0, "end": 2.0, "text": " So what do you", "speaker": "A"},
                {"start": 2.0, "end": 3.0, "text": " think", "speaker": "A"},
                {"start": 3.1, "end": 5.0, "text": " I think it works. It does.", "speaker": "B"},
                {"start": 5.2, "end": 6.0, "text": " Good.", "speaker": "A"}]
    sentences = sentences_from_segments(segments)
    assert [(s.text, s.speakers) for s in sentences] == [
        ("So what do you think", ("A",)), ("I think it works.", ("B",)), ("It does.", ("B",)), ("Good.", ("A",))]
    chunks = chunk(segments, "sentences", 45, 0)
    assert [(c.text, c.speakers) for c in chunks] == [("So what do you think I think it works.", ("A", "B")),
                                                      ("It does. Good.", ("B", "A"))]
    assert {c.speakers for c in chunk(segments, "words", 3, 0)} >= {("A",), ("A", "B")}
    plain = [{k: v for k, v in s.items() if k != "speaker"} for s in segments]
    assert {c.speakers for c in chunk(plain, "sentences", 45, 0)} == {()}
