"""``python -m bench.diarize_meetings``: who spoke when on nine real AMI meeting excerpts.

The excerpts and their reference turns are ``../shared/audio/meetings`` (30 s each, far-field
room audio, two to four people who talk over each other). Each is diarized in this process with
the service's defaults, once without hints and once with ``min_speakers`` and ``max_speakers``
set to the reference count, on the CPU with one torch thread (the diarize worker's default,
``DIARIZE_THREADS=1``). The table gives DER at collar 0.25 s (the forgiving usual figure) and at
collar 0 (strict), overlapped speech scored, and the real-time factor (wall time / audio time).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.der import score
from bench.diarization_set import SHARED_AUDIO
from bench.report import table, verdict
from pipeline.media import SAMPLE_RATE, decode_audio
from pipeline.transcript import Turn

log = logging.getLogger(__name__)

MEETINGS = SHARED_AUDIO / "meetings"


@dataclass(frozen=True)
class Meeting:
    name: str
    audio: np.ndarray
    reference: tuple[Turn, ...]

    @property
    def speakers(self) -> int:
        return len({t.speaker for t in self.reference})


@dataclass(frozen=True)
class MeetingRow:
    name: str
    reference_speakers: int
    speakers: int
    der: float  # collar 0.25 s
    der_strict: float  # collar 0
    rtf: float
    hinted_speakers: int
    hinted_der: float
    hinted_der_strict: float


def read_rttm(path: Path) -> dict[str, tuple[Turn, ...]]:
    """NIST RTTM ``SPEAKER`` lines, by file name."""
    turns: dict[str, list[Turn]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        fields = line.split()
        if len(fields) < 8 or fields[0] != "SPEAKER":
            continue
        start, length = float(fields[3]), float(fields[4])
        turns.setdefault(fields[1], []).append(Turn(start=start, end=start + length, speaker=fields[7]))
    return {name: tuple(sorted(ts, key=lambda t: t.start)) for name, ts in turns.items()}


def meetings(folder: Path = MEETINGS) -> list[Meeting]:
    reference = read_rttm(folder / "meetings.rttm")
    return [Meeting(name, decode_audio(folder / f"{name}.wav"), turns) for name, turns in sorted(reference.items())]


def evaluate(items: Sequence[Meeting], *, device: str = "cpu") -> list[MeetingRow]:
    from pipeline.worker.diarization.engine import analyse, label

    rows = []
    for item in items:
        # One analysis for both answers: the hints change only the clustering, so this is what
        # diarize() does for each, without its speech and embeddings found twice.
        began = time.perf_counter()
        analysis = analyse(item.audio, device=device)
        turns = label(analysis) if analysis is not None else []
        elapsed = time.perf_counter() - began
        k = item.speakers
        hinted = label(analysis, min_speakers=k, max_speakers=k) if analysis is not None else []
        rows.append(MeetingRow(
            name=item.name, reference_speakers=k, speakers=len({t.speaker for t in turns}),
            der=score(item.reference, turns, collar=0.25).der, der_strict=score(item.reference, turns, collar=0.0).der,
            rtf=elapsed / (item.audio.size / SAMPLE_RATE), hinted_speakers=len({t.speaker for t in hinted}),
            hinted_der=score(item.reference, hinted, collar=0.25).der,
            hinted_der_strict=score(item.reference, hinted, collar=0.0).der,
        ))
        log.info("%s: %s", item.name, rows[-1])
    return rows


def measure(device: str = "cpu", threads: int = 1) -> dict[str, Any]:
    """The set's rows as plain data (empty when the meetings are not on this machine)."""
    if not (MEETINGS / "meetings.rttm").is_file():
        log.warning("no meetings in %s: skipped", MEETINGS)
        return {}
    from pipeline.worker.diarization import use_cpu_threads
    from pipeline.worker.diarization.models import get_models

    use_cpu_threads(threads)
    get_models(device)  # loading is not part of any file's time
    return {"device": device, "threads": threads, "rows": [asdict(r) for r in evaluate(meetings(), device=device)]}


def render(results: Mapping[str, Any]) -> str:
    """The section for docs/benchmarks.md (empty when it did not run)."""
    if not results:
        return ""
    rows = [MeetingRow(**r) for r in results["rows"]]
    body = [(r.name, f"{r.reference_speakers} / {r.speakers}", f"{r.der:.3f}", f"{r.der_strict:.3f}", f"{r.rtf:.3f}",
             f"{r.hinted_speakers}", f"{r.hinted_der:.3f}", f"{r.hinted_der_strict:.3f}") for r in rows]
    exact = sum(r.speakers == r.reference_speakers for r in rows)
    body.append(("mean", f"exact on {exact} of {len(rows)}", f"{np.mean([r.der for r in rows]):.3f}",
                 f"{np.mean([r.der_strict for r in rows]):.3f}", f"{np.mean([r.rtf for r in rows]):.3f}", "",
                 f"{np.mean([r.hinted_der for r in rows]):.3f}", f"{np.mean([r.hinted_der_strict for r in rows]):.3f}"))
    return ("\n\n### Diarization on real meetings (AMI excerpts)\n\n"
            f"The nine 30 s excerpts of `../shared/audio/meetings`, diarized in one process on the "
            f"{results['device'].upper()} with {results['threads']} torch thread(s) (`python -m "
            "bench.diarize_meetings`). DER scores overlapped speech; *hinted* runs give `min_speakers` "
            "and `max_speakers` equal to the reference count.\n\n"
            + table(("file", "speakers (ref / ours)", "DER c0.25", "DER c0", "RTF", "hinted speakers",
                     "hinted DER c0.25", "hinted DER c0"), body)
            + "\n\n" + table(("goal", "measured", "result"), goals(rows)))


def goals(rows: Sequence[MeetingRow]) -> list[tuple[str, str, str]]:
    """The goals set for diarization on these meetings, each with what was measured."""
    two = [r for r in rows if r.reference_speakers == 2]
    exact = sum(r.speakers == r.reference_speakers for r in rows)
    far = [r.name for r in rows if abs(r.speakers - r.reference_speakers) > 1]
    silent = [r.name for r in rows if r.speakers == 0]
    worse = [f"{r.name} (+{r.hinted_der - r.der:.3f})" for r in rows if r.hinted_der > r.der + 1e-9]
    mean, rtf = float(np.mean([r.der for r in rows])), max(r.rtf for r in rows)
    return [
        ("mean DER at collar 0.25 s at most 0.20", f"{mean:.3f}", verdict(mean <= 0.20)),
        ("every 2-person excerpt at most 0.10", ", ".join(f"{r.name} {r.der:.3f}" for r in two),
         verdict(all(r.der <= 0.10 for r in two))),
        ("speaker count exact on at least 7 of 9", f"{exact} of {len(rows)}", verdict(exact >= 7)),
        ("count never off by more than one", ", ".join(far) or "none off by more", verdict(not far)),
        ("no excerpt without speakers", ", ".join(silent) or "every one has speakers", verdict(not silent)),
        ("with hints equal to the count, no excerpt worse", ", ".join(worse) or "none worse", verdict(not worse)),
        ("at most 0.1x real time", f"{rtf:.3f} at the slowest", verdict(rtf <= 0.1)),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.diarize_meetings", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1, as the worker)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    results = measure(args.device, args.threads)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    print(render(results) or f"no meetings in {MEETINGS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
