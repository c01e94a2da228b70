"""pipeline/worker/weights/resolve.py: model names to what each engine loads, and the cache of
checkpoints converted from local CTranslate2 folders (the conversion itself is stubbed)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from pipeline.errors import ModelNotFound
from pipeline.worker.weights import resolve
from pipeline.worker.weights.resolve import resolve_ctranslate2, resolve_openai


def ctranslate2_folder(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "model.bin").write_bytes(b"weights")
    return path


@pytest.fixture
def conversions(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Path, Path]]:
    """Each (folder, checkpoint) converted; the stand-in writes a small file where the real one would."""
    done: list[tuple[Path, Path]] = []

    def convert(model_dir: Path, out_path: Path) -> Path:
        done.append((model_dir, out_path))
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_bytes(b"checkpoint")
        return out_path

    monkeypatch.setattr(resolve, "ctranslate2_to_openai_checkpoint", convert)
    return done


def test_a_hub_name_goes_to_each_engine_unchanged(tmp_path: Path, conversions: list[tuple[Path, Path]]) -> None:
    assert resolve_ctranslate2("Systran/faster-whisper-small", tmp_path) == "Systran/faster-whisper-small"
    assert resolve_openai("large-v3", tmp_path) == "large-v3"
    assert conversions == []


def test_a_local_ctranslate2_folder_is_loaded_in_place_by_faster_whisper(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = ctranslate2_folder(tmp_path / "home" / "models" / "mine")
    assert resolve_ctranslate2(str(folder), tmp_path / "cache") == str(folder)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert resolve_ctranslate2("~/models/mine", tmp_path / "cache") == str(folder)


@pytest.mark.parametrize("resolver", [resolve_ctranslate2, resolve_openai])
def test_a_folder_without_model_bin_is_refused(tmp_path: Path, resolver: Callable[[str, Path], str]) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFound, match=r"empty is a folder but holds no CTranslate2 model\.bin"):
        resolver(str(tmp_path / "empty"), tmp_path / "cache")


def test_a_local_pt_checkpoint_is_used_as_it_is(tmp_path: Path, conversions: list[tuple[Path, Path]]) -> None:
    checkpoint = tmp_path / "own.pt"
    checkpoint.write_bytes(b"torch")
    assert resolve_openai(str(checkpoint), tmp_path / "cache") == str(checkpoint)
    assert conversions == []


def test_a_local_folder_is_converted_once_into_the_cache_named_after_its_path(
        tmp_path: Path, conversions: list[tuple[Path, Path]]) -> None:
    folder = ctranslate2_folder(tmp_path / "mine")
    cache = tmp_path / "cache"
    digest = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:16]
    expected = cache / f"openai-local-{digest}.pt"
    assert resolve_openai(str(folder), cache) == str(expected)
    assert resolve_openai(str(folder), cache) == str(expected)
    assert conversions == [(folder, expected)]

    other = ctranslate2_folder(tmp_path / "other")
    assert resolve_openai(str(other), cache) != str(expected)
    assert len(conversions) == 2


def test_a_checkpoint_older_than_its_model_bin_is_converted_again(
        tmp_path: Path, conversions: list[tuple[Path, Path]]) -> None:
    folder = ctranslate2_folder(tmp_path / "mine")
    checkpoint = Path(resolve_openai(str(folder), tmp_path / "cache"))
    later = checkpoint.stat().st_mtime_ns + 1_000_000_000
    os.utime(folder / "model.bin", ns=(later, later))  # the model was replaced after the conversion
    assert resolve_openai(str(folder), tmp_path / "cache") == str(checkpoint)
    assert len(conversions) == 2
