"""Compiled LayerNormalization / infermux LayerNorm (ops/fast_norm.py) against the reference
kernels at 1e-6 of the output's scale, and the cases that must fall back to the reference."""

from __future__ import annotations

import numpy as np
import pytest

from infermux.ops.registry import lookup

RNG = np.random.default_rng(0)
X = (RNG.standard_normal((2, 5, 96)) * 4 + 3).astype(np.float32)
SKIP = RNG.standard_normal((2, 5, 96)).astype(np.float32)
G = RNG.uniform(0.5, 1.5, 96).astype(np.float32)
B = RNG.standard_normal(96).astype(np.float32)


def _close(got, want, tol=1e-6):
    assert got.dtype == want.dtype and got.shape == want.shape
    err = np.max(np.abs(got.astype(np.float64) - want)) / np.max(np.abs(want))
    assert err <= tol, f"max error {err:.3g} of the output's scale"


def _onnx(fast: bool):
    return lookup("LayerNormalization", 17, fast=fast).fn


def _fused(fast: bool):
    return lookup("LayerNorm", 1, "infermux", fast=fast).fn


@pytest.mark.parametrize("args, attrs", [
    ((X, G, B), {"epsilon": 1e-12}),
    ((X, G), {}),
    ((X, RNG.uniform(0.5, 1.5, (5, 96)).astype(np.float32)), {"axis": 1}),
    ((X[:, ::2], G), {}),  # strided input
    ((X.reshape(10, 96)[:1], G, B), {}),  # one row
], ids=["bias", "no-bias", "axis1", "strided", "one-row"])
def test_layer_normalization_matches_reference(args, attrs):
    _close(_onnx(True)(np, *args, **attrs), _onnx(False)(np, *args, **attrs))


def test_layer_normalization_statistics_outputs_come_from_the_reference():
    used = (True, True, True)
    got = _onnx(True)(np, X, G, B, _used_outputs=used)
    want = _onnx(False)(np, X, G, B, _used_outputs=used)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("dtype", [np.float64, np.float16])
def test_other_dtypes_take_the_reference(dtype):
    args = (X.astype(dtype), G.astype(dtype), B.astype(dtype))
    np.testing.assert_array_equal(_onnx(True)(np, *args), _onnx(False)(np, *args))


def test_layer_normalization_rejects_a_bad_axis():
    with pytest.raises(ValueError, match="axis"):
        _onnx(True)(np, X, G, axis=3)


def test_fused_layer_norm_adds_the_skip_input():
    _close(_fused(True)(np, X, G, B, SKIP, epsilon=1e-12), _fused(False)(np, X, G, B, SKIP,
                                                                        epsilon=1e-12))
    s = X.astype(np.float64) + SKIP
    want = (s - s.mean(-1, keepdims=True)) / np.sqrt(s.var(-1, keepdims=True) + 1e-12) * G + B
    _close(_fused(True)(np, X, G, B, SKIP, epsilon=1e-12), want.astype(np.float32), 2e-6)


def test_fused_layer_norm_without_skip_or_bias():
    _close(_fused(True)(np, X, G), _onnx(False)(np, X, G))


def test_fused_layer_norm_broadcast_skip_takes_the_reference():
    row = SKIP[:1, :1]  # [1, 1, 96] broadcasts against X
    np.testing.assert_array_equal(_fused(True)(np, X, G, B, row), _fused(False)(np, X, G, B, row))


def test_fast_layer_norm_leaves_its_inputs_alone():
    x, skip = X.copy(), SKIP.copy()
    _fused(True)(np, x, G, B, skip)
    np.testing.assert_array_equal(x, X)
    np.testing.assert_array_equal(skip, SKIP)


@pytest.mark.parametrize("shape, attrs", [
    ((1, 16, 9, 11), {"size": 5, "alpha": 5e-4, "beta": 0.75, "bias": 2.0}),
    ((2, 7, 3, 5), {"size": 4, "alpha": 1e-3, "beta": 0.6}),
    ((2, 7, 3, 5), {"size": 1}),
    ((3, 6), {"size": 3}),
    ((1, 3, 4), {"size": 9}),  # window wider than the channels
], ids=["alexnet", "even-size", "size1", "2d", "wide"])
def test_lrn_matches_reference(shape, attrs):
    x = (RNG.standard_normal(shape) * 5).astype(np.float32)
    got = lookup("LRN", 1, fast=True).fn(np, x, **attrs)
    _close(got, lookup("LRN", 1).fn(np, x, **attrs))
    # the definition, in float64: x / (bias + alpha / size * window sum of squares) ** beta
    size, c = attrs["size"], shape[1]
    sq = np.square(x.astype(np.float64))
    window = np.stack([sq[:, max(0, i - (size - 1) // 2):min(c, i + size // 2 + 1)].sum(1)
                       for i in range(c)], axis=1)
    want = x / (attrs.get("bias", 1.0) + attrs.get("alpha", 1e-4) / size * window) \
        ** attrs.get("beta", 0.75)
    _close(got, want.astype(np.float32), 1e-6)


def test_lrn_float64_takes_the_reference():
    x = RNG.standard_normal((1, 5, 2, 2))
    np.testing.assert_array_equal(lookup("LRN", 1, fast=True).fn(np, x, size=3),
                                  lookup("LRN", 1).fn(np, x, size=3))
