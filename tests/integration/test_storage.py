"""pipeline/storage.py: a local folder and a real S3-compatible server (SeaweedFS) behind one
interface; streaming writes, fetches, a job's objects deleted together, and clear errors when
the store is down or refuses."""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.errors import DependencyUnavailable, SettingsError, StorageUnavailable, StoredFileMissing
from pipeline.storage import (
    LocalStorage,
    S3Storage,
    Storage,
    audio_key,
    chunk_key,
    from_url,
    job_prefix,
    upload_key,
)
from pipeline.tooling.s3 import S3Server, free_ports, seaweedfs, stop
from tests.support.measure import run_measured

MB = 1 << 20


def _bucket() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(MB), b""):
            digest.update(block)
    return digest.hexdigest()


@pytest.fixture
def s3_env(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    """boto3's standard environment pointed at the test server, as the admin identity."""
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    return s3_server


@pytest.fixture
def s3(s3_env: S3Server) -> S3Storage:
    storage = from_url(f"s3://{_bucket()}/service")
    assert isinstance(storage, S3Storage)
    storage.check()
    return storage


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    if request.param == "local":
        local = from_url(str(tmp_path / "store"))
        local.check()
        return local
    return request.getfixturevalue("s3")


# -- keys and URLs ----------------------------------------------------------------------------
def test_object_layout() -> None:
    assert upload_key("abc") == "jobs/abc/upload"
    assert audio_key("abc") == "jobs/abc/audio.npy"
    assert chunk_key("abc", 3) == "jobs/abc/chunks/3.npy"
    assert job_prefix("abc") == "jobs/abc/"
    for bad in ("", "..", ".hidden", "a/b", "a b"):
        with pytest.raises(ValueError):
            upload_key(bad)


def test_from_url(tmp_path: Path, s3_env: S3Server) -> None:
    local = from_url(tmp_path)
    assert isinstance(local, LocalStorage) and local.root == tmp_path
    assert isinstance(from_url(f"file://{tmp_path}"), LocalStorage)
    remote = from_url("s3://my-bucket/some/prefix/")
    assert isinstance(remote, S3Storage)
    assert (remote.bucket, remote.prefix, remote.url) == ("my-bucket", "some/prefix", "s3://my-bucket/some/prefix")
    assert remote.endpoint == s3_env.endpoint  # from AWS_ENDPOINT_URL_S3
    assert from_url("s3://my-bucket").url == "s3://my-bucket"
    for bad in ("", "s3://", "s3://Not_A_Bucket/x", "s3://ok-bucket/../up", "http://example.com/x"):
        with pytest.raises(SettingsError) as info:
            from_url(bad)
        assert "STORAGE_URL" in info.value.message


# -- both kinds: the interface ----------------------------------------------------------------
def test_written_object_appears_whole_on_close(storage: Storage, tmp_path: Path) -> None:
    key = upload_key("job1")
    writer = storage.open_writer(key)
    writer.write(b"abc" * 1000)
    assert not storage.exists(key)
    assert list(storage.list_job_ids()) in ([], ["job1"])  # a multipart upload in flight may show
    writer.write(memoryview(b"def"))
    writer.close()
    assert storage.exists(key) and storage.size(key) == 3003
    fetched = storage.fetch(key, tmp_path / "copy")
    assert fetched.read_bytes() == b"abc" * 1000 + b"def"
    assert list(storage.list_job_ids()) == ["job1"]


def test_an_aborted_write_leaves_nothing(storage: Storage) -> None:
    key = upload_key("job2")
    with pytest.raises(RuntimeError), storage.open_writer(key) as writer:
        writer.write(b"x" * (6 * MB))
        raise RuntimeError("client went away")
    writer.abort()  # a second abort is harmless
    assert not storage.exists(key)
    assert list(storage.list_job_ids()) == []
    with storage.open_writer(key) as writer:
        writer.write(b"second try")
    assert storage.size(key) == len(b"second try")


def test_missing_objects_are_reported_as_missing(storage: Storage, tmp_path: Path) -> None:
    key = upload_key("nothing")
    assert not storage.exists(key)
    with pytest.raises(StoredFileMissing) as info:
        storage.fetch(key, tmp_path / "copy")
    assert "uploaded file" in info.value.message and info.value.retryable is False
    assert not (tmp_path / "copy").exists() and list(tmp_path.iterdir()) in ([], [tmp_path / "store"])
    with pytest.raises(StoredFileMissing):
        storage.size(key)
    with pytest.raises(StoredFileMissing), storage.scratch_copy(key, tmp_path / "scratch"):
        pass


def test_put_move_fetch_and_scratch_copies(storage: Storage, tmp_path: Path) -> None:
    source = tmp_path / "audio.npy"
    source.write_bytes(os.urandom(12 * MB + 5))  # more than one part
    storage.put_file(audio_key("job3"), source)
    assert source.exists() and storage.size(audio_key("job3")) == source.stat().st_size
    moved = tmp_path / "chunk.npy"
    moved.write_bytes(b"chunk zero")
    storage.move_file(chunk_key("job3", 0), moved)
    assert not moved.exists()
    scratch = tmp_path / "scratch"
    with storage.scratch_copy(audio_key("job3"), scratch) as local:
        assert _sha256(local) == _sha256(source)
    # A copy is gone after the block; a folder's object is read in place and stays.
    assert not scratch.exists() or list(scratch.iterdir()) == []
    assert storage.exists(audio_key("job3"))
    with storage.scratch_copy(chunk_key("job3", 0), scratch) as local:
        assert local.read_bytes() == b"chunk zero"


def test_delete_job_removes_every_object_of_the_job_only(storage: Storage) -> None:
    for task in ("keep", "drop"):
        for key in (upload_key(task), audio_key(task), chunk_key(task, 0), chunk_key(task, 1)):
            with storage.open_writer(key) as writer:
                writer.write(key.encode())
    assert list(storage.list_job_ids()) == ["drop", "keep"]
    assert storage.delete_job("drop") == 4
    assert list(storage.list_job_ids()) == ["keep"]
    assert not storage.exists(upload_key("drop")) and storage.exists(chunk_key("keep", 1))
    assert storage.delete_job("drop") == 0
    assert storage.delete_job("never-was") == 0


# -- a local folder ---------------------------------------------------------------------------
def test_local_layout_on_disk(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    storage.check()
    with storage.open_writer(upload_key("t1")) as writer:
        writer.write(b"data")
        # Written under a hidden name beside the object, never under the object's own.
        assert [p.name.startswith(".upload.") for p in (tmp_path / "jobs" / "t1").iterdir()] == [True]
    assert (tmp_path / "jobs" / "t1" / "upload").read_bytes() == b"data"
    assert storage.local_path(upload_key("t1")) == tmp_path / "jobs" / "t1" / "upload"


def test_local_storage_that_cannot_be_created_is_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(StorageUnavailable) as info:
        LocalStorage(blocker / "store").check()
    assert info.value.http_status == 503 and str(blocker) in info.value.message


# -- S3 ---------------------------------------------------------------------------------------
def test_bucket_is_created_when_absent(s3_env: S3Server) -> None:
    bucket = _bucket()
    admin = s3_env.client()
    assert bucket not in [b["Name"] for b in admin.list_buckets()["Buckets"]]
    storage = from_url(f"s3://{bucket}")
    storage.check()
    assert bucket in [b["Name"] for b in admin.list_buckets()["Buckets"]]
    storage.check()  # and found the next time
    # Objects land under the prefix, in the documented layout.
    prefixed = from_url(f"s3://{bucket}/team-a")
    with prefixed.open_writer(upload_key("t9")) as writer:
        writer.write(b"x")
    keys = [o["Key"] for o in admin.list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys == ["team-a/jobs/t9/upload"]
    assert list(from_url(f"s3://{bucket}/team-b").list_job_ids()) == []


def test_small_objects_are_one_put_large_ones_multipart(s3: S3Storage) -> None:
    with s3.open_writer(upload_key("small")) as writer:
        writer.write(b"y" * MB)
    with s3.open_writer(upload_key("large")) as writer:
        for _ in range(20):
            writer.write(b"z" * MB)
    head = s3.client.head_object(Bucket=s3.bucket, Key=f"{s3.prefix}/jobs/small/upload")
    assert "-" not in head["ETag"]
    head = s3.client.head_object(Bucket=s3.bucket, Key=f"{s3.prefix}/jobs/large/upload")
    assert head["ETag"].strip('"').endswith("-3") and head["ContentLength"] == 20 * MB  # 8 + 8 + 4 MiB


def test_a_50_mb_upload_streams_without_being_buffered(s3: S3Storage, s3_env: S3Server, tmp_path: Path) -> None:
    result = run_measured('''
        import hashlib, os
        from pipeline.storage import from_url

        storage = from_url(sys.argv[1])
        with storage.open_writer("jobs/warm/upload") as writer:  # client, connection, signing
            writer.write(b"w" * (9 << 20))
        baseline = status("VmRSS")
        was_reset = reset_peak()
        digest = hashlib.sha256()
        block = bytearray(256 * 1024)
        with storage.open_writer("jobs/big/upload") as writer:
            for n in range(200):  # 50 MiB, 256 KiB at a time, as a request body arrives
                block[:8] = n.to_bytes(8, "little")
                digest.update(block)
                writer.write(block)
        report(baseline=baseline, peak=status("VmHWM"), reset=was_reset, sha256=digest.hexdigest(),
               size=writer.size)
    ''', s3.url, timeout=300)
    growth = int(result["peak"]) - int(result["baseline"])  # type: ignore[call-overload]
    # One 8 MiB part held, and copies of it while it is signed and sent; never the 50 MiB.
    assert growth < 30 * MB, f"streaming 50 MiB grew the process by {growth / MB:.0f} MB"
    assert result["size"] == 50 * MB
    key = upload_key("big")
    assert s3.size(key) == 50 * MB
    head = s3.client.head_object(Bucket=s3.bucket, Key=f"{s3.prefix}/{key}")
    assert head["ETag"].strip('"').endswith("-7")  # 6 parts of 8 MiB and the rest
    copy = s3.fetch(key, tmp_path / "big")
    assert _sha256(copy) == result["sha256"]


def test_delete_job_aborts_an_unfinished_upload(s3: S3Storage) -> None:
    writer = s3.open_writer(upload_key("cut-off"))
    writer.write(b"p" * (9 * MB))  # one part sent, then the API process dies
    uploads = s3.client.list_multipart_uploads(Bucket=s3.bucket).get("Uploads", [])
    assert [u["Key"] for u in uploads] == [f"{s3.prefix}/jobs/cut-off/upload"]
    # The janitor sees the job by its unfinished upload, and removing the job ends it.
    assert list(s3.list_job_ids()) == ["cut-off"]
    s3.delete_job("cut-off")
    assert s3.client.list_multipart_uploads(Bucket=s3.bucket).get("Uploads", []) == []
    assert list(s3.list_job_ids()) == []
    assert not s3.exists(upload_key("cut-off"))


# -- S3: refusals and outages -----------------------------------------------------------------
def test_wrong_credentials_are_a_clear_503(s3_env: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    storage = from_url(f"s3://{_bucket()}")
    with pytest.raises(StorageUnavailable) as info:
        storage.check()
    assert isinstance(info.value, DependencyUnavailable) and info.value.http_status == 503
    assert "refused" in info.value.message and "AWS_SECRET_ACCESS_KEY" in info.value.message
    with pytest.raises(StorageUnavailable):
        storage.open_writer(upload_key("t"))


def test_unknown_key_is_refused(s3_env: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "NOBODYKNOWSME")
    with pytest.raises(StorageUnavailable) as info:
        from_url(f"s3://{_bucket()}").check()
    assert "AWS_ACCESS_KEY_ID" in info.value.message


def test_missing_bucket_that_may_not_be_created(s3_env: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in s3_env.env(reader=True).items():
        monkeypatch.setenv(name, value)
    bucket = _bucket()
    with pytest.raises(StorageUnavailable) as info:
        from_url(f"s3://{bucket}").check()
    assert bucket in info.value.message and "could not be created" in info.value.message
    assert bucket not in [b["Name"] for b in s3_env.client().list_buckets()["Buckets"]]


def test_credentials_that_may_read_but_not_write(s3: S3Storage, s3_env: S3Server,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in s3_env.env(reader=True).items():
        monkeypatch.setenv(name, value)
    reader = from_url(s3.url)
    reader.check()  # the bucket exists: reading is allowed
    with pytest.raises(StorageUnavailable) as info, reader.open_writer(upload_key("t")) as writer:
        writer.write(b"data")
    assert "refused" in info.value.message


def test_nothing_listening_is_a_clear_503_within_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    (port,) = free_ports(1)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    started = time.monotonic()
    with pytest.raises(StorageUnavailable) as info:
        from_url("s3://any-bucket").check()
    assert time.monotonic() - started < 10
    assert f"127.0.0.1:{port}" in info.value.message and "does not answer" in info.value.message


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[S3Server]:
    with seaweedfs(tmp_path / "own") as server:
        yield server


def test_a_server_that_stops(own_server: S3Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name, value in own_server.env().items():
        monkeypatch.setenv(name, value)
    storage = from_url(f"s3://{_bucket()}")
    storage.check()
    with storage.open_writer(upload_key("t")) as writer:
        writer.write(b"before the outage")
    stop(own_server)
    with pytest.raises(StorageUnavailable) as info:
        storage.check()
    assert "does not answer" in info.value.message
    with pytest.raises(StorageUnavailable):
        storage.fetch(upload_key("t"), tmp_path / "copy")
    with pytest.raises(StorageUnavailable):
        list(storage.list_job_ids())
