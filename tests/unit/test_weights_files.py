"""pipeline/worker/weights/files.py: model files written under a temp name and renamed when complete."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.worker.weights.files import atomic_write, copy_atomically


def leftovers(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir() if path.name.startswith("."))


def test_the_target_appears_only_once_fully_written(tmp_path: Path) -> None:
    target = tmp_path / "cache" / "model.bin"  # the folder does not exist yet
    with atomic_write(target) as handle:
        handle.write(b"first half ")
        assert not target.exists()
        [temp] = leftovers(target.parent)
        assert temp.startswith(".model.bin.") and temp.endswith(".tmp")
        handle.write(b"second half")
    assert target.read_bytes() == b"first half second half"
    assert leftovers(target.parent) == []


def test_the_written_file_is_readable_by_the_services_other_processes(tmp_path: Path) -> None:
    target = tmp_path / "model.bin"
    with atomic_write(target) as handle:
        handle.write(b"x")
    assert target.stat().st_mode & 0o777 == 0o644


def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "model.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="disk full"), atomic_write(target) as handle:
        handle.write(b"new but incomplete")
        raise RuntimeError("disk full")
    assert target.read_bytes() == b"old"
    assert leftovers(tmp_path) == []


def test_a_rewrite_replaces_the_file_whole(tmp_path: Path) -> None:
    target = tmp_path / "model.bin"
    target.write_bytes(b"a much longer old content")
    with atomic_write(target) as handle:
        handle.write(b"short")
    assert target.read_bytes() == b"short"


def test_copy_atomically_copies_every_byte(tmp_path: Path) -> None:
    source = tmp_path / "source.bin"
    payload = bytes(range(256)) * 9000  # over two copy buffers
    source.write_bytes(payload)
    copy_atomically(source, tmp_path / "copies" / "target.bin")
    assert (tmp_path / "copies" / "target.bin").read_bytes() == payload
    assert leftovers(tmp_path / "copies") == []


def test_copying_a_missing_source_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        copy_atomically(tmp_path / "absent.bin", tmp_path / "target.bin")
    assert sorted(path.name for path in tmp_path.iterdir()) == []
