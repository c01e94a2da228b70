"""The recordings the benchmark uses: jfk.flac, and files of English speech derived from the shared ones.

Derived files are generated once into a cache folder (``data/bench/media`` by default, which
git ignores) with PyAV, never with an ffmpeg binary, and never copied into the project.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from bench import speech
from pipeline.media import SAMPLE_RATE, decode_audio

ROOT = Path(__file__).resolve().parent.parent
SHARED_AUDIO = ROOT.parent / "shared" / "audio"
RECIPE = "v2"  # part of every derived name: change it when a recipe changes
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"


@dataclass(frozen=True)
class Recording:
    key: str  # short name used in tables
    label: str
    path: Path
    seconds: float
    reference: str = ""  # what is said, where known


def _atomic(path: Path, write: Callable[[Path], None]) -> Path:
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        write(partial)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def _frames(pcm: np.ndarray, step: int = 4096) -> list[av.AudioFrame]:
    samples = np.clip(pcm * 32768.0, -32768, 32767).astype(np.int16)
    frames = []
    for start in range(0, len(samples), step):
        frame = av.AudioFrame.from_ndarray(samples[start:start + step].reshape(1, -1), format="s16",
                                           layout="mono")
        frame.sample_rate = SAMPLE_RATE
        frame.pts = start
        frames.append(frame)
    return frames


def write_flac(path: Path, pcm: np.ndarray, title: str = "") -> None:
    with av.open(str(path), "w", format="flac") as out:
        if title:
            out.metadata["title"] = title
        stream = out.add_stream("flac", rate=SAMPLE_RATE)
        stream.layout = "mono"
        for frame in _frames(pcm):
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


def write_video(path: Path, pcm: np.ndarray, *, fps: int = 2, width: int = 64, height: int = 48) -> None:
    """An MP4 with a tiny generated picture (mpeg4) and the speech as AAC."""
    seconds = len(pcm) / SAMPLE_RATE
    with av.open(str(path), "w", format="mp4") as out:
        video = out.add_stream("mpeg4", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        sound = out.add_stream("aac", rate=SAMPLE_RATE)
        sound.layout = "mono"
        sound.bit_rate = 48_000
        # Interleave roughly in time order so the muxer does not buffer the whole file.
        audio_frames = _frames(pcm, step=1024)
        per_picture = max(1, len(audio_frames) // max(1, int(seconds * fps)))
        picture = 0
        for n, frame in enumerate(audio_frames):
            for packet in sound.encode(frame):
                out.mux(packet)
            if n % per_picture == 0 and picture < int(seconds * fps):
                shade = (picture * 9) % 255
                image = np.full((height, width, 3), shade, dtype=np.uint8)
                image[:, : (picture % width)] = 255 - shade  # a moving bar
                for packet in video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                    out.mux(packet)
                picture += 1
        for packet in sound.encode(None):
            out.mux(packet)
        for packet in video.encode(None):
            out.mux(packet)


class Library:
    """Every file the benchmark uploads, generated on first use into ``cache_dir``.

    Everything but jfk.flac is English speech of known words (``bench.speech``): ``en60`` is
    multilingual.mp3's English half twice (60.4 s), the long ones repeat both pieces."""

    def __init__(self, audio_dir: Path, cache_dir: Path) -> None:
        self.audio_dir = audio_dir
        self.cache_dir = cache_dir
        for name in ("jfk.flac", "multilingual.mp3", "README.md"):
            if not (audio_dir / name).is_file():
                raise SystemExit(f"{audio_dir / name} is missing: the benchmark needs ../shared/audio beside "
                                 "the project")
        self.jfk = Recording("jfk", "jfk.flac (11 s)", audio_dir / "jfk.flac", 11.0,
                             speech.reference_texts(audio_dir)[0])
        self._speech: dict[int, speech.Speech] = {}

    def english(self, seconds: int) -> speech.Speech:
        if seconds not in self._speech:
            self._speech[seconds] = speech.english(self.audio_dir, seconds)
        return self._speech[seconds]

    def _built(self, key: str, label: str, seconds: int, suffix: str, write: Callable[[Path, np.ndarray], None],
               title: str = "") -> Recording:
        made = self.english(seconds)
        path = self.cache_dir / f"{key}-{RECIPE}{suffix}"
        _atomic(path, lambda p: write(p, made.audio))
        return Recording(key, label.format(seconds=made.seconds), path, made.seconds, made.reference)

    @property
    def en60(self) -> Recording:
        return self._built("en60", "English FLAC ({seconds:.1f} s)", 60, ".flac", write_flac)

    def long_flac(self, minutes: int) -> Recording:
        return self._built(f"flac{minutes}m", f"{minutes}-minute English FLAC ({{seconds:.0f}} s)", minutes * 60,
                           ".flac", write_flac)

    def long_video(self, minutes: int) -> Recording:
        return self._built(f"mp4{minutes}m", f"{minutes}-minute MP4 video ({{seconds:.0f}} s; mpeg4 64x48 2 fps + AAC)",
                           minutes * 60, ".mp4", write_video)

    def _conversation(self, key: str, label: str, names: list[str], with_english: bool = False) -> Recording:
        made = speech.conversation(self.audio_dir, names, with_english=with_english)
        path = self.cache_dir / f"{key}-{RECIPE}.flac"
        _atomic(path, lambda p: write_flac(p, made.audio))
        return Recording(key, label.format(seconds=made.seconds), path, made.seconds)

    def meetings60(self, count: int) -> list[Recording]:
        """``count`` different minutes of real meetings: excerpts n and n + 1 of the nine, end to end."""
        names = speech.MEETINGS
        return [self._conversation(f"meet60-{n}", f"meetings {names[n % 9]}+{names[(n + 1) % 9]} ({{seconds:.1f}} s)",
                                   [names[n % 9], names[(n + 1) % 9]])
                for n in range(count)]

    @property
    def meet60(self) -> Recording:
        return dataclasses.replace(self.meetings60(1)[0], key="meet60")

    @property
    def meet5m(self) -> Recording:
        """All nine meeting excerpts and multilingual.mp3's English half: five minutes of real speech."""
        return self._conversation("meet5m", "nine meetings + English ({seconds:.0f} s)", list(speech.MEETINGS),
                                  with_english=True)

    def en60_variants(self, count: int) -> list[Recording]:
        """``count`` copies of the 60 s recording with distinct bytes (a different title each)."""
        return [self._built(f"en60-copy{n}", f"English FLAC copy {n}", 60, ".flac",
                            functools.partial(write_flac, title=f"whisper-pipeline bench copy {n}"))
                for n in range(count)]

    def clips(self, count: int) -> list[Recording]:
        """``count`` copies of jfk.flac's first 2.5 s ("And so my fellow Americans") with distinct
        bytes: short jobs for warming the API up."""
        out = []
        for n in range(count):
            path = self.cache_dir / f"clip-{n}-{RECIPE}.flac"
            _atomic(path, functools.partial(self._write_clip, title=f"whisper-pipeline bench clip {n}"))
            out.append(Recording(f"clip-{n}", "2.5 s of jfk.flac", path, 2.5))
        return out

    def _write_clip(self, path: Path, *, title: str) -> None:
        write_flac(path, decode_audio(self.jfk.path)[: int(2.5 * SAMPLE_RATE)], title=title)

    def blob(self, megabytes: int, *, signature: bool = True) -> Path:
        """``megabytes`` MiB that are not media, so the API stores the upload, probes it and answers 415.

        With ``signature`` the bytes start like a PNG image, which FFmpeg recognises (and the
        service refuses) from the first few bytes; without it they are random all through,
        and FFmpeg reads its whole probe size trying every allowed format first."""

        def write(path: Path) -> None:
            rng = np.random.default_rng(megabytes)
            with path.open("wb") as fh:
                left = megabytes * 2**20
                if signature:
                    fh.write(PNG_SIGNATURE)
                    left -= len(PNG_SIGNATURE)
                while left > 0:
                    size = min(left, 2**20)
                    fh.write(rng.bytes(size))
                    left -= size

        kind = "png" if signature else "random"
        return _atomic(self.cache_dir / f"blob-{kind}-{megabytes}mb-{RECIPE}.bin", write)


def write_recording(path: Path, seconds: int, speech_file: Path, *, rate: int = 44_100, speech_every: int = 60) -> Path:
    """A stereo FLAC of ``seconds``: silence, with ``speech_file`` once every
    ``speech_every`` seconds (10 s into each period). Silence compresses to almost nothing, like
    the 2.6 MB file of 4 hours that once drove a worker to 3.5 GB."""
    pcm = decode_audio(speech_file)
    # Nearest-sample resampling is crude but enough for a VAD to hear speech.
    picks = (np.arange(int(len(pcm) * rate / SAMPLE_RATE)) * SAMPLE_RATE / rate).astype(np.int64)
    speech = (pcm[picks] * 32767).astype(np.int16)
    period = np.zeros(speech_every * rate, dtype=np.int16)
    period[10 * rate : 10 * rate + len(speech)] = speech
    stereo = np.repeat(period, 2)  # interleaved left/right
    step = 4096
    with av.open(str(path), "w", format="flac") as out:
        stream = out.add_stream("flac", rate=rate)
        stream.layout = "stereo"
        pts = 0
        for _ in range(seconds // speech_every):
            for start in range(0, len(period), step):
                block = stereo[2 * start : 2 * (start + step)].reshape(1, -1)
                frame = av.AudioFrame.from_ndarray(block, format="s16", layout="stereo")
                frame.sample_rate = rate
                frame.pts = pts
                pts += block.shape[1] // 2
                for packet in stream.encode(frame):
                    out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path
