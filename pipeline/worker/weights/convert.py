"""CTranslate2 Whisper models rewritten as openai-whisper checkpoints, offline.

openai-whisper cannot read CTranslate2 models, and the only Whisper weights that reach the
service's machines (through a package registry) are CTranslate2 ones, so the same numbers are
rewritten in openai-whisper's checkpoint format (``{"dims": ..., "model_state_dict": ...}``),
which ``whisper.load_model(path)`` loads.
"""

from __future__ import annotations

import base64
import gzip
import json
import logging
import re
import time
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.errors import ModelFormatError
from pipeline.worker.weights.ctranslate2 import CTranslate2File, dequantize, read_ctranslate2_file
from pipeline.worker.weights.files import atomic_write

log = logging.getLogger(__name__)


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
    with atomic_write(out_path) as handle:
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
