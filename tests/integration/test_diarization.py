"""Speaker diarization: the engine on generated and real speech, merging, RTTM and the DER scorer."""

from __future__ import annotations

import json
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench.der import diarization_error_rate, score
from bench.diarization_set import espeak_conversation, evaluate, real_set
from pipeline.errors import InvalidOption
from pipeline.speakers import (
    apply_speakers,
    label_words,
    parse_rttm,
    speaker_at,
    split_segment,
    talk_times,
    to_rttm,
    transcript_to_rttm,
)
from pipeline.transcript import Segment, Speaker, Transcript, Word
from pipeline.worker.diarization import Turn, diarize
from pipeline.worker.diarization.clustering import ClusteringOptions, cluster_embeddings
from tests.support.helpers import SHARED_AUDIO

SR = 16_000
DIALOGUE = [
    ("A", "Good morning, thank you for joining the meeting today."),
    ("B", "Thanks for having me, I am glad to be here."),
    ("A", "Let us start with the budget for the next quarter."),
    ("B", "The numbers look fine, but travel costs went up."),
]
needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No test here may reach the network: the hub is off and any socket connect fails."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")

    def refuse(self: socket.socket, address: Any) -> None:
        raise AssertionError(f"diarization tried to connect to {address!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    yield


@pytest.fixture(scope="module")
def espeak_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    return tmp_path_factory.mktemp("espeak")


@pytest.fixture(scope="module")
def two_voices(espeak_dir: Path) -> tuple[np.ndarray, tuple[Turn, ...]]:
    return espeak_conversation(DIALOGUE, espeak_dir)


@pytest.fixture(scope="module")
def one_voice(espeak_dir: Path) -> tuple[np.ndarray, tuple[Turn, ...]]:
    return espeak_conversation([("A", text) for _, text in DIALOGUE[:3]], espeak_dir)


# -- the engine -------------------------------------------------------------------------------
@needs_espeak
def test_two_espeak_voices_are_two_speakers(two_voices: tuple[np.ndarray, tuple[Turn, ...]]) -> None:
    audio, reference = two_voices
    turns = diarize(audio, min_speakers=None, max_speakers=None, device="cpu")
    assert {t.speaker for t in turns} == {"SPEAKER_00", "SPEAKER_01"}
    assert turns[0].speaker == "SPEAKER_00"  # named in order of first appearance
    assert all(0 <= t.start < t.end <= len(audio) / SR for t in turns)
    assert [t.start for t in turns] == sorted(t.start for t in turns)
    assert diarization_error_rate(reference, turns) < 0.05


@needs_espeak
def test_one_voice_is_one_speaker(one_voice: tuple[np.ndarray, tuple[Turn, ...]]) -> None:
    audio, reference = one_voice
    turns = diarize(audio, device="cpu")
    assert {t.speaker for t in turns} == {"SPEAKER_00"}
    # The pauses between sentences are silence, not one long turn.
    assert len(turns) >= 3
    assert diarization_error_rate(reference, turns) < 0.1


@pytest.mark.parametrize(
    "audio",
    [
        np.zeros(5 * SR, dtype=np.float32),
        np.zeros(0, dtype=np.float32),
        np.zeros(100, dtype=np.float32),
        (np.random.default_rng(0).standard_normal(4 * SR) * 3e-4).astype(np.float32),
    ],
    ids=["silence", "empty", "tiny", "hiss"],
)
def test_no_speech_gives_no_turns(audio: np.ndarray) -> None:
    assert diarize(audio, device="cpu") == []


@needs_espeak
def test_max_speakers_hint_merges(two_voices: tuple[np.ndarray, tuple[Turn, ...]]) -> None:
    turns = diarize(two_voices[0], max_speakers=1, device="cpu")
    assert turns and {t.speaker for t in turns} == {"SPEAKER_00"}


@needs_espeak
def test_min_speakers_hint_splits(one_voice: tuple[np.ndarray, tuple[Turn, ...]]) -> None:
    turns = diarize(one_voice[0], min_speakers=2, device="cpu")
    assert len({t.speaker for t in turns}) == 2


@needs_espeak
def test_matching_hints_keep_the_answer(two_voices: tuple[np.ndarray, tuple[Turn, ...]]) -> None:
    audio, reference = two_voices
    turns = diarize(audio, min_speakers=2, max_speakers=2, device="cpu")
    assert len({t.speaker for t in turns}) == 2
    assert diarization_error_rate(reference, turns) < 0.05


@pytest.mark.parametrize(
    ("low", "high", "field"), [(3, 2, "min_speakers"), (0, None, "min_speakers"), (None, 0, "max_speakers")]
)
def test_bad_hints_name_the_field(low: int | None, high: int | None, field: str) -> None:
    with pytest.raises(InvalidOption) as caught:
        diarize(np.zeros(SR, dtype=np.float32), min_speakers=low, max_speakers=high, device="cpu")
    assert caught.value.field == field


def test_models_load_once_per_process() -> None:
    from pipeline.worker.diarization.models import get_models, loaded_devices

    first = get_models("cpu")
    assert get_models("cpu") is first
    assert "cpu" in loaded_devices()


def test_clustering_respects_bounds_on_hand_made_embeddings() -> None:
    rng = np.random.default_rng(1)
    centres = np.eye(3, 16)
    points = np.concatenate([c + 0.05 * rng.standard_normal((6, 16)) for c in centres])
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    labels = cluster_embeddings(points)
    assert labels.tolist() == [0] * 6 + [1] * 6 + [2] * 6
    assert len(set(cluster_embeddings(points, max_speakers=2).tolist())) == 2
    assert len(set(cluster_embeddings(points[:6], min_speakers=2).tolist())) == 2
    assert cluster_embeddings(points[:1]).tolist() == [0]
    # Past the linkage limit, a sample is clustered and every point joins its nearest centroid.
    sampled = cluster_embeddings(points, options=ClusteringOptions(max_linkage_windows=9))
    assert sampled.tolist() == labels.tolist()
    assert cluster_embeddings(np.zeros((0, 16))).tolist() == []


def test_a_min_speakers_split_takes_one_window_not_half_a_voice() -> None:
    """One voice whose windows drift (a far-field talker turning away): asked for two speakers,
    the new one is the window least like the rest, not the half of the voice nearest it."""
    angles = np.linspace(0.0, 0.9, 12)
    points = np.zeros((12, 16))
    points[:, 0], points[:, 1] = np.cos(angles), np.sin(angles)
    assert len(set(cluster_embeddings(points).tolist())) == 1
    labels = cluster_embeddings(points, min_speakers=2)
    assert len(set(labels.tolist())) == 2
    assert np.bincount(labels).min() == 1
    assert labels[-1] != labels[0]


def test_real_speech_set() -> None:
    """The bench set built from ../shared/audio: right speaker counts without hints, DER <= 0.10."""
    if not SHARED_AUDIO.is_dir():
        pytest.skip(f"{SHARED_AUDIO} is absent: it is only present beside the project's checkout")
    rows, overall = evaluate(real_set(), device="cpu")
    for row in rows:
        assert row.found == row.speakers, row
        assert row.der <= 0.10, row
    assert overall.der <= 0.10


# -- merging ----------------------------------------------------------------------------------
TURNS = [Turn(0.0, 2.0, "SPEAKER_00"), Turn(2.0, 4.0, "SPEAKER_01"), Turn(5.0, 6.0, "SPEAKER_00")]


def _word(start: float, end: float, text: str) -> Word:
    return Word(start=start, end=end, word=text, probability=0.9)


def test_each_word_takes_the_speaker_it_overlaps_most() -> None:
    words = [
        _word(0.5, 1.0, " one"),
        _word(1.7, 2.4, " two"),  # 0.3 s with 00, 0.4 s with 01
        _word(1.5, 2.1, " three"),  # 0.5 s with 00
        _word(4.3, 4.4, " gap"),  # in no turn: nearest is 01 (ends at 4.0)
        _word(4.8, 4.9, " late"),  # in no turn: nearest is 00 (starts at 5.0)
        _word(9.0, 9.5, " after"),  # past the end: the last turn
        _word(3.0, 3.0, " instant"),  # zero length, inside 01
    ]
    got = [w.speaker for w in label_words(words, TURNS)]
    assert got == ["SPEAKER_00", "SPEAKER_01", "SPEAKER_00", "SPEAKER_01", "SPEAKER_00", "SPEAKER_00", "SPEAKER_01"]
    assert speaker_at(0.0, 1.0, []) is None


def test_segment_is_split_where_the_speaker_changes() -> None:
    seg = Segment(
        id=7, start=0.2, end=4.2, text=" Hi there. Hello you.", tokens=(1, 2, 3), avg_logprob=-0.2,
        words=(_word(0.3, 0.8, " Hi"), _word(0.9, 1.6, " there."), _word(2.2, 2.9, " Hello"), _word(3.0, 3.9, " you.")),
    )
    pieces = split_segment(seg, TURNS)
    assert [(p.start, p.end, p.text, p.speaker) for p in pieces] == [
        (0.2, 1.6, " Hi there.", "SPEAKER_00"),
        (2.2, 4.2, " Hello you.", "SPEAKER_01"),
    ]
    assert all(p.tokens == () and p.avg_logprob == -0.2 for p in pieces)
    assert [w.speaker for w in pieces[1].words or ()] == ["SPEAKER_01", "SPEAKER_01"]


def test_segment_with_one_speaker_keeps_its_tokens() -> None:
    seg = Segment(id=0, start=0.0, end=1.5, text=" Hi.", tokens=(5,), words=(_word(0.1, 1.4, " Hi."),))
    (piece,) = split_segment(seg, TURNS)
    assert piece.speaker == "SPEAKER_00" and piece.tokens == (5,) and piece.text == " Hi."


def test_segment_without_words_takes_the_main_speaker() -> None:
    seg = Segment(id=0, start=1.5, end=3.9, text=" no words")
    assert split_segment(seg, TURNS) == [Segment(id=0, start=1.5, end=3.9, text=" no words", speaker="SPEAKER_01")]


def test_talk_time_counts_each_speaker_once_through_overlaps() -> None:
    turns = [*TURNS, Turn(1.0, 3.0, "SPEAKER_00"), Turn(3.5, 3.5, "SPEAKER_02")]
    assert talk_times(turns) == (Speaker("SPEAKER_00", 4.0), Speaker("SPEAKER_01", 2.0))


def test_apply_speakers_renumbers_and_summarises() -> None:
    transcript = Transcript(
        text=" Hi there. Hello you. Bye.",
        language="en",
        duration=6.0,
        segments=(
            Segment(id=0, start=0.2, end=3.9, text=" Hi there. Hello you.",
                    words=(_word(0.3, 0.8, " Hi"), _word(0.9, 1.6, " there."), _word(2.2, 2.9, " Hello"),
                           _word(3.0, 3.9, " you."))),
            Segment(id=1, start=5.1, end=5.8, text=" Bye.", words=(_word(5.1, 5.8, " Bye."),)),
        ),
    )
    out = apply_speakers(transcript, TURNS)
    assert [(s.id, s.speaker, s.text) for s in out.segments] == [
        (0, "SPEAKER_00", " Hi there."), (1, "SPEAKER_01", " Hello you."), (2, "SPEAKER_00", " Bye."),
    ]
    assert out.speakers == (Speaker("SPEAKER_00", 3.0), Speaker("SPEAKER_01", 2.0))
    assert out.text == transcript.text
    data = json.loads(json.dumps(out.to_dict()))
    assert data["speakers"] == [{"id": "SPEAKER_00", "talk_time": 3.0}, {"id": "SPEAKER_01", "talk_time": 2.0}]
    assert data["segments"][1]["speaker"] == "SPEAKER_01"
    assert data["segments"][1]["words"][0]["speaker"] == "SPEAKER_01"
    assert Transcript.from_dict(data) == out


def test_transcripts_without_speakers_serialise_as_before() -> None:
    seg = Segment(id=0, start=0.0, end=1.0, text=" x", words=(_word(0.0, 1.0, " x"),))
    data = Transcript(text=" x", language="en", duration=1.0, segments=(seg,)).to_dict()
    assert "speakers" not in data
    assert "speaker" not in data["segments"][0]
    assert data["segments"][0]["words"] == [{"start": 0.0, "end": 1.0, "word": " x", "probability": 0.9}]


# -- RTTM -------------------------------------------------------------------------------------
def test_rttm_lines() -> None:
    text = to_rttm([Turn(2.0, 4.25, "SPEAKER_01"), Turn(0.5, 2.0, "SPEAKER_00"), Turn(3.0, 3.0, "SPEAKER_00")],
                   "my meeting")
    assert text == (
        "SPEAKER my_meeting 1 0.500 1.500 <NA> <NA> SPEAKER_00 <NA> <NA>\n"
        "SPEAKER my_meeting 1 2.000 2.250 <NA> <NA> SPEAKER_01 <NA> <NA>\n"
    )
    assert parse_rttm(text) == [Turn(0.5, 2.0, "SPEAKER_00"), Turn(2.0, 4.25, "SPEAKER_01")]
    assert to_rttm([]) == ""


def test_rttm_of_a_diarized_transcript() -> None:
    segments = (
        Segment(id=0, start=0.0, end=1.0, text=" a", speaker="SPEAKER_00"),
        Segment(id=1, start=1.0, end=2.0, text=" b", speaker="SPEAKER_00"),
        Segment(id=2, start=2.5, end=3.0, text=" c", speaker="SPEAKER_01"),
    )
    t = Transcript(text="a b c", language="en", duration=3.0, segments=segments)
    assert parse_rttm(transcript_to_rttm(t, "x")) == [Turn(0.0, 2.0, "SPEAKER_00"), Turn(2.5, 3.0, "SPEAKER_01")]


# -- the scorer -------------------------------------------------------------------------------
REF = [Turn(0.0, 10.0, "A"), Turn(10.0, 20.0, "B")]


@pytest.mark.parametrize(
    ("hypothesis", "expected"),
    [
        ([Turn(0.0, 10.0, "x"), Turn(10.0, 20.0, "y")], 0.0),  # names do not matter
        ([Turn(0.0, 20.0, "x")], 0.5),  # B's 10 s confused with A
        ([], 1.0),  # everything missed
        ([Turn(0.0, 10.0, "x")], 0.5),  # B missed
        ([Turn(0.0, 10.0, "x"), Turn(10.0, 20.0, "y"), Turn(20.0, 25.0, "y")], 0.25),  # 5 s false alarm
        ([Turn(0.0, 5.0, "x"), Turn(5.0, 10.0, "z"), Turn(10.0, 20.0, "y")], 0.25),  # 5 s of A confused
    ],
)
def test_der_without_collar(hypothesis: list[Turn], expected: float) -> None:
    assert diarization_error_rate(REF, hypothesis, collar=0.0) == pytest.approx(expected)


def test_der_collar_forgives_small_boundary_shifts() -> None:
    shifted = [Turn(0.2, 10.2, "x"), Turn(10.2, 19.8, "y")]
    assert diarization_error_rate(REF, shifted, collar=0.25) == pytest.approx(0.0)
    # Without a collar the same shifts cost 0.2 (missed) + 0.2 (confused) + 0.2 (missed) of 20 s.
    result = score(REF, shifted, collar=0.0)
    assert (result.missed, result.confusion, result.false_alarm) == pytest.approx((0.4, 0.2, 0.0))
    assert result.der == pytest.approx(0.03)
    # The collar also shrinks the scored speech: 0.25 s after 0, 0.5 s around 10, 0.25 s before 20.
    assert score(REF, shifted, collar=0.25).total == pytest.approx(20.0 - 1.0)


def test_der_counts_overlapped_speech_twice() -> None:
    reference = [Turn(0.0, 10.0, "A"), Turn(0.0, 10.0, "B")]
    assert diarization_error_rate(reference, [Turn(0.0, 10.0, "x")], collar=0.0) == pytest.approx(0.5)
    both = [Turn(0.0, 10.0, "x"), Turn(0.0, 10.0, "y")]
    assert diarization_error_rate(reference, both, collar=0.0) == pytest.approx(0.0)


def test_der_of_silence() -> None:
    assert diarization_error_rate([], []) == 0.0
    assert diarization_error_rate([], [Turn(0.0, 1.0, "x")]) == 1.0
