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

from pathlib import Path

from pipeline.errors import SettingsError
from pipeline.storage.base import (
    BUCKET,
    JOBS,
    MiB,
    ObjectWriter,
    Storage,
    audio_key,
    check_key,
    chunk_key,
    job_prefix,
    speaker_key,
    upload_key,
)
from pipeline.storage.local import LocalStorage
from pipeline.storage.s3 import S3Storage

__all__ = ["JOBS", "LocalStorage", "MiB", "ObjectWriter", "S3Storage", "Storage", "audio_key", "chunk_key",
           "from_url", "job_prefix", "parse_url", "speaker_key", "upload_key"]


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
        if not BUCKET.fullmatch(bucket):
            raise SettingsError(
                f"STORAGE_URL {text!r}: {bucket!r} is not an S3 bucket name (3 to 63 lower-case "
                "letters, digits, dots and hyphens)"
            )
        prefix = prefix.strip("/")
        if prefix:
            try:
                check_key(prefix)
            except ValueError as exc:
                raise SettingsError(f"STORAGE_URL {text!r}: the prefix {exc}") from exc
        return bucket, prefix
    if text.startswith("file://"):
        text = text[len("file://"):]
    elif "://" in text:
        raise SettingsError(f"STORAGE_URL {text!r}: use a folder or s3://bucket/prefix")
    return Path(text)


