"""Attention, RotaryEmbedding and LinearAttention against onnx.reference."""

from __future__ import annotations

import numpy as np
import pytest

from infermux.errors import ShapeMismatchError
from tests.ops.op_oracle import check, run


RNG = np.random.default_rng(0)


def randn(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def attention(inputs, attrs=None, *, opset=23, n_out=1):
    inputs = list(inputs) + [None] * (7 - len(inputs))
    while inputs and inputs[-1] is None:
        inputs.pop()
    check("Attention", inputs, attrs, opset=opset, n_out=n_out, engine="ref", rtol=1e-4,
          atol=1e-5)


Q, K, V = randn(2, 4, 3, 8), randn(2, 4, 5, 8), randn(2, 4, 5, 6)


@pytest.mark.parametrize("attrs", [{}, {"is_causal": 1}, {"scale": 0.1}, {"softcap": 2.0}])
def test_attention_4d(attrs):
    attention([Q, K, V], attrs)


def test_attention_masks():
    attention([Q, K, V, randn(3, 5)])
    bool_mask = RNG.random((2, 1, 3, 5)) > 0.3
    attention([Q, K, V, bool_mask], {"is_causal": 1})
    attention([Q, K, V, randn(4, 3, 4)])  # shorter than the keys: padded with -inf


def test_grouped_query_attention_3d_with_cache_and_qk_modes():
    q, k, v = randn(2, 3, 4 * 8), randn(2, 2, 2 * 8), randn(2, 2, 2 * 6)
    past_k, past_v = randn(2, 2, 4, 8), randn(2, 2, 4, 6)
    for mode in range(4):
        # the reference softcaps mode 0's output too; the spec (and infermux) gives raw scores
        attention([q, k, v, randn(3, 6), past_k, past_v],
                  {"q_num_heads": 4, "kv_num_heads": 2, "qk_matmul_output_mode": mode,
                   "is_causal": 1, "softcap": 3.0 if mode else 0.0}, n_out=4)


def test_qk_matmul_output_mode_0_is_before_softcap():
    out = run("Attention", [Q, K, V], {"softcap": 0.5, "scale": 0.25}, opset=23, n_out=4)
    np.testing.assert_allclose(out[3], 0.25 * Q @ K.swapaxes(-1, -2), rtol=1e-5, atol=1e-6)


def test_attention_25_window_and_external_cache():
    nonpad = np.array([3, 5], dtype=np.int64)
    attention([Q, K, V, None, None, None, nonpad], {"is_causal": 1, "left_window_size": 1},
              opset=25)
    attention([Q, K, V], {"left_window_size": 1, "right_window_size": 2}, opset=25)


def test_fully_masked_rows_are_zero_not_nan():
    mask = np.array([[True] * 5, [False] * 5, [True, False, True, False, True]])
    y, _, _, probs = run("Attention", [Q, K, V, mask], {"qk_matmul_output_mode": 3}, opset=23,
                         n_out=4)
    assert np.isfinite(y).all()
    assert not y[:, :, 1].any() and not probs[:, :, 1].any()
    attention([Q, K, V, mask])


def test_attention_3d_needs_head_counts():
    with pytest.raises(ValueError, match="q_num_heads"):
        run("Attention", [randn(2, 3, 8), randn(2, 3, 8), randn(2, 3, 8)], opset=23)
    with pytest.raises(ShapeMismatchError, match="cannot share"):
        run("Attention", [randn(2, 3, 2, 8), randn(2, 2, 2, 8), randn(2, 2, 2, 8)], opset=23)


@pytest.mark.parametrize("interleaved", [0, 1])
@pytest.mark.parametrize("rotary_dim", [0, 4])
def test_rotary_embedding(interleaved, rotary_dim):
    x = randn(2, 3, 5, 8)
    half = (rotary_dim or 8) // 2
    cos, sin = randn(10, half), randn(10, half)
    positions = RNG.integers(0, 10, (2, 5)).astype(np.int64)
    attrs = {"interleaved": interleaved, "rotary_embedding_dim": rotary_dim}
    check("RotaryEmbedding", [x, cos, sin, positions], attrs, opset=23, engine="ref")
    x3 = x.transpose(0, 2, 1, 3).reshape(2, 5, 24)
    check("RotaryEmbedding", [x3, cos[positions], sin[positions]],
          dict(attrs, num_heads=3), opset=23, engine="ref")


@pytest.mark.parametrize("rule", ["linear", "gated", "delta", "gated_delta"])
def test_linear_attention(rule):
    b, t, hq, hkv, dk, dv = 2, 3, 4, 2, 4, 5
    inputs = [randn(b, t, hq * dk), randn(b, t, hkv * dk), randn(b, t, hkv * dv),
              randn(b, hkv, dk, dv)]
    inputs.append(-np.abs(randn(b, t, hkv)) if "gated" in rule else None)
    inputs.append(RNG.random((b, t, hkv)).astype(np.float32) if "delta" in rule else None)
    while inputs[-1] is None:
        inputs.pop()
    check("LinearAttention", inputs, {"q_num_heads": hq, "kv_num_heads": hkv,
                                      "update_rule": rule}, opset=27, n_out=2, engine="ref",
          rtol=1e-4, atol=1e-5)
