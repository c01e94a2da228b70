"""Where a job's files live: a local folder, or a bucket on any S3-compatible object store.

``STORAGE_URL`` chooses (``from_url``): a folder (the default, ``UPLOAD_DIR``), for hosts that
share one disk, or ``s3://bucket/prefix``, for hosts that share nothing but the servers. The S3
client is boto3's, configured by its standard environment: ``AWS_ENDPOINT_URL_S3`` or
``AWS_ENDPOINT_URL`` (absent: Amazon S3 itself), ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``. The bucket is created when absent.

Object layout, the same in a folder and in a bucket (keys under the folder, or under
``prefix/`` in the bucket)::

    jobs/<task_id>/upload           the uploaded file, byte for byte
    jobs/<task_id>/audio.npy        its audio, 16 kHz mono float32 (pipeline.media.decode_to_file)
    jobs/<task_id>/chunks/<n>.npy   chunk n of a long recording, cut from audio.npy

Everything of a job lies under ``jobs/<task_id>/``: ``delete_job`` removes it when the job is
final, and a janitor compares ``list_job_ids`` with the jobs that still exist.

Writers stream: a folder's writer writes a hidden temporary file renamed into place on
``close``; a bucket's writer sends a multipart upload part by part (``part_size`` bytes held at
a time) and completes it on ``close``. Either way an object appears whole or not at all, and a
reader never sees half an upload. Workers do not read a bucket in place: ``scratch_copy``
fetches an object into ``SCRATCH_DIR`` and removes the copy when done (a folder's objects are
read where they are).

Failures speak the service's language: the store down, or refusing these credentials, or a
bucket that does not exist and may not be created, is ``StorageUnavailable`` (a 503, retried);
an object that is not there is ``StoredFileMissing``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from pipeline.errors import SettingsError, StorageUnavailable, StoredFileMissing

S3Client = Any  # boto3's client class is made at run time; no stubs are installed

log = logging.getLogger(__name__)

JOBS = "jobs"
# A key's parts: no empty part, no "." or "..", nothing hidden (the folder's temporary files
# start with a dot), no characters that a file system or a URL would read differently.
_PART = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}")
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
MiB = 1 << 20


def job_prefix(task_id: str) -> str:
    _check_part(task_id)
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


def _check_part(part: str) -> None:
    if not _PART.fullmatch(part):
        raise ValueError(f"{part!r} cannot be part of a storage key")


def _check_key(key: str) -> str:
    for part in key.split("/"):
        _check_part(part)
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
                raise _missing(key)
            yield local
            return
        scratch_dir.mkdir(parents=True, exist_ok=True)
        dest = scratch_dir / f"{uuid.uuid4().hex}-{key.rsplit('/', 1)[-1]}"
        try:
            yield self.fetch(key, dest)
        finally:
            dest.unlink(missing_ok=True)


def from_url(url: str | Path) -> Storage:
    """The storage ``STORAGE_URL`` names: ``s3://bucket[/prefix]``, ``file:///folder`` or a
    folder path."""
    parsed = parse_url(url)
    if isinstance(parsed, Path):
        return LocalStorage(parsed)
    return S3Storage(*parsed)


def parse_url(url: str | Path) -> Path | tuple[str, str]:
    """A folder, or (bucket, prefix); a ``SettingsError`` naming STORAGE_URL when it is neither.
    Builds no client, so the settings check it at start-up for nothing."""
    text = str(url).strip()
    if not text:
        raise SettingsError("STORAGE_URL is empty: give a folder or s3://bucket/prefix")
    if text.startswith("s3://"):
        bucket, _, prefix = text[len("s3://"):].partition("/")
        if not _BUCKET.fullmatch(bucket):
            raise SettingsError(
                f"STORAGE_URL {text!r}: {bucket!r} is not an S3 bucket name (3 to 63 lower-case "
                "letters, digits, dots and hyphens)"
            )
        prefix = prefix.strip("/")
        if prefix:
            try:
                _check_key(prefix)
            except ValueError as exc:
                raise SettingsError(f"STORAGE_URL {text!r}: the prefix {exc}") from exc
        return bucket, prefix
    if text.startswith("file://"):
        text = text[len("file://"):]
    elif "://" in text:
        raise SettingsError(f"STORAGE_URL {text!r}: use a folder or s3://bucket/prefix")
    return Path(text)


def _missing(key: str) -> StoredFileMissing:
    what = "uploaded file" if key.endswith("/upload") else f"file {key.rsplit('/', 1)[-1]}"
    return StoredFileMissing(
        f"The job's {what} is not in storage (removed, or written where this worker cannot "
        "see it); upload the file again."
    )


# -- a local folder ---------------------------------------------------------------------------
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
        return self.root / _check_key(key)

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
        partial = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.partial")
        try:
            shutil.copyfile(source, partial)
            os.replace(partial, dest)
        except FileNotFoundError as exc:
            partial.unlink(missing_ok=True)
            raise _missing(key) from exc
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
            raise _missing(key) from exc

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
            if entry.is_dir() and _PART.fullmatch(entry.name) and any(
                    p.is_file() for p in entry.rglob("*")):
                yield entry.name


# -- an S3-compatible bucket ------------------------------------------------------------------
_REFUSED = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken",
            "ExpiredToken", "AccountProblem", "AllAccessDisabled", "403"}
_NOT_FOUND = {"NoSuchKey", "NotFound", "404"}


class S3Storage(Storage):
    """Objects in ``bucket`` under ``prefix``, through boto3 and its standard environment."""

    def __init__(self, bucket: str, prefix: str = "", *, part_size: int = 8 * MiB,
                 client: S3Client | None = None) -> None:
        # S3 wants parts of at least 5 MiB (all but the last) and at most 10 000 of them.
        if part_size < 5 * MiB:
            raise ValueError("an S3 multipart part is at least 5 MiB")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.part_size = part_size
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self._client = client if client is not None else _make_client()
        self._bucket_ready = False

    @property
    def client(self) -> S3Client:
        return self._client

    @property
    def endpoint(self) -> str:
        return str(self._client.meta.endpoint_url)

    def _name(self, key: str, *, folder: bool = False) -> str:
        """The object name of ``key`` (or, with ``folder``, of a prefix ending in "/")."""
        _check_key(key.removesuffix("/") if folder else key)
        return f"{self.prefix}/{key}" if self.prefix else key

    @contextlib.contextmanager
    def _errors(self, doing: str, key: str | None = None) -> Iterator[None]:
        """Turn botocore's exceptions into the service's: unavailable, or missing."""
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        try:
            yield
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            if key is not None and code in _NOT_FOUND:
                raise _missing(key) from exc
            if code == "NoSuchBucket":
                self._bucket_ready = False
                raise StorageUnavailable(
                    f"The bucket {self.bucket!r} does not exist at {self.endpoint}."
                ) from exc
            if code in _REFUSED:
                raise StorageUnavailable(
                    f"The object store at {self.endpoint} refused access to bucket "
                    f"{self.bucket!r} ({code}) when asked to {doing}: check AWS_ACCESS_KEY_ID, "
                    "AWS_SECRET_ACCESS_KEY and what these credentials may do."
                ) from exc
            raise StorageUnavailable(
                f"The object store at {self.endpoint} failed to {doing} ({code or 'error'}: "
                f"{error.get('Message', '')})."
            ) from exc
        except NoCredentialsError as exc:
            raise StorageUnavailable(
                "No credentials for the object store: set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY (or another source boto3 reads)."
            ) from exc
        except BotoCoreError as exc:
            # Connection refused, DNS, timeouts: the store is down or unreachable.
            raise StorageUnavailable(
                f"The object store at {self.endpoint} does not answer ({type(exc).__name__}); "
                f"could not {doing}."
            ) from exc

    def check(self) -> None:
        from botocore.exceptions import ClientError

        with self._errors("reach the bucket"):
            try:
                self._client.head_bucket(Bucket=self.bucket)
            except ClientError as exc:
                if str(exc.response.get("Error", {}).get("Code")) not in ("404", "NoSuchBucket"):
                    raise
                self._create_bucket()
        self._bucket_ready = True

    def _create_bucket(self) -> None:
        from botocore.exceptions import ClientError

        region = self._client.meta.region_name
        try:
            if region and region != "us-east-1":
                self._client.create_bucket(
                    Bucket=self.bucket,
                    CreateBucketConfiguration={"LocationConstraint": region},
                )
            else:
                self._client.create_bucket(Bucket=self.bucket)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                return  # another process created it first
            raise StorageUnavailable(
                f"The bucket {self.bucket!r} does not exist at {self.endpoint} and could not be "
                f"created ({code}): create it, or give credentials that may."
            ) from exc
        log.info("created bucket %s at %s", self.bucket, self.endpoint)

    def _ready(self) -> None:
        if not self._bucket_ready:
            self.check()

    def open_writer(self, key: str) -> ObjectWriter:
        self._ready()
        return _S3Writer(self, key, self._name(key))

    def put_file(self, key: str, path: Path) -> None:
        self._ready()
        with self._errors("store an object"):
            self._client.upload_file(str(path), self.bucket, self._name(key), Config=self._transfer())

    def fetch(self, key: str, dest: Path) -> Path:
        partial = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.partial")
        try:
            with self._errors("read an object", key):
                self._client.download_file(self.bucket, self._name(key), str(partial),
                                           Config=self._transfer())
            os.replace(partial, dest)
        finally:
            partial.unlink(missing_ok=True)
        return dest

    def _transfer(self) -> Any:
        from boto3.s3.transfer import TransferConfig

        # A few parts in flight: fast enough, and a bounded amount of memory.
        return TransferConfig(multipart_threshold=self.part_size, multipart_chunksize=self.part_size,
                              max_concurrency=4, use_threads=True)

    def exists(self, key: str) -> bool:
        try:
            self.size(key)
        except StoredFileMissing:
            return False
        return True

    def size(self, key: str) -> int:
        with self._errors("read an object", key):
            head = self._client.head_object(Bucket=self.bucket, Key=self._name(key))
        return int(head["ContentLength"])

    def delete_job(self, task_id: str) -> int:
        prefix = self._name(job_prefix(task_id), folder=True)
        deleted = 0
        with self._errors("delete objects"):
            pages = self._client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
            for page in pages:
                keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
                if keys:
                    answer = self._client.delete_objects(Bucket=self.bucket,
                                                         Delete={"Objects": keys, "Quiet": True})
                    failed = answer.get("Errors", [])
                    if failed:
                        raise StorageUnavailable(
                            f"The object store at {self.endpoint} kept {len(failed)} objects of job "
                            f"{task_id} ({failed[0].get('Code')})."
                        )
                    deleted += len(keys)
            # An upload cut off half-way leaves parts that cost space and show in no listing.
            for upload in self._unfinished(prefix):
                self._client.abort_multipart_upload(Bucket=self.bucket, Key=upload["Key"],
                                                    UploadId=upload["UploadId"])
        return deleted

    def _unfinished(self, prefix: str) -> Iterator[dict[str, Any]]:
        pages = self._client.get_paginator("list_multipart_uploads").paginate(Bucket=self.bucket, Prefix=prefix)
        for page in pages:
            yield from page.get("Uploads", [])

    def list_job_ids(self) -> Iterator[str]:
        # Listed object by object, not by "folders": some stores (SeaweedFS) keep a folder
        # after its last object is deleted, and a job with no objects is no janitor's work.
        jobs = self._name(JOBS + "/", folder=True)
        seen: set[str] = set()
        with self._errors("list objects"):
            pages = self._client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=jobs)
            for page in pages:
                for item in page.get("Contents", []):
                    seen.add(item["Key"][len(jobs):].split("/", 1)[0])
            for upload in self._unfinished(jobs):
                seen.add(upload["Key"][len(jobs):].split("/", 1)[0])
        yield from sorted(task for task in seen if _PART.fullmatch(task))


class _S3Writer(ObjectWriter):
    """One object sent as it is written: a single PUT when it ends within the first part,
    else a multipart upload, one ``part_size`` part in memory at a time."""

    def __init__(self, storage: S3Storage, key: str, name: str) -> None:
        super().__init__(key)
        self._storage = storage
        self._client = storage.client
        self._name = name
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []

    def write(self, data: bytes | bytearray | memoryview) -> int:
        if self._done:
            raise ValueError("write to a closed object writer")
        self._buffer += data
        self.size += len(data)
        while len(self._buffer) >= self._storage.part_size:
            self._send_part(self._storage.part_size)
        return len(data)

    def flush(self) -> None:
        """Parts are sent when full; the rest waits for ``close``."""

    def _send_part(self, length: int) -> None:
        with self._storage._errors("store an object"):
            if self._upload_id is None:
                started = self._client.create_multipart_upload(Bucket=self._storage.bucket, Key=self._name)
                self._upload_id = started["UploadId"]
            number = len(self._parts) + 1
            body = bytes(self._buffer[:length])
            sent = self._client.upload_part(Bucket=self._storage.bucket, Key=self._name,
                                            UploadId=self._upload_id, PartNumber=number, Body=body)
        del self._buffer[:length]
        self._parts.append({"PartNumber": number, "ETag": sent["ETag"]})

    def _commit(self) -> None:
        with self._storage._errors("store an object"):
            if self._upload_id is None:
                self._client.put_object(Bucket=self._storage.bucket, Key=self._name, Body=bytes(self._buffer))
            else:
                if self._buffer:
                    self._send_part(len(self._buffer))
                self._client.complete_multipart_upload(
                    Bucket=self._storage.bucket, Key=self._name, UploadId=self._upload_id,
                    MultipartUpload={"Parts": self._parts},
                )
        self._buffer = bytearray()

    def _discard(self) -> None:
        self._buffer = bytearray()
        if self._upload_id is not None:
            # Best effort: the store may be what failed; delete_job aborts what is left.
            with contextlib.suppress(Exception):
                self._client.abort_multipart_upload(Bucket=self._storage.bucket, Key=self._name,
                                                    UploadId=self._upload_id)


def _make_client() -> S3Client:
    """An S3 client from boto3's standard environment, with short timeouts so that a store
    that is down is reported in seconds, and path-style addresses for any endpoint but AWS's
    own (S3-compatible servers rarely resolve bucket names as host names)."""
    import boto3
    from botocore.config import Config

    session = boto3.session.Session()
    config = Config(connect_timeout=5, read_timeout=60,
                    retries={"max_attempts": 3, "mode": "standard"})
    client = session.client("s3", config=config)
    if "amazonaws.com" not in str(client.meta.endpoint_url):
        client = session.client("s3", config=config.merge(Config(s3={"addressing_style": "path"})))
    return client
