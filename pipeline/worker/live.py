"""A live session on a live worker: turn detection, re-decoding the turn in progress, and the
events the client sees (``pipeline.live`` says where the session lives in Redis).

- Turns: Silero VAD (the model faster-whisper ships), run window by window as audio arrives
  with its state carried, cuts at pauses (``server_vad``), or the client commits (no turn
  detection). A turn longer than ``MAX_TURN_SECONDS`` is cut there.
- Text while a turn grows: the turn so far is decoded again each time enough new audio has
  come (greedy, on a window just longer than the turn: a tenth of a second on tiny.en). A
  word is sent only once two decodes in a row agree on everything up to it
  (LocalAgreement-2), so the deltas only ever extend what was sent. One last decode (beam
  search, Whisper's 30 s window) gives the completed text; what it adds after the words
  already sent becomes a last delta. In a turn of up to ``EARLY_FINAL_MAX_TURN_SECONDS`` it
  runs as soon as a pause passes ``EARLY_FINAL_SECONDS``, while the pause may still end the
  turn, and again if speech resumes: so the turn completes once the pause is long enough,
  not a decode later.
- Handing over: the turn counter, the committed position and the text already sent of the
  turn in progress are in the session's record, so a successor goes on where this one stopped.
"""

from __future__ import annotations

import base64
import dataclasses
import logging
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import redis

from pipeline.live import (
    LEASE_MS,
    MAX_TURN_SECONDS,
    SAMPLE_RATE,
    LiveConfig,
    LiveStore,
    in_key,
    session_key,
)

log = logging.getLogger(__name__)

WINDOW = 512  # Silero's window at 16 kHz: 32 ms
CONTEXT = 64
# New audio in a turn before it is decoded again, at the least: one 100 ms append (the CLI's).
# Early in a turn a decode costs less than that, and two hypotheses 0.1 s apart agree on the
# first words more often than two 0.2 s apart, so the first text comes sooner.
STEP_SECONDS = 0.1
STEP_PER_COST = 1.5  # and at least this times what the last partial decode took
MIN_DECODE_SECONDS = 0.3
END_THRESHOLD_DROP = 0.15  # speech ends below threshold - this (Silero's own hysteresis)
ADVANCE_SECONDS = 1.0  # in silence, the committed position moves on this often
READ_BLOCK_MS = 100
PARTIAL_PAD_SECONDS = 2.0  # silence after the turn so far, in a partial decode's window
PARTIAL_MIN_SECONDS = 3.0
PARTIAL_TOKENS_PER_SECOND = 6  # fast speech is about four
REPEAT_NGRAM = 4
RESUME_WORDS = 2  # the words sent last, found again in a decode that moved them
RESUME_SLACK = 2  # words added or dropped before them, at most
EARLY_FINAL_SECONDS = 0.2  # silence after which the turn's completed text is decoded ahead of its end
# A longer turn's completed text costs more to decode than the pause it would save, and a pause
# inside it that does not end it throws that decode away.
EARLY_FINAL_MAX_TURN_SECONDS = 8.0
# A turn this long is ended by a shorter pause than silence_duration_ms: otherwise it runs on to
# MAX_TURN_SECONDS and is cut there, mid-word, and the turn after the cut starts mid-sentence,
# waiting for the long turn's completed text before its own first words.
LONG_TURN_SECONDS = 15.0
LONG_TURN_SILENCE_MS = 200

Decoder = Callable[[np.ndarray, LiveConfig, bool], str]


class StreamingVad:
    """Silero's speech probability for each 32 ms window, fed in pieces of any length: the
    same numbers as one pass over the whole recording (its LSTM state and context carried)."""

    def __init__(self) -> None:
        from faster_whisper.vad import get_vad_model

        self._session = get_vad_model().session
        self._h = np.zeros((1, 1, 128), dtype=np.float32)
        self._c = np.zeros((1, 1, 128), dtype=np.float32)
        self._context = np.zeros(CONTEXT, dtype=np.float32)
        self._rest = np.zeros(0, dtype=np.float32)

    def feed(self, samples: np.ndarray) -> np.ndarray:
        work = np.concatenate([self._rest, samples])
        whole = len(work) - len(work) % WINDOW
        self._rest = work[whole:]
        if not whole:
            return np.zeros(0, dtype=np.float32)
        windows = work[:whole].reshape(-1, WINDOW)
        contexts = np.concatenate([self._context[None, :], windows[:-1, -CONTEXT:]], 0)
        self._context = windows[-1, -CONTEXT:].copy()
        out, self._h, self._c = self._session.run(
            None, {"input": np.concatenate([contexts, windows], 1), "h": self._h, "c": self._c})
        return cast(np.ndarray, out).reshape(-1)


def _norm(word: str) -> str:
    return re.sub(r"[^\w']", "", word.lower())


def _agreed(a: list[str], b: list[str]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if _norm(x) != _norm(y):
            break
        n += 1
    return n


@dataclass
class Agreement:
    """LocalAgreement-2 over words: what two successive hypotheses share is stable."""

    sent: list[str] = field(default_factory=list)
    previous: list[str] | None = None

    def _resume(self, words: list[str], upto: int) -> int | None:
        """Where, in ``words``, what was sent ends: right after it, or after its last two words
        found near where they were sent (a decode that added or dropped a word before them,
        "Oh actually just" for the "actually just" sent, would otherwise stop the deltas for
        the rest of the turn)."""
        if _agreed(self.sent, words) == len(self.sent):
            return len(self.sent)
        tail = [_norm(w) for w in self.sent[-RESUME_WORDS:]]
        near = len(self.sent) - len(tail)
        for at in range(max(near - RESUME_SLACK, 0), min(near + RESUME_SLACK, upto - len(tail)) + 1):
            if [_norm(w) for w in words[at:at + len(tail)]] == tail:
                return at + len(tail)
        return None

    def _extend(self, words: list[str], upto: int) -> str:
        at = self._resume(words, upto)
        if at is None or upto <= at:
            return ""
        new = words[at:upto]
        delta = (" " if self.sent else "") + " ".join(new)
        self.sent.extend(new)
        return delta

    def update(self, hypothesis: str) -> str:
        words = hypothesis.split()
        previous, self.previous = self.previous, words
        if previous is None:
            return ""
        return self._extend(words, _agreed(previous, words))

    def finish(self, text: str) -> str:
        words = text.split()
        return self._extend(words, len(words))


def engine_model(ctx: Any, name: str) -> Any:
    """The faster-whisper model ``name`` from the worker's model cache (loaded once per
    process, shared by its sessions, as many copies as sessions decode at once): live
    sessions always decode with faster-whisper."""
    from pipeline.options import TranscribeOptions
    from pipeline.worker.engines import choose_device

    options = TranscribeOptions(engine="faster-whisper", model=name)
    key = ctx.models.key_for(options, choose_device(ctx.settings).device)
    # One copy per session decoding at once: with one, a session's decode waits for another's.
    engine = ctx.models.get(dataclasses.replace(key, replicas=ctx.live_decoders))
    return engine.model


def repeat_cut(words: list[str], n: int = REPEAT_NGRAM) -> list[str]:
    """``words`` up to where a run of ``n`` of them comes round again. A short window decoded
    greedily often loops on its own last phrase; real speech repeating four words within one
    turn is rarer, and costs only that the words after the repeat wait for the completed text."""
    seen: set[tuple[str, ...]] = set()
    norm = [_norm(w) for w in words]
    for i in range(len(norm) - n + 1):
        gram = tuple(norm[i:i + n])
        if gram in seen:
            return words[:i]
        seen.add(gram)
    return words


@dataclass
class _Vocabulary:
    tokenizer: Any
    suppressed: list[int]


def faster_whisper_decoder(get_model: Callable[[str], Any]) -> Decoder:
    """Decodes with the faster-whisper model ``get_model(name)`` gives (the worker's cache).

    - The completed text: ``transcribe`` (beam search, fallback), as a file's segment is.
    - Text while the turn grows: one greedy pass over a window just longer than the turn,
      not Whisper's padded 30 s. The encoder's cost grows with its input, so a 3 s turn is
      encoded in a tenth of the time; the window is padded with silence in the sample domain,
      so its features are what Whisper sees after a pause. A greedy pass on a short window
      may loop, so the tokens are capped by the turn's length and a repeat is cut off.
    """
    # By model name: an id() could come back for another model once the cache drops this one.
    vocabularies: dict[tuple[str, str], _Vocabulary] = {}

    def vocabulary(name: str, model: Any, language: str) -> _Vocabulary:
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import get_suppressed_tokens

        key = (name, language)
        if key not in vocabularies:
            tokenizer = Tokenizer(model.hf_tokenizer, model.model.is_multilingual, task="transcribe",
                                  language=language)
            vocabularies[key] = _Vocabulary(tokenizer, list(get_suppressed_tokens(tokenizer, [-1])))
        return vocabularies[key]

    def partial(model: Any, audio: np.ndarray, config: LiveConfig) -> str:
        language = config.language or ("en" if not model.model.is_multilingual else None)
        if language is None:  # which language is a 30 s window's question: the full pass answers it
            return whole(model, audio, config, final=False)
        words = vocabulary(config.engine_model, model, language)
        seconds = len(audio) / SAMPLE_RATE
        hop = model.feature_extractor.hop_length
        frames = int(min(max(seconds + PARTIAL_PAD_SECONDS, PARTIAL_MIN_SECONDS), 30.0) * SAMPLE_RATE) // hop
        padded = np.concatenate([audio, np.zeros(max(frames * hop - len(audio), 0) + hop, np.float32)])
        encoded = model.encode(model.feature_extractor(padded)[:, :frames])
        previous = words.tokenizer.encode(" " + config.prompt.strip()) if config.prompt else []
        prompt = model.get_prompt(words.tokenizer, previous, without_timestamps=True)
        result = model.model.generate(
            encoded, [prompt], beam_size=1, suppress_blank=True, suppress_tokens=words.suppressed,
            max_length=min(len(prompt) + int(seconds * PARTIAL_TOKENS_PER_SECOND) + 10, model.max_length))[0]
        return " ".join(repeat_cut(words.tokenizer.decode(result.sequences_ids[0]).split()))

    def whole(model: Any, audio: np.ndarray, config: LiveConfig, final: bool) -> str:
        segments, _info = model.transcribe(
            audio, language=config.language, beam_size=5 if final else 1, best_of=1,
            temperature=(0.0, 0.2, 0.4) if final else 0.0, condition_on_previous_text=False,
            without_timestamps=True, initial_prompt=config.prompt or None, vad_filter=False)
        # A segment Whisper itself judges silence (a breath, a click) adds no words.
        return "".join(s.text for s in segments if not (s.no_speech_prob > 0.6 and s.avg_logprob < -1.0)).strip()

    def decode(audio: np.ndarray, config: LiveConfig, final: bool) -> str:
        model = get_model(config.engine_model)
        return whole(model, audio, config, final) if final else partial(model, audio, config)

    return decode


class LiveSession:
    """One session's turns, fed the input stream's entries in order."""

    def __init__(self, store: LiveStore, session_id: str, record: dict[str, str], decoder: Decoder,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store, self.id, self.decode, self.clock = store, session_id, decoder, clock
        self.config = LiveConfig.from_json(record["config"])
        self.turns = int(record.get("turns", 0))
        self.previous_item = record.get("previous_item") or None
        self.committed_id = record.get("committed_id", "0-0")
        self.samples = int(record.get("samples_committed", 0))  # absolute position in the session
        self.vad = StreamingVad()
        self.audio = np.zeros(0, dtype=np.float32)  # the turn in progress, or the padding before one
        self.audio_start = self.samples  # absolute sample where ``audio`` begins
        self.in_speech = False
        self.silence = 0  # samples below the end threshold since the last speech window
        self.item: str | None = None
        self.started_item = record.get("started_item") or None
        self.committed_item = record.get("committed_item") or None
        self.agreement = Agreement()
        partial_item = record.get("partial_item")
        if partial_item:  # a predecessor sent part of this turn already: only extend it
            self.item = partial_item
            self.agreement.sent = record.get("partial_text", "").split()
        self.decoded_len = 0
        self.partial_cost = 0.0  # seconds the last partial decode took
        self.speech_end = self.samples  # absolute sample after the turn's last window of speech
        self.early: tuple[int, str] | None = None  # (speech_end, the completed text decoded there)
        self.last_advance = clock()
        self.ended = False

    # -- entries --------------------------------------------------------------------------------
    def handle(self, entry_id: str, kind: str, data: str) -> None:
        if kind == "audio":
            pcm = base64.b64decode(data)
            self._audio(entry_id, np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0)
        elif kind == "commit":
            self._commit(entry_id, by_client=True)
        elif kind == "clear":
            self._reset(entry_id, keep_padding=False)
            self.store.emit(self.id, {"type": "input_audio_buffer.cleared"})
        elif kind == "config":
            self.config = LiveConfig.from_json(data)
            self.early = None  # decoded with the language and prompt of before
        elif kind == "end":
            if self.item is not None and len(self.audio):
                self._commit(entry_id, by_client=False)
            self.ended = True
        self._advance_in_silence(entry_id)

    def _audio(self, entry_id: str, samples: np.ndarray) -> None:
        vad = self.config.turn_detection
        if vad.type != "server_vad":
            if self.item is None and len(samples):
                self.item = self._next_item()
            self.audio = np.concatenate([self.audio, samples])
            self.samples += len(samples)
            if len(self.audio) >= MAX_TURN_SECONDS * SAMPLE_RATE:
                self._commit(entry_id, by_client=False)
            return
        probabilities = self.vad.feed(samples)
        # Walk the windows in order: a turn may end, and the next begin, inside one append.
        offset = 0
        windows = [samples[i * WINDOW:(i + 1) * WINDOW] for i in range(len(probabilities))]
        tail = samples[len(probabilities) * WINDOW:]
        for probability, window in zip(probabilities, windows, strict=True):
            offset += len(window)
            self.audio = np.concatenate([self.audio, window])
            self.samples += len(window)
            if not self.in_speech:
                if probability >= vad.threshold:
                    self._speech_started()
                else:
                    self._keep_padding()
                continue
            if probability < vad.threshold - END_THRESHOLD_DROP:
                self.silence += len(window)
            else:
                self.silence = 0
                self.speech_end = self.samples
            if self.silence >= vad.silence_duration_ms * SAMPLE_RATE // 1000:
                self._speech_stopped(entry_id)
            elif len(self.audio) >= LONG_TURN_SECONDS * SAMPLE_RATE and \
                    self.silence >= LONG_TURN_SILENCE_MS * SAMPLE_RATE // 1000:
                self._speech_stopped(entry_id)
            elif len(self.audio) >= MAX_TURN_SECONDS * SAMPLE_RATE:
                self._speech_stopped(entry_id)
        if len(tail):
            self.audio = np.concatenate([self.audio, tail])
            self.samples += len(tail)
            if not self.in_speech:
                self._keep_padding()

    def _keep_padding(self) -> None:
        keep = self.config.turn_detection.prefix_padding_ms * SAMPLE_RATE // 1000
        if len(self.audio) > keep:
            self.audio = self.audio[len(self.audio) - keep:]
        self.audio_start = self.samples - len(self.audio)

    def _next_item(self) -> str:
        self.turns += 1
        item = f"item_{self.id.removeprefix('sess_')[:12]}_{self.turns:04d}"
        self.store.redis.hset(session_key(self.id), mapping={"turns": self.turns, "partial_item": item,
                                                            "partial_text": ""})
        return item

    def _speech_started(self) -> None:
        self.in_speech = True
        self.silence = 0
        self.speech_end = self.samples
        if self.item is None:
            self.item = self._next_item()
        if self.started_item != self.item:
            self.started_item = self.item
            pipe = self.store.redis.pipeline()
            self.store.emit(self.id, {"type": "input_audio_buffer.speech_started", "item_id": self.item,
                                      "audio_start_ms": self.audio_start * 1000 // SAMPLE_RATE}, pipe=pipe)
            pipe.hset(session_key(self.id), "started_item", self.item)
            pipe.execute()

    def _speech_stopped(self, entry_id: str) -> None:
        end_ms = (self.samples - self.silence // 2) * 1000 // SAMPLE_RATE
        self.store.emit(self.id, {"type": "input_audio_buffer.speech_stopped", "item_id": self.item,
                                  "audio_end_ms": end_ms})
        self._commit(entry_id, by_client=False)

    def _commit(self, entry_id: str, *, by_client: bool) -> None:
        if self.item is None or not len(self.audio):
            if by_client:
                self.store.emit(self.id, {"type": "error", "error": {
                    "type": "invalid_request_error", "code": "input_audio_buffer_commit_empty",
                    "message": "The input audio buffer holds no audio to commit.", "param": None}})
            return
        item, audio = self.item, self._turn_audio()
        if self.committed_item != item:  # a predecessor may have said so before it died
            self.committed_item = item
            pipe = self.store.redis.pipeline()
            self.store.emit(self.id, {"type": "input_audio_buffer.committed", "item_id": item,
                                      "previous_item_id": self.previous_item}, pipe=pipe)
            pipe.hset(session_key(self.id), "committed_item", item)
            pipe.execute()
        if self.early is not None and self.early[0] == self.speech_end and self.in_speech and self.silence:
            text = self.early[1]  # decoded in the pause, and no speech came since
        else:
            text = self._final_text(audio)
        delta = self.agreement.finish(text)
        # The turn's text and the position past it are written together: a worker killed in
        # between would otherwise leave a successor to complete the same turn again.
        pipe = self.store.redis.pipeline()
        if delta:
            self.store.emit(self.id, {"type": "conversation.item.input_audio_transcription.delta",
                                      "item_id": item, "content_index": 0, "delta": delta}, pipe=pipe)
        self.store.emit(self.id, {"type": "conversation.item.input_audio_transcription.completed",
                                  "item_id": item, "content_index": 0, "transcript": text,
                                  "usage": {"type": "duration", "seconds": round(len(audio) / SAMPLE_RATE, 3)}},
                        pipe=pipe)
        self.previous_item = item
        self._reset(entry_id, keep_padding=True, pipe=pipe)

    def _reset(self, entry_id: str, *, keep_padding: bool, pipe: redis.client.Pipeline | None = None) -> None:
        self.item = None
        self.in_speech = False
        self.silence = 0
        self.agreement = Agreement()
        self.decoded_len = 0
        self.early = None
        self.audio = self.audio[len(self.audio):]
        self.audio_start = self.samples
        self._save_position(entry_id, pipe)

    def _save_position(self, entry_id: str, pipe: redis.client.Pipeline | None = None) -> None:
        self.committed_id = entry_id
        pipe = self.store.redis.pipeline() if pipe is None else pipe
        fields: dict[str, Any] = {"committed_id": entry_id, "samples_committed": self.samples,
                                  "previous_item": self.previous_item or ""}
        if self.item is None:
            fields |= {"partial_item": "", "partial_text": ""}
        pipe.hset(session_key(self.id), mapping=fields)
        # What no turn needs any more goes: the input stream holds only uncommitted audio.
        pipe.xtrim(in_key(self.id), minid=entry_id)
        pipe.execute()
        self.last_advance = self.clock()

    def _advance_in_silence(self, entry_id: str) -> None:
        if self.item is None and self.clock() - self.last_advance >= ADVANCE_SECONDS:
            self._save_position(entry_id)

    def _turn_audio(self) -> np.ndarray:
        """The audio the completed text is decoded from: a pause at the end is cut to a quarter of
        the silence that ends a turn, the same however long the pause has grown."""
        if not (self.in_speech and self.silence):
            return self.audio
        end = self.speech_end - self.audio_start
        tail = min(len(self.audio) - end, self.config.turn_detection.silence_duration_ms * SAMPLE_RATE // 4000)
        return self.audio[:max(end + tail, 1)]

    def _final_text(self, audio: np.ndarray) -> str:
        return self.decode(audio, self.config, True) if len(audio) >= MIN_DECODE_SECONDS * SAMPLE_RATE else ""

    # -- text while the turn grows ----------------------------------------------------------------
    def step(self) -> None:
        if self.item is None:
            return
        if self.config.turn_detection.type == "server_vad" and not self.in_speech:
            return
        if self.config.turn_detection.type == "server_vad" and \
                self.silence >= EARLY_FINAL_SECONDS * SAMPLE_RATE and \
                len(self.audio) <= EARLY_FINAL_MAX_TURN_SECONDS * SAMPLE_RATE:
            # A pause that may end the turn: decode its completed text now, while nothing else
            # needs the engine, so that the turn completes as soon as the pause is long enough.
            # Speech that resumes moves the speech end, and the text is decoded again then.
            if self.early is None or self.early[0] != self.speech_end:
                self.early = (self.speech_end, self._final_text(self._turn_audio()))
            return
        # A decode slowed by others sharing the cores waits longer for the next: each session's
        # share of the CPU stays bounded, and more sessions lengthen steps, not queues.
        step = max(STEP_SECONDS, STEP_PER_COST * self.partial_cost)
        if len(self.audio) - self.decoded_len < step * SAMPLE_RATE or \
                len(self.audio) < MIN_DECODE_SECONDS * SAMPLE_RATE:
            return
        # Audio goes on arriving while a decode runs. A turn that reaches MAX_TURN_SECONDS before
        # this one would end is cut there and decoded whole, and that text (and the next turn's
        # first words) would wait for a partial decode nobody sees the result of in time.
        if len(self.audio) + self.partial_cost * SAMPLE_RATE >= MAX_TURN_SECONDS * SAMPLE_RATE:
            return
        self.decoded_len = len(self.audio)
        began = self.clock()
        hypothesis = self.decode(self.audio, self.config, False)
        self.partial_cost = self.clock() - began
        delta = self.agreement.update(hypothesis)
        if delta:
            # With what was sent so far, at once: a successor extends exactly that.
            pipe = self.store.redis.pipeline()
            self.store.emit(self.id, {"type": "conversation.item.input_audio_transcription.delta",
                                      "item_id": self.item, "content_index": 0, "delta": delta}, pipe=pipe)
            pipe.hset(session_key(self.id), "partial_text", " ".join(self.agreement.sent))
            pipe.execute()


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}:{uuid.uuid4().hex[:6]}"


def serve(store: LiveStore, session_id: str, decoder: Decoder, *, worker: str | None = None,
          clock: Callable[[], float] = time.monotonic) -> str:
    """Hold the session until it ends; answers why it stopped (for the log). Another worker
    holding it, or a session already closed, stops at once."""
    worker = worker or worker_name()
    deadline = clock() + (LEASE_MS + 500) / 1000
    # A redelivered message may come while the dead holder's lease still runs: wait it out.
    while not store.take_lease(session_id, worker):
        if clock() > deadline or store.redis.hget(session_key(session_id), "state") != "open":
            return "held by another worker"
        time.sleep(0.2)
    # Renewed from a thread of its own: loading a model or a long decode outlasts the lease.
    stop = threading.Event()
    lost = threading.Event()

    def renew() -> None:
        while not stop.wait(1.0):
            try:
                if not store.renew_lease(session_id, worker):
                    lost.set()
                    return
            except Exception as exc:  # noqa: BLE001 - the next renewal may succeed
                log.warning("renewing the lease of live session %s failed: %s", session_id, exc)

    threading.Thread(target=renew, daemon=True, name=f"lease-{session_id}").start()
    try:
        record = store.get(session_id)
        if record.get("state") != "open":
            return "closed"
        store.redis.hset(session_key(session_id), "worker", worker)
        session = LiveSession(store, session_id, record, decoder, clock=clock)
        store.emit(session_id, {"type": "_claimed", "worker": worker})
        last_id = session.committed_id
        while not lost.is_set():
            found = cast(list[Any], store.redis.xread({in_key(session_id): last_id}, count=50,
                                                      block=READ_BLOCK_MS))
            for entry_id, fields in (found[0][1] if found else []):
                last_id = str(entry_id)
                session.handle(last_id, str(fields.get("k")), str(fields.get("d", "")))
                if session.ended:
                    break
            store.redis.hset(session_key(session_id), "read_samples", str(session.samples))
            if session.ended:
                store.emit(session_id, {"type": "_drained"})
                return "ended"
            session.step()
            if not found and store.redis.hget(session_key(session_id), "state") != "open":
                return "closed"
        return "lease lost"
    finally:
        stop.set()
        store.drop_lease(session_id, worker)
