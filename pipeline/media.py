"""Probe and decode uploaded media with PyAV (FFmpeg's libraries, shipped with faster-whisper).

Media is decoded once, to 16 kHz mono float32, and both engines are handed the array; no
ffmpeg binary is needed. Decoding may open only the uploaded file: FFmpeg's playlist and
concat demuxers would follow paths and URLs inside a file, so only demuxers of plain audio
and video containers are allowed, over the ``file`` protocol alone.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from pipeline.errors import MediaDecodeError, MediaTooLong, NoAudioStream, UnsupportedMedia

log = logging.getLogger(__name__)

SAMPLE_RATE = 16_000

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


def decode_audio(path: Path, *, max_duration: float | None = None) -> np.ndarray:
    """Decode the first audio stream to 16 kHz mono float32 in [-1, 1]."""
    with _open(path) as container:
        info = _info(container)
        if max_duration is not None and info.duration is not None and info.duration > max_duration:
            raise MediaTooLong(
                f"The recording is {info.duration:.0f} s long; this service accepts at most "
                f"{max_duration:.0f} s."
            )
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
        limit = None if max_duration is None else int(max_duration * SAMPLE_RATE)
        chunks: list[np.ndarray] = []
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
                        chunk = out.to_ndarray().reshape(-1)
                        chunks.append(chunk)
                        total += chunk.size
                if limit is not None and total > limit:
                    # The header did not say how long it is; stop as soon as it is too long.
                    raise MediaTooLong(
                        f"The recording is longer than the {max_duration:.0f} s this service accepts."
                    )
            for out in resampler.resample(None):
                chunk = out.to_ndarray().reshape(-1)
                chunks.append(chunk)
                total += chunk.size
        except av.error.FFmpegError as exc:
            if total == 0:
                raise MediaDecodeError(f"The audio could not be decoded: {exc.strerror}") from exc
            log.warning("decoding stopped early after %.1f s: %s", total / SAMPLE_RATE, exc)
    if total == 0:
        detail = f" ({errors} damaged packets)" if errors else ""
        raise MediaDecodeError(f"No audio could be decoded from the file{detail}.")
    pcm = np.concatenate(chunks)
    return pcm.astype(np.float32) / 32768.0
