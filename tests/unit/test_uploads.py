"""pipeline/uploads.py: the hashing upload sink (into a folder and into a real S3 server), the
per-job file names, removing a job's files, and the janitor."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest

from pipeline.storage import LocalStorage, upload_key
from pipeline.uploads import UploadSink, audio_path, remove_job_files, upload_path


def test_a_folder_upload_is_probed_where_it_is_stored(local: LocalStorage, tmp_path: Path) -> None:
    sink = UploadSink(local, "t3", tmp_path / "scratch")
    sink.write(b"abc")
    sink.close()
    assert sink.local_path == local.local_path(upload_key("t3"))
    assert not (tmp_path / "scratch").exists(), "no copy is made of a folder store's upload"
    sink.drop_copy()
    assert sink.local_path.read_bytes() == b"abc"


def test_seek_to_start_is_allowed_and_other_seeks_refused(local: LocalStorage, tmp_path: Path) -> None:
    sink = UploadSink(local, "s", tmp_path / "scratch")
    sink.write(b"hello")
    assert sink.seek(0) == 0
    assert sink.seek(0, io.SEEK_SET) == 0
    for offset, whence in [(1, io.SEEK_SET), (0, io.SEEK_END), (0, io.SEEK_CUR), (-1, io.SEEK_END)]:
        with pytest.raises(OSError):
            sink.seek(offset, whence)
    # Rewinding does not rewrite or re-hash anything.
    sink.write(b" world")
    sink.close()
    assert sink.local_path.read_bytes() == b"hello world"
    assert sink.sha256 == hashlib.sha256(b"hello world").hexdigest()


def test_read_is_refused(local: LocalStorage, tmp_path: Path) -> None:
    sink = UploadSink(local, "r", tmp_path / "scratch")
    with pytest.raises(OSError):
        sink.read()
    sink.abort()


def test_close_is_idempotent(local: LocalStorage, tmp_path: Path) -> None:
    sink = UploadSink(local, "c", tmp_path / "scratch")
    assert sink.closed is False
    sink.close()
    sink.close()
    assert sink.closed is True
    with pytest.raises(ValueError):
        sink.write(b"late")


def test_job_file_names(tmp_path: Path) -> None:
    assert upload_path(tmp_path, "abc") == tmp_path / "jobs" / "abc" / "upload"
    assert upload_path(tmp_path, "abc").parent.is_dir()  # made, for callers that write there
    assert audio_path(tmp_path, "abc") == tmp_path / "jobs" / "abc" / "audio.npy"


def test_remove_job_files_with_the_store_down_is_left_to_the_janitor(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")

    class Down(LocalStorage):
        def delete_job(self, task_id: str) -> int:
            from pipeline.errors import StorageUnavailable

            raise StorageUnavailable("down")

    assert remove_job_files(Down(blocker), "a1") is False
