"""English speech of known words for the benchmark, built from ../shared/audio at run time.

The shared recordings come with what is said in them (their README). The transcripts are read
from there when the benchmark runs rather than copied into the project, and English-only
recordings are made of jfk.flac and multilingual.mp3's English half: the German half costs
an English-only model about twice the time per second once it stands alone as a chunk, which
would make a split job look slower than it is (the first measurements of splitting used it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.media import SAMPLE_RATE, decode_audio

ENGLISH_SECONDS = 29.5  # multilingual.mp3 is English up to 29.0 s and silent from there to 31.0 s
GAP_SECONDS = 0.7  # silence between pieces: a pause to cut at, like a speaker's breath


@dataclass(frozen=True)
class Speech:
    name: str
    audio: np.ndarray
    reference: str

    @property
    def seconds(self) -> float:
        return len(self.audio) / SAMPLE_RATE


def reference_texts(audio_dir: Path) -> tuple[str, str]:
    """What is said in jfk.flac and in multilingual.mp3's English half, from the folder's README."""
    readme = (audio_dir / "README.md").read_text(encoding="utf-8")
    jfk = re.search(r"^\|\s*jfk\.flac\s*\|[^|]*\|[^|]*\|([^|]+)\|", readme, re.M)
    english = re.search(r"^multilingual\.mp3, English part[^\n]*\n(.+?)\n\s*\n", readme, re.M | re.S)
    if jfk is None or english is None:
        raise SystemExit(f"{audio_dir / 'README.md'} no longer says what jfk.flac and multilingual.mp3 contain")
    return jfk.group(1).strip(), " ".join(english.group(1).split())


def pieces(audio_dir: Path) -> list[Speech]:
    """jfk.flac and the English half of multilingual.mp3, decoded, with their words."""
    jfk_text, english_text = reference_texts(audio_dir)
    jfk = decode_audio(audio_dir / "jfk.flac")
    english = decode_audio(audio_dir / "multilingual.mp3")[: int(ENGLISH_SECONDS * SAMPLE_RATE)]
    return [Speech("jfk.flac", jfk, jfk_text), Speech("multilingual.mp3 (English half)", english, english_text)]


def english(audio_dir: Path, seconds: float) -> Speech:
    """Whole pieces with pauses between them, about ``seconds`` long: never cut inside a piece,
    so the words are known exactly. The longer piece goes in whenever it fits (within a second),
    then jfk.flac: 60 s is the English half twice (60.4 s), 300 s is 295.2 s."""
    parts = pieces(audio_dir)
    gap = np.zeros(int(GAP_SECONDS * SAMPLE_RATE), dtype=np.float32)
    longest_first = sorted(parts, key=lambda piece: -len(piece.audio))
    room = int((seconds + 1) * SAMPLE_RATE)
    audio: list[np.ndarray] = []
    texts: list[str] = []
    total = 0
    while True:
        piece = next((p for p in longest_first if total + len(p.audio) + len(gap) <= room), None)
        if piece is None:
            break
        audio += [piece.audio, gap]
        texts.append(piece.reference)
        total += len(piece.audio) + len(gap)
    if not audio:
        raise ValueError(f"{seconds} s is shorter than the shortest piece")
    return Speech(f"English, {total / SAMPLE_RATE:.0f} s", np.concatenate(audio), " ".join(texts))


MEETINGS = ("dev00", "dev01", "trn03", "trn04", "trn05", "trn06", "trn07", "trn08", "trn09")


def meeting(audio_dir: Path, name: str) -> np.ndarray:
    return decode_audio(audio_dir / "meetings" / f"{name}.wav")


def conversation(audio_dir: Path, names: list[str], *, with_english: bool = False) -> Speech:
    """Real meeting excerpts (far-field, overlapping talk) end to end, with a pause between them;
    ``with_english`` adds multilingual.mp3's English half at the end. Nobody wrote down what is said
    in the meetings, so these are scored against the bare engine's text, not against words."""
    if not (audio_dir / "meetings").is_dir():
        raise SystemExit(f"{audio_dir / 'meetings'} is missing: the benchmark needs ../shared/audio/meetings")
    gap = np.zeros(int(GAP_SECONDS * SAMPLE_RATE), dtype=np.float32)
    audio: list[np.ndarray] = []
    for name in names:
        audio += [meeting(audio_dir, name), gap]
    label = "+".join(names)
    if with_english:
        audio += [pieces(audio_dir)[1].audio, gap]
        label += "+English half"
    joined = np.concatenate(audio)
    return Speech(label, joined, "")


def words(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9' ]+", " ", text.lower().replace("licence", "license")).split()


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate after lower-casing and dropping punctuation (Levenshtein over words)."""
    ref, hyp = words(reference), words(hypothesis)
    previous = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        current = [i]
        for j, h in enumerate(hyp, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (r != h)))
        previous = current
    return previous[-1] / max(1, len(ref))
