"""Reference clips of speakers known by name (``known_speaker_references[]``), OpenAI's shape:
uploaded files or ``data:`` URLs. Each is decoded here, checked, and stored with the job as
16 kHz audio; the job's options carry the names and the clips' digests, never the clips."""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from werkzeug.datastructures import FileStorage

from pipeline import media
from pipeline.errors import InvalidOption, MediaTooLong, PipelineError
from pipeline.storage import Storage, speaker_key

FIELD = "known_speaker_references"
MAX_REFERENCE_BYTES = 10 << 20
MAX_REFERENCE_SECONDS = 60.0
# Under this much sound (frames within 30 dB of the clip's loudest) it cannot hold a second of
# speech; the diarize worker checks the speech itself with its model.
MIN_REFERENCE_SECONDS = 1.0


def _bytes(value: Any, index: int) -> bytes:
    name = f"{FIELD}[{index}]"
    if isinstance(value, FileStorage):
        data = value.stream.read(MAX_REFERENCE_BYTES + 1)
    elif isinstance(value, str) and value.startswith("data:"):
        head, _, payload = value.partition(",")
        if ";base64" not in head or not head[5:].split(";")[0].startswith(("audio/", "video/", "application/octet")):
            raise InvalidOption(f"{name} must be a data URL of audio, such as data:audio/wav;base64,...",
                                field=name)
        try:
            data = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidOption(f"{name} is not valid base64", field=name) from None
    else:
        raise InvalidOption(f"{name} must be an audio file or a data URL (data:audio/...;base64,...)", field=name)
    if not data:
        raise InvalidOption(f"{name} is empty", field=name)
    if len(data) > MAX_REFERENCE_BYTES:
        raise InvalidOption(f"{name} is larger than {MAX_REFERENCE_BYTES >> 20} MiB", field=name)
    return data


def _decode(data: bytes, index: int, scratch: Path) -> np.ndarray:
    name = f"{FIELD}[{index}]"
    with tempfile.NamedTemporaryFile(dir=scratch, suffix=".ref") as tmp:
        tmp.write(data)
        tmp.flush()
        try:
            audio = media.decode_audio(Path(tmp.name), max_duration=MAX_REFERENCE_SECONDS)
        except MediaTooLong:
            raise InvalidOption(f"{name} is longer than {MAX_REFERENCE_SECONDS:g} s; a few seconds of the "
                                "speaker are enough", field=name) from None
        except PipelineError:
            raise InvalidOption(f"{name} is not audio that can be decoded", field=name) from None
    frames = audio[: audio.size // 160 * 160].reshape(-1, 160).astype(np.float64)
    db = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12) if frames.size else np.zeros(0)
    sound = float(np.sum(db > max(-70.0, float(db.max(initial=-120.0)) - 30.0))) * 0.01
    if sound < MIN_REFERENCE_SECONDS:
        raise InvalidOption(f"{name} holds {sound:.1f} s of sound; a reference needs at least "
                            f"{MIN_REFERENCE_SECONDS:g} s of the speaker talking", field=name)
    return audio


def store_references(storage: Storage, task_id: str, references: Sequence[Any], scratch_dir: Path) -> list[str]:
    """Decode, check and store each clip; return their digests, in order."""
    scratch_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=scratch_dir, prefix=f"refs-{task_id}-") as folder:
        return [_store(storage, task_id, index, value, Path(folder)) for index, value in enumerate(references)]


def _store(storage: Storage, task_id: str, index: int, value: Any, scratch: Path) -> str:
    audio = _decode(_bytes(value, index), index, scratch)
    buffer = io.BytesIO()
    np.save(buffer, audio.astype(np.float32), allow_pickle=False)
    blob = buffer.getvalue()
    path = scratch / f"{index}.npy"
    path.write_bytes(blob)
    storage.put_file(speaker_key(task_id, index), path)
    return hashlib.sha256(blob).hexdigest()
