"""pipeline/worker/diarization/clustering.py: speaker labels from synthetic embeddings and count hints."""

from __future__ import annotations

import numpy as np

from pipeline.worker.diarization.clustering import ClusteringOptions, cluster_embeddings

DIM = 8
AXES = np.eye(DIM)


def unit(vector: np.ndarray) -> np.ndarray:
    return np.asarray(vector / np.linalg.norm(vector, axis=-1, keepdims=True), dtype=np.float64)


def voice(centre: np.ndarray, count: int, seed: int) -> np.ndarray:
    """``count`` windows of one voice: small noise around its direction, normalised like CAM++'s."""
    rng = np.random.default_rng(seed)
    return unit(unit(centre) + 0.03 * rng.standard_normal((count, DIM)))


def between(a: np.ndarray, b: np.ndarray, similarity: float) -> np.ndarray:
    """A unit vector whose cosine similarity to the unit vector ``a`` is ``similarity``, towards ``b``."""
    return unit(similarity * a + np.sqrt(1 - similarity**2) * b)


def test_speakers_are_numbered_in_order_of_first_appearance() -> None:
    points = np.concatenate([voice(AXES[1], 3, 0), voice(AXES[0], 3, 1), voice(AXES[1], 2, 2)])
    assert cluster_embeddings(points).tolist() == [0, 0, 0, 1, 1, 1, 0, 0]


def test_a_lone_window_is_folded_into_the_speaker_it_sounds_most_like() -> None:
    # Beyond the threshold from both voices (similarity 0.4 and 0), but nearer the first one.
    stray = between(AXES[0], AXES[2], 0.4)
    points = np.concatenate([voice(AXES[0], 5, 0), voice(AXES[1], 5, 1), stray[None]])
    assert cluster_embeddings(points).tolist() == [0] * 5 + [1] * 5 + [0]
    # With single windows allowed to be speakers, it is one.
    alone = cluster_embeddings(points, options=ClusteringOptions(min_windows=1))
    assert alone.tolist() == [0] * 5 + [1] * 5 + [2]


def test_a_min_speakers_hint_keeps_a_small_cluster_that_would_otherwise_be_folded() -> None:
    stray = between(AXES[0], AXES[2], 0.4)
    points = np.concatenate([voice(AXES[0], 5, 0), voice(AXES[1], 5, 1), stray[None]])
    assert cluster_embeddings(points, min_speakers=3).tolist() == [0] * 5 + [1] * 5 + [2]


def test_the_threshold_decides_whether_two_similar_voices_are_one() -> None:
    # Similarity 0.6 is a cosine distance of 0.4: under the default 0.55, over 0.3.
    points = np.concatenate([voice(AXES[0], 4, 0), voice(between(AXES[0], AXES[2], 0.6), 4, 1)])
    assert cluster_embeddings(points).tolist() == [0] * 8
    assert cluster_embeddings(points, options=ClusteringOptions(threshold=0.3)).tolist() == [0] * 4 + [1] * 4


def test_max_speakers_merges_the_smallest_speaker_into_the_one_it_is_most_like() -> None:
    near_second = between(AXES[1], AXES[2], 0.4)
    points = np.concatenate([voice(AXES[0], 6, 0), voice(AXES[1], 6, 1), voice(near_second, 3, 2)])
    assert cluster_embeddings(points).tolist() == [0] * 6 + [1] * 6 + [2] * 3
    assert cluster_embeddings(points, max_speakers=2).tolist() == [0] * 6 + [1] * 9


def test_hints_are_bounded_by_the_number_of_windows() -> None:
    points = voice(AXES[0], 3, 0)
    # More speakers asked for than there are windows: each window becomes one, and no more.
    assert cluster_embeddings(points, min_speakers=10).tolist() == [0, 1, 2]
    assert cluster_embeddings(points[:1], min_speakers=3).tolist() == [0]
    # A max below one is taken as one.
    assert cluster_embeddings(points, max_speakers=0).tolist() == [0, 0, 0]


def test_labels_are_integers_one_per_window() -> None:
    points = np.concatenate([voice(AXES[0], 4, 0), voice(AXES[1], 4, 1)]).astype(np.float32)
    labels = cluster_embeddings(points)
    assert labels.dtype.kind == "i" and labels.shape == (8,)
    assert cluster_embeddings(np.zeros((0, DIM))).dtype.kind == "i"
