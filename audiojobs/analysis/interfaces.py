"""The contract every analysis provider keeps."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class AnalysisResult:
    provider: str
    model: str | None
    summary: str
    key_phrases: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"provider": self.provider, "model": self.model, "summary": self.summary,
                "key_phrases": list(self.key_phrases)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AnalysisResult:
        return cls(provider=data["provider"], model=data.get("model"), summary=data["summary"],
                   key_phrases=list(data.get("key_phrases", [])))


class AnalysisProvider(Protocol):
    """Summarises a transcript. Raises ``AnalysisFailed`` (or a transient error) on failure."""

    name: str

    def analyze(self, transcript_text: str) -> AnalysisResult:
        ...
