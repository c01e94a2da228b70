"""Diarization evaluation material, built in code from ../shared/audio and espeak-ng.

Nothing here is committed audio. Each item is a recording plus its reference turns:

* ``stereo``: stereo_diarization.wav mixed down to mono. Its two speakers sit on the two
  channels, so each channel's energy says when its speaker talks (they overlap).
* ``three``: pieces of jfk.flac, the English half of multilingual.mp3 and hotwords.mp3 put in
  turns back to back (three different recordings, so three voices); each piece's own energy
  gives its span.
* ``two``: jfk.flac and the two stereo channels' voices in turns, 0.4 s apart (the two stereo
  voices are distinct people, so three speakers in all).
* ``license``: the English half of multilingual.mp3 alone (one voice, 28 s).
* ``jfk``: jfk.flac alone (one voice, crowd noise).

``python -m bench.diarization_set`` prints DER (collar 0.25 s), the speakers found without hints
and the real-time factor of ``diarize`` on this machine's CPU.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import subprocess
import tempfile
import time
import wave
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.der import score
from pipeline.media import SAMPLE_RATE, decode_audio
from pipeline.transcript import Turn
from pipeline.worker.diarization.turns import drop_short, fill_gaps, runs, speaker_name

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
SHARED_AUDIO = ROOT.parent / "shared" / "audio"
FRAME = 0.01  # seconds per energy frame
# The English half of multilingual.mp3 ends in digital silence at 28.3 s; German starts at 30.3 s.
LICENSE_END = 28.3


@dataclass(frozen=True)
class Item:
    name: str
    audio: np.ndarray  # 16 kHz mono float32
    reference: tuple[Turn, ...]

    @property
    def speakers(self) -> int:
        return len({t.speaker for t in self.reference})

    @property
    def seconds(self) -> float:
        return self.audio.size / SAMPLE_RATE


def active_spans(
    audio: np.ndarray, *, below_peak_db: float = 25.0, floor_db: float = -55.0, min_gap: float = 0.3,
    min_speech: float = 0.1,
) -> list[tuple[float, float]]:
    """Where a clean single-voice signal is speaking, from its frame energy.

    A frame is speech when it is within ``below_peak_db`` of the loud frames and above an
    absolute floor; pauses shorter than ``min_gap`` are bridged, as human annotators do.
    """
    hop = int(FRAME * SAMPLE_RATE)
    frames = audio[: audio.size // hop * hop].reshape(-1, hop)
    if frames.size == 0:
        return []
    db = 10 * np.log10(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-12)
    peak = float(np.percentile(db, 95))
    mask = (db > peak - below_peak_db) & (db > floor_db)
    mask = fill_gaps(mask, round(min_gap / FRAME))
    mask = drop_short(mask, round(min_speech / FRAME))
    return [(a * FRAME, b * FRAME) for a, b in runs(mask)]


def pieces(audio: np.ndarray, spans: Sequence[tuple[float, float]], *, pad: float = 0.1) -> list[np.ndarray]:
    """Cut a recording at its pauses, keeping a little silence around each piece."""
    out = []
    for start, end in spans:
        a = max(0, int((start - pad) * SAMPLE_RATE))
        b = min(audio.size, int((end + pad) * SAMPLE_RATE))
        out.append(audio[a:b])
    return out


def converse(
    turns: Sequence[tuple[str, np.ndarray]], *, gap: float = 0.4, lead: float = 0.5
) -> tuple[np.ndarray, tuple[Turn, ...]]:
    """Concatenate (speaker, audio) turns with silence between; the reference comes from energy."""
    silence = np.zeros(int(gap * SAMPLE_RATE), dtype=np.float32)
    chunks: list[np.ndarray] = [np.zeros(int(lead * SAMPLE_RATE), dtype=np.float32)]
    reference: list[Turn] = []
    offset = lead
    for speaker, audio in turns:
        for start, end in active_spans(audio):
            reference.append(Turn(round(offset + start, 3), round(offset + end, 3), speaker))
        chunks += [audio.astype(np.float32), silence]
        offset += audio.size / SAMPLE_RATE + gap
    return np.concatenate(chunks), tuple(reference)


def _split(audio: np.ndarray, parts: int) -> list[np.ndarray]:
    """Group a recording's pause-separated pieces into ``parts`` turns of similar length."""
    spans = active_spans(audio, min_gap=0.15)
    cuts = pieces(audio, spans)
    lengths = np.cumsum([c.size for c in cuts])
    groups: list[list[np.ndarray]] = [[] for _ in range(parts)]
    for cut, upto in zip(cuts, lengths, strict=True):
        index = min(parts - 1, int((upto - cut.size / 2) / lengths[-1] * parts))
        groups[index].append(cut)
    return [np.concatenate(g) for g in groups if g]


def _stereo_channels(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as wav:
        if wav.getsampwidth() != 2 or wav.getframerate() != SAMPLE_RATE or wav.getnchannels() != 2:
            raise ValueError(f"{path.name}: expected 16 kHz 16-bit stereo")
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16)
    return pcm.reshape(-1, 2).T.astype(np.float32) / 32768.0


def _interleave(sources: dict[str, list[np.ndarray]]) -> list[tuple[str, np.ndarray]]:
    order: list[tuple[str, np.ndarray]] = []
    longest = max(len(v) for v in sources.values())
    for i in range(longest):
        for name, parts in sources.items():
            if i < len(parts):
                order.append((name, parts[i]))
    return order


def _alone(audio: np.ndarray, speaker: str) -> tuple[Turn, ...]:
    return tuple(Turn(round(s, 3), round(e, 3), speaker) for s, e in active_spans(audio))


def real_set(audio_dir: Path = SHARED_AUDIO) -> list[Item]:
    jfk = decode_audio(audio_dir / "jfk.flac")
    license_en = decode_audio(audio_dir / "multilingual.mp3")[: int(LICENSE_END * SAMPLE_RATE)]
    hotwords = decode_audio(audio_dir / "hotwords.mp3")
    left, right = _stereo_channels(audio_dir / "stereo_diarization.wav")

    mix = (left + right) / 2
    stereo_ref = [Turn(round(s, 3), round(e, 3), "left") for s, e in active_spans(left)]
    stereo_ref += [Turn(round(s, 3), round(e, 3), "right") for s, e in active_spans(right)]

    # Back to back, as people answer each other: only the pieces' own 0.1 s margins separate them.
    three_audio, three_ref = converse(
        _interleave({"jfk": _split(jfk, 2), "license": _split(license_en, 3), "hotwords": [hotwords]}), gap=0.0
    )
    two_audio, two_ref = converse(
        _interleave({"left": [left], "jfk": _split(jfk, 2), "right": [right]})
    )
    return [
        Item("stereo", mix.astype(np.float32), tuple(sorted(stereo_ref, key=lambda t: t.start))),
        Item("three", three_audio, three_ref),
        Item("two", two_audio, two_ref),
        Item("license", license_en, _alone(license_en, "license")),
        Item("jfk", jfk, _alone(jfk, "jfk")),
    ]


# -- synthetic voices -----------------------------------------------------------------------
ESPEAK_VOICES = {"A": ("en+m3", 45), "B": ("en+f3", 75), "C": ("en-gb+m7", 30)}  # voice, pitch


def espeak(text: str, voice: str, pitch: int, folder: Path) -> np.ndarray:
    """Speak ``text`` with espeak-ng, decoded to 16 kHz mono float32."""
    binary = shutil.which("espeak-ng")
    if binary is None:
        raise FileNotFoundError("espeak-ng is not installed (apt-get install espeak-ng)")
    with tempfile.NamedTemporaryFile(suffix=".wav", dir=folder, delete=False) as out:
        path = Path(out.name)
    subprocess.run(
        [binary, "-v", voice, "-p", str(pitch), "-s", "160", "-w", str(path), text],
        check=True,
        capture_output=True,
        timeout=60,
    )
    try:
        return decode_audio(path)
    finally:
        path.unlink(missing_ok=True)


def espeak_conversation(
    lines: Sequence[tuple[str, str]], folder: Path, *, gap: float = 0.4
) -> tuple[np.ndarray, tuple[Turn, ...]]:
    """(speaker key in ESPEAK_VOICES, text) lines spoken in turn, with their reference turns."""
    turns = []
    for key, text in lines:
        voice, pitch = ESPEAK_VOICES[key]
        turns.append((key, espeak(text, voice, pitch, folder)))
    return converse(turns, gap=gap)


# -- evaluation -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Row:
    name: str
    seconds: float
    speakers: int
    found: int
    der: float
    missed: float
    false_alarm: float
    confusion: float
    elapsed: float
    cpu: float  # CPU seconds of this process, all threads: steadier than wall time on a busy host

    @property
    def rtf(self) -> float:
        return self.elapsed / self.seconds

    @property
    def cpu_rtf(self) -> float:
        return self.cpu / self.seconds


def evaluate(items: Sequence[Item], *, device: str = "cpu", collar: float = 0.25) -> tuple[list[Row], Row]:
    from pipeline.worker.diarization import diarize

    rows = []
    totals = np.zeros(4)
    seconds = elapsed = cpu = 0.0
    for item in items:
        began, began_cpu = time.perf_counter(), time.process_time()
        turns = diarize(item.audio, min_speakers=None, max_speakers=None, device=device)
        took, took_cpu = time.perf_counter() - began, time.process_time() - began_cpu
        result = score(item.reference, turns, collar=collar)
        rows.append(
            Row(item.name, item.seconds, item.speakers, len({t.speaker for t in turns}), result.der,
                result.missed, result.false_alarm, result.confusion, took, took_cpu)
        )
        totals += [result.total, result.missed, result.false_alarm, result.confusion]
        seconds += item.seconds
        elapsed += took
        cpu += took_cpu
    overall = Row("all", seconds, sum(r.speakers for r in rows), sum(r.found for r in rows),
                  float(totals[1:].sum() / totals[0]) if totals[0] else 0.0,
                  float(totals[1]), float(totals[2]), float(totals[3]), elapsed, cpu)
    return rows, overall


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--collar", type=float, default=0.25, help="seconds on each side of a reference boundary")
    parser.add_argument("--json", action="store_true", help="print rows as JSON lines")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    from pipeline.worker.diarization.models import get_models

    began = time.perf_counter()
    get_models(args.device)
    load = time.perf_counter() - began
    rows, overall = evaluate(real_set(), device=args.device, collar=args.collar)
    out = []
    for row in [*rows, overall]:
        if args.json:
            out.append(json.dumps({**row.__dict__, "rtf": row.rtf, "cpu_rtf": row.cpu_rtf}))
        else:
            out.append(
                f"{row.name:8s} {row.seconds:6.1f} s  speakers {row.speakers} found {row.found}  "
                f"DER {row.der:.3f} (miss {row.missed:.2f} fa {row.false_alarm:.2f} conf {row.confusion:.2f})  "
                f"RTF {row.rtf:.3f} (CPU {row.cpu_rtf:.3f})"
            )
    threads = ""
    if args.device == "cpu":
        import torch

        threads = f", {torch.get_num_threads()} torch threads"
    out.append(f"model load {load:.1f} s on {args.device}{threads}; collar {args.collar} s")
    print("\n".join(out))
    return 0


__all__ = ["Item", "espeak_conversation", "evaluate", "real_set", "speaker_name"]

if __name__ == "__main__":
    raise SystemExit(main())
