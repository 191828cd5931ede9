"""Compiled Erf / Gelu / FusedMatMul fast paths (ops/fast_elementwise.py) against the reference
kernels: bit-equal for float32 (the loops repeat the reference's arithmetic), the reference
itself for other dtypes and layouts."""

from __future__ import annotations

import math

import numpy as np
import pytest

from infermux.errors import UnsupportedOpError
from infermux.ops import _numba
from infermux.ops.registry import lookup

RNG = np.random.default_rng(0)
X = (RNG.standard_normal((37, 129)) * 3).astype(np.float32)
SPECIAL = np.array([0.0, -0.0, 1e-30, -4.5, 4.5, 30.0, -30.0, np.inf, -np.inf, np.nan], np.float32)


def _kernels(op, since, domain=""):
    return lookup(op, since, domain).fn, lookup(op, since, domain, fast=True).fn


def test_fast_kernels_are_registered_at_the_reference_versions():
    for op, since, domain in [("Erf", 9, ""), ("Gelu", 20, ""), ("Gelu", 1, "infermux"),
                              ("FusedMatMul", 1, "infermux")]:
        ref, fast = lookup(op, since, domain), lookup(op, since, domain, fast=True)
        assert fast.fast and not ref.fast and fast.since == ref.since


@pytest.mark.parametrize("x", [X, SPECIAL, X[::2, 1::3], X.reshape(-1)[:1].reshape(())],
                         ids=["matrix", "special", "strided", "scalar"])
def test_erf_equals_reference_bitwise(x):
    ref, fast = _kernels("Erf", 9)
    want, got = ref(np, x), fast(np, x)
    assert got.dtype == np.float32 and got.shape == x.shape
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype", [np.float64, np.float16])
def test_erf_other_dtypes_take_the_reference(dtype):
    ref, fast = _kernels("Erf", 9)
    x = X.astype(dtype)
    np.testing.assert_allclose(fast(np, x), ref(np, x), rtol=1e-6)
    assert fast(np, x).dtype == dtype
    want = np.array([math.erf(v) for v in x[0, :5].astype(np.float64)])
    np.testing.assert_allclose(fast(np, x)[0, :5].astype(np.float64), want,
                               rtol=1e-3 if dtype == np.float16 else 1e-12)


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # the reference's inf * 0
@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_onnx_gelu_equals_reference(approximate):
    ref, fast = _kernels("Gelu", 20)
    for x in (X, SPECIAL, X.T):
        np.testing.assert_array_equal(fast(np, x, approximate=approximate),
                                      ref(np, x, approximate=approximate))


def test_gelu_rejects_an_unknown_approximation():
    with pytest.raises(UnsupportedOpError, match="approximate"):
        lookup("Gelu", 20, fast=True).fn(np, X, approximate="fast")


def test_fused_gelu_adds_the_bias_in_the_same_pass():
    ref, fast = _kernels("Gelu", 1, "infermux")
    bias = RNG.standard_normal(129).astype(np.float32)
    x3 = X.reshape(1, 37, 129)
    np.testing.assert_array_equal(fast(np, x3, bias), ref(np, x3, bias))
    np.testing.assert_array_equal(fast(np, X), ref(np, X))
    # a bias that is not a vector along the last axis broadcasts through the reference path
    column = RNG.standard_normal((37, 1)).astype(np.float32)
    np.testing.assert_array_equal(fast(np, X, column), ref(np, X, column))
    want = 0.5 * (X + bias) * (1 + np.vectorize(math.erf)((X + bias) / math.sqrt(2)))
    np.testing.assert_allclose(fast(np, X, bias), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("activation", ["", "Relu", "Gelu"])
@pytest.mark.parametrize("a_shape", [(2, 5, 16), (5, 16), (16,)])
def test_fused_matmul_equals_reference(activation, a_shape):
    ref, fast = _kernels("FusedMatMul", 1, "infermux")
    a = RNG.standard_normal(a_shape).astype(np.float32)
    w = RNG.standard_normal((16, 24)).astype(np.float32)
    b = RNG.standard_normal(24).astype(np.float32)
    want = ref(np, a, w, b, activation=activation)
    got = fast(np, a, w, b, activation=activation)
    assert got.shape == want.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    plain = np.matmul(a, w) + b
    expect = {"": plain, "Relu": np.maximum(plain, 0),
              "Gelu": 0.5 * plain * (1 + np.vectorize(math.erf)(plain / math.sqrt(2)))}
    np.testing.assert_allclose(got, expect[activation], rtol=1e-5, atol=1e-5)


def test_fused_matmul_without_bias_and_in_float64():
    ref, fast = _kernels("FusedMatMul", 1, "infermux")
    a, w = RNG.standard_normal((3, 4)), RNG.standard_normal((4, 2))
    np.testing.assert_allclose(fast(np, a, w, activation="Gelu"), ref(np, a, w, activation="Gelu"),
                               rtol=1e-12)
    assert fast(np, a, w).dtype == np.float64


def test_fused_matmul_rejects_an_unknown_activation():
    with pytest.raises(UnsupportedOpError, match="activation"):
        lookup("FusedMatMul", 1, "infermux", fast=True).fn(np, X, X.T, activation="Tanh")


@pytest.mark.skipif(not _numba.AVAILABLE, reason="numba not installed")
def test_fast_paths_do_not_write_into_their_inputs():
    x = X.copy()
    lookup("Erf", 9, fast=True).fn(np, x)
    lookup("Gelu", 1, "infermux", fast=True).fn(np, x, np.ones(129, np.float32))
    np.testing.assert_array_equal(x, X)


@pytest.mark.parametrize("activation", ["", "Relu", "Gelu"])
def test_channel_affine_equals_reference(activation):
    ref, fast = _kernels("ChannelAffine", 1, "infermux")
    x = RNG.standard_normal((2, 4, 3, 5)).astype(np.float32)
    x[0, 0, 0, :3] = [np.nan, -0.0, np.inf]
    scale = RNG.standard_normal(4).astype(np.float32)
    shift = RNG.standard_normal(4).astype(np.float32)
    got, want = fast(np, x, scale, shift, activation=activation), ref(np, x, scale, shift,
                                                                      activation=activation)
    np.testing.assert_array_equal(got, want)
    plain = x * scale[:, None, None] + shift[:, None, None]
    if activation == "Relu":
        np.testing.assert_array_equal(got[1], np.maximum(plain[1], 0))
    else:
        np.testing.assert_allclose(got[1], plain[1] if not activation else want[1])


def test_channel_affine_rejects_parameters_of_the_wrong_size():
    from infermux.errors import ShapeMismatchError

    with pytest.raises(ShapeMismatchError, match="scale"):
        lookup("ChannelAffine", 1, "infermux", fast=True).fn(
            np, X.reshape(1, 37, 129), np.ones(5, np.float32), np.ones(5, np.float32))


def test_add_activation_equals_reference():
    ref, fast = _kernels("AddActivation", 1, "infermux")
    a = RNG.standard_normal((3, 40)).astype(np.float32)
    b = RNG.standard_normal((3, 40)).astype(np.float32)
    a[0, :2] = [np.nan, -np.inf]
    np.testing.assert_array_equal(fast(np, a, b), ref(np, a, b))
    np.testing.assert_array_equal(fast(np, a, b), np.maximum(a + b, 0))
    np.testing.assert_array_equal(fast(np, a, b[:1]), np.maximum(a + b[:1], 0))  # broadcast
    np.testing.assert_array_equal(fast(np, a.T, b.T), np.maximum(a.T + b.T, 0))  # strided


def test_fused_matmul_reports_mismatched_shapes():
    from infermux.errors import ShapeMismatchError

    with pytest.raises(ShapeMismatchError, match="MatMul"):
        lookup("FusedMatMul", 1, "infermux", fast=True).fn(np, X, X)
