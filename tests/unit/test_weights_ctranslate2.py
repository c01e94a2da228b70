"""pipeline/worker/weights/ctranslate2.py: CTranslate2's model.bin read with numpy, on small files
written here by the layout its docstring gives, and the int8/int16 dequantization."""

from __future__ import annotations

import logging
import struct
from pathlib import Path

import numpy as np
import pytest

from pipeline.errors import ModelFormatError, ModelNotFound
from pipeline.worker.weights.ctranslate2 import dequantize, read_ctranslate2_file, read_ctranslate2_model

DTYPE_IDS = {np.dtype("<f4"): 0, np.dtype("i1"): 1, np.dtype("<i2"): 2, np.dtype("<i4"): 3, np.dtype("<f2"): 4}


def string(text: str) -> bytes:
    raw = text.encode() + b"\0"
    return struct.pack("<H", len(raw)) + raw


def header(name: str, shape: tuple[int, ...]) -> bytes:
    return string(name) + struct.pack("<B", len(shape)) + b"".join(struct.pack("<I", d) for d in shape)


def model_bin(variables: dict[str, np.ndarray], *, version: int = 6, spec: str = "WhisperSpec", revision: int = 3,
              aliases: dict[str, str] | None = None, dtype_ids: dict[str, int] | None = None) -> bytes:
    """A model.bin as CTranslate2 writes one (``dtype_ids`` overrides an array's dtype id)."""
    out = struct.pack("<I", version)
    if version >= 2:
        out += string(spec) + struct.pack("<I", revision)
    out += struct.pack("<I", len(variables))
    for name, value in variables.items():
        data = value.tobytes()
        out += header(name, value.shape)
        if version >= 4:
            type_id = (dtype_ids or {}).get(name, DTYPE_IDS.get(value.dtype, 0))
            out += struct.pack("<BI", type_id, len(data))
        else:
            out += struct.pack("<BI", value.dtype.itemsize, value.size)
        out += data
    if version >= 3:
        out += struct.pack("<I", len(aliases or {}))
        for alias, target in (aliases or {}).items():
            out += string(alias) + string(target)
    return out


def write(folder: Path, data: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.bin").write_bytes(data)
    return folder


WEIGHT = np.arange(6, dtype=np.float32).reshape(2, 3) / 4
HEADS = np.array(6, dtype=np.int16)


def test_the_header_variables_and_aliases_are_read(tmp_path: Path) -> None:
    scale = np.array([2.0, 4.0], dtype=np.float32)
    stored: dict[str, np.ndarray] = {
        "encoder/w": WEIGHT, "encoder/num_heads": HEADS, "decoder/q": np.array([[2, -4]], np.int8),
        "decoder/q_scale": scale, "half": np.array([1.5], np.float16),
    }
    model = read_ctranslate2_file(write(tmp_path, model_bin(
        stored, aliases={"decoder/projection": "decoder/q", "gone": "missing"})))
    assert (model.binary_version, model.spec, model.spec_revision) == (6, "WhisperSpec", 3)
    assert model.aliases == {"decoder/projection": "decoder/q", "gone": "missing"}
    assert np.array_equal(model.variables["encoder/w"], WEIGHT) and model.variables["encoder/w"].dtype == np.float32
    assert model.variables["encoder/num_heads"].shape == () and int(model.variables["encoder/num_heads"]) == 6
    assert model.variables["half"].dtype == np.float16
    # An alias is the very array it names, and stands for its scale too; one to nothing is dropped.
    assert model.variables["decoder/projection"] is model.variables["decoder/q"]
    assert model.variables["decoder/projection_scale"] is model.variables["decoder/q_scale"]
    assert "gone" not in model.variables


def test_the_file_or_its_folder_may_be_given_and_arrays_are_writable(tmp_path: Path) -> None:
    folder = write(tmp_path / "model", model_bin({"w": WEIGHT}))
    by_file = read_ctranslate2_model(folder / "model.bin")
    by_folder = read_ctranslate2_model(folder)
    assert np.array_equal(by_file["w"], by_folder["w"])
    by_file["w"][0, 0] = 9.0  # arrays are views of a private buffer: callers may change them
    assert by_file["w"][0, 0] == 9.0 and read_ctranslate2_model(folder)["w"][0, 0] == 0.0


def test_bfloat16_is_widened_to_float32(tmp_path: Path) -> None:
    values = np.array([1.0, -2.5, 0.15625], dtype=np.float32)
    bits = (values.view(np.uint32) >> 16).astype("<u2")  # bfloat16: the top half of a float32
    model = read_ctranslate2_model(write(tmp_path, model_bin({"b": bits}, dtype_ids={"b": 5})))
    assert model["b"].dtype == np.float32 and model["b"].tolist() == [1.0, -2.5, 0.15625]


@pytest.mark.parametrize("version", [1, 2, 3])
def test_older_layouts_with_item_sizes_are_read(tmp_path: Path, version: int) -> None:
    stored: dict[str, np.ndarray] = {"w": WEIGHT, "q": np.array([1, -1], np.int8), "h": np.array([3, 4], np.int16)}
    model = read_ctranslate2_file(write(tmp_path, model_bin(stored, version=version)))
    assert model.binary_version == version
    assert model.spec == ("" if version == 1 else "WhisperSpec") and model.spec_revision == (1 if version == 1 else 3)
    assert np.array_equal(model.variables["w"], WEIGHT)
    assert model.variables["q"].dtype == np.int8 and model.variables["h"].tolist() == [3, 4]
    assert model.aliases == {}


def test_a_missing_model_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFound, match=r"No CTranslate2 model\.bin at"):
        read_ctranslate2_model(tmp_path)


@pytest.mark.parametrize("version", [0, 7])
def test_an_unknown_binary_version_is_refused(tmp_path: Path, version: int) -> None:
    with pytest.raises(ModelFormatError, match=f"binary version {version}; this reader knows versions 1 to 6"):
        read_ctranslate2_model(write(tmp_path, model_bin({"w": WEIGHT}, version=version)))


@pytest.mark.parametrize("cut", [2, 10, 40, -5])
def test_a_truncated_file_says_where_it_ends(tmp_path: Path, cut: int) -> None:
    data = model_bin({"encoder/w": WEIGHT})
    with pytest.raises(ModelFormatError, match=r"is incomplete: .* runs past the end of the file"):
        read_ctranslate2_model(write(tmp_path, data[:cut]))


def test_unknown_dtypes_and_wrong_byte_counts_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelFormatError, match="w has unknown dtype id 9"):
        read_ctranslate2_model(write(tmp_path, model_bin({"w": WEIGHT}, dtype_ids={"w": 9})))
    with pytest.raises(ModelFormatError, match=r"w has shape \(2, 3\) of int16 but claims 24 bytes"):
        read_ctranslate2_model(write(tmp_path, model_bin({"w": WEIGHT}, dtype_ids={"w": 2})))
    old = bytearray(model_bin({"w": WEIGHT}, version=3))
    old[old.index(b"w\0") + 2 + 1 + 8] = 3  # the item size after the name, rank and two dimensions
    with pytest.raises(ModelFormatError, match="w has unknown item size 3"):
        read_ctranslate2_model(write(tmp_path, bytes(old)))


def test_trailing_bytes_are_ignored_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        model = read_ctranslate2_model(write(tmp_path, model_bin({"w": WEIGHT}) + b"\0" * 7))
    assert np.array_equal(model["w"], WEIGHT)
    assert "7 bytes after the last field were ignored" in caplog.text


def test_int8_weights_are_divided_by_their_per_row_scale() -> None:
    variables: dict[str, np.ndarray] = {"w": np.array([[127, -64], [10, 20]], np.int8),
                                        "w_scale": np.array([127.0, 10.0], np.float32)}
    assert dequantize(variables, "w").tolist() == [[1.0, pytest.approx(-64 / 127)], [1.0, 2.0]]
    conv: dict[str, np.ndarray] = {"c": np.full((2, 1, 3), 50, np.int8), "c_scale": np.array([50.0, 25.0], np.float32)}
    assert dequantize(conv, "c").tolist() == [[[1.0] * 3], [[2.0] * 3]]  # a conv's rows are its output channels


def test_int16_weights_share_one_scale_and_floats_pass_through() -> None:
    variables: dict[str, np.ndarray] = {"w": np.array([1000, -500], np.int16), "w_scale": np.array(1000.0, np.float32)}
    assert dequantize(variables, "w").tolist() == [1.0, -0.5]
    assert dequantize({"h": np.ones(2, np.float16)}, "h").dtype == np.float16
    wide = dequantize({"d": np.ones(2, np.float64)}, "d")
    assert wide.dtype == np.float32


def test_quantized_weights_without_a_scale_or_with_a_zero_point_are_refused() -> None:
    with pytest.raises(ModelFormatError, match="w is stored as int8 without a w_scale"):
        dequantize({"w": np.ones(2, np.int8)}, "w")
    with pytest.raises(ModelFormatError, match="zero-point"):
        zero_point: dict[str, np.ndarray] = {"w": np.ones(2, np.int8), "w_scale": np.ones(1, np.float32),
                                             "w_zero": np.zeros(1)}
        dequantize(zero_point, "w")
