"""CTranslate2's ``model.bin``, read with numpy alone (no CTranslate2 needed at runtime).

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

import logging
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.errors import ModelFormatError, ModelNotFound

log = logging.getLogger(__name__)

# The newest model.bin layout this reader knows (CTranslate2's CURRENT_BINARY_VERSION).
SUPPORTED_BINARY_VERSION = 6

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


@dataclass(frozen=True)
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
