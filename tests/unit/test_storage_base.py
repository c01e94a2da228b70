"""pipeline/storage/base.py: a job's object keys, the writer's all-or-nothing contract, and the
default ``move_file`` and ``scratch_copy`` every store inherits."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pipeline.errors import StoredFileMissing
from pipeline.storage import audio_key, chunk_key, job_prefix, speaker_key, upload_key
from pipeline.storage.base import ObjectWriter, Storage, check_key, missing


class _MemoryWriter(ObjectWriter):
    def __init__(self, key: str, store: MemoryStorage, fail_commit: bool = False) -> None:
        super().__init__(key)
        self._store = store
        self._data = bytearray()
        self._fail_commit = fail_commit
        self.commits = 0
        self.discards = 0

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self._data += data
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        pass

    def _commit(self) -> None:
        self.commits += 1
        if self._fail_commit:
            raise OSError("the store went away")
        self._store.objects[self.key] = bytes(self._data)

    def _discard(self) -> None:
        self.discards += 1
        self._data.clear()


class MemoryStorage(Storage):
    """A store that cannot be read in place, so the base class's fetched-copy path is taken."""

    def __init__(self) -> None:
        self.url = "memory://"
        self.objects: dict[str, bytes] = {}

    def check(self) -> None:
        pass

    def open_writer(self, key: str) -> ObjectWriter:
        return _MemoryWriter(check_key(key), self)

    def put_file(self, key: str, path: Path) -> None:
        self.objects[check_key(key)] = path.read_bytes()

    def fetch(self, key: str, dest: Path) -> Path:
        if key not in self.objects:
            raise missing(key)
        dest.write_bytes(self.objects[key])
        return dest

    def exists(self, key: str) -> bool:
        return key in self.objects

    def size(self, key: str) -> int:
        return len(self.objects[key])

    def delete_job(self, task_id: str) -> int:
        gone = [k for k in self.objects if k.startswith(job_prefix(task_id))]
        for key in gone:
            del self.objects[key]
        return len(gone)

    def list_job_ids(self) -> Iterator[str]:
        yield from sorted({k.split("/")[1] for k in self.objects})


def test_every_object_of_a_job_lies_under_its_prefix() -> None:
    assert job_prefix("t-1") == "jobs/t-1/"
    assert [upload_key("t-1"), audio_key("t-1"), chunk_key("t-1", 0), speaker_key("t-1", 2)] == [
        "jobs/t-1/upload", "jobs/t-1/audio.npy", "jobs/t-1/chunks/0.npy", "jobs/t-1/speakers/2.npy"]


@pytest.mark.parametrize("make", [chunk_key, speaker_key])
def test_a_negative_index_is_refused_naming_it(make: Callable[[str, int], str]) -> None:
    with pytest.raises(ValueError, match="index -1 is negative"):
        make("t", -1)


@pytest.mark.parametrize("task_id", ["", ".", "..", ".hidden", "a/b", "a b", "a%2f", "é", "x" * 201])
def test_a_task_id_that_a_file_system_or_url_would_misread_is_refused(task_id: str) -> None:
    with pytest.raises(ValueError, match="cannot be part of a storage key"):
        job_prefix(task_id)


def test_a_key_is_checked_part_by_part() -> None:
    assert check_key("prefix/jobs/t_1/chunks/3.npy") == "prefix/jobs/t_1/chunks/3.npy"
    assert check_key("x" * 200) == "x" * 200  # the longest part allowed
    for bad in ("jobs//upload", "jobs/../etc", "/jobs/t", "jobs/t/", "jobs/t/.upload.partial"):
        with pytest.raises(ValueError):
            check_key(bad)


def test_a_missing_object_is_told_by_what_it_was() -> None:
    upload = missing(upload_key("t"))
    assert "The job's uploaded file is not in storage" in upload.message and "upload the file again" in upload.message
    assert "The job's file audio.npy is not in storage" in missing(audio_key("t")).message
    assert upload.retryable is False


def test_a_writer_commits_once_and_a_later_abort_changes_nothing() -> None:
    store = MemoryStorage()
    writer = _MemoryWriter(upload_key("t"), store)
    writer.write(b"abc")
    writer.write(memoryview(b"de"))
    assert not writer.closed and store.objects == {}
    writer.close()
    writer.close()
    writer.abort()
    assert writer.closed and (writer.commits, writer.discards, writer.size) == (1, 0, 5)
    assert store.objects == {upload_key("t"): b"abcde"}


def test_a_commit_that_fails_discards_what_was_written_and_raises() -> None:
    store = MemoryStorage()
    writer = _MemoryWriter(upload_key("t"), store, fail_commit=True)
    writer.write(b"abc")
    with pytest.raises(OSError, match="the store went away"):
        writer.close()
    # Not tried again: a second close is a no-op, not a second failure.
    writer.close()
    assert (writer.commits, writer.discards, writer.closed) == (1, 1, True)
    assert store.objects == {}


def test_leaving_a_with_block_by_an_exception_aborts_the_object() -> None:
    store = MemoryStorage()
    with pytest.raises(RuntimeError), store.open_writer(upload_key("t")) as writer:
        writer.write(b"half")
        raise RuntimeError("client went away")
    assert isinstance(writer, _MemoryWriter) and (writer.commits, writer.discards) == (0, 1)
    with store.open_writer(upload_key("t")) as writer:
        writer.write(b"whole")
    assert store.objects == {upload_key("t"): b"whole"}


def test_the_default_move_stores_the_file_then_removes_it(tmp_path: Path) -> None:
    store = MemoryStorage()
    source = tmp_path / "chunk.npy"
    source.write_bytes(b"chunk zero")
    store.move_file(chunk_key("t", 0), source)
    assert store.objects == {chunk_key("t", 0): b"chunk zero"} and not source.exists()


def test_a_scratch_copy_is_removed_after_the_block_even_when_it_fails(tmp_path: Path) -> None:
    store = MemoryStorage()
    store.objects[audio_key("t")] = b"samples"
    scratch = tmp_path / "scratch" / "deeper"  # made when absent
    with store.scratch_copy(audio_key("t"), scratch) as local:
        assert local.parent == scratch and local.name.endswith("-audio.npy")
        assert local.read_bytes() == b"samples"
    assert not local.exists()
    with pytest.raises(RuntimeError), store.scratch_copy(audio_key("t"), scratch) as local:
        raise RuntimeError("the stage failed")
    assert list(scratch.iterdir()) == []
    assert store.objects[audio_key("t")] == b"samples"  # only the copy goes


def test_two_scratch_copies_of_one_object_do_not_collide(tmp_path: Path) -> None:
    store = MemoryStorage()
    store.objects[audio_key("t")] = b"samples"
    with store.scratch_copy(audio_key("t"), tmp_path) as first, store.scratch_copy(audio_key("t"), tmp_path) as second:
        assert first != second and first.exists() and second.exists()


def test_a_scratch_copy_of_a_missing_object_is_stored_file_missing(tmp_path: Path) -> None:
    with pytest.raises(StoredFileMissing), MemoryStorage().scratch_copy(upload_key("t"), tmp_path):
        pass
    assert list(tmp_path.iterdir()) == []
