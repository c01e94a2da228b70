"""pipeline/uploads.py: the hashing upload writer and the per-job file names."""

from __future__ import annotations

import hashlib
import io
import os
import stat
from pathlib import Path

import pytest

from pipeline.uploads import HashingWriter, audio_path, remove_job_files, upload_path


def test_sha256_and_size_match_hashlib_over_several_writes(tmp_path: Path) -> None:
    chunks = [b"", b"RIFF", os.urandom(65_536), b"\x00" * 10, os.urandom(1), os.urandom(300_001)]
    target = tmp_path / "t.upload"
    writer = HashingWriter(target)
    for chunk in chunks:
        assert writer.write(chunk) == len(chunk)
    writer.flush()
    writer.close()
    data = b"".join(chunks)
    assert writer.sha256 == hashlib.sha256(data).hexdigest()
    assert writer.size == len(data) == writer.tell()
    assert target.read_bytes() == data


def test_empty_upload(tmp_path: Path) -> None:
    writer = HashingWriter(tmp_path / "e.upload")
    writer.close()
    assert writer.size == 0
    assert writer.sha256 == hashlib.sha256(b"").hexdigest()
    assert (tmp_path / "e.upload").read_bytes() == b""


def test_o_excl_refuses_an_existing_path(tmp_path: Path) -> None:
    target = tmp_path / "taken.upload"
    target.write_bytes(b"someone else's")
    with pytest.raises(FileExistsError):
        HashingWriter(target)
    assert target.read_bytes() == b"someone else's"


def test_o_excl_refuses_a_symlink(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep")
    link = tmp_path / "link.upload"
    link.symlink_to(victim)
    with pytest.raises(FileExistsError):
        HashingWriter(link)
    assert victim.read_bytes() == b"keep"


def test_file_is_not_world_readable(tmp_path: Path) -> None:
    writer = HashingWriter(tmp_path / "p.upload")
    writer.close()
    assert stat.S_IMODE((tmp_path / "p.upload").stat().st_mode) & stat.S_IROTH == 0


def test_seek_to_start_is_allowed_and_other_seeks_refused(tmp_path: Path) -> None:
    writer = HashingWriter(tmp_path / "s.upload")
    writer.write(b"hello")
    assert writer.seek(0) == 0
    assert writer.seek(0, io.SEEK_SET) == 0
    for offset, whence in [(1, io.SEEK_SET), (0, io.SEEK_END), (0, io.SEEK_CUR), (-1, io.SEEK_END)]:
        with pytest.raises(OSError):
            writer.seek(offset, whence)
    # Rewinding does not rewrite or re-hash anything.
    writer.write(b" world")
    writer.close()
    assert (tmp_path / "s.upload").read_bytes() == b"hello world"
    assert writer.sha256 == hashlib.sha256(b"hello world").hexdigest()


def test_read_is_refused(tmp_path: Path) -> None:
    writer = HashingWriter(tmp_path / "r.upload")
    with pytest.raises(OSError):
        writer.read()
    writer.close()


def test_close_is_idempotent(tmp_path: Path) -> None:
    writer = HashingWriter(tmp_path / "c.upload")
    assert writer.closed is False
    writer.close()
    writer.close()
    assert writer.closed is True
    with pytest.raises(ValueError):
        writer.write(b"late")


def test_job_file_names(tmp_path: Path) -> None:
    assert upload_path(tmp_path, "abc") == tmp_path / "abc.upload"
    assert audio_path(tmp_path, "abc") == tmp_path / "abc.f32.npy"
    assert upload_path(tmp_path, "abc") != audio_path(tmp_path, "abc")


def test_remove_job_files_removes_only_that_jobs_files(tmp_path: Path) -> None:
    for task in ("a1", "b2"):
        upload_path(tmp_path, task).write_bytes(b"u")
        audio_path(tmp_path, task).write_bytes(b"n")
    unrelated = tmp_path / "a1.txt"
    unrelated.write_text("x")
    remove_job_files(tmp_path, "a1")
    assert not upload_path(tmp_path, "a1").exists()
    assert not audio_path(tmp_path, "a1").exists()
    assert upload_path(tmp_path, "b2").exists() and audio_path(tmp_path, "b2").exists()
    assert unrelated.exists()


def test_remove_job_files_tolerates_missing_files(tmp_path: Path) -> None:
    remove_job_files(tmp_path, "never-existed")
    upload_path(tmp_path, "half").write_bytes(b"u")
    remove_job_files(tmp_path, "half")
    remove_job_files(tmp_path, "half")
    assert list(tmp_path.iterdir()) == []


def test_writer_then_remove(tmp_path: Path) -> None:
    writer = HashingWriter(upload_path(tmp_path, "job"))
    writer.write(b"data")
    writer.close()
    remove_job_files(tmp_path, "job")
    assert list(tmp_path.iterdir()) == []
    # The same name can be written again once removed.
    HashingWriter(upload_path(tmp_path, "job")).close()
