"""The ``live`` section: realtime sessions (``/v1/realtime``) fed at real-time pace.

- **Latency**, per turn: from its start of speech to the first text of it the client receives,
  and from its end of speech to its completed text. Speech starts and ends are Silero's over
  the whole recording (what was said when), matched to the turns the service cut; a turn's
  start on the client's clock is when the audio at that point was sent (pace 1: the session's
  start plus the position). Goals: first text within 1.0 s, completed within 1.5 s (p95).
- **WER**, of the completed turns joined, against the words known (jfk.flac, en60) and against
  the same recording transcribed whole by the service; goal: within 2 points of the whole.
  The meeting excerpt has no known words: its row compares with the whole-file text only.
- **Concurrency**: N sessions at once on the meeting minutes (N = 1 to 4; quick: 1 to 3 on
  jfk), each level on a live worker restarted with N threads, the latencies across all of
  them; then nine against the Procfile's live worker: those beyond its threads must be refused
  (``live_capacity_reached``) while the others keep their latencies. "Holds" is the largest N
  whose p95 latencies meet both goals.
- **Memory**: one 30-minute session (5 in quick) of real meetings fed at 10x real time, the
  web process's PSS sampled every second: at the start, the peak and the end.

Each session is a ``websockets`` client in a thread of this process.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bench.media import Library, Recording
from bench.report import median, ms, percentile, table, verdict
from bench.speech import wer
from bench.stack import Stack, pss

GOAL_FIRST = 1.0
GOAL_COMPLETED = 1.5
GOAL_WER_POINTS = 2.0
PIECE = 0.1  # seconds of audio an append
TAIL = 1.5  # silence after the recording, so that its last pause is heard
RATE = 16_000


def log(message: str) -> None:
    import sys

    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def pcm_of(path: Any) -> np.ndarray:
    from pipeline.media import decode_audio

    return np.asarray(decode_audio(path), dtype=np.float32)


def speech_spans(audio: np.ndarray) -> list[tuple[float, float]]:
    """What was said when, in seconds: Silero over the whole recording, 500 ms pauses."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    spans = get_speech_timestamps(audio, VadOptions(min_silence_duration_ms=500, speech_pad_ms=0))
    return [(s["start"] / RATE, s["end"] / RATE) for s in spans]


@dataclass
class Session:
    events: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    started: float = 0.0  # when the first append went out (monotonic)
    refused: str | None = None  # the error code that ended it early, if any
    error: str | None = None


def run_session(url: str, audio: np.ndarray, *, pace: float = 1.0, language: str = "en",
                start_after: threading.Event | None = None) -> Session:
    from websockets.sync.client import connect

    result = Session()
    pcm = (np.clip(np.concatenate([audio, np.zeros(int(RATE * TAIL), np.float32)]), -1, 1) * 32767).astype("<i2")
    step = int(RATE * PIECE)
    try:
        with connect(f"{url.replace('http://', 'ws://')}/v1/realtime?intent=transcription", max_size=None,
                     open_timeout=30) as ws:
            ws.send(json.dumps({"type": "session.update", "session": {"type": "transcription", "audio": {"input": {
                "format": {"type": "audio/pcm", "rate": RATE}, "transcription": {"language": language}}}}}))
            if start_after is not None:
                start_after.wait(60)
            stop = threading.Event()

            def feed() -> None:
                result.started = time.monotonic()
                for n, at in enumerate(range(0, len(pcm), step)):
                    if stop.is_set():
                        return
                    ws.send(json.dumps({"type": "input_audio_buffer.append",
                                        "audio": base64.b64encode(pcm[at:at + step].tobytes()).decode()}))
                    wait = result.started + (n + 1) * PIECE / pace - time.monotonic()
                    if wait > 0:
                        time.sleep(wait)
                ws.send(json.dumps({"type": "session.close"}))

            sender = threading.Thread(target=feed, daemon=True)
            sender.start()
            for message in ws:
                event = json.loads(message)
                result.events.append((time.monotonic(), event))
                if event["type"] == "error" and event["error"]["code"] in ("live_capacity_reached",):
                    result.refused = event["error"]["code"]
                    stop.set()
                if event["type"] == "session.closed":
                    break
            stop.set()
            sender.join(5)
    except Exception as exc:  # noqa: BLE001 - reported in the table, the section goes on
        result.error = f"{exc.__class__.__name__}: {exc}"
    return result


def turns(session: Session, spans: list[tuple[float, float]], pace: float = 1.0) -> list[dict[str, Any]]:
    """Each completed turn: its text and its two latencies (None where unmatched)."""
    by_item: dict[str, dict[str, Any]] = {}
    for at, event in session.events:
        item = event.get("item_id")
        if not item:
            continue
        turn = by_item.setdefault(item, {})
        kind = event["type"]
        if kind == "input_audio_buffer.speech_started":
            turn["start_ms"] = event["audio_start_ms"]
        elif kind == "input_audio_buffer.speech_stopped":
            turn["end_ms"] = event["audio_end_ms"]
        elif kind.endswith("transcription.delta"):
            turn.setdefault("first", at)
        elif kind.endswith("transcription.completed"):
            turn["completed"], turn["text"] = at, event["transcript"]
    out = []
    for turn in by_item.values():
        if "completed" not in turn:
            continue
        lo, hi = turn.get("start_ms", 0) / 1000, turn.get("end_ms", 10**9) / 1000
        said = [s for s in spans if s[1] > lo and s[0] < hi]
        row: dict[str, Any] = {"text": turn["text"], "first": None, "completed": None}
        if said and turn["text"].strip():
            # A turn cut mid-speech (at MAX_TURN_SECONDS) starts, or ends, inside a span.
            start, end = max(min(s[0] for s in said), lo), min(max(s[1] for s in said), hi)
            first = turn.get("first", turn["completed"])
            row["first"] = first - (session.started + start / pace)
            row["completed"] = turn["completed"] - (session.started + end / pace)
            # Whether text came before the completed text (the last delta comes with it, in one
            # write) and how long the speech ran: with no two partial decodes agreeing in time,
            # a turn's first text is its completed text.
            row["delta"] = "first" in turn and turn["first"] < turn["completed"] - 0.01
            row["seconds"] = round(end - start, 2)
        out.append(row)
    return out


def latency_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    first = [r["first"] for r in rows if r["first"] is not None]
    done = [r["completed"] for r in rows if r["completed"] is not None]
    if not first or not done:
        return {}
    return {"turns": len(first), "first_p50": median(first), "first_p95": percentile(first, 95),
            "first_max": max(first), "completed_p50": median(done), "completed_p95": percentile(done, 95),
            "completed_max": max(done),
            # The turn that came slowest to its first text, for the log: what it said, how long.
            "slowest_first": {k: v for k, v in max((r for r in rows if r["first"] is not None),
                                                    key=lambda r: r["first"]).items()
                              if k in ("text", "first", "delta", "seconds")}}


def whole_text(stack: Stack, rec: Recording) -> str:
    import requests

    with rec.path.open("rb") as fh:
        answer = requests.post(f"{stack.url}/api/transcribe?format=text", files={"file": fh},
                               data={"language": "en"}, timeout=600)
    if answer.status_code != 200:
        raise RuntimeError(f"transcribing {rec.key} whole answered {answer.status_code}: {answer.text[:200]}")
    return answer.text


def measure(stack: Stack, lib: Library, *, quick: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"single": [], "concurrent": [], "memory": {}}
    singles = [lib.jfk, lib.meet60] if quick else [lib.jfk, lib.meet60, lib.en60]
    audio_of = {rec.key: pcm_of(rec.path) for rec in singles}
    for rec in singles:
        audio = audio_of[rec.key]
        whole = whole_text(stack, rec)
        session = run_session(stack.url, audio)
        rows = turns(session, speech_spans(audio))
        text = " ".join(r["text"] for r in rows)
        entry: dict[str, Any] = {"key": rec.key, "label": rec.label, "error": session.error, **latency_summary(rows),
                 "wer_vs_whole": wer(whole, text)}
        if rec.reference:
            entry |= {"wer_live": wer(rec.reference, text), "wer_whole": wer(rec.reference, whole)}
        out["single"].append(entry)
        log(f"live {rec.key}: {entry}")

    # N at once, each level on a live worker of N threads; then nine against the Procfile's.
    minutes = [lib.jfk] if quick else lib.meetings60(9)
    sources = [pcm_of(rec.path) for rec in minutes]
    spans_of = [speech_spans(a) for a in sources]
    assert stack.service is not None
    default_live = stack.commands["live"]
    for n in ((1, 2, 3) if quick else (1, 2, 3, 4)):
        stack.service.replace("live", default_live.with_options(threads=n), dramatiq_queue_prefetch=str(n))
        stack.wait_ready()
        out["concurrent"].append(at_once(stack, n, sources, spans_of, threads=n))
    stack.service.replace("live", default_live)
    stack.wait_ready()
    out["nine"] = at_once(stack, 9, sources, spans_of, threads=None)
    held = [c["sessions"] for c in out["concurrent"] if not c["errors"] and not c["refused"]
            and c.get("first_p95", 99) <= GOAL_FIRST and c.get("completed_p95", 99) <= GOAL_COMPLETED]
    out["holds"] = max(held) if held else 0

    # Memory over a long session, fed faster than real time.
    minutes_long = 5 if quick else 30
    meetings = pcm_of(lib.meet5m.path)
    long_audio = np.tile(meetings, int(np.ceil(minutes_long * 60 * RATE / len(meetings))))[: minutes_long * 60 * RATE]
    out["memory"] = memory_run(stack, long_audio, minutes_long)
    return out


def at_once(stack: Stack, n: int, sources: list[np.ndarray], spans_of: list[list[tuple[float, float]]], *,
            threads: int | None) -> dict[str, Any]:
    """``n`` sessions opened together, their audio started together once they are claimed."""
    go = threading.Event()
    results: list[Session] = [Session() for _ in range(n)]

    def one(i: int) -> None:
        results[i] = run_session(stack.url, sources[i % len(sources)], start_after=go)

    threads_ = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads_:
        t.start()
    time.sleep(2.0)  # the sessions a worker can hold are claimed by now
    go.set()
    for t in threads_:
        t.join(600)
    accepted = [i for i in range(n) if not results[i].refused]
    rows = [r for i in accepted for r in turns(results[i], spans_of[i % len(sources)])]
    entry: dict[str, Any] = {"sessions": n, "threads": threads, **latency_summary(rows),
                             "refused": sum(1 for r in results if r.refused),
                             "errors": [str(r.error) for r in results if r.error]}
    log(f"live x{n}: {entry}")
    return entry


def memory_run(stack: Stack, audio: np.ndarray, minutes: int, pace: float = 10.0) -> dict[str, Any]:
    assert stack.service is not None
    # The pace limit is what keeps a client at real time; this run means to go faster.
    stack.service.replace("web", stack.commands["web"], LIVE_MAX_AHEAD_SECONDS=str(minutes * 60 + 60))
    stack.wait_ready()
    samples: list[tuple[float, float]] = []
    done = threading.Event()

    def sample() -> None:
        began = time.monotonic()
        while not done.is_set():
            samples.append((time.monotonic() - began, sum(pss(pid) for pid in stack.api_workers())))
            done.wait(1.0)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    session = run_session(stack.url, audio, pace=pace)
    done.set()
    sampler.join()
    stack.service.replace("web", stack.commands["web"])
    stack.wait_ready()
    values = [v for _, v in samples]
    completed = sum(1 for _, e in session.events if e["type"].endswith("transcription.completed"))
    quarter = values[len(values) // 4] if values else 0.0
    return {"minutes": minutes, "pace": pace, "turns": completed, "error": session.error,
            "start_mib": values[0] if values else 0.0, "peak_mib": max(values, default=0.0),
            "end_mib": values[-1] if values else 0.0,
            "growth_after_quarter_mib": (values[-1] - quarter) if values else 0.0}


def render(results: dict[str, Any]) -> str:
    if not results:
        return ""
    out = ("\n\n### Live sessions (`/v1/realtime`): tiny.en on the CPU, fed at real-time pace\n\n"
           f"Latency per turn from its start of speech to its first text (goal {GOAL_FIRST:.1f} s) and from its "
           f"end of speech to its completed text (goal {GOAL_COMPLETED:.1f} s), p95 over the turns; WER of the "
           "completed turns joined, against the words known and the file transcribed whole (goal: within "
           f"{GOAL_WER_POINTS:.0f} points).\n\n")
    rows: list[tuple[object, ...]] = []
    for s in results.get("single", []):
        wer_cell = (f"{100 * s['wer_live']:.1f} % (whole {100 * s['wer_whole']:.1f} %) "
                    f"{verdict(100 * (s['wer_live'] - s['wer_whole']) <= GOAL_WER_POINTS)}"
                    if "wer_live" in s else "no known words")
        rows.append((s["label"], s.get("turns", 0), _lat(s, "first", GOAL_FIRST), _lat(s, "completed", GOAL_COMPLETED),
                     wer_cell, f"{100 * s['wer_vs_whole']:.1f} %", s.get("error") or ""))
    out += table(("recording", "turns", "first text p50 / p95", "completed p50 / p95", "WER live",
                  "live vs whole", "error"), rows)
    rows = [(c["sessions"], c.get("threads") or "the Procfile's", c.get("turns", 0), _lat(c, "first", GOAL_FIRST),
             _lat(c, "completed", GOAL_COMPLETED), c.get("refused", 0), ", ".join(c["errors"]) or "none")
            for c in [*results.get("concurrent", []), *([results["nine"]] if results.get("nine") else [])]]
    out += ("\n\nSessions at once, their audio started together: each level on a live worker with as many threads "
            "(sessions it takes), then nine against the Procfile's worker, where those beyond its threads must be "
            "refused (`live_capacity_reached`) rather than slow the others down. Latencies over the sessions "
            "accepted.\n\n"
            + table(("sessions", "live worker threads", "turns", "first text p50 / p95", "completed p50 / p95",
                     "refused", "errors"), rows))
    out += f"\n\nThe machine holds **{results.get('holds', 0)}** sessions within both latency goals.\n"
    m = results.get("memory") or {}
    if m:
        out += (f"\nOne {m['minutes']}-minute session of meetings at {m['pace']:.0f}x real time ({m['turns']} turns): "
                f"the web process's PSS {m['start_mib']:.0f} MiB at the start, {m['peak_mib']:.0f} MiB at its peak, "
                f"{m['end_mib']:.0f} MiB at the end; {m['growth_after_quarter_mib']:+.1f} MiB from a quarter of the "
                f"way to the end {verdict(abs(m['growth_after_quarter_mib']) <= 10)} (flat: within 10 MiB)"
                + (f"; error: {m['error']}" if m.get("error") else "") + ".\n")
    return out


def _lat(row: dict[str, Any], name: str, goal: float) -> str:
    if f"{name}_p95" not in row:
        return "n/a"
    return f"{ms(row[f'{name}_p50'])} / {ms(row[f'{name}_p95'])} {verdict(row[f'{name}_p95'] <= goal)}"
