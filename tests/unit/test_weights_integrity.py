"""pipeline/worker/weights/integrity.py: sha256 of model files, remembered per file version, and the
size and digest check with its messages."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from pipeline.errors import ModelIntegrityError
from pipeline.worker.weights.integrity import ExpectedFile, remember, sha256_of, verify

ORIGIN = "the example-models 1.0 package"
REMEDY = "Reinstall it."


def written(path: Path, data: bytes) -> ExpectedFile:
    path.write_bytes(data)
    return ExpectedFile(path.name, len(data), hashlib.sha256(data).hexdigest())


def test_sha256_of_is_the_files_digest(tmp_path: Path) -> None:
    path = tmp_path / "model.bin"
    data = b"\x00\x01" * 700_000  # more than one read buffer
    path.write_bytes(data)
    assert sha256_of(path) == hashlib.sha256(data).hexdigest()


def test_a_remembered_digest_is_trusted_without_reading_the_file(tmp_path: Path) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(b"just written")
    remember(path, "0" * 64)
    assert sha256_of(path) == "0" * 64


def test_a_file_rewritten_with_another_size_is_hashed_again(tmp_path: Path) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(b"one")
    assert sha256_of(path) == hashlib.sha256(b"one").hexdigest()
    path.write_bytes(b"three")
    assert sha256_of(path) == hashlib.sha256(b"three").hexdigest()


def test_the_released_file_passes(tmp_path: Path) -> None:
    expected = written(tmp_path / "config.json", b'{"a": 1}')
    verify(tmp_path / "config.json", expected, ORIGIN, REMEDY)


def test_a_missing_file_names_the_origin_the_file_and_the_remedy(tmp_path: Path) -> None:
    expected = ExpectedFile("config.json", 8, "0" * 64)
    path = tmp_path / "config.json"
    with pytest.raises(ModelIntegrityError) as refused:
        verify(path, expected, ORIGIN, REMEDY)
    assert refused.value.message == f"{ORIGIN} lacks config.json (looked at {path}). {REMEDY}"
    assert refused.value.__cause__ is None and refused.value.__suppress_context__


def test_a_file_of_the_wrong_size_is_refused_without_hashing(tmp_path: Path) -> None:
    path = tmp_path / "model.bin"
    expected = written(path, b"released")
    path.write_bytes(b"truncat")
    with pytest.raises(ModelIntegrityError) as refused:
        verify(path, expected, ORIGIN, REMEDY)
    assert refused.value.message == f"{path} ({ORIGIN}) is 7 bytes, not the 8 it was released with. {REMEDY}"


def test_a_file_of_the_right_size_but_other_bytes_is_refused_with_both_digests(tmp_path: Path) -> None:
    path = tmp_path / "model.bin"
    expected = written(path, b"released")
    path.write_bytes(b"replaced")
    with pytest.raises(ModelIntegrityError) as refused:
        verify(path, expected, ORIGIN, REMEDY)
    found = hashlib.sha256(b"replaced").hexdigest()
    assert refused.value.message == (f"{path} ({ORIGIN}) has sha256 {found}, not the released {expected.sha256}: "
                                     f"the file is damaged or was replaced. {REMEDY}")
    assert refused.value.code == "model_integrity_error" and not refused.value.retryable
