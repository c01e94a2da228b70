"""pipeline/storage/local.py: objects as files under one folder, written under hidden names and
renamed into place, keys kept inside the folder, and a janitor's view of what jobs hold files."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from pipeline.errors import StoredFileMissing
from pipeline.storage.base import audio_key, chunk_key, upload_key
from pipeline.storage.local import LocalStorage


@pytest.fixture
def store(tmp_path: Path) -> LocalStorage:
    storage = LocalStorage(tmp_path / "deep" / "store")
    storage.check()
    return storage


def test_check_makes_the_jobs_folder_and_the_url_is_the_folder(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "a" / "b")
    storage.check()
    assert (tmp_path / "a" / "b" / "jobs").is_dir() and storage.url == str(tmp_path / "a" / "b")


def test_an_aborted_writer_leaves_no_file_and_no_job(store: LocalStorage) -> None:
    writer = store.open_writer(upload_key("t1"))
    writer.write(b"half an upload")
    writer.abort()
    folder = store.root / "jobs" / "t1"
    assert list(folder.iterdir()) == []
    # The empty folder it leaves is no janitor's work.
    assert list(store.list_job_ids()) == []


def test_a_writer_killed_before_close_leaves_a_job_that_delete_removes(store: LocalStorage) -> None:
    writer = store.open_writer(upload_key("t2"))
    writer.write(b"never closed")
    writer.flush()
    assert not store.exists(upload_key("t2"))
    # Its hidden partial file is all that is there, and still counts as the job's.
    assert list(store.list_job_ids()) == ["t2"]
    assert store.delete_job("t2") == 1
    assert list(store.list_job_ids()) == [] and not (store.root / "jobs" / "t2").exists()
    writer.abort()  # the partial is already gone: not an error


def test_a_key_cannot_reach_outside_the_folder(store: LocalStorage, tmp_path: Path) -> None:
    for key in ("../outside", "jobs/../../outside", "/etc/passwd", "jobs/t/.hidden"):
        with pytest.raises(ValueError, match="cannot be part of a storage key"):
            store.open_writer(key)
        with pytest.raises(ValueError):
            store.exists(key)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deep"]


def test_a_folder_is_not_an_object(store: LocalStorage) -> None:
    with store.open_writer(chunk_key("t3", 0)) as writer:
        writer.write(b"c")
    assert store.exists(chunk_key("t3", 0))
    assert not store.exists("jobs/t3/chunks")


def test_move_renames_into_place_making_the_job_folder(store: LocalStorage, tmp_path: Path) -> None:
    source = tmp_path / "audio.npy"
    source.write_bytes(b"samples")
    inode = source.stat().st_ino
    store.move_file(audio_key("t4"), source)
    target = store.root / "jobs" / "t4" / "audio.npy"
    assert not source.exists() and target.read_bytes() == b"samples"
    assert target.stat().st_ino == inode  # renamed, not copied


def test_move_across_file_systems_copies_then_removes(store: LocalStorage, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "scratch.npy"
    source.write_bytes(b"from another disk")
    rename = os.replace

    def cross_device(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        # Only the rename of the scratch file itself crosses disks; the writer's own commit does not.
        if Path(src) == source:
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        rename(src, dst)

    monkeypatch.setattr(os, "replace", cross_device)
    store.move_file(audio_key("t5"), source)
    assert not source.exists() and (store.root / "jobs" / "t5" / "audio.npy").read_bytes() == b"from another disk"
    assert [p.name for p in (store.root / "jobs" / "t5").iterdir()] == ["audio.npy"]  # no partial left


def test_fetch_replaces_an_existing_copy_whole(store: LocalStorage, tmp_path: Path) -> None:
    with store.open_writer(upload_key("t6")) as writer:
        writer.write(b"new bytes")
    dest = tmp_path / "copy"
    dest.write_bytes(b"an older, longer copy of something")
    assert store.fetch(upload_key("t6"), dest) == dest
    assert dest.read_bytes() == b"new bytes"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy", "deep"]


def test_fetch_tells_a_missing_object_from_a_missing_destination(store: LocalStorage, tmp_path: Path) -> None:
    with pytest.raises(StoredFileMissing):
        store.fetch(upload_key("never-stored"), tmp_path / "copy")
    with store.open_writer(upload_key("t7")) as writer:
        writer.write(b"stored")
    # The upload is there: a destination folder that is gone is the host's problem, and must not
    # tell the client to upload again.
    with pytest.raises(FileNotFoundError) as caught:
        store.fetch(upload_key("t7"), tmp_path / "gone" / "copy")
    assert not isinstance(caught.value, StoredFileMissing)


def test_a_scratch_copy_is_the_object_itself(store: LocalStorage, tmp_path: Path) -> None:
    with store.open_writer(audio_key("t7")) as writer:
        writer.write(b"samples")
    scratch = tmp_path / "scratch"
    with store.scratch_copy(audio_key("t7"), scratch) as local:
        assert local == store.local_path(audio_key("t7")) == store.root / "jobs" / "t7" / "audio.npy"
    assert local.exists() and not scratch.exists()


def test_job_ids_are_listed_sorted_skipping_what_no_job_could_be(store: LocalStorage) -> None:
    for task in ("b-job", "a-job"):
        with store.open_writer(upload_key(task)) as writer:
            writer.write(b"x")
    jobs = store.root / "jobs"
    (jobs / ".trash").mkdir()
    (jobs / ".trash" / "file").write_bytes(b"x")
    (jobs / "not a job").mkdir()
    (jobs / "not a job" / "file").write_bytes(b"x")
    (jobs / "stray-file").write_bytes(b"x")
    assert list(store.list_job_ids()) == ["a-job", "b-job"]


def test_a_store_never_checked_lists_nothing_and_deletes_nothing(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "absent")
    assert list(storage.list_job_ids()) == []
    assert storage.delete_job("t8") == 0
    assert not (tmp_path / "absent").exists()
