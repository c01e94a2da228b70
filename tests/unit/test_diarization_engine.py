"""pipeline/worker/diarization/engine.py: checks, speech masks, windows, frame labels, overlap and
turn assembly, with the neural models replaced by fixed scores and embeddings."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from pipeline.errors import DiarizationError, InvalidOption, JobCancelled
from pipeline.transcript import Turn
from pipeline.worker.diarization import engine
from pipeline.worker.diarization.engine import (
    DiarizationOptions,
    LocalVoice,
    _check_audio,
    _embed_voices,
    _label_frames,
    _local_voices,
    _loud_enough,
    _overlap_turns,
    _speech_mask,
    _split_local_conflicts,
    _windows,
    diarize,
)
from pipeline.worker.diarization.models import SAMPLE_RATE, SILERO_WINDOW, Activity
from pipeline.worker.diarization.turns import runs

STEP = 0.05  # seconds per segmentation frame in these tests
OPTS = DiarizationOptions()
MIN_LEN = round(OPTS.min_turn / STEP)  # frames
OnBatch = Callable[[int, int], None] | None


class FixedModels:
    """Stands in for DiarizationModels: given frame scores, and a window's embedding is the unit
    vector ``voice(centre of the window)`` (by default voice 0 before 5 s, voice 1 after)."""

    def __init__(self, speech: np.ndarray, overlap: np.ndarray | None = None) -> None:
        self.speech = speech
        self.overlap = np.zeros_like(speech) if overlap is None else overlap
        self.voice: Callable[[float], int] = lambda centre: 0 if centre < 5.0 else 1
        self.failure: Exception | None = None
        self.heard: Callable[[float], float] = lambda t: 0.9  # Silero's probability at t seconds
        self.local: np.ndarray | None = None  # the segmentation's local speakers, one window

    def activity(self, samples: np.ndarray, *, step: float, on_batch: OnBatch = None) -> Activity:
        if on_batch is not None:
            on_batch(1, 1)
        return Activity(0.0, STEP, self.speech, self.overlap, local=self.local,
                        local_first=None if self.local is None else np.zeros(len(self.local), np.int64))

    def speech_probabilities(self, samples: np.ndarray) -> np.ndarray:
        count = -(-samples.size // SILERO_WINDOW)
        return np.array([self.heard(i * SILERO_WINDOW / SAMPLE_RATE) for i in range(count)], np.float32)

    def embed(self, samples: np.ndarray, windows: np.ndarray, on_batch: OnBatch = None) -> np.ndarray:
        if self.failure is not None:
            raise self.failure
        if on_batch is not None:
            on_batch(1, 2)
            on_batch(2, 2)
        eye = np.eye(4)
        return np.stack([eye[self.voice((a + b) / 2)] for a, b in windows])


def ten_seconds() -> np.ndarray:
    return (np.random.default_rng(0).standard_normal(10 * SAMPLE_RATE) * 0.1).astype(np.float32)


def speech_in(*spans: tuple[float, float], frames: int = 200) -> np.ndarray:
    scores = np.zeros(frames)
    for start, end in spans:
        scores[round(start / STEP):round(end / STEP)] = 0.9
    return scores


@pytest.fixture
def models(monkeypatch: pytest.MonkeyPatch) -> FixedModels:
    fixed = FixedModels(speech_in((0.0, 4.0), (6.0, 10.0)))
    monkeypatch.setattr(engine, "get_models", lambda device: fixed)
    return fixed


# -- the pure steps ---------------------------------------------------------------------------
@pytest.mark.parametrize("audio", [np.zeros((2, 100), np.float32), np.zeros((100, 1), np.float32)])
def test_audio_that_is_not_mono_is_refused(audio: np.ndarray) -> None:
    with pytest.raises(DiarizationError, match=r"mono audio.*shape"):
        _check_audio(audio)


def test_audio_with_nan_or_inf_is_refused_and_loud_samples_are_clipped() -> None:
    for bad in (np.nan, np.inf):
        with pytest.raises(DiarizationError, match="not finite"):
            _check_audio(np.array([0.0, bad]))
    clipped = _check_audio(np.array([2.0, -3.0, 0.5]))
    assert clipped.dtype == np.float32 and clipped.tolist() == [1.0, -1.0, 0.5]


def test_only_digital_silence_is_not_loud_enough() -> None:
    audio = np.zeros(3 * SAMPLE_RATE, np.float32)
    audio[SAMPLE_RATE:2 * SAMPLE_RATE] = 0.5
    audio[2 * SAMPLE_RATE:] = 1e-6  # about -123 dB: below the -90 dB floor
    assert _loud_enough(audio, np.array([0.5, 1.5, 2.5]), OPTS).tolist() == [False, True, False]


def test_speech_mask_fills_short_pauses_drops_short_blips_and_respects_loudness() -> None:
    scores = speech_in((0.25, 0.75), (0.85, 1.25), (1.5, 1.65), frames=40)
    activity = Activity(0.0, STEP, scores, np.zeros(40))
    # The 0.1 s pause is under min_silence; the 0.15 s blip is under min_speech.
    assert np.flatnonzero(_speech_mask(activity, np.ones(40, bool), OPTS)).tolist() == list(range(5, 25))
    loud = np.arange(40) < 20
    assert np.flatnonzero(_speech_mask(activity, loud, OPTS)).tolist() == list(range(5, 20))


def test_a_region_silero_hears_no_speech_in_even_at_its_edges_is_not_speech() -> None:
    scores = speech_in((0.5, 1.5), (3.0, 4.0), (6.0, 7.0), frames=160)
    activity = Activity(0.0, STEP, scores, np.zeros(160))
    silero = np.zeros(8 * SAMPLE_RATE // SILERO_WINDOW, np.float32)

    def hear(start: float, end: float) -> None:
        silero[round(start * SAMPLE_RATE / SILERO_WINDOW):round(end * SAMPLE_RATE / SILERO_WINDOW)] = 0.8

    hear(1.0, 1.2)  # inside the first region
    hear(4.3, 4.4)  # 0.3 s after the second, inside the margin: Silero heard its last word
    mask = _speech_mask(activity, np.ones(160, bool), OPTS, silero)
    assert [(a * STEP, b * STEP) for a, b in runs(mask)] == [(0.5, 1.5), (3.0, 4.0)]
    # The segmentation model alone decides where Silero hears anything, and with the veto off.
    assert _speech_mask(activity, np.ones(160, bool), DiarizationOptions(veto_threshold=0.0), silero).sum() == 60
    assert _speech_mask(activity, np.ones(160, bool), OPTS).sum() == 60


def test_windows_tile_long_regions_and_centre_one_on_short_ones() -> None:
    long = _windows([(0.0, 4.0), (5.0, 6.5)], 10.0, OPTS)
    assert long.tolist() == [[0.0, 1.5], [0.75, 2.25], [1.5, 3.0], [2.25, 3.75], [2.5, 4.0], [5.0, 6.5]]
    short = _windows([(2.0, 2.4), (0.0, 0.2), (9.9, 10.0)], 10.0, OPTS)
    # Each borrows context up to min_window (1 s), kept inside the recording.
    assert np.allclose(short, [[1.7, 2.7], [0.0, 1.0], [9.0, 10.0]])
    assert _windows([(0.1, 0.5)], 0.6, OPTS).tolist() == [[0.0, 0.6]]  # a recording under min_window
    assert _windows([], 10.0, OPTS).shape == (0, 2)


def test_frames_take_the_speaker_of_the_windows_covering_them_or_the_nearest() -> None:
    times = np.arange(60) * STEP
    mask = np.arange(60) >= 5
    labels = _label_frames(times, mask, np.array([[0.0, 1.0], [1.0, 2.0]]), np.array([0, 1]), 2)
    # Frames 40-59 (2-3 s) lie in no window: the nearest window centre (1.5 s) is speaker 1's.
    assert labels.tolist() == [-1] * 5 + [0] * 15 + [1] * 40


def test_overlapped_speech_gets_the_other_speaker_heard_nearest() -> None:
    frames = np.full(100, -1)
    frames[0:40], frames[50:90] = 0, 1
    overlap = np.zeros(100)
    overlap[10:30] = 0.8
    activity = Activity(0.0, STEP, np.ones(100), overlap)
    [(speaker, start, end)] = _overlap_turns(activity, frames, np.arange(100) * STEP, OPTS, spare=2)
    assert speaker == 1 and (start, end) == pytest.approx((0.5, 1.5))

    short = np.zeros(100)
    short[10:15] = 0.8  # 0.25 s: under min_turn, taken for noise
    activity = Activity(0.0, STEP, np.ones(100), short)
    assert _overlap_turns(activity, frames, np.arange(100) * STEP, OPTS, spare=2) == []


def test_overlap_with_one_speaker_heard_is_a_spare_speaker_when_the_hints_leave_room() -> None:
    frames = np.full(100, -1)
    frames[0:90] = 0
    overlap = np.zeros(100)
    overlap[10:30] = 0.8
    activity = Activity(0.0, STEP, np.ones(100), overlap)
    times = np.arange(100) * STEP
    assert [t[0] for t in _overlap_turns(activity, frames, times, OPTS, spare=1)] == [1]
    assert _overlap_turns(activity, frames, times, OPTS, spare=None) == []


def test_missing_speakers_are_the_second_voices_of_the_longest_overlaps() -> None:
    frames = np.full(100, -1)
    frames[0:40], frames[50:90] = 0, 1
    overlap = np.zeros(100)
    overlap[10:30], overlap[60:72] = 0.8, 0.8
    activity = Activity(0.0, STEP, np.ones(100), overlap)
    extra = _overlap_turns(activity, frames, np.arange(100) * STEP, OPTS, spare=2, missing=1)
    # The 1 s overlap is the newcomer; the 0.6 s one takes the nearest other speaker as usual.
    assert [(who, round(a, 3), round(b, 3)) for who, a, b in extra] == [(2, 0.5, 1.5), (0, 3.0, 3.6)]


def test_an_overlap_where_the_voice_heard_alone_changes_gives_each_part_the_other_voice() -> None:
    frames = np.repeat([0, 1], 50)
    overlap = np.where((np.arange(100) >= 40) & (np.arange(100) < 60), 0.8, 0.0)
    extra = _overlap_turns(Activity(0.0, STEP, np.ones(100), overlap), frames, np.arange(100) * STEP, OPTS, spare=2)
    # Not a spare third speaker for the whole span, though both voices are heard in it.
    assert [(who, round(a, 3), round(b, 3)) for who, a, b in extra] == [(1, 2.0, 2.5), (0, 2.5, 3.0)]

    # A part shorter than min_turn is no turn of its own: the voice heard alone for 0.15 s in the
    # middle of speaker 0's overlap is that overlap's second voice.
    frames = np.zeros(100, int)
    frames[50:53] = 1
    extra = _overlap_turns(Activity(0.0, STEP, np.ones(100), overlap), frames, np.arange(100) * STEP, OPTS, spare=2)
    assert [(who, round(a, 3), round(b, 3)) for who, a, b in extra] == [(1, 2.0, 3.0)]


def local_window(*voices: tuple[int, int], frames: int = 100) -> np.ndarray:
    """One segmentation window's local speakers: voice k active over frames [a, b)."""
    active = np.zeros((frames, 3), bool)
    for k, (a, b) in enumerate(voices):
        active[a:b, k] = True
    return active


def test_local_voices_are_where_each_local_speaker_speaks_alone_for_long_enough() -> None:
    # Window 0: voice 0 over frames 0-60, voice 1 over 50-80 (overlapping 50-60: not alone).
    # Window 1 (from frame 100): one voice of 0.2 s, too short to count.
    local = np.stack([local_window((0, 60), (50, 80)), local_window((0, 4))])
    activity = Activity(0.0, STEP, np.ones(200), np.zeros(200), local=local, local_first=np.array([0, 100]))
    voices = _local_voices(activity, np.ones(200, bool), OPTS)
    assert [(v.window, v.seconds, v.frames.min(), v.frames.max()) for v in voices] == [
        (0, pytest.approx(2.5), 0, 49), (0, pytest.approx(1.0), 60, 79)]
    assert _local_voices(activity, np.ones(200, bool), DiarizationOptions(local_min_solo=0)) == []
    # Frames that are not speech (the mask) are nobody's.
    mask = np.ones(200, bool)
    mask[60:75] = False
    assert [v.seconds for v in _local_voices(activity, mask, OPTS)] == [pytest.approx(2.5)]


def voice(window: int, frames: range | list[int], embedding: np.ndarray | None = None) -> LocalVoice:
    return LocalVoice(window, np.array(frames), len(frames) * STEP, embedding)


def test_each_smaller_voice_is_embedded_from_its_own_solo_audio_a_group_at_a_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[float, np.ndarray]] = []

    class Recorder:
        def embed(self, samples: np.ndarray, windows: np.ndarray, on_batch: OnBatch = None) -> np.ndarray:
            calls.append((samples.size / SAMPLE_RATE, windows))
            return np.ones((len(windows), 4)) / 2

    monkeypatch.setattr(engine, "VOICES_PER_CALL", 2)
    times = np.arange(400) * STEP
    voices = [voice(0, range(0, 100)), voice(0, range(100, 190)), voice(0, range(190, 200)),
              voice(1, range(200, 300)), voice(1, [300, 301, 310, 311, 312])]
    told: list[tuple[int, int]] = []
    out = _embed_voices(Recorder(), np.zeros(20 * SAMPLE_RATE, np.float32), voices, times, STEP,  # type: ignore[arg-type]
                        on_group=lambda done, total: told.append((done, total)))
    assert told == [(1, 2), (2, 2)]
    # The largest voice of each window is never split off, so it is not embedded.
    assert [v.embedding is not None for v in out] == [False, True, True, False, True]
    # Three voices, two per call: 4.5 s taken up to MAX_VOICE_SECONDS (4 s) and 0.5 s; then the
    # last one's two runs of frames, joined (0.25 s).
    assert [len(w) for _, w in calls] == [2, 1]
    assert calls[0][0] == pytest.approx(4.5) and calls[1][0] == pytest.approx(0.25)
    assert calls[0][1].tolist() == [[0.0, 4.0], [4.0, 4.5]]


def test_a_voice_is_embedded_from_the_samples_of_its_own_frames() -> None:
    seen: list[np.ndarray] = []

    class Recorder:
        def embed(self, samples: np.ndarray, windows: np.ndarray, on_batch: OnBatch = None) -> np.ndarray:
            seen.append(samples)
            return np.ones((len(windows), 4)) / 2

    ramp = np.arange(20 * SAMPLE_RATE, dtype=np.float32)
    times = np.arange(400) * STEP
    # Frames 100-109 and 120-124: 5.00-5.50 s and 6.00-6.25 s.
    _embed_voices(Recorder(), ramp, [voice(0, range(0, 100)), voice(0, [*range(100, 110), *range(120, 125)])],  # type: ignore[arg-type]
                  times, STEP)
    [joined] = seen
    expected = np.concatenate([ramp[5 * SAMPLE_RATE:int(5.5 * SAMPLE_RATE)],
                               ramp[6 * SAMPLE_RATE:int(6.25 * SAMPLE_RATE)]])
    assert np.array_equal(joined, expected)


def test_a_window_past_the_end_of_the_recording_holds_only_its_frames_inside() -> None:
    # 150 frames of recording; the second window starts at frame 120 and would run to 220.
    # Its second voice is alone over 25-100 of it, of which only 25-30 (0.25 s) is recording.
    local = np.stack([local_window((0, 100)), local_window((0, 25), (25, 100))])
    activity = Activity(0.0, STEP, np.ones(150), np.zeros(150), local=local, local_first=np.array([0, 120]))
    voices = _local_voices(activity, np.ones(150, bool), OPTS)
    assert [(v.window, v.frames.min(), v.frames.max()) for v in voices] == [(0, 0, 99), (1, 120, 144)]
    past = Activity(0.0, STEP, np.ones(150), np.zeros(150), local=local[:1], local_first=np.array([200]))
    assert _local_voices(past, np.ones(150, bool), OPTS) == []


def test_a_voice_alone_in_pieces_moves_as_one_stretch_and_a_scrap_of_it_not_at_all() -> None:
    eye = np.eye(4)
    labels = np.zeros(200, int)
    # Alone every other frame over 60-90 (overlapped between), and 3 frames alone at 150.
    voices = (voice(0, range(0, 60)), voice(0, [*range(60, 90, 2), 150, 151, 152], eye[1]))
    split, count = _split_local_conflicts(labels, 1, voices, eye[:1], room=None, link=0.45, min_len=MIN_LEN)
    assert count == 2 and split[60:89].tolist() == [1] * 29 and not split[89:].any()


def test_a_frame_is_moved_by_the_first_window_that_moves_it() -> None:
    eye = np.eye(4)
    labels = np.zeros(200, int)
    labels[150:] = 1
    # Windows 0 and 1 overlap on frames 60-80: window 0 calls that voice new, window 1 calls it
    # speaker 1's.
    voices = (voice(0, range(0, 60)), voice(0, range(60, 80), eye[2]),
              voice(1, range(80, 140)), voice(1, range(60, 80), eye[1]))
    split, count = _split_local_conflicts(labels, 2, voices, eye[:2], room=None, link=0.45, min_len=MIN_LEN)
    assert split[60:80].tolist() == [2] * 20 and count == 3


def test_room_for_one_new_speaker_takes_the_first_voice_unlike_anyone() -> None:
    eye = np.eye(4)
    labels = np.zeros(200, int)
    voices = (voice(0, range(0, 60)), voice(0, range(60, 80), eye[2]),
              voice(1, range(100, 160)), voice(1, range(160, 180), eye[3]))
    split, count = _split_local_conflicts(labels, 1, voices, eye[:1], room=1, link=0.45, min_len=MIN_LEN)
    assert count == 2 and split[60:80].tolist() == [1] * 20 and not split[160:180].any()


def test_two_voices_alone_for_as_long_are_not_split() -> None:
    eye = np.eye(4)
    labels = np.zeros(100, int)
    voices = (voice(0, range(0, 40)), voice(0, range(40, 80), eye[2]))
    split, count = _split_local_conflicts(labels, 1, voices, eye[:1], room=None, link=0.45, min_len=MIN_LEN)
    assert count == 1 and np.array_equal(split, labels)


def test_a_voice_the_segmentation_tells_apart_from_the_one_it_was_merged_with_is_split_off() -> None:
    eye = np.eye(4)
    labels = np.zeros(100, int)
    speakers = eye[:1]
    voices = (voice(0, range(0, 60)), voice(0, range(60, 80), eye[1]))
    split, count = _split_local_conflicts(labels, 1, voices, speakers, room=None, link=0.45, min_len=MIN_LEN)
    assert count == 2 and split[60:80].tolist() == [1] * 20 and not split[:60].any() and not split[80:].any()
    # A max_speakers hint that leaves no room keeps the labels as they are.
    assert _split_local_conflicts(labels, 1, voices, speakers, room=0, link=0.45, min_len=MIN_LEN)[1] == 1


def test_a_split_off_voice_that_sounds_like_another_speaker_goes_to_them() -> None:
    eye = np.eye(4)
    labels = np.zeros(100, int)
    labels[80:] = 1
    voices = (voice(0, range(0, 60)), voice(0, range(60, 70), (eye[1] + eye[2]) / np.sqrt(2)))
    split, count = _split_local_conflicts(labels, 2, voices, eye[:2], room=None, link=0.45, min_len=MIN_LEN)
    assert count == 2 and split[60:70].tolist() == [1] * 10 and not split[:60].any()


def test_a_voice_whose_embedding_is_its_own_speakers_keeps_the_label() -> None:
    eye = np.eye(4)
    labels = np.zeros(100, int)
    labels[80:] = 1
    voices = (voice(0, range(0, 60)), voice(0, range(60, 70), (2 * eye[0] + eye[1]) / np.sqrt(5)))
    split, count = _split_local_conflicts(labels, 2, voices, eye[:2], room=None, link=0.45, min_len=MIN_LEN)
    assert count == 2 and np.array_equal(split, labels)


def test_a_hint_for_more_speakers_takes_first_the_voices_kept_with_their_label() -> None:
    eye = np.eye(4)
    labels = np.zeros(200, int)
    # Both sound enough like speaker 0 to be kept with it unhinted, the first more (0.7 against
    # 0.6), and they are not like each other (0.42).
    alike, less = 0.7 * eye[0] + np.sqrt(0.51) * eye[3], 0.6 * eye[0] + 0.8 * eye[2]
    voices = (voice(0, range(0, 60)), voice(0, range(60, 80), alike),
              voice(1, range(100, 160)), voice(1, range(160, 180), less))
    unhinted, count = _split_local_conflicts(labels, 1, voices, eye[:1], room=None, link=0.45, min_len=MIN_LEN)
    assert count == 1 and np.array_equal(unhinted, labels)
    hinted, count = _split_local_conflicts(labels, 1, voices, eye[:1], room=1, link=0.45, min_len=MIN_LEN,
                                           missing=1)
    assert count == 2 and hinted[160:180].tolist() == [1] * 20 and not hinted[:160].any()
    # The same voice kept in two windows is one person, however many the hint asks for.
    voices = (*voices[:3], voice(1, range(160, 180), alike))
    hinted, count = _split_local_conflicts(labels, 1, voices, eye[:1], room=2, link=0.45, min_len=MIN_LEN,
                                           missing=2)
    assert count == 2 and set(hinted[60:80].tolist()) == set(hinted[160:180].tolist()) == {1}


def test_the_same_voice_split_off_in_two_windows_is_one_new_speaker() -> None:
    eye = np.eye(4)
    labels = np.zeros(200, int)
    voices = (voice(0, range(0, 60)), voice(0, range(60, 80), eye[2]),
              voice(1, range(100, 160)), voice(1, range(160, 180), eye[2]))
    split, count = _split_local_conflicts(labels, 1, voices, eye[:1], room=None, link=0.45, min_len=MIN_LEN)
    assert count == 2 and set(split[60:80].tolist()) == set(split[160:180].tolist()) == {1}


def test_voices_with_their_own_labels_are_left_alone() -> None:
    eye = np.eye(4)
    labels = np.zeros(100, int)
    labels[60:80] = 1
    voices = (voice(0, range(0, 60)), voice(0, range(60, 80), eye[3]))
    split, count = _split_local_conflicts(labels, 2, voices, eye[:2], room=None, link=0.45, min_len=MIN_LEN)
    assert count == 2 and np.array_equal(split, labels)


# -- diarize, on fixed scores and embeddings -----------------------------------------------------
def test_two_voices_become_two_speakers_named_in_order_of_first_appearance(models: FixedModels) -> None:
    assert diarize(ten_seconds()) == [Turn(0.0, 4.0, "SPEAKER_00"), Turn(6.0, 10.0, "SPEAKER_01")]


def test_a_speaker_who_comes_back_keeps_their_name_whichever_voice_they_have(models: FixedModels) -> None:
    models.speech = speech_in((0.0, 3.0), (4.0, 6.0), (7.0, 10.0))
    expected = [Turn(0.0, 3.0, "SPEAKER_00"), Turn(4.0, 6.0, "SPEAKER_01"), Turn(7.0, 10.0, "SPEAKER_00")]
    for outer, middle in ((0, 1), (3, 2)):

        def voice(centre: float, outer: int = outer, middle: int = middle) -> int:
            return middle if 3.5 < centre < 6.5 else outer

        models.voice = voice
        assert diarize(ten_seconds()) == expected


def test_someone_the_embeddings_merge_but_the_segmentation_tells_apart_is_a_speaker(
    models: FixedModels,
) -> None:
    # Every window of the clustering sounds like one person; the second local voice's own audio
    # (6-8 s, embedded joined as the one window of 2 s) like someone else.
    models.voice = lambda centre: 0
    embed = models.embed

    def joined_is_someone_else(samples: np.ndarray, windows: np.ndarray, on_batch: OnBatch = None) -> np.ndarray:
        vectors = embed(samples, windows, on_batch)
        vectors[np.isclose(windows[:, 1] - windows[:, 0], 2.0)] = np.eye(4)[2]
        return vectors

    models.embed = joined_is_someone_else  # type: ignore[method-assign]
    models.local = local_window((0, 80), (120, 160), frames=200)[None]
    turns = diarize(ten_seconds())
    assert turns == [Turn(0.0, 4.0, "SPEAKER_00"), Turn(6.0, 8.0, "SPEAKER_01"), Turn(8.0, 10.0, "SPEAKER_00")]
    assert len({t.speaker for t in diarize(ten_seconds(), max_speakers=1)}) == 1


def test_max_speakers_merges_and_min_speakers_splits(models: FixedModels) -> None:
    assert {t.speaker for t in diarize(ten_seconds(), max_speakers=1)} == {"SPEAKER_00"}
    models.voice = lambda centre: 0  # one voice throughout
    assert {t.speaker for t in diarize(ten_seconds())} == {"SPEAKER_00"}
    split = diarize(ten_seconds(), min_speakers=2)
    assert {t.speaker for t in split} == {"SPEAKER_00", "SPEAKER_01"}
    # A split moves speech between speakers; it neither adds nor loses any.
    assert (min(t.start for t in split), max(t.end for t in split)) == (0.0, 10.0)
    assert sum(t.duration for t in split) == pytest.approx(8.0)


def test_one_analysis_labelled_under_each_hint_is_what_diarize_gives_for_it(models: FixedModels) -> None:
    models.overlap = speech_in((1.0, 2.0))
    analysis = engine.analyse(ten_seconds())
    assert analysis is not None
    for hints in ({}, {"max_speakers": 1}, {"min_speakers": 3}, {"min_speakers": 2, "max_speakers": 2}):
        assert engine.label(analysis, **hints) == diarize(ten_seconds(), **hints), hints
    with pytest.raises(InvalidOption, match="min_speakers"):
        engine.label(analysis, min_speakers=0)
    assert engine.analyse(np.zeros(5 * SAMPLE_RATE, np.float32)) is None


def test_overlapped_speech_adds_a_second_speakers_turn(models: FixedModels) -> None:
    models.overlap = speech_in((1.0, 2.0))
    assert diarize(ten_seconds()) == [
        Turn(0.0, 4.0, "SPEAKER_00"), Turn(1.0, 2.0, "SPEAKER_01"), Turn(6.0, 10.0, "SPEAKER_01")
    ]
    models.voice = lambda centre: 0
    assert diarize(ten_seconds(), max_speakers=1) == [Turn(0.0, 4.0, "SPEAKER_00"), Turn(6.0, 10.0, "SPEAKER_00")]


def test_progress_runs_from_segmentation_to_embeddings_and_can_stop_the_work(models: FixedModels) -> None:
    seen: list[float] = []
    diarize(ten_seconds(), progress=seen.append)
    assert seen == pytest.approx([0.25, 0.6, 0.95])

    def cancel(fraction: float) -> None:
        raise JobCancelled("cancelled")

    with pytest.raises(JobCancelled):
        diarize(ten_seconds(), progress=cancel)


def test_a_model_failure_is_a_diarization_error(models: FixedModels) -> None:
    models.failure = RuntimeError("shape mismatch")
    with pytest.raises(DiarizationError, match="Diarization failed on this audio: shape mismatch"):
        diarize(ten_seconds())


@pytest.mark.parametrize("audio", [np.zeros(5 * SAMPLE_RATE, np.float32), np.full(100, 0.5, np.float32)],
                         ids=["silence", "shorter-than-min-speech"])
def test_silence_and_too_short_audio_give_no_turns_without_loading_models(
    monkeypatch: pytest.MonkeyPatch, audio: np.ndarray
) -> None:
    def refuse(device: str) -> FixedModels:
        raise AssertionError("the models were asked for")

    monkeypatch.setattr(engine, "get_models", refuse)
    assert diarize(audio) == []


def test_a_voice_silero_never_hears_as_speech_is_no_speaker(models: FixedModels) -> None:
    """A laugh the segmentation model scores as speech, of a "voice" of its own."""
    models.heard = lambda t: 0.0 if t >= 5.0 else 0.9
    assert diarize(ten_seconds()) == [Turn(0.0, 4.0, "SPEAKER_00")]


def test_no_speech_heard_gives_no_turns(models: FixedModels) -> None:
    models.speech = np.zeros(200)
    assert diarize(ten_seconds()) == []
