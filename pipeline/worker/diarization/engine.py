"""Who spoke when: segmentation -> windows -> embeddings -> clustering -> turns.

The clustering sees the whole recording through 1.5 s windows; the segmentation model sees 10 s
at a time and tells the voices in it apart. Where the two disagree, a voice the segmentation heard
alone beside another under one label is split off (``_split_local_conflicts``), and the embedding
of its own audio says whose it is."""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from pipeline.errors import DiarizationError, InvalidOption
from pipeline.transcript import Turn
from pipeline.worker.diarization.clustering import ClusteringOptions, centroids, cluster_embeddings
from pipeline.worker.diarization.models import SAMPLE_RATE, SILERO_WINDOW, Activity, DiarizationModels, get_models
from pipeline.worker.diarization.turns import drop_short, fill_gaps, hysteresis, runs, smooth_labels, speaker_name

log = logging.getLogger(__name__)

# A voice split off is usually a second or two; its embedding takes at most this much of it.
# CAM++'s activations grow with the input's length times the batch: four voices of 4 s at a time
# hold about what a batch of the clustering's 1.5 s windows does (a 20-minute meeting's peak
# grew by 440 MB when the voices were embedded whole, 64 at a time).
MAX_VOICE_SECONDS = 4.0
VOICES_PER_CALL = 4


@dataclass(frozen=True)
class DiarizationOptions:
    # Hop of the 10 s segmentation window. pyannote uses 1 s; 5 s costs a fifth of the CPU time
    # and, measured on the bench set, loses nothing once the scores are Hamming-averaged.
    segmentation_step: float = 5.0
    onset: float = 0.5
    offset: float = 0.4
    min_speech: float = 0.25
    min_silence: float = 0.15
    # Digital-silence gate (dB under full scale, after the audio is brought to peak_level). Only
    # for audio that is exactly or nearly zero (padding, edited gaps, synthetic speech): the
    # segmentation model does not depend on loudness, and a gate relative to the loudest frames
    # took a quiet far-field room of four people talking for silence.
    floor_db: float = -90.0
    # Peak the audio is scaled to before anything else (see diarize).
    peak_level: float = 0.9
    # Embedding windows: long enough for CAM++ to recognise a voice, short enough to follow turns.
    # CAM++ dominates the CPU time, which grows with window / hop: halving the overlap halves it.
    window: float = 1.5
    hop: float = 0.75
    # Too little audio for any embedding to mean something: shorter regions borrow context.
    min_window: float = 1.0
    # A speaker change shorter than this is taken for noise in the labelling, not a turn.
    min_turn: float = 0.5
    # Frames the segmentation model calls overlapped get a second speaker when above this. Missed
    # overlapped speech was the largest error on the AMI meeting excerpts: 0.3 took their mean DER
    # from 0.278 to 0.257 (0.2 the same) without adding false alarms.
    overlap_threshold: float = 0.3
    # A speech region where Silero VAD never reaches this, within ``veto_margin`` seconds of it,
    # is dropped. The segmentation model hears laughter and breathing as speech (on one AMI
    # excerpt a laugh became a third speaker); Silero, trained on speech against everything
    # else, stays near zero there. It misses quiet far-field speech that the segmentation model
    # hears, so it only vetoes whole regions it hears nothing in, never decides on its own.
    # 0 turns the veto off.
    veto_threshold: float = 0.1
    veto_margin: float = 0.5
    # Within one 10 s window the segmentation model tells apart voices that CAM++ embeddings of
    # 1.5 s windows, clustered over the whole recording, merge: someone who answers in a word or
    # two beside a dominant speaker. Where two of its local speakers, each with this many seconds
    # alone, got the same label, the smaller one is someone else (see ``_split_local_conflicts``).
    # 0 turns it off.
    local_min_solo: float = 0.5
    clustering: ClusteringOptions = field(default_factory=ClusteringOptions)


def _check_hints(min_speakers: int | None, max_speakers: int | None) -> None:
    for name, value in (("min_speakers", min_speakers), ("max_speakers", max_speakers)):
        if value is not None and value < 1:
            raise InvalidOption(f"{name} must be at least 1, not {value}", field=name)
    if min_speakers is not None and max_speakers is not None and min_speakers > max_speakers:
        raise InvalidOption(
            f"min_speakers ({min_speakers}) must not be larger than max_speakers ({max_speakers})",
            field="min_speakers",
        )


def _check_audio(audio: np.ndarray) -> np.ndarray:
    samples = np.asarray(audio, dtype=np.float32)
    if samples.ndim != 1:
        raise DiarizationError(f"Diarization expects mono audio, got an array of shape {samples.shape}.")
    if not np.all(np.isfinite(samples)):
        raise DiarizationError("The audio holds values that are not finite numbers.")
    return np.clip(samples, -1.0, 1.0)


def _loud_enough(samples: np.ndarray, times: np.ndarray, opts: DiarizationOptions) -> np.ndarray:
    """Frames that are not digital silence.

    The segmentation model was trained on real recordings, which always have a noise floor; on
    digital silence (edited audio, synthetic speech, padding) it says "speech" about half the
    time. An absolute floor settles those frames; everywhere else the model decides alone.
    """
    half = int(0.015 * SAMPLE_RATE)
    power = np.concatenate([[0.0], np.cumsum(samples.astype(np.float64) ** 2)])
    centre = np.clip((times * SAMPLE_RATE).astype(np.int64), 0, samples.size)
    lo, hi = np.clip(centre - half, 0, samples.size), np.clip(centre + half, 0, samples.size)
    db = 10 * np.log10((power[hi] - power[lo]) / np.maximum(hi - lo, 1) + 1e-12)
    return np.asarray(db > opts.floor_db)


def _vetoed(mask: np.ndarray, times: np.ndarray, silero: np.ndarray, step: float,
            opts: DiarizationOptions) -> np.ndarray:
    """``mask`` without the regions Silero hears no speech in, even at their edges."""
    if opts.veto_threshold <= 0 or not silero.size:
        return mask
    at = np.clip((times * SAMPLE_RATE / SILERO_WINDOW).astype(np.int64), 0, silero.size - 1)
    heard = silero[at]
    margin = round(opts.veto_margin / step)
    out = mask.copy()
    for a, b in runs(mask):
        if heard[max(0, a - margin):b + margin].max() < opts.veto_threshold:
            out[a:b] = False
    return out


def _speech_mask(activity: Activity, loud: np.ndarray, opts: DiarizationOptions,
                 silero: np.ndarray | None = None) -> np.ndarray:
    step = activity.frame_step
    mask = hysteresis(activity.speech, opts.onset, opts.offset) & loud
    mask = fill_gaps(mask, round(opts.min_silence / step))
    mask = drop_short(mask, max(1, round(opts.min_speech / step)))
    if silero is None:
        return mask
    times = np.asarray(activity.time(np.arange(activity.speech.size)), dtype=np.float64)
    return _vetoed(mask, times, silero, step, opts)


def _windows(regions: list[tuple[float, float]], duration: float, opts: DiarizationOptions) -> np.ndarray:
    out: list[tuple[float, float]] = []
    for start, end in regions:
        if end - start < opts.window:
            # Too short for a full window: centre one on it, borrowing context up to min_window.
            length = max(end - start, min(opts.min_window, duration))
            centre = (start + end) / 2
            a = min(max(0.0, centre - length / 2), max(0.0, duration - length))
            out.append((a, min(duration, a + length)))
            continue
        a = start
        while a + opts.window < end:
            out.append((a, a + opts.window))
            a += opts.hop
        out.append((max(start, end - opts.window), end))
    return np.array(out, dtype=np.float64).reshape(-1, 2)


def _label_frames(
    times: np.ndarray, mask: np.ndarray, windows: np.ndarray, labels: np.ndarray, count: int
) -> np.ndarray:
    """Each speech frame takes the speaker voted by the windows covering it, centres weighing most."""
    votes = np.zeros((times.size, count), dtype=np.float64)
    for (start, end), lab in zip(windows, labels, strict=True):
        lo, hi = np.searchsorted(times, [start, end])
        if hi <= lo:
            continue
        centre, half = (start + end) / 2, max((end - start) / 2, 1e-6)
        votes[lo:hi, lab] += 1.0 - np.abs(times[lo:hi] - centre) / (half * 1.0001)
    frame_labels = np.where(votes.max(axis=1) > 0, votes.argmax(axis=1), -1)
    uncovered = mask & (frame_labels < 0)
    if uncovered.any():
        centres = windows.mean(axis=1)
        nearest = np.abs(times[uncovered, None] - centres[None, :]).argmin(axis=1)
        frame_labels[uncovered] = labels[nearest]
    frame_labels[~mask] = -1
    return frame_labels


def _distance(sorted_frames: np.ndarray, frame: int) -> float:
    """How many frames from ``frame`` the nearest of ``sorted_frames`` (not empty) lies."""
    k = int(np.searchsorted(sorted_frames, frame))
    near = sorted_frames[max(0, k - 1):k + 1]
    return float(np.abs(near - frame).min())


def _overlap_turns(
    activity: Activity,
    frame_labels: np.ndarray,
    times: np.ndarray,
    opts: DiarizationOptions,
    *,
    spare: int | None,
    missing: int = 0,
) -> list[tuple[int, float, float]]:
    """Second speakers for overlapped speech: the other speaker heard nearest in time.

    Embeddings of mixed speech are unreliable, so who the second voice is comes from the
    neighbourhood, as in overlap-aware resegmentation (Bullock et al., 2020). When no other
    speaker is ever heard alone, the second voice is someone of its own: label ``spare``
    (None when the speaker-count hint leaves no room for one). ``missing`` speakers (a hint asks
    for more than are heard alone) are the second voices of the longest overlaps, one each,
    labelled ``spare``, ``spare + 1``, ...
    """
    step = activity.frame_step
    over = hysteresis(activity.overlap, opts.overlap_threshold, opts.overlap_threshold) & (frame_labels >= 0)
    over = drop_short(fill_gaps(over, round(0.1 / step)), max(1, round(opts.min_turn / step)))
    spans = runs(over)
    newcomers: dict[tuple[int, int], int] = {}
    if spare is not None and missing > 0:
        longest = sorted(spans, key=lambda r: r[0] - r[1])[:missing]
        newcomers = {span: spare + i for i, span in enumerate(longest)}
    extra: list[tuple[int, float, float]] = []
    min_len = max(1, round(opts.min_turn / step))
    pieces: list[tuple[int, int]] = []
    for a, b in spans:
        if (a, b) in newcomers:
            extra.append((newcomers[(a, b)], float(times[a]), float(times[b - 1] + step)))
            continue
        # Where the voice heard alone changes inside an overlap, each part has its own second
        # voice (the other one, usually): the whole span holding both would leave none but a spare.
        # A part shorter than min_turn is no turn of its own: it joins the part before it, and
        # the voice heard alone in it may then be the second voice of the whole.
        cuts = [0, *(np.flatnonzero(np.diff(frame_labels[a:b])) + 1).tolist(), b - a]
        parts: list[tuple[int, int]] = []
        for s, e in itertools.pairwise(cuts):
            if parts and (e - s < min_len or parts[-1][1] - parts[-1][0] < min_len):
                parts[-1] = (parts[-1][0], a + e)
            else:
                parts.append((a + s, a + e))
        pieces += parts
    where = {lab: np.flatnonzero(frame_labels == lab) for lab in set(frame_labels.tolist()) - {-1}}
    for a, b in pieces:
        heard_alone = frame_labels[a:b][frame_labels[a:b] >= 0]
        if not heard_alone.size:
            continue
        present = {int(np.bincount(heard_alone).argmax())}  # a short part joined to it may hold another
        best: tuple[float, int] | None = None
        for other, idx in where.items():
            if other in present:
                continue
            dist = min(_distance(idx, a), _distance(idx, b - 1)) * step
            if best is None or dist < best[0]:
                best = (dist, other)
        if best is not None:
            extra.append((best[1], float(times[a]), float(times[b - 1] + step)))
        elif spare is not None and not newcomers:
            extra.append((spare, float(times[a]), float(times[b - 1] + step)))
    return extra


@dataclass(frozen=True, eq=False)
class LocalVoice:
    """One local speaker of one segmentation window, where they speak alone (frame indices on
    the recording's grid, speech frames only). The window's largest voice has no embedding: it
    is never the one split off."""

    window: int
    frames: np.ndarray
    seconds: float
    embedding: np.ndarray | None = None


def _local_voices(activity: Activity, mask: np.ndarray, opts: DiarizationOptions) -> list[LocalVoice]:
    if opts.local_min_solo <= 0 or activity.local is None or activity.local_first is None:
        return []
    step = activity.frame_step
    out: list[LocalVoice] = []
    for w, (active, first) in enumerate(zip(activity.local, activity.local_first, strict=True)):
        span = max(0, min(mask.size - int(first), active.shape[0]))
        solo = active[:span] & (active[:span].sum(axis=1, keepdims=True) == 1) & mask[first:first + span, None]
        found = [LocalVoice(w, np.flatnonzero(solo[:, k]) + int(first), float(solo[:, k].sum() * step))
                 for k in range(solo.shape[1])]
        out += [v for v in found if v.seconds >= opts.local_min_solo]
    return out


def _embed_voices(models: DiarizationModels, samples: np.ndarray, voices: list[LocalVoice], times: np.ndarray,
                  step: float, on_group: Callable[[int, int], None] | None = None) -> list[LocalVoice]:
    """Each voice but the largest of its window gets one embedding of its solo audio, joined.
    Up to ``VOICES_PER_CALL`` are embedded at a time, so memory does not grow with the recording;
    ``on_group(done, total)`` is told after each group (progress, and where a job stops)."""
    largest: dict[int, float] = {}
    for v in voices:
        largest[v.window] = max(largest.get(v.window, 0.0), v.seconds)
    wanted = [i for i, v in enumerate(voices) if v.seconds < largest[v.window]]
    out = list(voices)
    for first in range(0, len(wanted), VOICES_PER_CALL):
        group = wanted[first:first + VOICES_PER_CALL]
        pieces: list[np.ndarray] = []
        bounds: list[tuple[float, float]] = []
        at = 0
        for i in group:
            frames = voices[i].frames
            breaks = np.flatnonzero(np.diff(frames) > 1) + 1
            audio = np.concatenate([
                samples[int(times[run[0]] * SAMPLE_RATE):int((times[run[-1]] + step) * SAMPLE_RATE)]
                for run in np.split(frames, breaks)
            ])[:int(MAX_VOICE_SECONDS * SAMPLE_RATE)]
            pieces.append(audio)
            bounds.append((at / SAMPLE_RATE, (at + audio.size) / SAMPLE_RATE))
            at += audio.size
        vectors = models.embed(np.concatenate(pieces), np.array(bounds, dtype=np.float64))
        for i, vector in zip(group, vectors, strict=True):
            out[i] = replace(out[i], embedding=vector)
        if on_group is not None:
            on_group(first // VOICES_PER_CALL + 1, -(-len(wanted) // VOICES_PER_CALL))
    return out


def _closest(embeddings: list[np.ndarray], embedding: np.ndarray, floor: float) -> int | None:
    """The index of the one of ``embeddings`` most like ``embedding``, if at least ``floor``."""
    if not embeddings:
        return None
    likeness = np.stack(embeddings) @ embedding
    best = int(np.argmax(likeness))
    return best if likeness[best] >= floor else None


def _split_local_conflicts(frame_labels: np.ndarray, count: int, voices: tuple[LocalVoice, ...],
                           speakers: np.ndarray, *, room: int | None, link: float,
                           min_len: int, missing: int = 0) -> tuple[np.ndarray, int]:
    """Frame labels where no segmentation window holds two of its local speakers under one label.

    The smaller of two such voices goes to the speaker it sounds most like among those heard,
    when that one is closer than ``link`` (cosine similarity; ``speakers`` holds their
    centroids). When that is the label it has, the clustering stands: the segmentation model
    alone does not overrule it. When none is that close, it becomes a new speaker, or joins the
    split-off voice it is most like when that is as close; ``room`` caps the new speakers (None:
    no cap). Two voices of a window alone for the same time are left as they are.

    What moves is the voice's stretches under the merged label, the gaps of its own overlapped
    speech closed, each at least ``min_len`` frames (a shorter change is noise to the labelling).
    Windows overlap, so a frame is moved once, by the first window that moves it.

    ``missing`` speakers (a min_speakers hint asks for more than are heard) are first the voices
    the embedding kept with their label, the least like it first: the segmentation model heard
    them as someone else, and the hint says someone is missing.
    """
    by_window: dict[int, list[tuple[LocalVoice, int]]] = {}
    for voice in voices:
        labelled = frame_labels[voice.frames]
        labelled = labelled[labelled >= 0]
        if labelled.size:
            by_window.setdefault(voice.window, []).append((voice, int(np.bincount(labelled).argmax())))
    heard = np.zeros(max(count, 1), dtype=bool)
    heard[np.unique(frame_labels[frame_labels >= 0])] = True
    out = frame_labels.copy()
    newcomers: list[np.ndarray] = []
    kept: list[tuple[float, LocalVoice, int, np.ndarray]] = []

    def move(voice: LocalVoice, merged: int, target: int) -> None:
        lo, hi = int(voice.frames.min()), int(voice.frames.max()) + 1
        own = np.zeros(hi - lo, dtype=bool)
        own[voice.frames - lo] = True
        own = fill_gaps(own, min_len) & (frame_labels[lo:hi] == merged) & (out[lo:hi] == frame_labels[lo:hi])
        out[lo:hi][drop_short(own, min_len)] = target

    for group in by_window.values():
        for voice, merged in group:
            if voice.embedding is None or not any(
                other is not voice and g == merged and other.seconds > voice.seconds for other, g in group
            ):
                continue
            sims = np.where(heard[:speakers.shape[0]], speakers @ voice.embedding, -np.inf)
            target: int | None = int(np.argmax(sims)) if sims.max() >= link else None
            if target == merged:  # the embedding says the same person after all: the clustering stands
                kept.append((float(sims[merged]), voice, merged, voice.embedding))
                continue
            if target is None and (near := _closest(newcomers, voice.embedding, link)) is not None:
                target = count + near
            if target is None and (room is None or len(newcomers) < room):
                newcomers.append(voice.embedding)
                target = count + len(newcomers) - 1
            if target is not None:
                move(voice, merged, target)
    for own_likeness, voice, merged, embedding in sorted(kept, key=lambda k: k[0]):
        # A newcomer's voice, seen from another window, is that newcomer, not one more person.
        if (near := _closest(newcomers, embedding, max(link, own_likeness))) is not None:
            move(voice, merged, count + near)
            continue
        if len(newcomers) >= missing or (room is not None and len(newcomers) >= room):
            continue
        newcomers.append(embedding)
        move(voice, merged, count + len(newcomers) - 1)
    return out, count + len(newcomers)


@dataclass(frozen=True)
class Analysis:
    """What a recording gives before any speaker-count hint counts: its speech frames and an
    embedding per window. The hints only change how the embeddings are clustered, so one
    analysis answers every hint (the bench scores each meeting with and without)."""

    duration: float
    activity: Activity
    times: np.ndarray
    mask: np.ndarray
    windows: np.ndarray
    embeddings: np.ndarray
    voices: tuple[LocalVoice, ...] = ()


def analyse(
    audio: np.ndarray,
    *,
    device: str = "cpu",
    options: DiarizationOptions | None = None,
    progress: Callable[[float], None] | None = None,
) -> Analysis | None:
    """The speech and the voices in 16 kHz mono float32 audio; None when it holds no speech."""
    opts = options or DiarizationOptions()

    def share(low: float, high: float) -> Callable[[int, int], None] | None:
        if progress is None:
            return None
        reporter = progress
        return lambda done, total: reporter(low + (high - low) * done / max(total, 1))

    samples = _check_audio(audio)
    duration = samples.size / SAMPLE_RATE
    peak = float(np.abs(samples).max(initial=0.0))
    if duration < opts.min_speech or peak < 1e-4:
        return None
    # The filterbank's floor clips quiet bins, so the same voices recorded 40 dB quieter
    # embedded differently (mean DER 0.21 became 0.43 on the meetings): every recording is
    # brought to the same peak first. Digital silence stays zero.
    samples = samples * np.float32(opts.peak_level / peak)
    models = get_models(device)
    try:
        # The embeddings take most of the time (see DiarizationOptions): they get most of the bar.
        activity = models.activity(samples, step=opts.segmentation_step, on_batch=share(0.0, 0.25))
        times = np.asarray(activity.time(np.arange(activity.speech.size)), dtype=np.float64)
        silero = models.speech_probabilities(samples) if opts.veto_threshold > 0 else None
        mask = _speech_mask(activity, _loud_enough(samples, times, opts), opts, silero)
        regions = [
            (float(times[a]), float(min(duration, times[b - 1] + activity.frame_step))) for a, b in runs(mask)
        ]
        if not regions:
            return None
        windows = _windows(regions, duration, opts)
        embeddings = models.embed(samples, windows, on_batch=share(0.25, 0.95))
        voices = _embed_voices(models, samples, _local_voices(activity, mask, opts), times, activity.frame_step,
                               on_group=share(0.95, 1.0))
    except (RuntimeError, ValueError) as exc:
        raise DiarizationError(f"Diarization failed on this audio: {exc}") from exc
    return Analysis(duration=duration, activity=activity, times=times, mask=mask, windows=windows,
                    embeddings=embeddings, voices=tuple(voices))


def diarize(
    audio: np.ndarray,
    *,
    min_speakers: int | None = None,
    max_speakers: int | None = None,
    device: str = "cpu",
    options: DiarizationOptions | None = None,
    progress: Callable[[float], None] | None = None,
) -> list[Turn]:
    """Speaker turns of 16 kHz mono float32 audio, sorted by start; silence gives none.

    ``progress(fraction)`` is called as the work goes (after each batch of the models); an
    exception it raises stops the work, which is how a cancelled job stops here.
    """
    _check_hints(min_speakers, max_speakers)  # a bad hint is refused before any work
    began = time.perf_counter()
    analysis = analyse(audio, device=device, options=options, progress=progress)
    if analysis is None:
        return []
    turns = label(analysis, min_speakers=min_speakers, max_speakers=max_speakers, options=options)
    log.info(
        "diarized %.1f s of audio in %.2f s: %d speakers, %d turns",
        analysis.duration,
        time.perf_counter() - began,
        len({t.speaker for t in turns}),
        len(turns),
    )
    return turns


def label(
    analysis: Analysis,
    *,
    min_speakers: int | None = None,
    max_speakers: int | None = None,
    options: DiarizationOptions | None = None,
) -> list[Turn]:
    """The speaker turns of an analysis, within the hints (sorted by start)."""
    _check_hints(min_speakers, max_speakers)
    opts = options or DiarizationOptions()
    activity, times, mask, windows, embeddings = (
        analysis.activity, analysis.times, analysis.mask, analysis.windows, analysis.embeddings
    )
    duration = analysis.duration

    def assign(labels: np.ndarray, *, wanted: int | None) -> list[tuple[int, float, float]]:
        count = int(labels.max()) + 1 if labels.size else 0
        frame_labels = _label_frames(times, mask, windows, labels, count)
        smoothed = smooth_labels(frame_labels, max(1, round(opts.min_turn / activity.frame_step)))
        # Smoothing may swallow a speaker heard only briefly; a min_speakers hint says keep them.
        if wanted is None or len(set(smoothed.tolist()) - {-1}) >= min(wanted, count):
            frame_labels = smoothed
        if analysis.voices and count:
            heard = len(set(frame_labels.tolist()) - {-1})
            frame_labels, count = _split_local_conflicts(
                frame_labels, count, analysis.voices, centroids(embeddings, labels, count),
                room=None if max_speakers is None else max(0, max_speakers - heard),
                link=1.0 - opts.clustering.threshold, min_len=max(1, round(opts.min_turn / activity.frame_step)),
                missing=0 if wanted is None else max(0, wanted - heard),
            )
        pieces: list[tuple[int, float, float]] = []
        for a, b in runs(frame_labels >= 0):
            seg = frame_labels[a:b]
            bounds = np.flatnonzero(np.diff(seg)) + 1
            for s, e in zip(np.concatenate([[0], bounds]), np.concatenate([bounds, [seg.size]]), strict=True):
                start = float(times[a + s])
                end = float(min(duration, times[a + e - 1] + activity.frame_step))
                pieces.append((int(seg[s]), start, end))
        present = len(set(frame_labels.tolist()) - {-1})
        room = max_speakers is None or present < max_speakers
        short = wanted - present if wanted is not None and present < wanted else 0
        return pieces + _overlap_turns(
            activity, frame_labels, times, opts, spare=count if room else None, missing=short
        )

    # A min_speakers hint above the speakers heard is first met by the voices heard only over
    # someone else (on the AMI excerpts, every speaker missing from the count speaks only in
    # overlap); splitting a heard voice in two comes last, since that costs a real speaker's time.
    # Hints are bounds: an answer already inside them is kept as it is.
    labels = cluster_embeddings(embeddings, options=opts.clustering)
    pieces = assign(labels, wanted=None)
    found = len({p[0] for p in pieces})
    if max_speakers is not None and found > max_speakers:
        labels = cluster_embeddings(embeddings, max_speakers=max_speakers, options=opts.clustering)
        pieces = assign(labels, wanted=min_speakers)
    elif min_speakers is not None and found < min_speakers:
        pieces = assign(labels, wanted=min_speakers)
    if min_speakers is not None and len({p[0] for p in pieces}) < min_speakers:
        labels = cluster_embeddings(
            embeddings, min_speakers=min_speakers, max_speakers=max_speakers, options=opts.clustering
        )
        pieces = assign(labels, wanted=min_speakers)

    # Speakers are named in order of first appearance after smoothing, which may drop some.
    order: dict[int, str] = {}
    for lab, _, _ in sorted(pieces, key=lambda p: p[1]):
        order.setdefault(lab, speaker_name(len(order)))
    return sorted(
        (Turn(start=round(s, 3), end=round(e, 3), speaker=order[lab]) for lab, s, e in pieces),
        key=lambda t: (t.start, t.end, t.speaker),
    )
