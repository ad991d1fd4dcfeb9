from __future__ import annotations

from audiojobs.analysis.local import LocalAnalysisProvider
from audiojobs.text import split_sentences

TEXT = ("The river floods every spring. Farmers along the river plant late because of the floods. "
        "A new dam upstream could hold the spring floods back. Critics say the dam would harm the fish. "
        "The council votes on the dam next week. Lunch was served at noon.")


def test_summary_is_extractive_ordered_and_deterministic() -> None:
    provider = LocalAnalysisProvider(max_summary_sentences=2)
    first = provider.analyze(TEXT)
    assert first == provider.analyze(TEXT)
    chosen = split_sentences(first.summary)
    originals = split_sentences(TEXT)
    assert len(chosen) == 2 and all(s in originals for s in chosen)
    assert [originals.index(s) for s in chosen] == sorted(originals.index(s) for s in chosen)
    assert "Lunch was served at noon." not in chosen


def test_key_phrases_are_the_recurring_topics() -> None:
    result = LocalAnalysisProvider().analyze(TEXT)
    assert result.provider == "local"
    assert {"dam", "river", "floods"} <= set(result.key_phrases[:5])
    assert "the" not in result.key_phrases


def test_empty_transcript() -> None:
    result = LocalAnalysisProvider().analyze("")
    assert result.summary == "" and result.key_phrases == []
