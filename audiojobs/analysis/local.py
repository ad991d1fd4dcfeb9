"""The built-in offline provider: a deterministic extractive summary and key phrases.

No network and no model: sentences are scored by how often their content words occur in the
whole transcript, and the best ones are kept in their original order. Same input, same output.
"""

from __future__ import annotations

import math
from collections import Counter

from audiojobs.analysis.interfaces import AnalysisResult
from audiojobs.errors import AnalysisFailed
from audiojobs.text import split_sentences, words

# Function words that carry no topic; a short list is enough for ranking, not for linguistics.
STOPWORDS = frozenset("""
a about above after again against all am an and any are as at be because been before being below between
both but by can could did do does doing down during each few for from further had has have having he her
here hers herself him himself his how i if in into is it its itself just let me more most my myself no nor
not now of off on once only or other our ours ourselves out over own same she should so some such than that
the their theirs them themselves then there these they this those through to too under until up very was we
were what when where which while who whom why will with would you your yours yourself yourselves also us
well oh uh um yeah okay ok like get got go going really thing things one two much many way
""".split())


class LocalAnalysisProvider:
    """Extractive: it follows no prompt, so a submit with ``analysis_prompt`` needs an LLM provider."""

    name = "local"
    model = None

    def __init__(self, max_summary_sentences: int = 5, max_key_phrases: int = 10) -> None:
        self.max_summary_sentences = max_summary_sentences
        self.max_key_phrases = max_key_phrases

    def analyze(self, transcript_text: str, prompt: str | None = None) -> AnalysisResult:
        if prompt is not None:
            raise AnalysisFailed("the local provider makes an extractive summary and follows no prompt; "
                                 "choose an LLM api_name (openai, anthropic, ollama)")
        sentences = split_sentences(transcript_text)
        content = [w for w in words(transcript_text) if w not in STOPWORDS and len(w) > 1]
        freq = Counter(content)
        summary = self._summary(sentences, freq)
        return AnalysisResult(provider=self.name, model=None, summary=summary,
                              key_phrases=self._key_phrases(sentences, freq))

    def close(self) -> None:
        pass

    def _summary(self, sentences: list[str], freq: Counter[str]) -> str:
        if not sentences:
            return ""
        keep = min(self.max_summary_sentences, max(1, math.ceil(len(sentences) / 5)))
        scored = []
        for index, sentence in enumerate(sentences):
            content = [w for w in words(sentence) if w in freq]
            score = sum(freq[w] for w in content) / math.sqrt(len(content)) if content else 0.0
            scored.append((-score, index))
        chosen = sorted(index for _score, index in sorted(scored)[:keep])
        return " ".join(sentences[i] for i in chosen)

    def _key_phrases(self, sentences: list[str], freq: Counter[str]) -> list[str]:
        # Bigrams of two content words that recur beat single words; ties break alphabetically.
        bigrams: Counter[str] = Counter()
        for sentence in sentences:
            tokens = words(sentence)
            for left, right in zip(tokens, tokens[1:], strict=False):
                if left in freq and right in freq:
                    bigrams[f"{left} {right}"] += 1
        candidates = [(count * 2, phrase) for phrase, count in bigrams.items() if count > 1]
        candidates += [(count, word) for word, count in freq.items()]
        ranked = sorted(candidates, key=lambda item: (-item[0], item[1]))
        phrases: list[str] = []
        for _score, phrase in ranked:
            if phrase not in phrases:
                phrases.append(phrase)
            if len(phrases) == self.max_key_phrases:
                break
        return phrases
