"""Diarization error rate, scored the way NIST's md-eval does.

DER = (missed speech + false alarm + speaker confusion) / total reference speech, with the
hypothesis speakers mapped one-to-one onto the reference speakers so that the matched time is
largest (Hungarian assignment). A collar of ``collar`` seconds on *each* side of every reference
boundary is left out of the score (md-eval's ``-c 0.25``; pyannote.metrics writes the same as
``collar=0.5``), since people disagree about where a turn starts by about that much. Overlapped
speech is scored: two reference speakers at once count twice.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from itertools import pairwise
from typing import Protocol

import numpy as np
from scipy.optimize import linear_sum_assignment


class Labelled(Protocol):
    @property
    def start(self) -> float: ...

    @property
    def end(self) -> float: ...

    @property
    def speaker(self) -> str: ...


@dataclass(frozen=True)
class DerScore:
    total: float  # scored reference speech, seconds
    missed: float
    false_alarm: float
    confusion: float
    mapping: tuple[tuple[str, str], ...]  # (hypothesis speaker, reference speaker)

    @property
    def errors(self) -> float:
        return self.missed + self.false_alarm + self.confusion

    @property
    def der(self) -> float:
        if self.total <= 0:
            # No speech to find: perfect when nothing was claimed either.
            return 0.0 if self.errors <= 0 else 1.0
        return self.errors / self.total


def _collar_spans(reference: list[tuple[float, float, str]], collar: float) -> list[tuple[float, float]]:
    spans = sorted(
        (max(0.0, t - collar), t + collar) for start, end, _ in reference for t in (start, end)
    ) if collar > 0 else []
    merged: list[tuple[float, float]] = []
    for a, b in spans:
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


def _as_tuples(turns: Iterable[Labelled]) -> list[tuple[float, float, str]]:
    return [(float(t.start), float(t.end), str(t.speaker)) for t in turns if t.end > t.start]


def score(reference: Iterable[Labelled], hypothesis: Iterable[Labelled], *, collar: float = 0.25) -> DerScore:
    ref = _as_tuples(reference)
    hyp = _as_tuples(hypothesis)
    collars = _collar_spans(ref, collar)
    bounds = sorted({t for s, e, _ in ref + hyp for t in (s, e)} | {t for span in collars for t in span})
    ref_names = sorted({s for _, _, s in ref})
    hyp_names = sorted({s for _, _, s in hyp})

    # Elementary pieces between consecutive boundaries: inside one, nobody starts or stops.
    pieces: list[tuple[float, set[str], set[str]]] = []
    for a, b in pairwise(bounds):
        if b - a <= 1e-9:
            continue
        mid = (a + b) / 2
        if any(c0 <= mid < c1 for c0, c1 in collars):
            continue
        r = {spk for s, e, spk in ref if s <= mid < e}
        h = {spk for s, e, spk in hyp if s <= mid < e}
        if r or h:
            pieces.append((b - a, r, h))

    overlap = np.zeros((len(hyp_names), len(ref_names)))
    h_index = {n: i for i, n in enumerate(hyp_names)}
    r_index = {n: i for i, n in enumerate(ref_names)}
    for dur, r, h in pieces:
        for hs in h:
            for rs in r:
                overlap[h_index[hs], r_index[rs]] += dur
    mapping: dict[str, str] = {}
    if overlap.size:
        rows, cols = linear_sum_assignment(-overlap)
        mapping = {hyp_names[i]: ref_names[j] for i, j in zip(rows, cols, strict=True) if overlap[i, j] > 0}

    total = missed = false_alarm = confusion = 0.0
    for dur, r, h in pieces:
        n_ref, n_hyp = len(r), len(h)
        correct = len({mapping[x] for x in h if x in mapping} & r)
        total += dur * n_ref
        missed += dur * max(0, n_ref - n_hyp)
        false_alarm += dur * max(0, n_hyp - n_ref)
        confusion += dur * (min(n_ref, n_hyp) - correct)
    return DerScore(
        total=total,
        missed=missed,
        false_alarm=false_alarm,
        confusion=confusion,
        mapping=tuple(sorted(mapping.items())),
    )


def diarization_error_rate(
    reference: Iterable[Labelled], hypothesis: Iterable[Labelled], *, collar: float = 0.25
) -> float:
    return score(reference, hypothesis, collar=collar).der
