"""pipeline/uploads.py: the hashing upload sink (into a folder and into a real S3 server), the
per-job file names, removing a job's files, and the janitor."""

from __future__ import annotations

import hashlib
import os
import stat
import uuid
from pathlib import Path
from typing import cast

import pytest
import redis

from pipeline.jobs import JobStore, State
from pipeline.keys import ORPHANS_KEY
from pipeline.options import TranscribeOptions
from pipeline.storage import Storage, audio_key, chunk_key, from_url, upload_key
from pipeline.tooling.s3 import S3Server
from pipeline.uploads import UploadSink, remove_job_files, scratch_copy_path, sweep_orphans

MB = 1 << 20


@pytest.fixture
def bucket(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> Storage:
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    storage = from_url(f"s3://uploads-{uuid.uuid4().hex[:10]}/svc")
    storage.check()
    return storage


@pytest.fixture(params=["local", "bucket"])
def storage(request: pytest.FixtureRequest) -> Storage:
    found: Storage = request.getfixturevalue(request.param)
    return found


def _stored(storage: Storage, key: str, tmp_path: Path) -> bytes:
    return storage.fetch(key, tmp_path / f"fetched-{uuid.uuid4().hex}").read_bytes()


def test_sha256_and_size_match_hashlib_over_several_writes(storage: Storage, tmp_path: Path) -> None:
    chunks = [b"", b"RIFF", os.urandom(65_536), b"\x00" * 10, os.urandom(1), os.urandom(300_001)]
    sink = UploadSink(storage, "t1", tmp_path / "scratch")
    for chunk in chunks:
        assert sink.write(chunk) == len(chunk)
    sink.flush()
    assert not storage.exists(upload_key("t1")), "the object appears only once complete"
    sink.close()
    data = b"".join(chunks)
    assert sink.sha256 == hashlib.sha256(data).hexdigest()
    assert sink.size == len(data) == sink.tell()
    assert _stored(storage, upload_key("t1"), tmp_path) == data
    # The probe's local file holds the same bytes: the object itself, or the scratch copy.
    assert sink.local_path.read_bytes() == data


def test_a_bucket_upload_keeps_a_scratch_copy_for_the_probe_until_dropped(bucket: Storage, tmp_path: Path) -> None:
    scratch = tmp_path / "scratch"
    sink = UploadSink(bucket, "t2", scratch)
    assert sink.local_path == scratch_copy_path(scratch, "t2")
    sink.write(b"abc")
    sink.close()
    sink.drop_copy()
    assert not sink.local_path.exists()
    assert bucket.exists(upload_key("t2")), "dropping the copy keeps the stored object"


def test_a_large_upload_goes_multipart_and_is_stored_whole(bucket: Storage, tmp_path: Path) -> None:
    data = os.urandom(19 * MB + 123)  # three parts of 8 MiB, the last short
    sink = UploadSink(bucket, "big", tmp_path / "scratch")
    for at in range(0, len(data), 64 * 1024):
        sink.write(data[at:at + 64 * 1024])
    sink.close()
    assert bucket.size(upload_key("big")) == len(data)
    assert hashlib.sha256(_stored(bucket, upload_key("big"), tmp_path)).hexdigest() == sink.sha256


def test_abort_leaves_nothing(storage: Storage, tmp_path: Path) -> None:
    sink = UploadSink(storage, "gone", tmp_path / "scratch")
    sink.write(os.urandom(9 * MB))  # past one part: a multipart upload is under way in a bucket
    sink.abort()
    assert not storage.exists(upload_key("gone"))
    assert not sink.local_path.exists()
    assert list(storage.list_job_ids()) == []


def test_empty_upload(storage: Storage, tmp_path: Path) -> None:
    sink = UploadSink(storage, "e", tmp_path / "scratch")
    sink.close()
    assert sink.size == 0
    assert sink.sha256 == hashlib.sha256(b"").hexdigest()
    assert _stored(storage, upload_key("e"), tmp_path) == b""


def test_the_scratch_copy_refuses_an_existing_path_or_a_symlink(bucket: Storage, tmp_path: Path) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep")
    scratch_copy_path(scratch, "link").symlink_to(victim)
    with pytest.raises(FileExistsError):
        UploadSink(bucket, "link", scratch)
    assert victim.read_bytes() == b"keep"


def test_scratch_copy_is_not_world_readable(bucket: Storage, tmp_path: Path) -> None:
    sink = UploadSink(bucket, "p", tmp_path / "scratch")
    sink.close()
    assert stat.S_IMODE(sink.local_path.stat().st_mode) & stat.S_IROTH == 0


def test_remove_job_files_removes_only_that_jobs_files(storage: Storage, tmp_path: Path) -> None:
    for task in ("a1", "b2"):
        for key in (upload_key(task), audio_key(task), chunk_key(task, 0)):
            with storage.open_writer(key) as out:
                out.write(b"x")
    assert remove_job_files(storage, "a1") is True
    assert list(storage.list_job_ids()) == ["b2"]
    assert storage.exists(upload_key("b2")) and storage.exists(chunk_key("b2", 0))
    # Again, and for a job that never had files: at-least-once delivery repeats it.
    assert remove_job_files(storage, "a1") is True
    assert remove_job_files(storage, "never-existed") is True


def watched(client: redis.Redis) -> set[str]:
    return set(cast(list[str], client.hkeys(ORPHANS_KEY)))


def test_janitor(storage: Storage, redis_client: redis.Redis) -> None:
    jobs = JobStore(redis_client, result_ttl=600)
    for task in ("running", "final", "orphan", "new-upload"):
        with storage.open_writer(upload_key(task)) as out:
            out.write(b"x")
    jobs.create("running", TranscribeOptions())
    jobs.transition("running", State.EXTRACTING)
    jobs.create("final", TranscribeOptions())
    jobs.transition("final", State.FAILED, error={"code": "x", "message": "x"})

    # First pass: the final job's files go at once; jobless ones are only noted.
    assert sweep_orphans(storage, jobs, redis_client, now=1000.0, grace=60) == 1
    assert list(storage.list_job_ids()) == ["new-upload", "orphan", "running"]
    assert watched(redis_client) == {"new-upload", "orphan"}
    # The upload became a job meanwhile: it is no longer watched, and never removed.
    jobs.create("new-upload", TranscribeOptions())
    assert sweep_orphans(storage, jobs, redis_client, now=1030.0, grace=60) == 0
    assert watched(redis_client) == {"orphan"}
    # Past the grace period, the orphan goes; the jobs still running keep theirs.
    assert sweep_orphans(storage, jobs, redis_client, now=1061.0, grace=60) == 1
    assert list(storage.list_job_ids()) == ["new-upload", "running"]
    assert watched(redis_client) == set()
