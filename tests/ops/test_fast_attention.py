"""The fused SelfAttention op: the reference kernel (ops/fused.py) against a plain NumPy
formula, and the CPU fast path (ops/fast_attention.py) against the reference."""

from __future__ import annotations

import numpy as np
import pytest

from infermux.errors import ShapeMismatchError, UnsupportedOpError
from infermux.ops.registry import lookup

RNG = np.random.default_rng(0)
N, S, SK, H, DH = 2, 5, 7, 3, 4
D = H * DH


def _attention(q, k, v, heads, scale):
    """Textbook multi-head attention, heads split from the last axis, in float64."""
    def split(t):
        return t.astype(np.float64).reshape(t.shape[0], t.shape[1], heads, -1).transpose(0, 2, 1, 3)

    s = split(q) @ split(k).transpose(0, 1, 3, 2) * scale
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    ctx = p @ split(v)
    return ctx.transpose(0, 2, 1, 3).reshape(q.shape[0], q.shape[1], -1)


def _kernel(fast: bool):
    return lookup("SelfAttention", 1, "infermux", fast=fast).fn


def _qkv(dtype=np.float32):
    shapes = ((N, S, D), (N, SK, D), (N, SK, D))
    return [RNG.standard_normal(shape).astype(dtype) for shape in shapes]


@pytest.mark.parametrize("fast", [False, True])
@pytest.mark.parametrize("scale", [1.0, 0.5])
def test_separate_q_k_v(fast, scale):
    q, k, v = _qkv()
    got = _kernel(fast)(np, q, k, v, num_heads=H, scale=scale)
    assert got.shape == (N, S, D) and got.dtype == np.float32 and got.flags.c_contiguous
    np.testing.assert_allclose(got, _attention(q, k, v, H, scale), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("fast", [False, True])
def test_packed_qkv_is_split_on_the_last_axis(fast):
    packed = RNG.standard_normal((N, S, 3 * D)).astype(np.float32)
    q, k, v = packed[..., :D], packed[..., D:2 * D], packed[..., 2 * D:]
    got = _kernel(fast)(np, packed, num_heads=H)
    np.testing.assert_allclose(got, _attention(q, k, v, H, 1.0), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [np.float64, np.float16])
def test_fast_path_matches_reference_in_other_dtypes(dtype):
    q, k, v = _qkv(dtype)
    got = _kernel(True)(np, q, k, v, num_heads=H, scale=0.3)
    want = _kernel(False)(np, q, k, v, num_heads=H, scale=0.3)
    assert got.dtype == dtype
    np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64),
                               rtol=1e-3 if dtype == np.float16 else 1e-12)


@pytest.mark.parametrize("fast", [False, True])
def test_heads_must_divide_the_hidden_size(fast):
    q, k, v = _qkv()
    with pytest.raises(ShapeMismatchError, match="num_heads"):
        _kernel(fast)(np, q, k, v, num_heads=5)
    with pytest.raises(ShapeMismatchError, match="three"):
        _kernel(fast)(np, q[..., :D - 1], num_heads=H)
    with pytest.raises(ShapeMismatchError, match="Q alone"):
        _kernel(fast)(np, q, k, num_heads=H)


def test_fused_gelu_reference_adds_bias_first():
    x = RNG.standard_normal((3, 4)).astype(np.float32)
    b = RNG.standard_normal(4).astype(np.float32)
    gelu = lookup("Gelu", 20).fn
    np.testing.assert_array_equal(lookup("Gelu", 1, "infermux").fn(np, x, b), gelu(np, x + b))


def test_fused_matmul_reference_rejects_an_unknown_activation():
    with pytest.raises(UnsupportedOpError, match="activation"):
        lookup("FusedMatMul", 1, "infermux").fn(np, np.ones((2, 2)), np.ones((2, 2)),
                                                activation="Sigmoid")
