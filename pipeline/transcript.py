"""Result types. Plain dataclasses inside the pipeline; JSON only at the edges."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


def _drop_empty_speaker(data: dict[str, Any]) -> dict[str, Any]:
    # Transcripts without diarization (or channels) serialise exactly as they did before
    # speakers and channels existed.
    for name in ("speaker", "channel"):
        if data.get(name) is None:
            data.pop(name, None)
    return data


@dataclass(frozen=True)
class Word:
    start: float
    end: float
    word: str
    probability: float
    speaker: str | None = None
    # The audio channel it was heard on (from 1), for multichannel jobs only.
    channel: int | None = None


@dataclass(frozen=True)
class Segment:
    id: int
    start: float
    end: float
    text: str
    tokens: tuple[int, ...] = ()
    temperature: float = 0.0
    avg_logprob: float = 0.0
    compression_ratio: float = 0.0
    no_speech_prob: float = 0.0
    words: tuple[Word, ...] | None = None
    speaker: str | None = None
    channel: int | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["tokens"] = list(self.tokens)
        if self.words is None:
            del data["words"]
        else:
            data["words"] = [_drop_empty_speaker(w) for w in data["words"]]
        return _drop_empty_speaker(data)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Segment:
        words = data.get("words")
        return cls(
            id=int(data["id"]),
            start=float(data["start"]),
            end=float(data["end"]),
            text=str(data["text"]),
            tokens=tuple(data.get("tokens", ())),
            temperature=float(data.get("temperature", 0.0)),
            avg_logprob=float(data.get("avg_logprob", 0.0)),
            compression_ratio=float(data.get("compression_ratio", 0.0)),
            no_speech_prob=float(data.get("no_speech_prob", 0.0)),
            words=None if words is None else tuple(Word(**w) for w in words),
            speaker=data.get("speaker"),
            channel=None if data.get("channel") is None else int(data["channel"]),
        )


@dataclass(frozen=True)
class Redaction:
    """A span of the audio whose words were redacted, and the policy that matched them."""

    start: float
    end: float
    policy: str

    def to_dict(self) -> dict[str, Any]:
        return {"start": self.start, "end": self.end, "policy": self.policy}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Redaction:
        return cls(start=float(data["start"]), end=float(data["end"]), policy=str(data["policy"]))


@dataclass(frozen=True)
class Speaker:
    """One diarized speaker and how long they talk in the recording."""

    id: str
    talk_time: float

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "talk_time": self.talk_time}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Speaker:
        return cls(id=str(data["id"]), talk_time=float(data["talk_time"]))


@dataclass(frozen=True)
class Transcript:
    text: str
    language: str
    duration: float
    segments: tuple[Segment, ...] = field(default_factory=tuple)
    language_probability: float | None = None
    task: str = "transcribe"
    engine: str = ""
    model: str = ""
    device: str = ""
    # Empty unless the job was diarized.
    speakers: tuple[Speaker, ...] = ()
    # What the result does differently from what was asked, in words (an engine's nearest
    # equivalent of an option it lacks); empty for most jobs, and then left out of the JSON.
    warnings: tuple[str, ...] = ()
    # Multichannel jobs: the channels transcribed (from 1); empty otherwise.
    channels: tuple[int, ...] = ()
    # redact_pii jobs: where the redacted words are in the audio (no text: that is gone).
    redactions: tuple[Redaction, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "text": self.text,
            "language": self.language,
            "language_probability": self.language_probability,
            "duration": self.duration,
            "task": self.task,
            "engine": self.engine,
            "model": self.model,
            "device": self.device,
            "segments": [s.to_dict() for s in self.segments],
        }
        if self.speakers:
            data["speakers"] = [s.to_dict() for s in self.speakers]
        if self.warnings:
            data["warnings"] = list(self.warnings)
        if self.channels:
            data["channels"] = list(self.channels)
        if self.redactions:
            data["redactions"] = [r.to_dict() for r in self.redactions]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Transcript:
        return cls(
            text=data["text"],
            language=data["language"],
            duration=float(data["duration"]),
            segments=tuple(Segment.from_dict(s) for s in data.get("segments", ())),
            language_probability=data.get("language_probability"),
            task=data.get("task", "transcribe"),
            engine=data.get("engine", ""),
            model=data.get("model", ""),
            device=data.get("device", ""),
            speakers=tuple(Speaker.from_dict(s) for s in data.get("speakers", ())),
            warnings=tuple(str(w) for w in data.get("warnings", ())),
            channels=tuple(int(c) for c in data.get("channels", ())),
            redactions=tuple(Redaction.from_dict(r) for r in data.get("redactions", ())),
        )


@dataclass(frozen=True)
class Turn:
    """One stretch of time during which one speaker talks (overlapping turns are allowed)."""

    start: float
    end: float
    speaker: str

    @property
    def duration(self) -> float:
        return self.end - self.start
