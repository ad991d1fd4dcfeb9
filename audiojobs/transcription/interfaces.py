"""The contract every transcription backend keeps."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class Word:
    start: float
    end: float
    word: str
    probability: float | None = None
    speaker: str | None = None  # with diarization: who said it

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"word": self.word, "start": round(self.start, 3), "end": round(self.end, 3)}
        if self.probability is not None:
            data["probability"] = round(self.probability, 4)
        if self.speaker is not None:
            data["speaker"] = self.speaker
        return data


@dataclass(frozen=True)
class Segment:
    """One decoded segment; the decoder's own measures are kept when the backend reports them."""

    start: float
    end: float
    text: str
    words: list[Word] | None = None
    avg_logprob: float | None = None
    compression_ratio: float | None = None
    no_speech_prob: float | None = None
    temperature: float | None = None
    seek: int | None = None
    tokens: list[int] | None = None
    speaker: str | None = None  # with diarization: who said it (a segment never spans a change)

    def to_dict(self, index: int) -> dict[str, Any]:
        data: dict[str, Any] = {"id": index, "start": round(self.start, 3), "end": round(self.end, 3),
                                "text": self.text}
        if self.speaker is not None:
            data["speaker"] = self.speaker
        for name in ("seek", "tokens", "temperature", "avg_logprob", "compression_ratio", "no_speech_prob"):
            value = getattr(self, name)
            if value is not None:
                data[name] = round(value, 4) if isinstance(value, float) else value
        if self.words is not None:
            data["words"] = [w.to_dict() for w in self.words]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Segment:
        words = data.get("words")
        return cls(float(data["start"]), float(data["end"]), data["text"],
                   words=[Word(float(w["start"]), float(w["end"]), w["word"], w.get("probability"), w.get("speaker"))
                          for w in words] if words is not None else None,
                   avg_logprob=data.get("avg_logprob"), compression_ratio=data.get("compression_ratio"),
                   no_speech_prob=data.get("no_speech_prob"), temperature=data.get("temperature"),
                   seek=data.get("seek"), tokens=data.get("tokens"), speaker=data.get("speaker"))


@dataclass(frozen=True)
class TranscribeOptions:
    """What a submit may ask of the decoder (both backends; ``hotwords`` and ``vad_filter`` are
    faster-whisper's own and ignored by openai-whisper)."""

    language: str | None = None
    word_timestamps: bool = False
    initial_prompt: str | None = None
    hotwords: str | None = None
    vad_filter: bool = False

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> TranscribeOptions:
        return cls(language=payload.get("language"), word_timestamps=bool(payload.get("word_timestamps")),
                   initial_prompt=payload.get("initial_prompt"), hotwords=payload.get("hotwords"),
                   vad_filter=bool(payload.get("vad_filter")))


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
                   segments=[Segment.from_dict(s) for s in data["segments"]])


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

    def transcribe(self, wav_path: str, *, options: TranscribeOptions | None = None,
                   on_segment: SegmentCallback | None = None) -> TranscriptionResult:
        ...
