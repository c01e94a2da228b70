"""Uploads are written straight to UPLOAD_DIR while they arrive, and hashed on the way."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import IO


class HashingWriter:
    """A binary file that computes sha256 of everything written through it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.size = 0
        self._hash = hashlib.sha256()
        # O_EXCL: a name derived from a fresh task id must never already exist.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        self._file: IO[bytes] = os.fdopen(fd, "wb")

    def write(self, data: bytes) -> int:
        self._hash.update(data)
        self.size += len(data)
        return self._file.write(data)

    def seek(self, offset: int, whence: int = 0) -> int:
        # Werkzeug rewinds the stream after parsing; the bytes are already on disk and hashed.
        if offset == 0 and whence == 0:
            return 0
        raise OSError("an upload stream can only be rewound to its start")

    def tell(self) -> int:
        return self.size

    def read(self, size: int = -1) -> bytes:
        raise OSError("an upload stream is write-only")

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()

    @property
    def closed(self) -> bool:
        return self._file.closed

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()


def upload_path(upload_dir: Path, task_id: str) -> Path:
    return upload_dir / f"{task_id}.upload"


def audio_path(upload_dir: Path, task_id: str) -> Path:
    return upload_dir / f"{task_id}.f32.npy"


def remove_job_files(upload_dir: Path, task_id: str) -> None:
    audio = audio_path(upload_dir, task_id)
    # The partial file is what a worker killed while writing the audio leaves behind.
    for path in (upload_path(upload_dir, task_id), audio, audio.with_suffix(".partial.npy")):
        path.unlink(missing_ok=True)
