"""Conv, ConvTranspose, ConvInteger, DeformConv and CausalConvWithState against ORT and onnx.reference."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from infermux.errors import ShapeMismatchError, UnsupportedOpError
from infermux.ops import _depthwise as depthwise_module
from infermux.ops import conv as conv_module
from tests.ops import op_oracle
from tests.ops.op_oracle import oracle, run

RNG = np.random.default_rng(0)
check = functools.partial(op_oracle.check, rtol=1e-4, atol=1e-4)


def randn(*shape, dtype=np.float32):
    return RNG.standard_normal(shape).astype(dtype)


# (N, C, M, group, spatial, kernel, attrs)
CONV_CASES = [
    (1, 8, 16, 1, (12, 12), (3, 3), {"pads": [1, 1, 1, 1]}),
    (2, 8, 12, 4, (9, 10), (3, 2), {"strides": [2, 1], "dilations": [1, 2], "pads": [1, 0, 2, 1]}),
    (1, 6, 6, 1, (10, 7), (3, 3), {"strides": [2, 2], "auto_pad": "SAME_UPPER"}),
    (1, 6, 12, 3, (10, 7), (4, 3), {"strides": [1, 2], "auto_pad": "SAME_LOWER"}),
    (2, 16, 32, 2, (8, 8), (1, 1), {}),
    (1, 16, 8, 1, (9, 9), (1, 1), {"strides": [2, 2], "auto_pad": "VALID"}),
    (3, 4, 6, 2, (11,), (3,), {"strides": [2], "dilations": [2], "pads": [1, 2]}),
    (2, 4, 6, 1, (5, 6, 7), (3, 2, 3),
     {"strides": [1, 2, 1], "dilations": [1, 1, 2], "pads": [1, 0, 1, 1, 1, 0]}),
    # depthwise: large plane (channels-first path), small plane (channels-last), strided, dilated
    (1, 8, 8, 8, (40, 40), (3, 3), {"pads": [1, 1, 1, 1]}),
    (2, 8, 8, 8, (41, 40), (3, 3), {"strides": [2, 2], "pads": [1, 0, 1, 2]}),
    (1, 32, 32, 32, (7, 7), (3, 3), {"pads": [1, 1, 1, 1]}),
    (1, 8, 8, 8, (14, 15), (5, 3), {"strides": [2, 3], "dilations": [2, 1], "pads": [2, 1, 2, 1]}),
    (2, 4, 4, 4, (17,), (3,), {"strides": [2], "pads": [1, 1]}),
    (1, 4, 4, 4, (5, 6, 7), (3, 3, 3), {"pads": [1] * 6}),
    (1, 4, 8, 4, (9, 9), (3, 3), {"pads": [1, 1, 1, 1]}),  # depthwise with multiplier 2
]


@pytest.fixture(params=["plain", "fast", "fast-ufunc"])
def conv_path(request, monkeypatch):
    """Which Conv implementation runs: the xp kernel, the CPU fast path, or it without numba."""
    if request.param == "fast-ufunc":
        monkeypatch.setattr(depthwise_module, "_LOOPS", {})
    return request.param != "plain"


@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: f"{c[1]}x{c[2]}g{c[3]}{c[4]}k{c[5]}")
def test_conv_matches_onnxruntime(case, conv_path):
    n, c, m, group, spatial, kernel, attrs = case
    x, w, b = randn(n, c, *spatial), randn(m, c // group, *kernel), randn(m)
    attrs = dict(attrs, group=group)
    check("Conv", [x, w, b], attrs, opset=17, fast=conv_path)


def test_conv_float16_keeps_dtype(conv_path):
    x, w = randn(1, 6, 9, 9, dtype=np.float16), randn(6, 1, 3, 3, dtype=np.float16)
    attrs = {"group": 6, "pads": [1, 1, 1, 1]}
    check("Conv", [x, w], attrs, opset=17, fast=conv_path, rtol=1e-2, atol=1e-2)


@pytest.mark.skipif(not depthwise_module._LOOPS, reason="numba is not available")
@pytest.mark.parametrize("size", [48, 30], ids=["planar", "channels-last"])
def test_depthwise_parallel_loops_equal_serial(size):
    x, w, b = randn(2, 64, size, size), randn(64, 1, 3, 3), randn(64)
    win = conv_module.conv_window(x.shape[2:], (3, 3), [2, 1], None, [1, 1, 1, 1])
    serial = depthwise_module._depthwise_compiled(x, w, b, win, parallel=False)
    parallel = depthwise_module._depthwise_compiled(x, w, b, win, parallel=True)
    np.testing.assert_array_equal(serial, parallel)
    op_oracle.assert_outputs_match(
        [serial], run("Conv", [x, w, b], {"group": 64, "strides": [2, 1], "pads": [1, 1, 1, 1]}, opset=17),
        rtol=1e-4, atol=1e-4)


# (N, C, M, group, spatial, kernel, attrs)
CONV_TRANSPOSE_CASES = [
    (1, 4, 6, 2, (5, 5), (3, 3), {"strides": [2, 2], "pads": [1, 1, 1, 1], "output_padding": [1, 1]}),
    (2, 4, 3, 1, (5, 4), (3, 2), {"strides": [3, 2], "dilations": [2, 1], "pads": [0, 1, 2, 0]}),
    (1, 4, 4, 1, (5, 5), (3, 3), {"strides": [2, 2], "output_shape": [11, 12]}),
    (1, 4, 4, 4, (5, 5), (4, 4), {"strides": [2, 2], "auto_pad": "SAME_UPPER"}),
    (1, 3, 2, 1, (6,), (4,), {"strides": [3], "pads": [1, 2], "output_padding": [2]}),
    (1, 2, 2, 1, (3, 4, 3), (2, 3, 2), {"strides": [2, 1, 2], "pads": [0, 1, 0, 1, 0, 0]}),
]


@pytest.mark.parametrize("case", CONV_TRANSPOSE_CASES, ids=lambda c: f"{c[4]}k{c[5]}g{c[3]}")
def test_conv_transpose_matches_onnxruntime(case):
    n, c, m, group, spatial, kernel, attrs = case
    x, w, b = randn(n, c, *spatial), randn(c, m // group, *kernel), randn(m)
    attrs = dict(attrs, group=group)
    check("ConvTranspose", [x, w, b], attrs, opset=17)


def test_conv_integer_matches_onnxruntime():
    x = RNG.integers(0, 256, (2, 4, 7, 7), dtype=np.uint8)
    w = RNG.integers(0, 256, (6, 2, 3, 3), dtype=np.uint8)
    zx, zw = np.array(120, np.uint8), np.array(130, np.uint8)
    attrs = {"group": 2, "pads": [1, 1, 1, 1], "strides": [2, 1]}
    got = run("ConvInteger", [x, w, zx, zw], attrs, opset=10)
    expected = oracle("ConvInteger", [x, w, zx, zw], attrs, opset=10)
    assert got[0].dtype == np.int32
    np.testing.assert_array_equal(got[0], expected[0])


def test_deform_conv_matches_reference():
    x, w, b = randn(2, 4, 6, 7), randn(6, 2, 3, 2), randn(6)
    attrs = {"group": 2, "offset_group": 2, "pads": [1, 0, 1, 1], "strides": [1, 2], "dilations": [2, 1]}
    out_h, out_w = (6 + 2 - 5) // 1 + 1, (7 + 1 - 2) // 2 + 1
    offset = randn(2, 2 * 3 * 2 * 2, out_h, out_w)
    mask = RNG.random((2, 2 * 3 * 2, out_h, out_w)).astype(np.float32)
    inputs = [x, w, offset, b, mask]
    check("DeformConv", inputs, attrs, opset=22, engine="reference")


@pytest.mark.parametrize("activation", ["none", "silu"])
def test_causal_conv_with_state_matches_reference(activation):
    x, w, b, past = randn(2, 3, 5), randn(3, 1, 4), randn(3), randn(2, 3, 3)
    attrs = {"activation": activation}
    check("CausalConvWithState", [x, w, b, past], attrs, opset=27, n_out=2, engine="reference")


def test_conv_rejects_channel_mismatch_and_unknown_auto_pad():
    x, w = randn(1, 6, 5, 5), randn(4, 4, 3, 3)
    with pytest.raises(ShapeMismatchError, match="group"):
        run("Conv", [x, w], {"group": 1}, opset=17)
    with pytest.raises(UnsupportedOpError, match="auto_pad"):
        run("Conv", [x, randn(4, 6, 3, 3)], {"auto_pad": "SAME"}, opset=17)
