"""QuantizeLinear, DequantizeLinear, DynamicQuantizeLinear, QLinearMatMul and QLinearConv."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
from onnx import TensorProto

from infermux.errors import ShapeMismatchError
from infermux.ops.registry import lookup
from tests.ops import op_oracle

RNG = np.random.default_rng(3)


def check(op, inputs, attrs, *, opset, n_out=1, engine="ort", max_step=0):
    """Same dtypes and shapes; values equal (quantized outputs may differ by ``max_step`` steps)."""
    op_oracle.check(op, inputs, attrs, opset=opset, n_out=n_out, engine=engine,
                    compare=lambda g, e: within_steps(g, e, max_step))


def within_steps(g, e, max_step):
    """At most ``max_step`` apart (plus float rounding), with NaNs in the same places."""
    diff = np.abs(g.astype(np.float64) - e.astype(np.float64))
    scale = np.nanmax(np.abs(e.astype(np.float64)), initial=0)
    assert np.nanmax(diff, initial=0) <= max_step + 1e-6 * scale
    np.testing.assert_array_equal(np.isnan(g.astype(np.float64)), np.isnan(e.astype(np.float64)))


X = (RNG.standard_normal((2, 4, 6)) * 40).astype(np.float32)


@pytest.mark.parametrize("zero_point, axis, block_size", [
    (np.array(128, np.uint8), 1, 0),
    (np.array([-3, 0, 5, 100], np.int8), 1, 0),
    (RNG.integers(0, 255, (2, 4, 3)).astype(np.uint8), -1, 2),
    (RNG.integers(-5, 5, (2, 2, 6)).astype(np.int16), 1, 3),
])
def test_quantize_dequantize_round_trip_matches_reference(zero_point, axis, block_size):
    scale = (RNG.random(zero_point.shape) + 0.1).astype(np.float32)
    attrs = {"axis": axis, "block_size": block_size}
    check("QuantizeLinear", [X, scale, zero_point], attrs, opset=21, engine="reference")
    q = lookup("QuantizeLinear", 21).fn(np, X, scale, zero_point, **attrs)
    check("DequantizeLinear", [q, scale, zero_point], attrs, opset=21, engine="reference")


def test_quantize_rounds_half_to_even_and_saturates_like_onnxruntime():
    x = np.array([0.5, 1.5, 2.5, -0.5, -1.5, 1000.0, -1000.0, 3.49], np.float32)
    check("QuantizeLinear", [x, np.array(1, np.float32), np.array(10, np.int8)], {}, opset=19)
    check("QuantizeLinear", [x, np.array(2, np.float32), np.array(0, np.uint8)], {}, opset=19)


@pytest.mark.parametrize("dtype", [ml_dtypes.int4, ml_dtypes.uint4, ml_dtypes.float8_e4m3fn,
                                   ml_dtypes.float8_e5m2])
@pytest.mark.parametrize("saturate", [0, 1])
def test_quantize_to_small_types(dtype, saturate):
    scale = np.array([0.5, 2.0, 8.0, 0.01], np.float32)
    zero_point = np.zeros(4, dtype)
    attrs = {"axis": 1, "saturate": saturate}
    check("QuantizeLinear", [X, scale, zero_point], attrs, opset=21, engine="reference")


def test_quantize_output_dtype_without_zero_point():
    scale = np.array(0.3, np.float32)
    check("QuantizeLinear", [X, scale], {"output_dtype": TensorProto.INT16}, opset=21, engine="reference")
    got = lookup("QuantizeLinear", 21).fn(np, X, scale)
    assert got.dtype == np.uint8


def test_dequantize_to_float16_output_dtype():
    q = RNG.integers(0, 255, (3, 4)).astype(np.uint8)
    inputs = [q, np.array(0.25, np.float32), np.array(7, np.uint8)]
    check("DequantizeLinear", inputs, {"output_dtype": TensorProto.FLOAT16}, opset=23, engine="reference")


@pytest.mark.parametrize("x", [X, np.abs(X), -np.abs(X), np.zeros((3, 2), np.float32)],
                         ids=["mixed", "pos", "neg", "zeros"])
def test_dynamic_quantize_linear_matches_onnxruntime(x):
    check("DynamicQuantizeLinear", [x], {}, opset=11, n_out=3)


@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
@pytest.mark.parametrize("scale_dtype", [np.float32, np.float16])
def test_qlinear_matmul_matches_onnxruntime(dtype, scale_dtype):
    info = np.iinfo(dtype)
    a = RNG.integers(info.min, info.max, (2, 3, 5)).astype(dtype)
    b = RNG.integers(info.min, info.max, (5, 4)).astype(dtype)
    s = lambda v: np.array([v], scale_dtype)
    z = lambda v: np.array([v], dtype)
    inputs = [a, s(0.05), z(3), b, s(0.02), z(-2 if dtype == np.int8 else 9), s(0.4), z(1)]
    check("QLinearMatMul", inputs, {}, opset=21, max_step=1)


def test_qlinear_conv_matches_onnxruntime():
    x = RNG.integers(0, 256, (2, 4, 7, 7), dtype=np.uint8)
    w = RNG.integers(0, 256, (6, 2, 3, 3), dtype=np.uint8)
    inputs = [x, np.array(0.02, np.float32), np.array(120, np.uint8), w,
              (RNG.random(6) * 0.01).astype(np.float32), RNG.integers(100, 150, 6).astype(np.uint8),
              np.array(0.5, np.float32), np.array(100, np.uint8),
              RNG.integers(-1000, 1000, 6).astype(np.int32)]
    check("QLinearConv", inputs, {"group": 2, "pads": [1, 1, 1, 1], "strides": [2, 1]}, opset=10)


def test_quantize_errors():
    with pytest.raises(ShapeMismatchError, match="output_dtype"):
        lookup("QuantizeLinear", 21).fn(np, X, np.array(1, np.float32), np.array(0, np.uint8),
                                        output_dtype=TensorProto.INT8)
    with pytest.raises(ShapeMismatchError, match="per-axis scale"):
        lookup("QuantizeLinear", 21).fn(np, X, np.ones(5, np.float32), axis=1)
