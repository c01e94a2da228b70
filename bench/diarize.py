"""``python -m bench.diarize``: a diarized job runs its transcription and its diarization side by
side, so its wall time should be about the longer of the two, not their sum.

Each run submits one recording (two espeak-ng voices taking turns, made here) twice through the
real service: without speakers, then with ``diarize=true``. The diarized job's parts record when
each was stored (``wp:job:<id>:parts``), so each part's time is measured from the moment the
job started transcribing; the row compares the job's transcribing phase with the longer part
and with the sum of both.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import wave
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np

from bench.diarization_set import espeak_conversation
from bench.report import table
from bench.stack import ROOT, Stack
from pipeline.keys import job_parts_key

DIALOGUE = [
    ("A", "Good morning, thank you for joining the meeting today."),
    ("B", "Thanks for having me, I am glad to be here."),
    ("A", "Let us start with the budget for the next quarter, which is the main point."),
    ("B", "The numbers look fine, but travel costs went up again this year."),
    ("C", "I can explain that: two conferences moved to other continents."),
]
SR = 16_000


def log(message: str) -> None:
    print(f"[bench.diarize {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def recording(folder: Path, repeat: int) -> tuple[Path, float, int]:
    """The conversation ``repeat`` times over, as a 16 kHz WAV: (path, seconds, speakers)."""
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as scratch:
        audio, turns = espeak_conversation(DIALOGUE * repeat, Path(scratch))
    path = folder / f"three-voices-x{repeat}.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SR)
        out.writeframes((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())
    return path, len(audio) / SR, len({t.speaker for t in turns})


def _job(stack: Stack, path: Path, fields: dict[str, str]) -> dict[str, Any]:
    assert stack.redis is not None
    up = stack.client.submit(path, fields)
    task_id = up.body["task_id"]
    done = stack.client.follow_poll(task_id, timeout=900, interval=0.05)
    if done.status != "completed":
        raise RuntimeError(f"job {task_id} ended {done.status}: {done.detail.get('error')}")
    history = stack.history(task_id)
    began = next(float(h["at"]) for h in history if h["status"] == "transcribing")
    ended = next(float(h["at"]) for h in history if h["status"] == "completed")
    row: dict[str, Any] = {"task_id": task_id, "wall": done.done_at - up.started, "phase": ended - began}
    stored = cast(dict[str, str], stack.redis.hgetall(job_parts_key(task_id)))
    parts = {name: json.loads(raw) for name, raw in stored.items()}
    for name, part in parts.items():
        row[name] = float(part["stored_at"]) - began
    result = done.detail.get("result") or {}
    row["speakers"] = len(result.get("speakers") or [])
    return row


def measure(stack: Stack, folder: Path, *, runs: int = 3, repeat: int = 4) -> dict[str, Any]:
    """Plain and diarized jobs of one recording, ``runs`` times each, on a started stack."""
    path, seconds, speakers = recording(folder, repeat)
    log(f"{path.name}: {seconds:.1f} s, {speakers} voices; {runs} runs")
    plain, diarized = [], []
    for run in range(runs + 1):  # the first run warms both workers up and is not counted
        stack.client.clear_cache()
        p = _job(stack, path, {})
        d = _job(stack, path, {"diarize": "true"})
        log(f"run {run}: plain {p['wall']:.1f} s; diarized {d['wall']:.1f} s (transcribe {d['transcribe']:.1f} s, "
            f"diarize {d['diarize']:.1f} s, {d['speakers']} speakers)")
        if run:
            plain.append(p)
            diarized.append(d)
    return {"recording": path.name, "seconds": round(seconds, 1), "voices": speakers,
            "cpus": os.cpu_count(), "plain": plain, "diarized": diarized}


def summary(results: Mapping[str, Any]) -> dict[str, float]:
    def med(rows: Sequence[Mapping[str, Any]], key: str) -> float:
        return float(statistics.median(row[key] for row in rows))

    d = results["diarized"]
    out = {"plain_wall": med(results["plain"], "wall"), "wall": med(d, "wall"), "phase": med(d, "phase"),
           "transcribe": med(d, "transcribe"), "diarize": med(d, "diarize")}
    out["longer"] = max(out["transcribe"], out["diarize"])
    out["sum"] = out["transcribe"] + out["diarize"]
    out["ratio"] = out["phase"] / out["longer"]
    return out


def render(results: Mapping[str, Any]) -> str:
    """The section for docs/benchmarks.md (empty when it did not run)."""
    if not results:
        return ""
    s = summary(results)
    row = (f"{results['recording']} ({results['seconds']:.0f} s, {results['voices']} voices)",
           f"{s['plain_wall']:.1f} s", f"{s['wall']:.1f} s", f"{s['transcribe']:.1f} s", f"{s['diarize']:.1f} s",
           f"{s['sum']:.1f} s", f"{s['phase']:.1f} s", f"{s['ratio']:.2f}")
    return ("\n\n### A diarized job: transcription and diarization side by side\n\n"
            f"Median of {len(results['diarized'])} runs on {results['cpus']} CPUs, the Procfile's transcriber "
            "and diarizer on the CPU. Each part's time runs from the job's move to `transcribing` to the "
            "moment the part was stored; *both phase* is that move to `completed`, and *phase / longer* "
            "is 1.0 when the two parts cost nothing to each other.\n\n"
            + table(("recording", "job without speakers", "job with speakers", "transcribe part",
                     "diarize part", "sum of parts", "both phase", "phase / longer"), [row]))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.diarize", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=4, help="times the five-line conversation is spoken")
    parser.add_argument("--cache-dir", type=Path, default=ROOT / "data" / "bench")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    stack = Stack(args.cache_dir / f"diarize-{os.getpid()}", args.cache_dir / "models", redis_db=None,
                  extra_env={"MODEL_IDLE_TIMEOUT": "0"})
    try:
        stack.start()
        results = measure(stack, args.cache_dir / "media", runs=args.runs, repeat=args.repeat)
    finally:
        stack.close()
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    print(render(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
