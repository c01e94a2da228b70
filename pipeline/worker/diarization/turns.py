"""The frame-level bookkeeping that produces speaker turns."""

from __future__ import annotations

import numpy as np


def speaker_name(index: int) -> str:
    return f"SPEAKER_{index:02d}"


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """Half-open [start, end) index ranges where a boolean mask is true."""
    if mask.size == 0:
        return []
    padded = np.concatenate([[False], mask.astype(bool), [False]])
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def hysteresis(scores: np.ndarray, onset: float, offset: float) -> np.ndarray:
    """Active from where scores rise above onset until they fall below offset."""
    out = np.zeros(scores.shape, dtype=bool)
    active = False
    for i, value in enumerate(scores.tolist()):
        active = value > offset if active else value > onset
        out[i] = active
    return out


def fill_gaps(mask: np.ndarray, max_gap: int) -> np.ndarray:
    """Close false runs no longer than max_gap frames that lie between two true runs."""
    out = mask.copy()
    spans = runs(~mask)
    for a, b in spans:
        if a > 0 and b < mask.size and b - a <= max_gap:
            out[a:b] = True
    return out


def drop_short(mask: np.ndarray, min_len: int) -> np.ndarray:
    out = mask.copy()
    for a, b in runs(mask):
        if b - a < min_len:
            out[a:b] = False
    return out


def smooth_labels(labels: np.ndarray, min_len: int) -> np.ndarray:
    """Relabel runs shorter than min_len frames (label >= 0) with their longer neighbour's label.

    ``-1`` marks frames without speech; runs are considered within stretches of speech only.
    """
    out = labels.copy()
    for a, b in runs(out >= 0):
        changed = True
        while changed:
            changed = False
            seg = out[a:b]
            bounds = np.flatnonzero(np.diff(seg)) + 1
            pieces = list(zip(np.concatenate([[0], bounds]), np.concatenate([bounds, [seg.size]]), strict=True))
            if len(pieces) < 2:
                break
            lengths = [int(e - s) for s, e in pieces]
            shortest = int(np.argmin(lengths))
            if lengths[shortest] >= min_len:
                break
            s, e = pieces[shortest]
            left = lengths[shortest - 1] if shortest > 0 else -1
            right = lengths[shortest + 1] if shortest + 1 < len(pieces) else -1
            source = pieces[shortest - 1] if left >= right else pieces[shortest + 1]
            seg[s:e] = seg[source[0]]
            changed = True
    return out
