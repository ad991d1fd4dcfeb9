"""The contract every analysis provider keeps."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Protocol


@dataclass(frozen=True)
class AnalysisResult:
    provider: str
    model: str | None
    summary: str
    key_phrases: list[str] = field(default_factory=list)
    prompt: str | None = None  # the user's own prompt; None: the built-in summary and key phrases
    parts: int = 1  # transcript pieces summarised separately first (map-reduce) when over the context
    cached: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"provider": self.provider, "model": self.model, "summary": self.summary,
                "key_phrases": list(self.key_phrases), "prompt": self.prompt, "parts": self.parts,
                "cached": self.cached}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AnalysisResult:
        return cls(provider=data["provider"], model=data.get("model"), summary=data["summary"],
                   key_phrases=list(data.get("key_phrases", [])), prompt=data.get("prompt"),
                   parts=int(data.get("parts", 1)), cached=bool(data.get("cached", False)))

    def as_cached(self) -> AnalysisResult:
        return replace(self, cached=True)


class AnalysisProvider(Protocol):
    """Analyses a transcript. Raises ``AnalysisFailed`` on failure (after the provider's retries)."""

    name: str

    @property
    def model(self) -> str | None:
        ...

    def analyze(self, transcript_text: str, prompt: str | None = None) -> AnalysisResult:
        ...

    def close(self) -> None:
        """Release the provider's HTTP connections."""
