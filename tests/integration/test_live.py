"""The parts of live transcription that need no stack: the audio conversion, the session's
configuration, the stable-prefix policy, the streamed VAD and a session fed from a real Redis."""

from __future__ import annotations

import base64
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import redis

from pipeline import keys
from pipeline.live import (
    MAX_TURN_SECONDS,
    Converter,
    LiveConfig,
    LiveEventError,
    LiveStore,
    TurnDetection,
    new_session_id,
)
from pipeline.media import decode_audio
from pipeline.settings import Settings
from pipeline.worker import live as livework
from pipeline.worker.context import Context
from tests.support.helpers import JFK_TEXT, wer


def tone(rate: int, seconds: float, hz: float = 440.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (np.sin(2 * np.pi * hz * t) * 12_000).astype("<i2")


@pytest.mark.parametrize("cut", [1, 7, 480, 4801])
def test_24khz_becomes_16khz_wherever_the_appends_are_cut(cut: int) -> None:
    data = tone(24_000, 1.0).tobytes()
    whole = np.frombuffer(Converter("audio/pcm", 24_000).convert(data), dtype="<i2")
    converter = Converter("audio/pcm", 24_000)
    pieces = b"".join(converter.convert(data[i:i + cut]) for i in range(0, len(data), cut))
    assert np.array_equal(np.frombuffer(pieces, dtype="<i2"), whole)
    assert abs(len(whole) - 16_000) <= 16
    # Still a 440 Hz tone, at its level: the strongest frequency of the result.
    spectrum = np.abs(np.fft.rfft(whole.astype(np.float32)))
    assert abs(np.argmax(spectrum) * 16_000 / len(whole) - 440) < 3
    assert 10_000 < np.abs(whole[100:-100]).max() < 13_000


def test_session_update_applies_what_is_supported_and_names_what_is_not(settings: Settings) -> None:
    config = LiveConfig.default(settings)
    updated = config.updated({"type": "transcription", "audio": {"input": {
        "format": {"type": "audio/pcm", "rate": 16000},
        "transcription": {"model": "whisper-1", "language": "en", "prompt": "names"},
        "turn_detection": {"type": "server_vad", "silence_duration_ms": 700, "threshold": 0.6}}}}, settings)
    assert (updated.rate, updated.language, updated.prompt) == (16000, "en", "names")
    assert updated.turn_detection.silence_duration_ms == 700 and updated.turn_detection.threshold == 0.6
    assert updated.engine_model == settings.default_model
    assert updated.updated({"audio": {"input": {"turn_detection": None}}}, settings).turn_detection.type == "none"
    for session, param in (
        ({"type": "realtime"}, "session.type"),
        ({"colour": 1}, "session.colour"),
        ({"audio": {"input": {"format": {"type": "audio/opus"}}}}, "session.audio.input.format"),
        ({"audio": {"input": {"transcription": {"language": "xx"}}}}, "session.audio.input.transcription.language"),
        ({"audio": {"input": {"turn_detection": {"type": "server_vad", "threshold": 2}}}},
         "session.audio.input.turn_detection.threshold"),
        ({"audio": {"input": {"noise_reduction": {"type": "near_field"}}}}, "session.audio.input.noise_reduction"),
    ):
        with pytest.raises(LiveEventError) as refused:
            config.updated(session, settings)
        assert refused.value.param == param, session


def test_text_while_a_turn_grows_is_decoded_on_a_short_window(ctx: Context, jfk: Path) -> None:
    """A partial decode sees a window just longer than the turn so far: JFK's first words from
    his first seconds, silence adding none, a language-less session on English-only tiny.en
    decoded as English, and the completed text still Whisper's whole-window beam search."""
    decode = livework.faster_whisper_decoder(lambda model: livework.engine_model(ctx, model))
    config = dataclasses.replace(LiveConfig.default(ctx.settings), language="en")
    audio = decode_audio(jfk)
    opening = "and so my fellow americans ask not what your country can do for you"
    assert wer(opening, decode(audio[:8 * 16_000], config, False)) <= 0.2
    assert wer(opening, decode(audio[:8 * 16_000], dataclasses.replace(config, language=None), False)) <= 0.2
    # A loop or a hallucination on a silent window stays within the cap on its tokens.
    assert len(decode(np.zeros(16_000, np.float32), config, False).split()) <= 3
    assert wer(JFK_TEXT, decode(audio, config, True)) <= 0.1


def test_sessions_decoding_at_once_each_have_a_copy_of_the_model(ctx: Context) -> None:
    """A live worker of three threads: three copies, so no session's decode waits for another's."""
    three = livework.engine_model(dataclasses.replace(ctx, live_decoders=3), ctx.settings.default_model)
    assert three.model.num_workers == 3
    assert livework.engine_model(ctx, ctx.settings.default_model).model.num_workers == ctx.live_decoders == 1


def test_a_session_turns_speech_into_turns(ctx: Context, redis_client: redis.Redis, jfk: Path) -> None:
    """JFK, in 100 ms entries, through the worker's loop: turns cut at his pauses, the text
    right, each turn's events in order, the input stream trimmed as turns complete."""
    store = LiveStore(ctx.redis)
    session_id = new_session_id()
    config = dataclasses.replace(LiveConfig.default(ctx.settings), rate=16_000, language="en")
    store.create(session_id, "tester", config, 600)
    pcm = (decode_audio(jfk) * 32767).astype("<i2").tobytes() + b"\0" * 32_000
    for start in range(0, len(pcm), 3200):
        store.send(session_id, "audio", pcm[start:start + 3200])
    store.send(session_id, "end")
    decoder = livework.faster_whisper_decoder(lambda model: livework.engine_model(ctx, model))
    assert livework.serve(store, session_id, decoder) == "ended"
    events = [e for _, e in store.events_after(session_id, "0-0")]
    completed = [e for e in events if e["type"].endswith("transcription.completed")]
    assert len(completed) >= 2
    assert wer(JFK_TEXT, " ".join(e["transcript"] for e in completed)) <= 0.25
    starts = [e["audio_start_ms"] for e in events if e["type"] == "input_audio_buffer.speech_started"]
    assert starts == sorted(starts) and starts[0] < 500
    assert [e["previous_item_id"] for e in events if e["type"] == "input_audio_buffer.committed"][1:] == \
        [e["item_id"] for e in completed][:-1]
    # Only what the last turn did not yet commit is left in the input stream.
    assert ctx.redis.xlen(keys.live_in_key(session_id)) < 30


def _fed_entry_by_entry(ctx: Context, audio: np.ndarray, *, update_at: float | None = None,
                        ) -> tuple[list[tuple[int, int]], list[str]]:
    """``audio`` through a session in 100 ms entries, the worker stepping after each (and the
    session updated with a prompt at ``update_at`` seconds): the final decodes (the turn's
    length, the pause it had grown to) and the completed texts."""
    store = LiveStore(ctx.redis)
    session_id = new_session_id()
    config = dataclasses.replace(LiveConfig.default(ctx.settings), rate=16_000, language="en")
    store.create(session_id, "tester", config, 600)
    finals: list[tuple[int, int]] = []
    session: livework.LiveSession | None = None

    def decoder(turn: np.ndarray, _config: LiveConfig, final: bool) -> str:
        assert session is not None
        if not final:
            return ""
        finals.append((len(turn), session.silence))
        return f"turn {len(finals)}"

    session = livework.LiveSession(store, session_id, store.get(session_id), decoder)
    pcm = (np.concatenate([audio, np.zeros(16_000, np.float32)]) * 32767).astype("<i2").tobytes()
    for n, start in enumerate(range(0, len(pcm), 3200)):
        session.handle(f"{n + 1}-0", "audio", base64.b64encode(pcm[start:start + 3200]).decode())
        session.step()
        if update_at is not None and n == int(update_at * 10):
            session.handle(f"{n + 1}-1", "config", dataclasses.replace(config, prompt="Americans").to_json())
    events = [e for _, e in store.events_after(session_id, "0-0")]
    return finals, [e["transcript"] for e in events if e["type"].endswith("transcription.completed")]


def test_a_turn_s_completed_text_is_decoded_in_its_pause(ctx: Context, jfk: Path) -> None:
    """The completed text is decoded once the pause passes 200 ms, not once it has ended the
    turn at 500 ms, and the turn completes with that text, with no second decode."""
    finals, completed = _fed_entry_by_entry(ctx, decode_audio(jfk))
    assert len(completed) >= 2
    silence_ms = LiveConfig().turn_detection.silence_duration_ms
    in_pause = [f for f in finals if livework.EARLY_FINAL_SECONDS * 16_000 <= f[1] < silence_ms * 16]
    assert len(in_pause) >= len(completed) - 1  # the last turn may end with the recording
    assert set(completed) <= {f"turn {n}" for n in range(1, len(finals) + 1)}


def _first_turn_and_pause(jfk: Path) -> tuple[np.ndarray, np.ndarray]:
    """"And so my fellow Americans", as Silero hears it, and a pause of 350 ms: long enough for
    the early decode, too short to end the turn."""
    return decode_audio(jfk)[int(0.32 * 16_000):int(2.24 * 16_000)], np.zeros(int(0.35 * 16_000), np.float32)


def test_speech_after_a_short_pause_decodes_the_turn_again(ctx: Context, jfk: Path) -> None:
    """A pause of 350 ms lets the early decode run; the speech that follows belongs to the same
    turn, so the completed text comes from a decode of the whole, longer turn."""
    first, pause = _first_turn_and_pause(jfk)
    finals, completed = _fed_entry_by_entry(ctx, np.concatenate([pause, first, pause, first]))
    assert len(completed) == 1
    used = finals[int(completed[0].split()[1]) - 1]
    assert used[0] > len(first) * 2 and len(finals) >= 2


def test_a_session_update_in_the_pause_decodes_the_turn_again(ctx: Context, jfk: Path) -> None:
    """The text decoded early used the prompt of before: a session.update that lands in the
    pause has the turn decoded again at its end, with the new prompt."""
    first, pause = _first_turn_and_pause(jfk)
    plain, _ = _fed_entry_by_entry(ctx, np.concatenate([pause, first]))
    updated, completed = _fed_entry_by_entry(ctx, np.concatenate([pause, first]), update_at=(0.35 + 1.92 + 0.3))
    assert len(completed) == 1 and len(updated) == len(plain) + 1
    assert completed[0] == f"turn {len(updated)}"


def test_no_partial_decode_runs_into_the_cut_at_the_longest_turn(ctx: Context) -> None:
    """A turn that reaches MAX_TURN_SECONDS is cut and decoded whole. A partial decode that would
    still run when the audio gets there (the audio goes on arriving while it decodes) is left
    out: it would hold up the completed text, and the next turn behind it."""
    store = LiveStore(ctx.redis)
    session_id = new_session_id()
    config = dataclasses.replace(LiveConfig.default(ctx.settings), rate=16_000, language="en",
                                 turn_detection=TurnDetection(type="none"))
    store.create(session_id, "tester", config, 600)
    cost, now = 0.8, [0.0]  # seconds a partial decode takes, on the session's clock
    partials: list[int] = []  # of the first turn
    finals: list[int] = []

    def decoder(turn: np.ndarray, _config: LiveConfig, final: bool) -> str:
        if final:
            finals.append(len(turn))
            return "the whole turn"
        if not finals:
            partials.append(len(turn))
        now[0] += cost
        return "so far"

    session = livework.LiveSession(store, session_id, store.get(session_id), decoder, clock=lambda: now[0])
    entry = tone(16_000, 0.1).tobytes()
    for n in range(int((MAX_TURN_SECONDS + 1) * 10)):
        session.handle(f"{n + 1}-0", "audio", base64.b64encode(entry).decode())
        session.step()
    cut = int(MAX_TURN_SECONDS * 16_000)
    assert finals[0] == cut
    assert max(partials) + cost * 16_000 < cut  # none ran into the cut
    # The last came a step before: a step is STEP_PER_COST times what a decode took.
    assert max(partials) + (cost + livework.STEP_PER_COST * cost + 0.1) * 16_000 >= cut


def test_a_long_turn_ends_at_a_pause_too_short_to_end_a_short_one(ctx: Context, jfk: Path) -> None:
    """Past LONG_TURN_SECONDS a pause of 250 ms ends the turn, so that it is not cut mid-word at
    MAX_TURN_SECONDS; in a shorter turn the same pause does not (silence_duration_ms is 500)."""
    first, _ = _first_turn_and_pause(jfk)
    pause = np.zeros(int(0.25 * 16_000), np.float32)
    _, short = _fed_entry_by_entry(ctx, np.concatenate([pause, *[first, pause] * 5]))  # about 11 s
    assert len(short) == 1
    finals, completed = _fed_entry_by_entry(ctx, np.concatenate([pause, *[first, pause] * 9]))  # about 20 s
    assert len(completed) == 2
    seconds = finals[int(completed[0].split()[1]) - 1][0] / 16_000
    assert livework.LONG_TURN_SECONDS <= seconds < livework.LONG_TURN_SECONDS + len(first) / 16_000 + 0.5
