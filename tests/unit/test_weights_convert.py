"""pipeline/worker/weights/convert.py: dimensions, layout checks, the name mapping with its split of
fused projections, and the alignment-heads dump, on a tiny synthetic Whisper (no torch, no real weights)."""

from __future__ import annotations

import base64
import gzip
import logging

import numpy as np
import pytest

from pipeline.errors import ModelFormatError
from pipeline.worker.weights.convert import (
    _check_whisper_spec,
    _openai_state_dict,
    alignment_heads_dump,
    ctranslate2_dimensions,
)
from pipeline.worker.weights.ctranslate2 import CTranslate2File

WIDTH, MELS, AUDIO_CTX, VOCAB, TEXT_CTX = 4, 2, 3, 5, 3


def tiny_whisper(dtype: type = np.float32) -> dict[str, np.ndarray]:
    """One encoder and one decoder layer of width 4, two heads, each tensor holding distinct numbers."""
    variables: dict[str, np.ndarray] = {}
    counter = iter(range(1, 10_000))

    def tensor(name: str, *shape: int) -> None:
        size = int(np.prod(shape))
        variables[name] = (np.array([next(counter) for _ in range(size)]) / 64).reshape(shape).astype(dtype)

    def linear(name: str, rows: int, cols: int = WIDTH) -> None:
        tensor(f"{name}/weight", rows, cols)
        tensor(f"{name}/bias", rows)

    def norm(name: str) -> None:
        tensor(f"{name}/gamma", WIDTH)
        tensor(f"{name}/beta", WIDTH)

    def layer(prefix: str, cross: bool) -> None:
        linear(f"{prefix}/self_attention/linear_0", 3 * WIDTH)
        linear(f"{prefix}/self_attention/linear_1", WIDTH)
        norm(f"{prefix}/self_attention/layer_norm")
        if cross:
            linear(f"{prefix}/attention/linear_0", WIDTH)
            linear(f"{prefix}/attention/linear_1", 2 * WIDTH)
            linear(f"{prefix}/attention/linear_2", WIDTH)
            norm(f"{prefix}/attention/layer_norm")
        linear(f"{prefix}/ffn/linear_0", 2 * WIDTH)
        linear(f"{prefix}/ffn/linear_1", WIDTH, 2 * WIDTH)
        norm(f"{prefix}/ffn/layer_norm")

    tensor("encoder/conv1/weight", WIDTH, MELS, 3)
    tensor("encoder/conv1/bias", WIDTH)
    tensor("encoder/conv2/weight", WIDTH, WIDTH, 3)
    tensor("encoder/conv2/bias", WIDTH)
    tensor("encoder/position_encodings/encodings", AUDIO_CTX, WIDTH)
    layer("encoder/layer_0", cross=False)
    norm("encoder/layer_norm")
    tensor("decoder/embeddings/weight", VOCAB, WIDTH)
    tensor("decoder/position_encodings/encodings", TEXT_CTX, WIDTH)
    layer("decoder/layer_0", cross=True)
    norm("decoder/layer_norm")
    variables["encoder/num_heads"] = np.array(2, np.int16)
    variables["decoder/num_heads"] = np.array(2, np.int16)
    return variables


DIMS = {"n_mels": MELS, "n_audio_ctx": AUDIO_CTX, "n_audio_state": WIDTH, "n_audio_head": 2, "n_audio_layer": 1,
        "n_vocab": VOCAB, "n_text_ctx": TEXT_CTX, "n_text_state": WIDTH, "n_text_head": 2, "n_text_layer": 1}


def test_dimensions_are_read_off_the_tensors_and_spec_attributes() -> None:
    assert ctranslate2_dimensions(tiny_whisper()) == DIMS


def test_without_stored_heads_they_are_taken_as_64_wide(caplog: pytest.LogCaptureFixture) -> None:
    variables = {
        "encoder/conv1/weight": np.zeros((128, 80, 3)), "encoder/position_encodings/encodings": np.zeros((3, 128)),
        "decoder/embeddings/weight": np.zeros((5, 192)), "decoder/position_encodings/encodings": np.zeros((3, 192)),
    }
    with caplog.at_level(logging.WARNING):
        dims = ctranslate2_dimensions(variables)
    assert (dims["n_audio_head"], dims["n_text_head"], dims["n_audio_layer"], dims["n_text_layer"]) == (2, 3, 0, 0)
    assert "encoder/num_heads is not stored; assuming 64-wide heads (2 heads)" in caplog.text


def test_heads_that_do_not_divide_the_width_are_refused() -> None:
    variables = tiny_whisper()
    variables["decoder/num_heads"] = np.array(3, np.int16)
    with pytest.raises(ModelFormatError, match="decoder has 3 heads, which do not divide its width 4"):
        ctranslate2_dimensions(variables)
    del variables["encoder/num_heads"]  # 4 // 64 is no head at all
    with pytest.raises(ModelFormatError, match="encoder has 0 heads"):
        ctranslate2_dimensions(variables)


def test_layers_must_be_numbered_from_zero_without_gaps() -> None:
    variables = tiny_whisper()
    variables["encoder/layer_2/ffn/linear_0/weight"] = np.zeros((8, 4), np.float32)
    with pytest.raises(ModelFormatError, match=r"The encoder layers are not numbered 0\.\.n-1: \[0, 2\]"):
        ctranslate2_dimensions(variables)


def test_a_model_without_whispers_tensors_is_named_as_not_whisper() -> None:
    variables = tiny_whisper()
    del variables["decoder/embeddings/weight"]
    with pytest.raises(ModelFormatError, match="Not a CTranslate2 Whisper model: 'decoder/embeddings/weight' is"):
        ctranslate2_dimensions(variables)


def test_fused_projections_are_split_into_openai_whispers_modules() -> None:
    variables = tiny_whisper()
    state = _openai_state_dict(variables, DIMS)
    fused = variables["decoder/layer_0/self_attention/linear_0/weight"]
    fused_bias = variables["decoder/layer_0/self_attention/linear_0/bias"]
    for index, part in enumerate(("query", "key", "value")):
        rows = slice(index * WIDTH, (index + 1) * WIDTH)
        assert np.array_equal(state[f"decoder.blocks.0.attn.{part}.weight"], fused[rows])
    # openai-whisper's key projection has no bias; query and value keep theirs.
    assert "decoder.blocks.0.attn.key.bias" not in state
    assert np.array_equal(state["decoder.blocks.0.attn.value.bias"], fused_bias[2 * WIDTH:])
    cross = variables["decoder/layer_0/attention/linear_1/weight"]
    assert np.array_equal(state["decoder.blocks.0.cross_attn.key.weight"], cross[:WIDTH])
    assert np.array_equal(state["decoder.blocks.0.cross_attn.value.weight"], cross[WIDTH:])
    assert np.array_equal(state["decoder.blocks.0.mlp.2.weight"], variables["decoder/layer_0/ffn/linear_1/weight"])
    assert np.array_equal(state["encoder.ln_post.bias"], variables["encoder/layer_norm/beta"])
    assert "encoder.blocks.0.cross_attn.query.weight" not in state  # the encoder has no cross-attention
    # Encoder: 2 convs (4), positions, a block (15), ln_post (2); decoder: 2 embeddings, a block with
    # cross-attention (24), ln (2): 50 tensors, each one openai-whisper's Whisper has for these dims.
    assert len(state) == 50 and all(v.flags.c_contiguous and v.dtype == np.float32 for v in state.values())


def test_float16_models_stay_float16_and_int8_ones_become_float32() -> None:
    half = _openai_state_dict(tiny_whisper(np.float16), DIMS)
    assert {value.dtype for value in half.values()} == {np.dtype(np.float16)}

    variables = tiny_whisper()
    name = "encoder/layer_0/ffn/linear_0/weight"
    variables[name] = np.array([[127, -127, 0, 64]] * 8, np.int8)
    variables[name + "_scale"] = np.full(8, 127.0, np.float32)
    state = _openai_state_dict(variables, DIMS)
    assert state["encoder.blocks.0.mlp.0.weight"].dtype == np.float32
    assert state["encoder.blocks.0.mlp.0.weight"][0].tolist() == [1.0, -1.0, 0.0, pytest.approx(64 / 127)]


def test_a_fused_projection_of_the_wrong_size_or_without_bias_is_refused() -> None:
    variables = tiny_whisper()
    variables["encoder/layer_0/self_attention/linear_0/weight"] = np.zeros((8, WIDTH), np.float32)
    with pytest.raises(ModelFormatError, match="linear_0/weight has 8 rows, not 3 x 4"):
        _openai_state_dict(variables, DIMS)
    variables = tiny_whisper()
    del variables["decoder/layer_0/attention/linear_1/bias"]
    with pytest.raises(ModelFormatError, match="decoder/layer_0/attention/linear_1/bias is missing"):
        _openai_state_dict(variables, DIMS)
    variables = tiny_whisper()
    del variables["decoder/layer_norm/gamma"]
    with pytest.raises(ModelFormatError, match="decoder/layer_norm/gamma is missing"):
        _openai_state_dict(variables, DIMS)


def model_of(variables: dict[str, np.ndarray], spec: str = "WhisperSpec") -> CTranslate2File:
    return CTranslate2File(6, spec, 3, variables)


def test_only_layouts_openai_whisper_computes_alike_are_accepted(caplog: pytest.LogCaptureFixture) -> None:
    variables = tiny_whisper()
    variables["decoder/pre_norm"] = np.array(1, np.int8)
    _check_whisper_spec(model_of(variables), variables)
    _check_whisper_spec(model_of(variables, spec=""), variables)  # version 1 files name no spec
    with pytest.raises(ModelFormatError, match="CTranslate2 TransformerSpec model, not a Whisper model"):
        _check_whisper_spec(model_of(variables, spec="TransformerSpec"), variables)
    for flag, value in (("decoder/pre_norm", 0), ("decoder/scale_embeddings", 1), ("decoder/alibi", 1)):
        changed = {**variables, flag: np.array(value, np.int8)}
        with pytest.raises(ModelFormatError, match=f"{flag} is {value}; openai-whisper's architecture needs"):
            _check_whisper_spec(model_of(changed), changed)

    biased = {**variables, "decoder/projection/bias": np.array([0, 0, 0.5, 0, 0], np.float32)}
    with pytest.raises(ModelFormatError, match="output projection has a bias"):
        _check_whisper_spec(model_of(biased), biased)
    zero_bias = {**variables, "decoder/projection/bias": np.zeros(VOCAB, np.float32)}
    _check_whisper_spec(model_of(zero_bias), zero_bias)

    untied = {**variables, "decoder/projection/weight": variables["decoder/embeddings/weight"] + 1}
    with caplog.at_level(logging.WARNING):
        _check_whisper_spec(model_of(untied), untied)
    assert "output projection differs from the token embedding" in caplog.text


def test_alignment_heads_dump_as_openai_whisper_reads_it() -> None:
    dump = alignment_heads_dump([[1, 0], [2, 3]], n_text_layer=3, n_text_head=4)
    # Whisper.set_alignment_heads: base85, then gzip, then a bool array shaped layers x heads.
    mask = np.frombuffer(gzip.decompress(base64.b85decode(dump)), dtype=bool).reshape(3, 4)
    assert np.argwhere(mask).tolist() == [[1, 0], [2, 3]]
    assert alignment_heads_dump([[1, 0], [2, 3]], 3, 4) == dump  # no timestamp inside: the same bytes


@pytest.mark.parametrize("head", [[3, 0], [0, 4], [-1, 0]])
def test_an_alignment_head_outside_the_decoder_is_refused(head: list[int]) -> None:
    with pytest.raises(ModelFormatError, match=rf"Alignment head \({head[0]}, {head[1]}\) is outside the decoder"):
        alignment_heads_dump([head], n_text_layer=3, n_text_head=4)
