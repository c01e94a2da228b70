"""Uploads stream into storage (``pipeline.storage``) while they arrive, hashed on the way; a job's
files are removed together once it is final, and a janitor removes those whose job is gone.

The API probes each upload's header before it makes a job (an immediate 415 or 422), and the
probe needs a local file: with a folder store that is the stored file itself; with a bucket, the
bytes are also written to a copy in the API host's ``SCRATCH_DIR`` as they stream, removed when
the request ends. A copy of the whole file rather than of its first bytes, because some
containers keep what the probe reads at the end (an MP4 whose ``moov`` atom follows the data).
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from pathlib import Path
from typing import IO, cast

import redis

from pipeline.errors import JobNotFound, StorageUnavailable
from pipeline.jobs import JobStore
from pipeline.keys import ORPHANS_KEY
from pipeline.storage import LocalStorage, ObjectWriter, Storage, audio_key, upload_key
from pipeline.stores import Stores

log = logging.getLogger(__name__)

# The janitor spares a job's objects for this long after it first finds them without a job:
# an upload is stored before its job is created, and a slow client takes a while.
ORPHAN_GRACE_SECONDS = 6 * 3600


class UploadSink:
    """One upload on its way into storage: a binary sink that computes sha256 and the size of
    everything written, sends it to the store part by part (nothing held beyond one part) and,
    where the store is not a local folder, keeps the scratch copy that the probe reads.

    ``close`` makes the stored object appear, whole; ``abort`` drops it and the copy.
    """

    def __init__(self, storage: Storage, task_id: str, scratch_dir: Path) -> None:
        self.task_id = task_id
        self.key = upload_key(task_id)
        self.size = 0
        self._hash = hashlib.sha256()
        self._writer: ObjectWriter = storage.open_writer(self.key)
        self._copy: IO[bytes] | None = None
        local = storage.local_path(self.key)
        if local is None:
            scratch_dir.mkdir(parents=True, exist_ok=True)
            local = scratch_copy_path(scratch_dir, task_id)
            # O_EXCL: a name derived from a fresh task id must never already exist (nor be a link).
            fd = os.open(local, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
            self._copy = os.fdopen(fd, "wb")
        self.local_path = local  # a file holding the upload, for the probe, once closed

    def write(self, data: bytes | bytearray | memoryview) -> int:
        if self._writer.closed:
            raise ValueError("write to a closed upload")
        self._hash.update(data)
        self.size += len(data)
        self._writer.write(data)
        if self._copy is not None:
            self._copy.write(data)
        return len(data)

    def seek(self, offset: int, whence: int = 0) -> int:
        # Werkzeug rewinds the stream after parsing; the bytes are already sent and hashed.
        if offset == 0 and whence == 0:
            return 0
        raise OSError("an upload stream can only be rewound to its start")

    def tell(self) -> int:
        return self.size

    def read(self, size: int = -1) -> bytes:
        raise OSError("an upload stream is write-only")

    def flush(self) -> None:
        if self._copy is not None:
            self._copy.flush()

    def close(self) -> None:
        """Complete the stored object (idempotent)."""
        if self._copy is not None and not self._copy.closed:
            self._copy.close()
        try:
            self._writer.close()
        except BaseException:
            self.drop_copy()
            raise

    def abort(self) -> None:
        """Drop what was written: the unfinished object and the copy."""
        self._writer.abort()
        self.drop_copy()

    def drop_copy(self) -> None:
        """Remove the scratch copy (the stored object stays); nothing for a folder store."""
        if self._copy is not None:
            if not self._copy.closed:
                self._copy.close()
            self.local_path.unlink(missing_ok=True)

    @property
    def closed(self) -> bool:
        return self._writer.closed

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()


def scratch_copy_path(scratch_dir: Path, task_id: str) -> Path:
    """Where the API keeps the local copy of an upload bound for a bucket."""
    return scratch_dir / f"{task_id}.upload"


def upload_path(upload_dir: Path, task_id: str) -> Path:
    """The file of a job's upload in a folder store rooted at ``upload_dir`` (the default
    storage), its folder made: for callers that put an upload there themselves (tests, tools)."""
    path = LocalStorage(upload_dir).local_path(upload_key(task_id))
    assert path is not None
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def audio_path(upload_dir: Path, task_id: str) -> Path:
    """The file of a job's decoded audio in a folder store rooted at ``upload_dir``."""
    path = LocalStorage(upload_dir).local_path(audio_key(task_id))
    assert path is not None
    return path


def remove_job_files(storage: Storage, task_id: str) -> bool:
    """Remove every object of the job; safe to repeat (at-least-once delivery calls it again).
    A store that is down now is logged, not raised: the janitor removes them later."""
    try:
        removed = storage.delete_job(task_id)
    except StorageUnavailable as exc:
        log.warning("job %s: its files stay for the janitor: %s", task_id, exc.message)
        return False
    if removed:
        log.debug("job %s: %d stored files removed", task_id, removed)
    return True


def sweep_orphans(storage: Storage, jobs: JobStore, client: redis.Redis, *, now: float | None = None,
                  grace: float = ORPHAN_GRACE_SECONDS) -> int:
    """The janitor: remove the objects of jobs that are final (their removal failed then) at once,
    and of jobs that do not exist (expired, or never created) once ``grace`` seconds have passed
    since this sweep first found them so; return how many jobs' objects went.

    Runs in one process at a time (housekeeping's lock). A job found again is dropped from the
    watch list, so an upload that became a job is never removed."""
    now = time.time() if now is None else now
    watched = cast(dict[str, str], client.hgetall(ORPHANS_KEY))
    seen = {str(k): float(v) for k, v in watched.items()}
    swept = 0
    orphans: set[str] = set()
    for task_id in storage.list_job_ids():
        try:
            job = jobs.get(task_id)
        except JobNotFound:
            orphans.add(task_id)
            first = seen.get(task_id)
            if first is None:
                client.hset(ORPHANS_KEY, task_id, str(now))
                continue
            if now - first < grace:
                continue
            log.info("janitor: job %s no longer exists; removing its stored files", task_id)
        else:
            if not job.is_final:
                continue
            log.info("janitor: job %s is %s; removing its stored files", task_id, job.status)
        storage.delete_job(task_id)
        client.hdel(ORPHANS_KEY, task_id)
        swept += 1
    # Ids watched that have no object now, or that are jobs after all.
    stale = [task_id for task_id in seen if task_id not in orphans]
    if stale:
        client.hdel(ORPHANS_KEY, *stale)
    return swept


def janitor(stores: Stores) -> int:
    """Housekeeping's call: ``sweep_orphans`` on the service's store; a store that is down now
    is said and left for the next run."""
    try:
        return sweep_orphans(stores.storage, stores.jobs, stores.redis)
    except StorageUnavailable as exc:
        log.warning("janitor: %s", exc.message)
        return 0
