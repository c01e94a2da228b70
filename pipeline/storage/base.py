"""Keys of a job's objects, and what every store does: the base classes of pipeline.storage."""

from __future__ import annotations

import contextlib
import re
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

from pipeline.errors import StoredFileMissing

JOBS = "jobs"
# A key's parts: no empty part, no "." or "..", nothing hidden (the folder's temporary files
# start with a dot), no characters that a file system or a URL would read differently.
PART = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}")
BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
MiB = 1 << 20


def job_prefix(task_id: str) -> str:
    check_part(task_id)
    return f"{JOBS}/{task_id}/"


def upload_key(task_id: str) -> str:
    return job_prefix(task_id) + "upload"


def audio_key(task_id: str) -> str:
    return job_prefix(task_id) + "audio.npy"


def speaker_key(task_id: str, index: int) -> str:
    """A known speaker's reference clip, decoded (``known_speaker_references[index]``)."""
    if index < 0:
        raise ValueError(f"speaker index {index} is negative")
    return job_prefix(task_id) + f"speakers/{index}.npy"


def chunk_key(task_id: str, index: int) -> str:
    if index < 0:
        raise ValueError(f"chunk index {index} is negative")
    return job_prefix(task_id) + f"chunks/{index}.npy"


def check_part(part: str) -> None:
    if not PART.fullmatch(part):
        raise ValueError(f"{part!r} cannot be part of a storage key")


def check_key(key: str) -> str:
    for part in key.split("/"):
        check_part(part)
    return key


class ObjectWriter(ABC):
    """A file-like sink for one object. ``close`` makes the object appear, whole; ``abort``
    (or leaving a ``with`` block by an exception) drops everything written."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.size = 0
        self._done = False

    @abstractmethod
    def write(self, data: bytes | bytearray | memoryview) -> int: ...

    @abstractmethod
    def _commit(self) -> None: ...

    @abstractmethod
    def _discard(self) -> None: ...

    def close(self) -> None:
        if not self._done:
            self._done = True
            try:
                self._commit()
            except BaseException:
                self._discard()
                raise

    def abort(self) -> None:
        if not self._done:
            self._done = True
            self._discard()

    @property
    def closed(self) -> bool:
        return self._done

    @abstractmethod
    def flush(self) -> None:
        """Nothing is the store's before ``close``; here only for file-like callers."""

    def __enter__(self) -> ObjectWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc is None:
            self.close()
        else:
            self.abort()


class Storage(ABC):
    """The one interface the API and the workers use, whatever holds the files."""

    url: str

    @abstractmethod
    def check(self) -> None:
        """Raise ``StorageUnavailable`` unless objects can be written and read now; create the
        bucket (or folder) when absent. Called at start-up and by health checks."""

    @abstractmethod
    def open_writer(self, key: str) -> ObjectWriter:
        """A streaming writer for ``key``; nothing is held in memory beyond one part."""

    @abstractmethod
    def put_file(self, key: str, path: Path) -> None:
        """Store the local file ``path`` as ``key``."""

    @abstractmethod
    def fetch(self, key: str, dest: Path) -> Path:
        """Copy ``key`` into the local file ``dest`` (whole, or not at all); return ``dest``."""

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def size(self, key: str) -> int: ...

    @abstractmethod
    def delete_job(self, task_id: str) -> int:
        """Remove every object of the job (and any upload of it left unfinished); return how
        many objects went. Removing a job with no objects is not an error."""

    @abstractmethod
    def list_job_ids(self) -> Iterator[str]:
        """Every task id that has objects here, for a janitor to compare with the live jobs."""

    def local_path(self, key: str) -> Path | None:
        """The file that holds ``key`` when it can be read in place, else None."""
        return None

    def move_file(self, key: str, path: Path) -> None:
        """Store ``path`` as ``key`` and remove ``path`` (a rename within one folder)."""
        self.put_file(key, path)
        path.unlink(missing_ok=True)

    @contextlib.contextmanager
    def scratch_copy(self, key: str, scratch_dir: Path) -> Iterator[Path]:
        """A local file holding ``key`` for the duration of the block: the object itself in a
        folder, else a copy fetched into ``scratch_dir`` and removed afterwards."""
        local = self.local_path(key)
        if local is not None:
            if not local.is_file():
                raise missing(key)
            yield local
            return
        scratch_dir.mkdir(parents=True, exist_ok=True)
        dest = scratch_dir / f"{uuid.uuid4().hex}-{key.rsplit('/', 1)[-1]}"
        try:
            yield self.fetch(key, dest)
        finally:
            dest.unlink(missing_ok=True)




def missing(key: str) -> StoredFileMissing:
    what = "uploaded file" if key.endswith("/upload") else f"file {key.rsplit('/', 1)[-1]}"
    return StoredFileMissing(
        f"The job's {what} is not in storage (removed, or written where this worker cannot "
        "see it); upload the file again."
    )


