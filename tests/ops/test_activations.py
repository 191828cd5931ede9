"""Activation kernels against onnx.reference."""

from __future__ import annotations

import math

import ml_dtypes
import numpy as np
import pytest

from infermux.errors import ShapeMismatchError, UnsupportedOpError
from tests.ops.op_oracle import call, reference


X = np.random.default_rng(0).uniform(-4, 4, (3, 5)).astype(np.float32)

CASES = [  # op type, opset, attributes
    ("Relu", 14, {}), ("LeakyRelu", 16, {}), ("LeakyRelu", 16, {"alpha": 1.5}),
    ("Elu", 22, {"alpha": 0.7}), ("Selu", 22, {}), ("Celu", 12, {"alpha": 2.0}),
    ("HardSigmoid", 22, {"alpha": 0.3, "beta": 0.4}), ("HardSwish", 22, {}),
    ("Softplus", 22, {}), ("Softsign", 22, {}), ("Mish", 22, {}),
    ("ThresholdedRelu", 22, {"alpha": 0.5}), ("Sigmoid", 13, {}), ("Swish", 24, {"alpha": 0.5}),
    ("Shrink", 9, {"lambd": 1.0, "bias": 0.5}), ("Gelu", 20, {}),
    ("Gelu", 20, {"approximate": "tanh"}),
]


@pytest.mark.parametrize("op_type, opset, attrs", CASES)
def test_matches_reference(op_type, opset, attrs):
    got = call(op_type, opset, X, **attrs)
    want = reference(op_type, [X], opset, **attrs)[0]
    assert got.dtype == np.float32 and got.shape == X.shape
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("op_type, opset, attrs", CASES)
@pytest.mark.parametrize("dtype", [np.float16, ml_dtypes.bfloat16])
def test_keeps_16_bit_types(op_type, opset, attrs, dtype):
    got = call(op_type, opset, X.astype(dtype), **attrs)
    assert got.dtype == dtype
    want = reference(op_type, [X], opset, **attrs)[0]
    np.testing.assert_allclose(got.astype(np.float32), want, rtol=2e-2, atol=2e-2)


def test_zero_dimensional_input():
    got = call("Elu", 22, np.array(-1.0, np.float32))
    assert got.shape == () and abs(float(got) - math.expm1(-1.0)) < 1e-7


def test_sigmoid_extremes_without_warnings():
    with np.errstate(all="raise"):
        got = call("Sigmoid", 13, np.array([-1000, 0, 1000], np.float32))
    np.testing.assert_array_equal(got, [0, 0.5, 1])


def test_relu_and_shrink_keep_integers():
    x = np.array([-3, -1, 0, 2, 5], np.int8)
    np.testing.assert_array_equal(call("Relu", 14, x), [0, 0, 0, 2, 5])
    shrunk = call("Shrink", 9, x, lambd=1.5, bias=1.0)
    assert shrunk.dtype == np.int8
    np.testing.assert_array_equal(shrunk, reference("Shrink", [x], 9, lambd=1.5, bias=1.0)[0])


def test_gelu_accuracy_on_the_negative_tail():
    x = np.array([-20, -8, -6, -5, -3, -1, 0.5, 3], np.float64)
    want = [0.5 * v * math.erfc(-v / math.sqrt(2)) for v in x]
    for fast in (False, True):
        # float64 keeps relative precision; float32 is ~1e-7 absolute, as onnxruntime's is
        np.testing.assert_allclose(call("Gelu", 20, x, fast=fast), want, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(call("Gelu", 20, x.astype(np.float32), fast=fast), want,
                                   rtol=1e-6, atol=2e-7)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_fast_path_matches_plain(approximate):
    x = np.random.default_rng(1).standard_normal((300, 500)).astype(np.float32)
    np.testing.assert_array_equal(call("Gelu", 20, x, fast=True, approximate=approximate),
                                  call("Gelu", 20, x, approximate=approximate))


def test_gelu_rejects_unknown_approximation():
    with pytest.raises(UnsupportedOpError, match="approximate"):
        call("Gelu", 20, X, approximate="sigmoid")


def test_prelu_broadcasts_slope():
    slope = np.array([0.1, 0.2, 0.3, 0.4, 0.5], np.float32)
    np.testing.assert_allclose(call("PRelu", 16, X, slope), reference("PRelu", [X, slope], 16)[0])


def test_prelu_legacy_slope_is_per_channel():
    x = -np.ones((2, 3, 4, 4), np.float32)
    slope = np.array([0.1, 0.2, 0.3], np.float32)
    got = call("PRelu", 6, x, slope)
    np.testing.assert_allclose(got[:, :, 0, 0], [[-0.1, -0.2, -0.3]] * 2)


def test_swiglu_matches_reference_and_needs_one_shape():
    a, b = X, X[::-1].copy()
    np.testing.assert_allclose(call("SwiGLU", 28, a, b, alpha=0.5),
                               reference("SwiGLU", [a, b], 28, alpha=0.5)[0], rtol=1e-6)
    with pytest.raises(ShapeMismatchError, match="one shape"):
        call("SwiGLU", 28, a, b[:1])
