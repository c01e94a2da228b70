"""Probe and decode uploaded media with PyAV (FFmpeg's libraries, shipped with faster-whisper).

Media is decoded once, to 16 kHz mono float32, and both engines are handed the array; no
ffmpeg binary is needed. The pipeline decodes into a ``.npy`` file frame by frame
(``decode_to_file``) and reads it back in windows (``read_samples``), so a worker's memory does
not grow with a recording's length. Decoding may open only the uploaded file: FFmpeg's playlist and
concat demuxers would follow paths and URLs inside a file, so only demuxers of plain audio
and video containers are allowed, over the ``file`` protocol alone.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import av
import numpy as np

from pipeline.errors import (
    MediaDecodeError,
    MediaTooLong,
    NoAudioStream,
    StoredFileMissing,
    UnsupportedMedia,
)

log = logging.getLogger(__name__)

SAMPLE_RATE = 16_000
_DTYPE = np.dtype("<f4")
_HEADER_BYTES = 128  # what NumPy writes for a 1-d float32 array: magic, version, padded dict

# FFmpeg demuxer names of self-contained audio and video containers. Absent on purpose: hls,
# concat, image2 and the other demuxers that read other files or URLs named inside the input.
ALLOWED_DEMUXERS = (
    "wav,w64,flac,mp3,ogg,matroska,webm,mov,mp4,m4a,3gp,3g2,aac,aiff,au,caf,amr,asf,avi,flv,"
    "mpeg,mpegts,wv,ape,ac3,eac3,dts,truehd,mxf,nut,gsm,voc,tta,mpc,mpc8,tak,dsf,iff,mlp,rm"
)
_OPEN_OPTIONS = {"format_whitelist": ALLOWED_DEMUXERS, "protocol_whitelist": "file"}


@dataclass(frozen=True)
class MediaInfo:
    format_name: str
    duration: float | None
    audio_codec: str
    sample_rate: int
    channels: int
    has_video: bool


def _open(path: Path) -> av.container.InputContainer:
    try:
        return av.open(
            str(path), mode="r", container_options=_OPEN_OPTIONS, metadata_errors="ignore"
        )
    except FileNotFoundError as exc:
        # Not bad media: the file is gone (removed, or on a disk this host does not share).
        raise StoredFileMissing("The uploaded file is missing; upload it again.") from exc
    except av.error.FFmpegError as exc:
        # Unknown content, an empty file and a demuxer outside the whitelist (EINVAL) all land
        # here; the FFmpeg wording goes to the log, the person gets what to do about it.
        log.info("cannot open %s as media: %s", path.name, exc)
        raise UnsupportedMedia(
            "The file is not audio or video in a format the service reads "
            "(send WAV, FLAC, MP3, Ogg/Opus, M4A/MP4, WebM/MKV, or another common container)."
        ) from exc


def probe(path: Path) -> MediaInfo:
    """Read the container header; raise ``UnsupportedMedia`` for anything without audio."""
    with _open(path) as container:
        return _info(container)


def _info(container: av.container.InputContainer) -> MediaInfo:
    if not container.streams.audio:
        raise NoAudioStream("The file has no audio track to transcribe.")
    stream = container.streams.audio[0]
    duration = None
    if container.duration is not None:
        duration = container.duration / av.time_base
    elif stream.duration is not None and stream.time_base is not None:
        duration = float(stream.duration * stream.time_base)
    ctx = stream.codec_context
    return MediaInfo(
        format_name=container.format.name,
        duration=duration,
        audio_codec=ctx.name,
        sample_rate=ctx.sample_rate or 0,
        channels=ctx.channels or 0,
        has_video=bool(container.streams.video),
    )


def _blocks(path: Path, max_duration: float | None, *,
            per_channel: bool = False) -> Generator[np.ndarray, None, None]:
    """The first audio stream as 16 kHz mono float32 blocks of one frame each, in order; with
    ``per_channel``, blocks of shape (channels, samples), each channel kept apart.

    Only one frame is held at a time, so a caller that writes the blocks away as they come
    decodes any length in constant memory.
    """
    with _open(path) as container:
        info = _info(container)
        if max_duration is not None and info.duration is not None and info.duration > max_duration:
            raise MediaTooLong(
                f"The recording is {info.duration:.0f} s long; this service accepts at most "
                f"{max_duration:.0f} s."
            )
        stream = container.streams.audio[0]
        # s16, then scaled: the samples of a 16-bit 16 kHz mono file come out exactly as stored.
        layout = stream.codec_context.layout.name if per_channel else "mono"
        resampler = av.AudioResampler(format="s16p" if per_channel else "s16", layout=layout, rate=SAMPLE_RATE)
        convert = _as_planar if per_channel else _as_float
        limit = None if max_duration is None else int(max_duration * SAMPLE_RATE)
        total = 0
        errors = 0
        try:
            for packet in container.demux(stream):
                try:
                    frames = packet.decode()
                except av.error.InvalidDataError:
                    # One damaged packet should not lose the rest of a recording.
                    errors += 1
                    continue
                for frame in frames:
                    for out in resampler.resample(frame):
                        block = convert(out)
                        total += block.shape[-1]
                        yield block
                if limit is not None and total > limit:
                    # The header did not say how long it is; stop as soon as it is too long.
                    raise MediaTooLong(
                        f"The recording is longer than the {max_duration:.0f} s this service accepts."
                    )
            for out in resampler.resample(None):
                block = convert(out)
                total += block.shape[-1]
                yield block
        except av.error.FFmpegError as exc:
            if total == 0:
                raise MediaDecodeError(f"The audio could not be decoded: {exc.strerror}") from exc
            log.warning("decoding stopped early after %.1f s: %s", total / SAMPLE_RATE, exc)
    if total == 0:
        detail = f" ({errors} damaged packets)" if errors else ""
        raise MediaDecodeError(f"No audio could be decoded from the file{detail}.")


def _as_float(frame: av.AudioFrame) -> np.ndarray:
    return frame.to_ndarray().reshape(-1).astype(_DTYPE) / np.float32(32768.0)


def _as_planar(frame: av.AudioFrame) -> np.ndarray:
    data = frame.to_ndarray()
    return data.reshape(len(frame.layout.channels), -1).astype(_DTYPE) / np.float32(32768.0)


def channel_count(path: Path) -> int:
    """How many channels the first audio stream has."""
    with _open(path) as container:
        return max(1, _info(container).channels)


def decode_channels_to_files(path: Path, targets: list[Path], *, max_duration: float | None = None) -> int:
    """Decode each channel of the first audio stream to 16 kHz float32, channel ``n`` into the
    ``.npy`` file ``targets[n]`` (as many targets as the stream has channels), in constant
    memory like ``decode_to_file``; return the number of samples of each."""
    partials = [partial_path(t) for t in targets]
    total = 0
    try:
        with contextlib.ExitStack() as files, \
                contextlib.closing(_blocks(path, max_duration, per_channel=True)) as blocks:
            outs = [files.enter_context(open(p, "wb")) for p in partials]
            for out in outs:
                _write_header(out, 0)
            for block in blocks:
                if block.shape[0] != len(outs):
                    raise MediaDecodeError(f"The audio has {block.shape[0]} channels here and "
                                           f"{len(outs)} at its start.")
                for out, channel in zip(outs, block, strict=True):
                    out.write(np.ascontiguousarray(channel).tobytes())
                total += block.shape[1]
            for out in outs:
                out.seek(0)
                _write_header(out, total)
        for partial, target in zip(partials, targets, strict=True):
            os.replace(partial, target)
    except BaseException:
        for partial in partials:
            partial.unlink(missing_ok=True)
        raise
    return total


def decode_audio(path: Path, *, max_duration: float | None = None) -> np.ndarray:
    """Decode the first audio stream to 16 kHz mono float32 in [-1, 1], in memory.

    For short media and tests; the pipeline uses ``decode_to_file``, whose memory does not
    grow with the recording.
    """
    blocks = list(_blocks(path, max_duration))
    return np.concatenate(blocks).astype(_DTYPE, copy=False)


def decode_to_file(path: Path, target: Path, *, max_duration: float | None = None) -> int:
    """Decode like ``decode_audio``, straight into the ``.npy`` file ``target``; return the
    number of samples.

    Frames are appended to the file as they are decoded, under a length that is filled in at
    the end, so memory stays flat whatever the length. The file appears under its name only
    once complete (written as ``<stem>.partial.npy`` and renamed), so a reader, or a message
    delivered again, never sees half of it. Read it with ``np.load(target, mmap_mode="r")``
    or, for constant memory, ``read_samples``.
    """
    partial = partial_path(target)
    total = 0
    try:
        with open(partial, "wb") as out, contextlib.closing(_blocks(path, max_duration)) as blocks:
            _write_header(out, 0)
            for block in blocks:
                out.write(block.tobytes())
                total += block.size
            out.seek(0)
            _write_header(out, total)
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return total


def partial_path(target: Path) -> Path:
    """Where ``decode_to_file`` writes ``target`` before it is complete."""
    return target.with_suffix(".partial.npy")


def _write_header(out: IO[bytes], length: int) -> None:
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": _DTYPE.str, "fortran_order": False,
                                                  "shape": (length,)})
    data = header.getvalue()
    # NumPy pads the header so that a 1-d shape can grow in place; rewriting it with the final
    # length must not move the samples.
    if len(data) != _HEADER_BYTES:
        raise RuntimeError(f"unexpected .npy header size {len(data)}")
    out.write(data)


@dataclass(frozen=True)
class NpyAudio:
    """Where the samples of a decoded ``.npy`` file lie: ``length`` samples from ``offset``."""

    path: Path
    length: int
    offset: int


def open_npy(path: Path) -> NpyAudio:
    """Read the header of a 1-d float32 ``.npy`` file (as ``decode_to_file`` writes)."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, _fortran, dtype = np.lib.format.read_array_header_1_0(f)
        else:
            shape, _fortran, dtype = np.lib.format.read_array_header_2_0(f)
        if len(shape) != 1 or dtype != _DTYPE:
            raise ValueError(f"{path.name} is not 1-d float32 audio ({shape}, {dtype})")
        return NpyAudio(path=path, length=int(shape[0]), offset=f.tell())


def read_samples(audio: NpyAudio, start: int, end: int) -> np.ndarray:
    """Samples ``[start, end)`` of a decoded file, read rather than memory-mapped: mapped pages
    of a file count in a process's resident memory until the kernel takes them back, read
    ones are freed with the array."""
    start = max(0, min(start, audio.length))
    end = max(start, min(end, audio.length))
    out = np.empty(end - start, dtype=_DTYPE)
    with open(audio.path, "rb") as f:
        f.seek(audio.offset + start * _DTYPE.itemsize)
        got = f.readinto(out.data.cast("B"))
    if got != out.nbytes:
        raise ValueError(f"{audio.path.name} is shorter than its header says")
    return out


def copy_samples(audio: NpyAudio, start: int, end: int, target: Path, *, block: int = 1 << 20) -> int:
    """Write samples ``[start, end)`` of a decoded file to the ``.npy`` file ``target`` (a chunk
    of a long recording), block by block; return the number of samples."""
    start = max(0, min(start, audio.length))
    end = max(start, min(end, audio.length))
    partial = partial_path(target)
    try:
        with open(partial, "wb") as out:
            _write_header(out, end - start)
            for at in range(start, end, block):
                out.write(read_samples(audio, at, min(at + block, end)).tobytes())
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return end - start
