"""The contract every transcription backend keeps."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class Segment:
    start: float
    end: float
    text: str

    def to_dict(self, index: int) -> dict[str, Any]:
        return {"id": index, "start": round(self.start, 3), "end": round(self.end, 3), "text": self.text}


@dataclass(frozen=True)
class TranscriptionResult:
    language: str | None
    duration: float
    model: str
    segments: list[Segment] = field(default_factory=list)

    @property
    def text(self) -> str:
        return " ".join(s.text.strip() for s in self.segments if s.text.strip())

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["segments"] = [s.to_dict(i) for i, s in enumerate(self.segments)]
        data["text"] = self.text
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TranscriptionResult:
        return cls(language=data.get("language"), duration=float(data["duration"]), model=data["model"],
                   segments=[Segment(float(s["start"]), float(s["end"]), s["text"]) for s in data["segments"]])


# Called after each decoded segment with (segment end in seconds); lets a caller report progress
# or stop a long transcription between segments by raising.
SegmentCallback = Callable[[float], None]


class TranscriptionBackend(Protocol):
    """A loaded model that turns a 16 kHz mono WAV file into timed text.

    Implementations load their weights once, in ``__init__``, and are reused for every job a
    worker process runs.
    """

    name: str
    model_label: str

    def transcribe(self, wav_path: str, *, language: str | None = None,
                   on_segment: SegmentCallback | None = None) -> TranscriptionResult:
        ...
