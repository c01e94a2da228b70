"""A local folder as a store."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from pipeline.errors import StorageUnavailable
from pipeline.storage.base import JOBS, PART, MiB, ObjectWriter, Storage, check_key, job_prefix, missing


class _LocalWriter(ObjectWriter):
    def __init__(self, key: str, target: Path) -> None:
        super().__init__(key)
        self._target = target
        target.parent.mkdir(parents=True, exist_ok=True)
        self._partial = target.with_name(f".{target.name}.{uuid.uuid4().hex}.partial")
        self._file: IO[bytes] = open(self._partial, "xb")

    def write(self, data: bytes | bytearray | memoryview) -> int:
        written = self._file.write(data)
        self.size += written
        return written

    def flush(self) -> None:
        self._file.flush()

    def _commit(self) -> None:
        self._file.close()
        os.replace(self._partial, self._target)

    def _discard(self) -> None:
        self._file.close()
        self._partial.unlink(missing_ok=True)


class LocalStorage(Storage):
    """Objects as files under one folder: for one host, or hosts that mount the same disk."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = str(root)

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def check(self) -> None:
        try:
            (self.root / JOBS).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageUnavailable(f"The storage folder {self.root} cannot be created: {exc.strerror}") from exc
        if not os.access(self.root / JOBS, os.W_OK | os.X_OK):
            raise StorageUnavailable(f"The storage folder {self.root / JOBS} is not writable by this process.")

    def open_writer(self, key: str) -> ObjectWriter:
        return _LocalWriter(key, self._path(key))

    def put_file(self, key: str, path: Path) -> None:
        with self.open_writer(key) as out, open(path, "rb") as src:
            shutil.copyfileobj(src, out, MiB)

    def move_file(self, key: str, path: Path) -> None:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(path, target)
        except OSError:
            # Another file system (SCRATCH_DIR on another disk): copy, then remove.
            super().move_file(key, path)

    def fetch(self, key: str, dest: Path) -> Path:
        source = self._path(key)
        if not source.is_file():
            raise missing(key)
        partial = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.partial")
        try:
            shutil.copyfile(source, partial)
            os.replace(partial, dest)
        except FileNotFoundError as exc:
            partial.unlink(missing_ok=True)
            if source.is_file():  # the destination's folder is what is missing, not the upload
                raise
            raise missing(key) from exc
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        return dest

    def local_path(self, key: str) -> Path | None:
        return self._path(key)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def size(self, key: str) -> int:
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError as exc:
            raise missing(key) from exc

    def delete_job(self, task_id: str) -> int:
        folder = self.root / job_prefix(task_id)
        count = sum(1 for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else 0
        shutil.rmtree(folder, ignore_errors=True)
        return count

    def list_job_ids(self) -> Iterator[str]:
        jobs = self.root / JOBS
        if not jobs.is_dir():
            return
        for entry in sorted(jobs.iterdir()):
            # A folder with no file left (a write aborted) holds nothing to remove; one with only
            # a hidden partial file (a writer killed) does.
            if entry.is_dir() and PART.fullmatch(entry.name) and any(
                    p.is_file() for p in entry.rglob("*")):
                yield entry.name


