"""An S3-compatible bucket as a store, through boto3."""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pipeline.errors import StorageUnavailable, StoredFileMissing
from pipeline.storage.base import JOBS, PART, MiB, ObjectWriter, Storage, check_key, job_prefix, missing

S3Client = Any  # boto3's client class is made at run time; no stubs are installed

log = logging.getLogger(__name__)

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
        check_key(key.removesuffix("/") if folder else key)
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
                raise missing(key) from exc
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
        yield from sorted(task for task in seen if PART.fullmatch(task))


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
