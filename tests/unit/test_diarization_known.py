"""pipeline/worker/diarization/known.py: reference clips, solo speech and naming speakers, with the
models replaced by fixed speech scores and embeddings."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.errors import InvalidOption
from pipeline.transcript import Turn
from pipeline.worker.diarization import known
from pipeline.worker.diarization.known import (
    Reference,
    check_pairs,
    name_speakers,
    reference_embedding,
    similarities,
    solo_spans,
)
from pipeline.worker.diarization.models import SAMPLE_RATE, Activity

STEP = 0.05
E = np.eye(4)


class FixedModels:
    """Stands in for DiarizationModels. ``activity`` says speech where ``speech`` is set; ``embed``
    gives a window centred before ``split`` s the vector E[0] and a later one E[1], unless
    ``by_start`` asks for [1, start, 0, 0] (so a mean of windows is checkable)."""

    def __init__(self) -> None:
        self.speech = np.zeros(0)
        self.split = 5.0
        self.by_start = False
        self.heard_peaks: list[float] = []
        self.windows: list[np.ndarray] = []

    def activity(self, audio: np.ndarray, *, step: float) -> Activity:
        self.heard_peaks.append(float(np.abs(audio).max()))
        return Activity(0.0, STEP, self.speech, np.zeros_like(self.speech))

    def embed(self, samples: np.ndarray, windows: np.ndarray) -> np.ndarray:
        self.windows.append(windows.copy())
        if self.by_start:
            return np.array([[1.0, a, 0.0, 0.0] for a, _ in windows])
        return np.stack([E[0] if (a + b) / 2 < self.split else E[1] for a, b in windows])


@pytest.fixture
def models(monkeypatch: pytest.MonkeyPatch) -> FixedModels:
    fixed = FixedModels()
    monkeypatch.setattr(known, "get_models", lambda device: fixed)
    return fixed


def noise(seconds: float, level: float = 0.1) -> np.ndarray:
    return (np.random.default_rng(0).standard_normal(int(seconds * SAMPLE_RATE)) * level).astype(np.float32)


def speech_in(start: float, end: float, frames: int) -> np.ndarray:
    scores = np.zeros(frames)
    scores[round(start / STEP):round(end / STEP)] = 0.9
    return scores


def near(*weights: float) -> np.ndarray:
    """A unit vector with these similarities to E[0], E[1], ..., the rest put on E[3]."""
    vector = np.zeros(4)
    vector[:len(weights)] = weights
    vector[3] = np.sqrt(1 - sum(w * w for w in weights))
    return vector


TWO = [Turn(0.0, 5.0, "SPEAKER_00"), Turn(5.0, 10.0, "SPEAKER_01")]


# -- solo speech and pairing --------------------------------------------------------------------
def test_solo_spans_cut_out_everyone_elses_speech() -> None:
    turns = [Turn(0.0, 10.0, "A"), Turn(4.0, 6.0, "B"), Turn(8.0, 12.0, "C"), Turn(11.0, 13.0, "A")]
    assert solo_spans(turns, "A") == [(0.0, 4.0), (6.0, 8.0), (12.0, 13.0)]
    assert solo_spans(turns, "B") == []  # only ever heard over A
    assert solo_spans(turns, "nobody") == []


def test_solo_spans_drop_slivers_under_a_millisecond() -> None:
    turns = [Turn(0.0, 2.0, "A"), Turn(1.0, 1.9995, "B")]
    assert solo_spans(turns, "A") == [(0.0, 1.0)]


def test_names_and_references_must_pair_up() -> None:
    check_pairs(["Ada", "Bob"], 2)
    with pytest.raises(InvalidOption, match="2 names, 3 references") as refused:
        check_pairs(["Ada", "Bob"], 3)
    assert refused.value.field == "known_speaker_references"


# -- reference clips -------------------------------------------------------------------------------
@pytest.mark.parametrize("clip", [noise(0.5), np.zeros(3 * SAMPLE_RATE, np.float32), noise(3, level=1e-5)],
                         ids=["short", "silent", "near-silent"])
def test_a_clip_without_a_second_of_speech_is_refused_before_any_model_runs(
    monkeypatch: pytest.MonkeyPatch, clip: np.ndarray
) -> None:
    def refuse(device: str) -> FixedModels:
        raise AssertionError("the models were asked for")

    monkeypatch.setattr(known, "get_models", refuse)
    with pytest.raises(InvalidOption, match=r"holds 0\.0 s of speech; a reference needs at least 1 s") as refused:
        reference_embedding(clip, field="known_speaker_references[0]")
    assert refused.value.field == "known_speaker_references[0]"


def test_a_clip_with_too_little_speech_says_how_much_it_holds(models: FixedModels) -> None:
    models.speech = speech_in(0.5, 1.0, 60)
    with pytest.raises(InvalidOption, match=r"holds 0\.5 s of speech"):
        reference_embedding(noise(3), field="ref")


def test_a_reference_is_the_unit_mean_of_its_speech_windows_at_the_usual_level(models: FixedModels) -> None:
    models.speech, models.by_start = speech_in(0.5, 2.5, 60), True
    embedding = reference_embedding(noise(3, level=0.01), field="ref")
    # Windows (0.5, 2.0) and (1.0, 2.5): rows [1, 0.5] and [1, 1], mean [1, 0.75], length 1.25.
    assert models.windows[-1].tolist() == [[0.5, 2.0], [1.0, 2.5]]
    assert embedding.dtype == np.float32 and embedding.tolist() == pytest.approx([0.8, 0.6, 0.0, 0.0])
    assert models.heard_peaks == [pytest.approx(0.9)]  # a quiet clip is brought to the usual peak


# -- naming ---------------------------------------------------------------------------------------
def test_each_speaker_takes_the_name_of_the_reference_it_matches(models: FixedModels) -> None:
    references = [Reference("Bob", near(0.0, 0.9)), Reference("Ada", near(0.9))]
    assert name_speakers(noise(10), TWO, references) == [Turn(0.0, 5.0, "Ada"), Turn(5.0, 10.0, "Bob")]


def test_a_reference_under_the_threshold_names_nobody(models: FixedModels) -> None:
    references = [Reference("Ada", near(0.6)), Reference("Cy", near(0.0, 0.0, 1.0))]
    assert name_speakers(noise(10), TWO, references) == TWO
    renamed = name_speakers(noise(10), TWO, references, threshold=0.5)
    assert renamed == [Turn(0.0, 5.0, "Ada"), Turn(5.0, 10.0, "SPEAKER_01")]


def test_one_name_per_speaker_and_one_speaker_per_name(models: FixedModels) -> None:
    # Both sound like SPEAKER_00; the better match takes it, and Eve is left to SPEAKER_01 (0.3).
    references = [Reference("Eve", near(0.8, 0.3)), Reference("Ada", near(0.95, 0.1))]
    assert name_speakers(noise(10), TWO, references) == [Turn(0.0, 5.0, "Ada"), Turn(5.0, 10.0, "SPEAKER_01")]


def test_without_references_or_turns_nothing_changes(models: FixedModels) -> None:
    assert name_speakers(noise(10), TWO, []) == TWO
    assert name_speakers(noise(10), [], [Reference("Ada", E[0])]) == []
    assert models.windows == []


def test_a_speaker_is_heard_where_nobody_else_speaks_and_for_at_most_a_minute(models: FixedModels) -> None:
    turns = [Turn(0.0, 70.0, "A"), Turn(66.0, 69.0, "B"), Turn(80.0, 85.0, "A")]
    name_speakers(noise(90), turns, [Reference("Ada", E[0])])
    windows_a, windows_b = models.windows
    # A's longest solo stretch (0-66 s) already passes 60 s: 69-70 s and 80-85 s are not needed.
    assert windows_a.min() == 0.0 and windows_a.max() == 66.0
    # B talks only over A, so B's whole turn is used.
    assert windows_b.min() == 66.0 and windows_b.max() == 69.0


def test_similarities_list_each_speakers_score_against_each_reference(models: FixedModels) -> None:
    references = [Reference("Bob", E[1]), Reference("Ada", near(0.6, 0.8))]
    scores = similarities(noise(10), TWO, references)
    assert scores == {"SPEAKER_00": [0.0, pytest.approx(0.6)], "SPEAKER_01": [1.0, pytest.approx(0.8)]}
