"""``GET /v1/realtime?intent=transcription``: OpenAI's realtime transcription sessions over a
WebSocket, so that ``OpenAI(...).realtime.connect(extra_query={"intent": "transcription"})``
works unchanged (docs/live.md lists the events served).

This process holds the socket and the session's client-facing state (its format, the pace and
length of its audio, the idle clock); it never decodes. Audio goes, converted to 16 kHz, into
the session's input stream in Redis, and a live worker (the ``live`` queue) that took the
session answers through its output stream (``pipeline.live``). Under gunicorn's gevent worker
a session is two greenlets: this request's, reading the client, and one sending on what the
worker says, woken through the process's one Redis subscriber.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import replace
from typing import Any

import dramatiq
import marshmallow as ma
from flask import Response, g, request
from simple_websocket import ConnectionClosed, Server

from api import schemas
from api.auth import KEY_SUBPROTOCOL, client
from api.blueprint import Blueprint
from api.events import Overflowed
from api.limits import STREAM_RENEW_SECONDS
from api.recording import Recording
from api.state import ApiState, state
from pipeline.errors import BadRequest, InvalidOption
from pipeline.live import (
    MAX_APPEND_SECONDS,
    Converter,
    LiveConfig,
    LiveEventError,
    LiveStore,
    bytes_per_second,
    decode_append,
    event_id,
    new_session_id,
    session_key,
    wake_channel,
)
from pipeline.options import TranscribeOptions
from pipeline.queues import LIVE_ACTOR, LIVE_QUEUE

log = logging.getLogger(__name__)

bp = Blueprint("realtime", __name__, url_prefix="/v1",
               description="Live transcription: OpenAI's realtime transcription sessions over a WebSocket.")

MAX_MESSAGE_BYTES = 16 * 2**20  # one client event; OpenAI's limit for an append is 15 MiB
RECEIVE_SECONDS = 0.5  # the client loop wakes this often to check the clocks
LEASE_CHECK_SECONDS = 1.0
DRAIN_SECONDS = 30.0  # at the end, the worker's last turn is waited for this long
MAX_HANDOVERS = 5
HANDOVER_WAIT_SECONDS = 60.0  # workers lost in one session before it is given up


class RealtimeQuery(schemas.Strict):
    intent = ma.fields.String(required=True, validate=ma.validate.OneOf(["transcription"]),
                              metadata={"description": "transcription (the only intent served)"})
    model = ma.fields.String(metadata={"description": "the transcription model (whisper-1: the default)"})
    record = ma.fields.Boolean(load_default=False, metadata={
        "description": "at the session's end its whole audio becomes an ordinary job (cache, webhooks "
                       "do not apply: no webhook_url; diarization with the job's own options)"})


# websocket=True: Werkzeug routes an Upgrade request only to a rule that says it takes one; a
# plain GET then gets its WebsocketMismatch, a 400 (api.errors words it).
@bp.route("/realtime", methods=["GET"], websocket=True)
@bp.arguments(RealtimeQuery, location="query")
@bp.doc(responses={"101": {"description": "Switching Protocols: the session runs on the WebSocket; "
                                          "every message is one JSON event (docs/live.md)"}})
@bp.alt_response(400, schema=schemas.Error, description="not a WebSocket upgrade")
@bp.alt_response(422, schema=schemas.Error, description="intent is not transcription, or an unknown model")
@bp.alt_response(429, schema=schemas.Error, description="MAX_LIVE_SESSIONS_PER_CLIENT sessions are open already")
def realtime(query: dict[str, Any]) -> Response:
    """Open a realtime transcription session (WebSocket upgrade).

    Client events: ``session.update``, ``input_audio_buffer.append``/``commit``/``clear`` and
    ``session.close``. Server events: ``session.created``/``updated``/``closed``,
    ``input_audio_buffer.speech_started``/``speech_stopped``/``committed``/``cleared``,
    ``conversation.item.input_audio_transcription.delta``/``completed`` and ``error``."""
    st = state()
    if request.headers.get("Upgrade", "").lower() != "websocket":
        raise BadRequest("This route is a WebSocket: connect with an Upgrade: websocket request.")
    config = LiveConfig.default(st.settings, record=bool(query.get("record")))
    if query.get("model") and query["model"] != "whisper-1":
        options = TranscribeOptions.parse({"model": query["model"]}, st.settings)
        config = replace(config, model=query["model"], engine_model=options.model)
    who = client()
    slot = st.limits.open_live(who)
    try:
        offered = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
        chosen = [p for p in offered if p == "realtime"] or [p for p in offered if not p.startswith(KEY_SUBPROTOCOL)]
        ws = Server(request.environ, subprotocols=chosen[:1], ping_interval=20,
                    max_message_size=MAX_MESSAGE_BYTES)
    except BaseException:
        if slot is not None:
            st.limits.close_live(who, slot)
        raise
    try:
        LiveConnection(st, ws, config, owner=str(g.get("owner", "")), who=who, slot=slot).run()
    except ConnectionClosed:
        pass
    finally:
        if slot is not None:
            st.limits.close_live(who, slot)
    return _upgraded(ws)


def _upgraded(ws: Server) -> Response:
    """What the view answers once the socket is done: gunicorn must write nothing more on it."""

    class Upgraded(Response):
        def __call__(self, environ: Any, start_response: Any) -> Any:
            if ws.mode == "gunicorn":
                raise StopIteration()
            if ws.mode == "werkzeug":
                return super().__call__(environ, start_response)
            return []

    return Upgraded()


class LiveConnection:
    def __init__(self, st: ApiState, ws: Server, config: LiveConfig, *, owner: str, who: str,
                 slot: str | None) -> None:
        self.st, self.ws, self.config, self.owner, self.who, self.slot = st, ws, config, owner, who, slot
        self.store = LiveStore(st.redis)
        self.id = new_session_id()
        self.converter = Converter(config.format, config.rate)
        self.started = time.monotonic()
        self.last_event = self.started
        self.audio_seconds = 0.0
        self.send_lock = threading.Lock()
        self.claimed = threading.Event()
        self.drained = threading.Event()
        self.closing = False
        self.handovers = 0
        self.worker: str | None = None  # the live worker holding the session, as it said
        self.loss_told = False
        self.recording = Recording(st, owner, self.id) if config.record else None

    # -- sending -------------------------------------------------------------------------------
    def send(self, event: dict[str, Any]) -> None:
        event.setdefault("event_id", event_id())
        with self.send_lock:
            self.ws.send(json.dumps(event, ensure_ascii=False))

    def error(self, exc: LiveEventError, client_event_id: str | None = None, *,
              kind: str = "invalid_request_error") -> None:
        self.send({"type": "error", "error": {"type": kind, "code": exc.code, "message": exc.message,
                                              "param": exc.param, "event_id": client_event_id}})

    # -- the session -----------------------------------------------------------------------------
    def run(self) -> None:
        self.store.create(self.id, self.owner, self.config)
        log.info("live session %s opened", self.id)
        self.send({"type": "session.created", "session": self.config.session_object(self.id)})
        with self.st.hub.listen(wake_channel(self.id)) as inbox:
            self._queue()
            forwarder = threading.Thread(target=self._forward, args=(inbox,), daemon=True,
                                         name=f"live-{self.id}")
            forwarder.start()
            try:
                self._read_client()
            finally:
                self._end()
                forwarder.join(timeout=DRAIN_SECONDS + 5)
                self.store.close(self.id)
                log.info("live session %s closed after %.1f s of audio", self.id, self.audio_seconds)

    def _queue(self, wait: float | None = None) -> None:
        self.claim_deadline = time.monotonic() + (wait or self.st.settings.live_claim_timeout_seconds)
        self.st.broker.enqueue(dramatiq.Message(queue_name=LIVE_QUEUE, actor_name=LIVE_ACTOR,
                                                args=(self.id,), kwargs={}, options={}))

    def _read_client(self) -> None:
        renewed = time.monotonic()
        idle = self.st.settings.live_idle_timeout_seconds
        while self.ws.connected and not self.closing:
            data = self.ws.receive(timeout=RECEIVE_SECONDS)
            now = time.monotonic()
            if self.slot is not None and now - renewed > STREAM_RENEW_SECONDS:
                self.st.limits.renew_live(self.who, self.slot)
                renewed = now
            if data is None:
                if now - self.last_event > idle:
                    self.error(LiveEventError(f"No event for {idle} s (LIVE_IDLE_TIMEOUT_SECONDS): the session "
                                              "ends.", code="idle_timeout"))
                    self.closing = True
                continue
            self.last_event = now
            self._client_event(data)

    def _client_event(self, data: str | bytes) -> None:
        client_event_id = None
        try:
            try:
                event = json.loads(data)
            except (ValueError, UnicodeDecodeError):
                raise LiveEventError("The message is not JSON: each client event is one JSON object.",
                                     code="invalid_json") from None
            if not isinstance(event, dict) or not isinstance(event.get("type"), str):
                raise LiveEventError("A client event is a JSON object with a type.", code="missing_type",
                                     param="type")
            client_event_id = event.get("event_id") if isinstance(event.get("event_id"), str) else None
            kind = event["type"]
            handler = HANDLERS.get(kind)
            if handler is None:
                raise LiveEventError(
                    f"Unknown or unsupported event type {kind[:100]!r}; a transcription session takes "
                    f"{', '.join(sorted(HANDLERS))}.", code="unknown_event_type", param="type")
            handler(self, event)
        except LiveEventError as exc:
            self.error(exc, client_event_id)

    def _session_update(self, event: dict[str, Any]) -> None:
        if "session" not in event:
            raise LiveEventError("session.update needs a session.", code="missing_required_parameter",
                                 param="session")
        try:
            config = self.config.updated(event["session"], self.st.settings)
        except InvalidOption as exc:
            raise LiveEventError(exc.message, code="invalid_value", param=exc.field) from None
        if config.record != self.config.record:
            if self.audio_seconds:
                raise LiveEventError("record can only be set before the first audio.", code="invalid_value",
                                     param="session.record")
            self.recording = Recording(self.st, self.owner, self.id) if config.record else None
        if (config.format, config.rate) != (self.config.format, self.config.rate):
            self.converter = Converter(config.format, config.rate)
        self.config = config
        self.store.set_config(self.id, config)
        self.store.send(self.id, "config", config.to_json())
        self.send({"type": "session.updated", "session": config.session_object(self.id)})

    def _append(self, event: dict[str, Any]) -> None:
        raw = decode_append(event.get("audio"))
        seconds = len(raw) / bytes_per_second(self.config.format, self.config.rate)
        if seconds > MAX_APPEND_SECONDS:
            raise LiveEventError(f"One append may hold at most {MAX_APPEND_SECONDS:.0f} s of audio; this one "
                                 f"holds {seconds:.1f} s. Send it in smaller pieces.",
                                 code="audio_too_large", param="audio")
        settings = self.st.settings
        ahead = self.audio_seconds + seconds - (time.monotonic() - self.started)
        if ahead > settings.live_max_ahead_seconds:
            raise LiveEventError(
                f"Audio arrives faster than real time: {ahead:.1f} s ahead of the clock, at most "
                f"{settings.live_max_ahead_seconds} s allowed (LIVE_MAX_AHEAD_SECONDS). This append was "
                "dropped; send audio as it is captured.", code="audio_too_fast", param="audio")
        if self.audio_seconds + seconds > settings.live_session_max_seconds:
            self.error(LiveEventError(f"The session reached its length limit, {settings.live_session_max_seconds} "
                                      "s of audio (LIVE_SESSION_MAX_SECONDS): it ends.", code="session_expired"))
            self.closing = True
            return
        pcm = self.converter.convert(raw)
        self.audio_seconds += seconds
        if self.recording is not None:
            self.recording.write(pcm)
        if pcm:
            self.store.send(self.id, "audio", pcm)

    def _commit(self, event: dict[str, Any]) -> None:
        self.store.send(self.id, "commit")

    def _clear(self, event: dict[str, Any]) -> None:
        self.store.send(self.id, "clear")

    def _close(self, event: dict[str, Any]) -> None:
        self.closing = True

    # -- the worker's side -------------------------------------------------------------------------
    def _forward(self, inbox: Any) -> None:
        """Send on what the worker says, watch that a worker holds the session, and tell the
        client when it must be handed over."""
        last = "0-0"
        checked = time.monotonic()
        try:
            while True:
                try:
                    inbox.get(LEASE_CHECK_SECONDS / 2)
                except Overflowed:
                    pass
                for entry_id, event in self.store.events_after(self.id, last):
                    last = entry_id
                    kind = event.get("type", "")
                    if kind == "_claimed":
                        if self.worker is not None and not self.loss_told:
                            # Redelivered to another worker before the lease was seen to lapse.
                            self._tell_loss()
                        self.worker, self.loss_told = str(event.get("worker")), False
                        self.claimed.set()
                    elif kind == "_drained":
                        self.drained.set()
                    elif self.ws.connected:
                        self.send(event)
                if self.drained.is_set() or (not self.ws.connected and not self.claimed.is_set()):
                    return
                if self.closing and time.monotonic() > self.end_deadline:
                    return
                if time.monotonic() - checked >= LEASE_CHECK_SECONDS:
                    checked = time.monotonic()
                    self._watch_worker()
        except ConnectionClosed:
            return
        except Exception:
            log.exception("live session %s: forwarding stopped", self.id)

    end_deadline = float("inf")

    def _watch_worker(self) -> None:
        if not self.claimed.is_set():
            if time.monotonic() > self.claim_deadline and not self.closing:
                self.error(LiveEventError(
                    "No live worker is free to take this session: the service holds as many live "
                    "sessions as it can. Try again later.", code="live_capacity_reached"), kind="server_error")
                self.closing = True
                self.end_deadline = time.monotonic()
            return
        if self.store.lease_holder(self.id) is not None or self.drained.is_set():
            return
        self.claimed.clear()
        if self._tell_loss():
            # Longer than a new session's wait: the worker that takes it over may be starting up.
            self._queue(wait=max(self.st.settings.live_claim_timeout_seconds, HANDOVER_WAIT_SECONDS))

    def _tell_loss(self) -> bool:
        """Tell the client its worker stopped; False when the session is given up instead."""
        self.handovers += 1
        self.loss_told = True
        if self.handovers > MAX_HANDOVERS:
            self.error(LiveEventError("The live workers serving this session keep stopping; it ends.",
                                      code="live_worker_lost"), kind="server_error")
            self.closing = True
            return False
        log.warning("live session %s: its worker %s stopped; handed over", self.id, self.worker)
        self.error(LiveEventError(
            "The worker transcribing this session stopped. The session goes on on another worker: the "
            "completed turns are kept, the turn in progress is transcribed again.", code="live_worker_lost"),
            kind="server_error")
        return True

    def _end(self) -> None:
        """The client left, closed the session or a limit ended it: the worker finishes the
        turn in progress, a recording becomes a job, and the last event says so."""
        self.closing = True
        self.end_deadline = time.monotonic() + DRAIN_SECONDS
        self.store.send(self.id, "end")
        if self.claimed.is_set() and self.ws.connected:
            self.drained.wait(DRAIN_SECONDS)
        closed: dict[str, Any] = {"type": "session.closed", "session_id": self.id,
                                  "audio_seconds": round(self.audio_seconds, 3)}
        if self.recording is not None:
            try:
                closed["recording"] = self.recording.finish(self.config)
            except Exception:
                log.exception("live session %s: the recording could not become a job", self.id)
                closed["recording"] = None
        if self.ws.connected:
            try:
                self.send(closed)
                with self.send_lock:
                    self.ws.close()
            except ConnectionClosed:
                pass
        self.st.redis.hset(session_key(self.id), "closed_at", repr(time.time()))


HANDLERS = {
    "session.update": LiveConnection._session_update,
    "input_audio_buffer.append": LiveConnection._append,
    "input_audio_buffer.commit": LiveConnection._commit,
    "input_audio_buffer.clear": LiveConnection._clear,
    "session.close": LiveConnection._close,
}
