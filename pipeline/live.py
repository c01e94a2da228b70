"""Live (realtime) transcription sessions: what the API and the live workers share.

A session lives in Redis, so that the process holding the client's socket (the API) and the
one decoding its audio (a live worker) are apart, and a worker that dies can be replaced:

- ``wp:live:<id>`` (hash): the owner, the session's configuration, where the committed turns
  end (``committed_id``: the last entry of the input stream that no turn still needs), the
  turns counted so far, and the text already sent of the turn in progress;
- ``wp:live:<id>:in`` (stream): what the API sends, in order: ``audio`` (16 kHz mono s16le,
  converted from the client's format by the API, in base64), ``commit``, ``clear``, ``config``, ``end``.
  The worker trims it up to ``committed_id``, so its length is the audio not yet committed;
- ``wp:live:<id>:out`` (stream, capped): the server events the worker makes, for the API to
  send on. Each one is announced on ``wp:live:<id>:wake`` (pub/sub) so that the API process
  reads them through its one subscriber instead of a blocking read per session;
- ``wp:live:<id>:lease``: the worker that holds the session, renewed every second. When it
  lapses while the session is open, the API tells the client and queues the session again:
  the next worker goes on from ``committed_id``, so committed turns are never decoded twice
  and never lost.

The live worker (``pipeline.worker.live``) is Dramatiq on the ``live`` queue (the Procfile's ``live`` process): each of
its threads holds one session, and it prefetches as many messages as it has threads, so that a
full worker never sits on a session another could take. ``--threads`` is how many sessions it
holds; more processes (or hosts) hold more.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any, cast

import numpy as np
import redis

from pipeline import keys
from pipeline.errors import InvalidOption, LiveEventError
from pipeline.options import TranscribeOptions
from pipeline.settings import Settings

log = logging.getLogger(__name__)

SAMPLE_RATE = 16_000  # what the workers decode
LEASE_MS = 3_000  # a worker renews its lease each second; three missed, it is presumed dead
OUT_MAXLEN = 2_000  # server events kept for the API (it reads them within moments)
MAX_APPEND_SECONDS = 15.0  # one input_audio_buffer.append (OpenAI: 15 MiB of base64)
MAX_TURN_SECONDS = 25.0  # a turn longer than this is cut: Whisper sees 30 s at most

FORMATS = {("audio/pcm", 24_000), ("audio/pcm", 16_000), ("audio/pcmu", 8_000), ("audio/pcma", 8_000)}


session_key = keys.live_key
in_key = keys.live_in_key
out_key = keys.live_out_key
wake_channel = keys.live_wake_channel
lease_key = keys.live_lease_key
# Every key of a session expires, even one whose API process died without closing it.
SESSION_TTL = 6 * 3600


def new_session_id() -> str:
    return "sess_" + uuid.uuid4().hex[:24]


def event_id() -> str:
    return "event_" + uuid.uuid4().hex[:20]


# -- the session's configuration -------------------------------------------------------------

@dataclass(frozen=True)
class TurnDetection:
    type: str = "server_vad"  # or "none" (the client commits)
    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500


@dataclass(frozen=True)
class LiveConfig:
    format: str = "audio/pcm"
    rate: int = 24_000
    model: str = "whisper-1"  # as asked; ``engine_model`` is what decodes
    engine_model: str = "tiny.en"
    language: str | None = None
    prompt: str = ""
    turn_detection: TurnDetection = field(default_factory=TurnDetection)
    record: bool = False

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: str) -> LiveConfig:
        data = json.loads(raw)
        data["turn_detection"] = TurnDetection(**data["turn_detection"])
        return cls(**data)

    @classmethod
    def default(cls, settings: Settings, *, record: bool = False) -> LiveConfig:
        return cls(engine_model=settings.default_model, record=record)

    def session_object(self, session_id: str) -> dict[str, Any]:
        """The session as OpenAI's ``session.created``/``session.updated`` show it."""
        fmt: dict[str, Any] = {"type": self.format}
        if self.format == "audio/pcm":
            fmt["rate"] = self.rate
        detection: dict[str, Any] | None = None
        if self.turn_detection.type == "server_vad":
            detection = {"type": "server_vad", "threshold": self.turn_detection.threshold,
                         "prefix_padding_ms": self.turn_detection.prefix_padding_ms,
                         "silence_duration_ms": self.turn_detection.silence_duration_ms}
        return {
            "type": "transcription", "id": session_id, "object": "realtime.transcription_session",
            "audio": {"input": {"format": fmt, "noise_reduction": None, "turn_detection": detection,
                                "transcription": {"model": self.model, "language": self.language,
                                                  "prompt": self.prompt}}},
            "include": [], "record": self.record,
        }

    def updated(self, session: Any, settings: Settings) -> LiveConfig:
        """This configuration with a ``session.update``'s ``session`` applied, or LiveEventError
        naming the field. What OpenAI's transcription sessions take and this service does not
        do (noise reduction, semantic VAD, logprobs) is refused, not silently ignored."""
        if not isinstance(session, Mapping):
            raise LiveEventError("session must be an object.", code="invalid_value", param="session")
        kind = session.get("type", "transcription")
        if kind != "transcription":
            raise LiveEventError(f"Only transcription sessions are served here, not {kind!r}.",
                                 code="invalid_value", param="session.type")
        known = {"type", "audio", "include", "record", "id", "object"}
        unknown = sorted(set(session) - known)
        if unknown:
            raise LiveEventError(f"Unknown session field {unknown[0]!r}.", code="unknown_parameter",
                                 param=f"session.{unknown[0]}")
        if session.get("include"):
            raise LiveEventError("include (logprobs) is not supported.", code="invalid_value",
                                 param="session.include")
        config = self
        if "record" in session:
            if not isinstance(session["record"], bool):
                raise LiveEventError("record must be true or false.", code="invalid_type", param="session.record")
            config = replace(config, record=session["record"])
        audio = session.get("audio") or {}
        if not isinstance(audio, Mapping) or not isinstance(audio.get("input") or {}, Mapping):
            raise LiveEventError("session.audio.input must be an object.", code="invalid_type",
                                 param="session.audio.input")
        source = audio.get("input") or {}
        here = "session.audio.input"
        for name in sorted(set(source) - {"format", "transcription", "turn_detection", "noise_reduction"}):
            raise LiveEventError(f"Unknown field {name!r}.", code="unknown_parameter", param=f"{here}.{name}")
        if source.get("noise_reduction"):
            raise LiveEventError("noise_reduction is not supported; leave it null.", code="invalid_value",
                                 param=f"{here}.noise_reduction")
        if "format" in source:
            config = _with_format(config, source["format"], f"{here}.format")
        if "transcription" in source:
            config = _with_transcription(config, source["transcription"], settings, f"{here}.transcription")
        if "turn_detection" in source:
            config = _with_turn_detection(config, source["turn_detection"], f"{here}.turn_detection")
        return config


def _with_format(config: LiveConfig, fmt: Any, param: str) -> LiveConfig:
    if not isinstance(fmt, Mapping) or not isinstance(fmt.get("type"), str):
        raise LiveEventError("format must be an object with a type.", code="invalid_type", param=param)
    kind = fmt["type"]
    rate = fmt.get("rate", 24_000 if kind == "audio/pcm" else 8_000)
    if (kind, rate) not in FORMATS:
        raise LiveEventError(
            f"Unsupported audio format {kind!r} at {rate} Hz: use audio/pcm (24000 or 16000 Hz, "
            "16-bit little-endian mono), audio/pcmu or audio/pcma (G.711, 8000 Hz).",
            code="invalid_value", param=param)
    return replace(config, format=kind, rate=int(rate))


def _with_transcription(config: LiveConfig, spec: Any, settings: Settings, param: str) -> LiveConfig:
    if spec is None:
        return config  # transcription is what this session is for: null keeps it as it is
    if not isinstance(spec, Mapping):
        raise LiveEventError("transcription must be an object.", code="invalid_type", param=param)
    for name in sorted(set(spec) - {"model", "language", "prompt"}):
        raise LiveEventError(f"Unknown field {name!r}.", code="unknown_parameter", param=f"{param}.{name}")
    model = spec.get("model", config.model) or "whisper-1"
    language = spec.get("language", config.language)
    prompt = spec.get("prompt", config.prompt) or ""
    if not isinstance(prompt, str) or len(prompt) > 1000:
        raise LiveEventError("prompt must be text of at most 1000 characters.", code="invalid_value",
                             param=f"{param}.prompt")
    form: dict[str, Any] = {}
    if model != "whisper-1":
        form["model"] = model
    if language:
        form["language"] = language
    try:
        options = TranscribeOptions.parse(form, settings)
    except InvalidOption as exc:
        raise LiveEventError(exc.message, code="invalid_value", param=f"{param}.{exc.field}") from None
    return replace(config, model=str(model), engine_model=options.model, language=options.language,
                   prompt=prompt)


def _with_turn_detection(config: LiveConfig, spec: Any, param: str) -> LiveConfig:
    if spec is None or (isinstance(spec, Mapping) and spec.get("type") == "none"):
        return replace(config, turn_detection=TurnDetection(type="none"))
    if not isinstance(spec, Mapping) or spec.get("type", "server_vad") != "server_vad":
        kind = spec.get("type") if isinstance(spec, Mapping) else spec
        raise LiveEventError(f"turn_detection must be server_vad or null, not {kind!r}.",
                             code="invalid_value", param=f"{param}.type")
    current = config.turn_detection if config.turn_detection.type == "server_vad" else TurnDetection()
    values: dict[str, Any] = {}
    for name, low, high in (("threshold", 0.0, 1.0), ("prefix_padding_ms", 0, 2000),
                            ("silence_duration_ms", 100, 5000)):
        if spec.get(name) is None:
            continue
        value = spec[name]
        if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
            raise LiveEventError(f"{name} must be a number from {low} to {high}.", code="invalid_value",
                                 param=f"{param}.{name}")
        values[name] = float(value) if name == "threshold" else int(value)
    return replace(config, turn_detection=replace(current, type="server_vad", **values))


# -- audio -----------------------------------------------------------------------------------

def _g711_table(mu: bool) -> np.ndarray:
    codes = np.arange(256, dtype=np.int32)
    if mu:
        u = ~codes & 0xFF
        sign = u & 0x80
        exponent = (u >> 4) & 0x07
        mantissa = u & 0x0F
        magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
        values = np.where(sign != 0, -magnitude, magnitude)
    else:
        a = codes ^ 0x55
        sign = a & 0x80
        exponent = (a >> 4) & 0x07
        mantissa = a & 0x0F
        magnitude = np.where(exponent == 0, (mantissa << 4) + 8, ((mantissa << 4) + 0x108) << (exponent - 1))
        values = np.where(sign != 0, magnitude, -magnitude)
    return values.astype(np.int16)


ULAW = _g711_table(True)
ALAW = _g711_table(False)
# A short low-pass (cut-off near 7.5 kHz at 24 kHz) before taking two samples of every three:
# speech keeps its band and little of what lies above 8 kHz folds back into it.
_TAPS = np.sinc(np.arange(-8, 9) * (7_500 * 2 / 24_000)) * np.hamming(17)
_TAPS = (_TAPS / _TAPS.sum()).astype(np.float32)


class Converter:
    """The client's audio, in the session's format, to 16 kHz mono s16le: stateful, so that
    appends cut anywhere (even inside a sample) join up seamlessly."""

    def __init__(self, fmt: str, rate: int) -> None:
        self.fmt, self.rate = fmt, rate
        self._odd = b""  # half a 16-bit sample
        self._history = np.zeros(len(_TAPS) - 1, dtype=np.float32)
        self._pending = np.zeros(0, dtype=np.float32)  # filtered 24 kHz samples not yet used
        self._last = np.float32(0)  # the previous 8 kHz sample, for the one between

    def convert(self, data: bytes) -> bytes:
        if self.fmt in ("audio/pcmu", "audio/pcma"):
            samples = (ULAW if self.fmt == "audio/pcmu" else ALAW)[np.frombuffer(data, dtype=np.uint8)]
            return self._double(samples.astype(np.float32))
        data = self._odd + data
        whole = len(data) - len(data) % 2
        self._odd = data[whole:]
        samples = np.frombuffer(data[:whole], dtype="<i2")
        if self.rate == SAMPLE_RATE:
            return samples.astype("<i2").tobytes()
        return self._two_of_three(samples.astype(np.float32))

    def _two_of_three(self, samples: np.ndarray) -> bytes:
        padded = np.concatenate([self._history, samples])
        self._history = padded[-(len(_TAPS) - 1):]
        filtered = np.convolve(padded, _TAPS, mode="valid") if len(padded) >= len(_TAPS) else np.zeros(0)
        work = np.concatenate([self._pending, filtered.astype(np.float32)])
        usable = len(work) - len(work) % 3
        self._pending = work[usable:]
        groups = work[:usable].reshape(-1, 3)
        # Output sample j sits at input position 1.5 j: on a sample, then half-way between two.
        out = np.empty((len(groups), 2), dtype=np.float32)
        out[:, 0] = groups[:, 0]
        out[:, 1] = (groups[:, 1] + groups[:, 2]) / 2
        return _to_s16(out.reshape(-1))

    def _double(self, samples: np.ndarray) -> bytes:
        if not len(samples):
            return b""
        previous = np.concatenate([[self._last], samples[:-1]])
        out = np.empty((len(samples), 2), dtype=np.float32)
        out[:, 0] = (previous + samples) / 2
        out[:, 1] = samples
        self._last = samples[-1]
        return _to_s16(out.reshape(-1))


def _to_s16(samples: np.ndarray) -> bytes:
    return np.clip(np.rint(samples), -32768, 32767).astype("<i2").tobytes()


def bytes_per_second(fmt: str, rate: int) -> int:
    return rate if fmt in ("audio/pcmu", "audio/pcma") else rate * 2


def decode_append(audio: Any) -> bytes:
    """The ``audio`` of an ``input_audio_buffer.append``: base64, strictly."""
    if not isinstance(audio, str):
        raise LiveEventError("audio must be a base64 string.", code="invalid_type", param="audio")
    try:
        return base64.b64decode(audio, validate=True)
    except (binascii.Error, ValueError):
        raise LiveEventError("audio is not valid base64.", code="invalid_value", param="audio") from None


# -- Redis: the session's record and its two streams ------------------------------------------

class LiveStore:
    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    def create(self, session_id: str, owner: str, config: LiveConfig, ttl: int = SESSION_TTL) -> None:
        key = session_key(session_id)
        pipe = self.redis.pipeline()
        pipe.hset(key, mapping={"owner": owner, "config": config.to_json(), "state": "open",
                                "committed_id": "0-0", "turns": 0, "created_at": time.time()})
        pipe.expire(key, ttl)
        pipe.execute()

    def get(self, session_id: str) -> dict[str, str]:
        return cast(dict[str, str], self.redis.hgetall(session_key(session_id)))

    def config(self, session_id: str) -> LiveConfig:
        return LiveConfig.from_json(str(self.redis.hget(session_key(session_id), "config")))

    def set_config(self, session_id: str, config: LiveConfig) -> None:
        self.redis.hset(session_key(session_id), "config", config.to_json())

    def send(self, session_id: str, kind: str, payload: bytes | str = "") -> str:
        """An entry of the input stream; audio (bytes) travels as base64, the streams' one
        encoding being text."""
        data = base64.b64encode(payload).decode() if isinstance(payload, bytes) else payload
        pipe = self.redis.pipeline(transaction=False)
        pipe.xadd(in_key(session_id), {"k": kind, "d": data})
        pipe.expire(in_key(session_id), SESSION_TTL)
        return str(pipe.execute()[0])

    def emit(self, session_id: str, event: dict[str, Any], *,
             pipe: redis.client.Pipeline | None = None) -> None:
        """A server event for the API to send on (a worker's side). Given ``pipe``, the event
        is only queued on it: what the caller writes with it happens all at once or not."""
        event.setdefault("event_id", event_id())
        own = pipe is None
        pipe = self.redis.pipeline(transaction=False) if pipe is None else pipe
        pipe.xadd(out_key(session_id), {"e": json.dumps(event, ensure_ascii=False)},
                  maxlen=OUT_MAXLEN, approximate=True)
        pipe.expire(out_key(session_id), SESSION_TTL)
        pipe.publish(wake_channel(session_id), "")
        if own:
            pipe.execute()

    def events_after(self, session_id: str, last_id: str) -> list[tuple[str, dict[str, Any]]]:
        found = cast(list[Any], self.redis.xread({out_key(session_id): last_id}, count=500))
        if not found:
            return []
        return [(str(entry_id), json.loads(fields["e"])) for entry_id, fields in found[0][1]]

    def lease_holder(self, session_id: str) -> str | None:
        holder = self.redis.get(lease_key(session_id))
        return str(holder) if holder is not None else None

    def take_lease(self, session_id: str, worker: str) -> bool:
        return bool(self.redis.set(lease_key(session_id), worker, nx=True, px=LEASE_MS))

    def renew_lease(self, session_id: str, worker: str) -> bool:
        key = lease_key(session_id)
        if self.redis.get(key) != worker:
            return False
        self.redis.set(key, worker, px=LEASE_MS)
        return True

    def drop_lease(self, session_id: str, worker: str) -> None:
        if self.redis.get(lease_key(session_id)) == worker:
            self.redis.delete(lease_key(session_id))

    def close(self, session_id: str, ttl: int = 60) -> None:
        """The session is over: its record and streams go soon (a worker still finishing reads
        ``state`` and stops)."""
        pipe = self.redis.pipeline()
        pipe.hset(session_key(session_id), "state", "closed")
        for key in (session_key(session_id), in_key(session_id), out_key(session_id)):
            pipe.expire(key, ttl)
        pipe.execute()
