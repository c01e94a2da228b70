"""pipeline/media.py: decoding to 16 kHz mono float32, and refusing what is not plain media."""

from __future__ import annotations

import errno
import http.server
import os
import random
import shutil
import struct
import threading
import wave
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from pipeline.errors import (
    MediaDecodeError,
    MediaTooLong,
    NoAudioStream,
    StoredFileMissing,
    UnsupportedMedia,
)
from pipeline.media import (
    SAMPLE_RATE,
    copy_samples,
    decode_audio,
    decode_to_file,
    open_npy,
    partial_path,
    probe,
    read_samples,
)
from tests.support.helpers import SPEECH_EN, make_video, silent_wav_header


def _wav_frames(path: Path) -> tuple[int, int, int]:
    with wave.open(str(path)) as w:
        return w.getnframes(), w.getframerate(), w.getnchannels()


def _check_pcm(pcm: np.ndarray) -> None:
    assert pcm.dtype == np.float32
    assert pcm.ndim == 1
    assert np.isfinite(pcm).all()
    assert float(pcm.min()) >= -1.0 and float(pcm.max()) <= 1.0


# -- plain audio -----------------------------------------------------------------------------
def test_decode_speech_fixture() -> None:
    frames, rate, channels = _wav_frames(SPEECH_EN)
    assert (rate, channels) == (SAMPLE_RATE, 1)
    pcm = decode_audio(SPEECH_EN)
    _check_pcm(pcm)
    assert len(pcm) == frames
    assert len(pcm) / SAMPLE_RATE == pytest.approx(5.9, abs=0.1)
    # Speech, not silence, and not clipped to the rails.
    assert float(np.abs(pcm).max()) > 0.1
    assert float(np.sqrt(np.mean(pcm**2))) > 0.01


def test_decoded_samples_match_the_wav_file() -> None:
    with wave.open(str(SPEECH_EN)) as w:
        raw = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    np.testing.assert_allclose(decode_audio(SPEECH_EN), raw.astype(np.float32) / 32768.0, atol=1e-6)


def test_probe_speech_fixture() -> None:
    info = probe(SPEECH_EN)
    assert info.format_name == "wav"
    assert info.sample_rate == SAMPLE_RATE and info.channels == 1
    assert info.has_video is False
    assert info.duration == pytest.approx(5.9, abs=0.1)


def test_flac_stereo_44k_is_resampled_to_16k_mono(jfk: Path) -> None:
    info = probe(jfk)
    assert (info.format_name, info.sample_rate, info.channels) == ("flac", 44100, 2)
    pcm = decode_audio(jfk)
    _check_pcm(pcm)
    assert len(pcm) / SAMPLE_RATE == pytest.approx(11.0, abs=0.05)
    assert float(np.abs(pcm).max()) > 0.1


def test_name_does_not_matter(tmp_path: Path) -> None:
    # Uploads are stored as <task>.upload: the content decides, not the extension.
    target = tmp_path / "abc.upload"
    shutil.copy(SPEECH_EN, target)
    assert len(decode_audio(target)) == len(decode_audio(SPEECH_EN))


# -- video -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("container", "suffix"), [("mp4", ".mp4"), ("matroska", ".mkv")])
def test_video_with_audio_decodes(tmp_path: Path, container: str, suffix: str) -> None:
    video = make_video(tmp_path / f"clip{suffix}", SPEECH_EN, container=container)
    info = probe(video)
    assert info.has_video is True and info.audio_codec == "aac"
    pcm = decode_audio(video)
    _check_pcm(pcm)
    # AAC adds priming samples and pads the last frame: within a tenth of a second.
    assert len(pcm) / SAMPLE_RATE == pytest.approx(len(decode_audio(SPEECH_EN)) / SAMPLE_RATE, abs=0.1)
    assert float(np.abs(pcm).max()) > 0.1


@pytest.mark.parametrize(("container", "suffix"), [("mp4", ".mp4"), ("matroska", ".mkv")])
def test_video_without_audio_raises_no_audio_stream(tmp_path: Path, container: str, suffix: str) -> None:
    video = make_video(tmp_path / f"mute{suffix}", None, seconds=1.0, container=container)
    with pytest.raises(NoAudioStream) as info:
        decode_audio(video)
    assert isinstance(info.value, UnsupportedMedia)
    assert info.value.code == "no_audio_stream"
    with pytest.raises(NoAudioStream):
        probe(video)


# -- files that name other files -------------------------------------------------------------
class _Recorder(http.server.BaseHTTPRequestHandler):
    requests: list[str]

    def do_GET(self) -> None:
        self.requests.append(self.path)
        body = SPEECH_EN.read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", "audio/wav")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def audio_server() -> Iterator[tuple[str, list[str]]]:
    seen: list[str] = []
    handler = type("Handler", (_Recorder,), {"requests": seen})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def _playlist(*entries: str) -> str:
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-TARGETDURATION:10", "#EXT-X-MEDIA-SEQUENCE:0"]
    for entry in entries:
        lines += ["#EXTINF:6.0,", entry]
    return "\n".join([*lines, "#EXT-X-ENDLIST", ""])


def _decode_or_hang(path: Path, sentinel: Path, seconds: float = 15.0) -> BaseException | None:
    """Decode ``path`` in a thread. If FFmpeg opens the FIFO ``sentinel`` it blocks there; then
    this opens the FIFO's other end to free it and fails the test."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            decode_audio(path)
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        fd = os.open(sentinel, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
        thread.join(5)
        pytest.fail(f"decoding {path.name} opened the file it names ({sentinel})")
    # No reader holds the FIFO open now.
    with pytest.raises(OSError) as info:
        os.open(sentinel, os.O_WRONLY | os.O_NONBLOCK)
    assert info.value.errno == errno.ENXIO
    return outcome[0]


def test_hls_playlist_naming_a_local_file_is_refused(tmp_path: Path) -> None:
    local = tmp_path / "speech_en.wav"
    shutil.copy(SPEECH_EN, local)
    playlist = tmp_path / "list.m3u8"
    playlist.write_text(_playlist(str(local.resolve())))
    with pytest.raises(UnsupportedMedia):
        decode_audio(playlist)
    with pytest.raises(UnsupportedMedia):
        probe(playlist)


def test_hls_playlist_naming_a_url_is_refused_without_fetching(
    tmp_path: Path, audio_server: tuple[str, list[str]]
) -> None:
    base, seen = audio_server
    playlist = tmp_path / "remote.m3u8"
    playlist.write_text(_playlist(f"{base}/segment0.wav", f"{base}/segment1.wav"))
    with pytest.raises(UnsupportedMedia):
        decode_audio(playlist)
    with pytest.raises(UnsupportedMedia):
        probe(playlist)
    assert seen == []


def test_hls_playlist_under_an_upload_name_is_refused_without_fetching(
    tmp_path: Path, audio_server: tuple[str, list[str]]
) -> None:
    base, seen = audio_server
    upload = tmp_path / "task.upload"
    upload.write_text(_playlist(f"{base}/a.wav"))
    with pytest.raises(UnsupportedMedia):
        decode_audio(upload)
    assert seen == []


def test_hls_playlist_never_opens_the_named_file(tmp_path: Path) -> None:
    fifo = tmp_path / "segment.wav"
    os.mkfifo(fifo)
    playlist = tmp_path / "list.m3u8"
    playlist.write_text(_playlist(str(fifo)))
    assert isinstance(_decode_or_hang(playlist, fifo), UnsupportedMedia)


def test_ffconcat_is_refused(tmp_path: Path) -> None:
    concat = tmp_path / "list.ffconcat"
    concat.write_text(f"ffconcat version 1.0\nfile {SPEECH_EN.resolve()}\n")
    with pytest.raises(UnsupportedMedia):
        decode_audio(concat)
    plain = tmp_path / "list.upload"
    plain.write_text(f"ffconcat version 1.0\nfile {SPEECH_EN.resolve()}\n")
    with pytest.raises(UnsupportedMedia):
        decode_audio(plain)


def test_ffconcat_never_opens_the_named_file(tmp_path: Path) -> None:
    fifo = tmp_path / "speech.wav"
    os.mkfifo(fifo)
    concat = tmp_path / "list.txt"
    concat.write_text(f"ffconcat version 1.0\nfile {fifo}\n")
    assert isinstance(_decode_or_hang(concat, fifo), UnsupportedMedia)


# -- not media at all ------------------------------------------------------------------------
def _png_1x1() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)  # 1x1, 8-bit greyscale
    pixels = zlib.compress(b"\x00\x80")  # filter byte 0, one grey pixel
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def test_handmade_png_is_a_valid_png() -> None:
    data = _png_1x1()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    idat_len = struct.unpack(">I", data[33:37])[0]
    assert zlib.decompress(data[41 : 41 + idat_len]) == b"\x00\x80"


@pytest.mark.parametrize("name", ["image.png", "image.wav", "image.upload"])
def test_png_image_is_unsupported(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(_png_1x1())
    with pytest.raises(UnsupportedMedia) as info:
        decode_audio(path)
    assert info.value.http_status == 415


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_random_bytes_are_unsupported(tmp_path: Path, seed: int) -> None:
    path = tmp_path / "noise.upload"
    path.write_bytes(random.Random(seed).randbytes(50_000))
    with pytest.raises(UnsupportedMedia):
        decode_audio(path)


@pytest.mark.parametrize("name", ["empty.wav", "empty.upload"])
def test_empty_file_is_unsupported(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"")
    with pytest.raises(UnsupportedMedia):
        decode_audio(path)


def test_text_file_is_unsupported(tmp_path: Path) -> None:
    path = tmp_path / "notes.upload"
    path.write_text("This is a transcript, not a recording.\n" * 50)
    with pytest.raises(UnsupportedMedia):
        decode_audio(path)


def test_unsupported_media_message_says_what_to_send(tmp_path: Path) -> None:
    path = tmp_path / "x.upload"
    path.write_bytes(b"\x00" * 100)
    with pytest.raises(UnsupportedMedia) as info:
        decode_audio(path)
    assert "WAV" in info.value.message
    assert info.value.code == "unsupported_media" and info.value.retryable is False


# -- damaged and too long --------------------------------------------------------------------
def test_wav_header_without_samples_raises_decode_error(tmp_path: Path) -> None:
    path = silent_wav_header(tmp_path / "silent.wav")
    with pytest.raises(MediaDecodeError) as info:
        decode_audio(path)
    assert info.value.retryable is False
    assert not isinstance(info.value, UnsupportedMedia)


def test_max_duration_shorter_than_the_file_raises_too_long() -> None:
    with pytest.raises(MediaTooLong) as info:
        decode_audio(SPEECH_EN, max_duration=3)
    assert "3 s" in info.value.message
    assert info.value.retryable is False


def test_max_duration_longer_than_the_file_decodes() -> None:
    assert len(decode_audio(SPEECH_EN, max_duration=60)) == len(decode_audio(SPEECH_EN))


def test_max_duration_applies_to_video(tmp_path: Path) -> None:
    video = make_video(tmp_path / "clip.mkv", SPEECH_EN, container="matroska")
    with pytest.raises(MediaTooLong):
        decode_audio(video, max_duration=2)


def test_max_duration_flac(jfk: Path) -> None:
    with pytest.raises(MediaTooLong):
        decode_audio(jfk, max_duration=10)
    assert len(decode_audio(jfk, max_duration=12)) / SAMPLE_RATE == pytest.approx(11.0, abs=0.05)


def test_truncated_wav_still_decodes_to_a_shorter_array(tmp_path: Path) -> None:
    full = decode_audio(SPEECH_EN)
    data = SPEECH_EN.read_bytes()
    cut = tmp_path / "cut.wav"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    pcm = decode_audio(cut)
    _check_pcm(pcm)
    assert 0.5 * len(full) < len(pcm) < 0.65 * len(full)
    np.testing.assert_array_equal(pcm, full[: len(pcm)])


def test_truncated_flac_still_decodes_to_a_shorter_array(tmp_path: Path, jfk: Path) -> None:
    data = jfk.read_bytes()
    cut = tmp_path / "cut.flac"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    pcm = decode_audio(cut)
    _check_pcm(pcm)
    assert 3.0 < len(pcm) / SAMPLE_RATE < 10.0


# -- decoding into a file ---------------------------------------------------------------------
def test_decode_to_file_writes_the_same_samples_as_decode_audio(tmp_path: Path, jfk: Path) -> None:
    for source in (SPEECH_EN, jfk):
        target = tmp_path / f"{source.stem}.npy"
        count = decode_to_file(source, target)
        stored = np.load(target, mmap_mode="r")
        assert stored.dtype == np.float32 and stored.shape == (count,)
        np.testing.assert_array_equal(stored, decode_audio(source))
        assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(source.stem)) == [target.name]


def test_decode_to_file_refusals_leave_no_file(tmp_path: Path) -> None:
    target = tmp_path / "audio.npy"
    with pytest.raises(MediaTooLong):
        decode_to_file(SPEECH_EN, target, max_duration=3)
    notes = tmp_path / "notes.upload"
    notes.write_text("not a recording\n" * 50)
    with pytest.raises(UnsupportedMedia):
        decode_to_file(notes, target)
    with pytest.raises(MediaDecodeError):
        decode_to_file(silent_wav_header(tmp_path / "silent.wav"), target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.upload", "silent.wav"]


def test_decode_to_file_replaces_a_stale_partial_and_target(tmp_path: Path) -> None:
    # What a worker killed half-way, or a first delivery, left behind.
    target = tmp_path / "task.f32.npy"
    partial_path(target).write_bytes(b"half")
    target.write_bytes(b"old")
    assert partial_path(target).name == "task.f32.partial.npy"
    count = decode_to_file(SPEECH_EN, target)
    assert np.load(target).shape == (count,)
    assert not partial_path(target).exists()


def test_a_missing_file_is_missing_not_unsupported(tmp_path: Path) -> None:
    gone = tmp_path / "task.upload"
    for call in (probe, decode_audio, lambda p: decode_to_file(p, tmp_path / "a.npy")):
        with pytest.raises(StoredFileMissing) as info:
            call(gone)
        assert not isinstance(info.value, UnsupportedMedia)
        assert info.value.retryable is False and "missing" in info.value.message


def test_read_and_copy_samples_by_range(tmp_path: Path, jfk: Path) -> None:
    target = tmp_path / "audio.npy"
    decode_to_file(jfk, target)
    whole = np.load(target)
    stored = open_npy(target)
    assert (stored.length, stored.offset) == (len(whole), 128)
    np.testing.assert_array_equal(read_samples(stored, 1000, 50_000), whole[1000:50_000])
    # Ranges past either end are cut to the file, as slices are.
    np.testing.assert_array_equal(read_samples(stored, len(whole) - 10, len(whole) + 500), whole[-10:])
    assert read_samples(stored, len(whole) + 5, len(whole) + 9).size == 0
    chunk = tmp_path / "chunk.npy"
    assert copy_samples(stored, 16_000, 96_000, chunk, block=7_000) == 80_000
    np.testing.assert_array_equal(np.load(chunk), whole[16_000:96_000])


def test_open_npy_refuses_what_is_not_mono_float32(tmp_path: Path) -> None:
    stereo = tmp_path / "stereo.npy"
    np.save(stereo, np.zeros((10, 2), dtype=np.float32))
    pcm16 = tmp_path / "pcm16.npy"
    np.save(pcm16, np.zeros(10, dtype=np.int16))
    for path in (stereo, pcm16):
        with pytest.raises(ValueError):
            open_npy(path)
