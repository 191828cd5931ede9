"""Resize and Upsample against onnxruntime and onnx.reference."""

from __future__ import annotations

import functools
import time

import numpy as np
import pytest

from infermux.errors import UnsupportedOpError
from tests.ops import op_oracle
from tests.ops.op_oracle import run

# float32 kernels against float64 sums in the oracles
check = functools.partial(op_oracle.check, rtol=1e-4, atol=1e-5)


def f32(*v):
    return np.array(v, dtype=np.float32)


RNG = np.random.default_rng(0)
X = RNG.normal(size=(1, 2, 5, 7)).astype(np.float32)
EMPTY = np.zeros(0, np.float32)


@pytest.mark.parametrize("transform", ["half_pixel", "half_pixel_symmetric", "pytorch_half_pixel",
                                       "asymmetric", "align_corners"])
@pytest.mark.parametrize("mode", ["nearest", "linear", "cubic"])
@pytest.mark.parametrize("scales", [(1, 1, 2.3, 3), (1, 1, 0.5, 0.6)])
def test_resize_modes_and_transforms(transform, mode, scales):
    check("Resize", [X, EMPTY, f32(*scales)],
          {"mode": mode, "coordinate_transformation_mode": transform}, opset=19, engine="ref")


@pytest.mark.parametrize("nearest_mode", ["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"])
def test_resize_nearest_modes_match_onnxruntime(nearest_mode):
    attrs = {"mode": "nearest", "nearest_mode": nearest_mode}
    check("Resize", [X, EMPTY, f32(1, 1, 1.5, 0.4)], attrs, opset=19)


@pytest.mark.parametrize("mode", ["linear", "cubic"])
@pytest.mark.parametrize("exclude_outside", [0, 1])
def test_resize_antialias_and_exclude_outside(mode, exclude_outside):
    attrs = {"mode": mode, "antialias": 1, "exclude_outside": exclude_outside, "cubic_coeff_a": -0.5}
    check("Resize", [X, EMPTY, f32(1, 1, 0.45, 0.6)], attrs, opset=19)


@pytest.mark.parametrize("mode", ["nearest", "linear", "cubic"])
def test_resize_sizes_axes_policy_and_crop(mode):
    check("Resize", [X, None, None, np.array([4, 6], np.int64)],
          {"mode": mode, "axes": [3, 2], "keep_aspect_ratio_policy": "not_smaller"}, opset=19)
    check("Resize", [X, f32(0.2, 0.1, 0.9, 1.2), None, np.array([4, 6], np.int64)],
          {"mode": mode, "axes": [2, 3], "coordinate_transformation_mode": "tf_crop_and_resize",
           "extrapolation_value": -3.0}, opset=19)


def test_resize_keeps_integer_and_half_dtypes():
    xu = RNG.integers(0, 255, size=(1, 3, 6, 8)).astype(np.uint8)
    # Integer results are rounded half to even, as onnx.reference does (onnxruntime truncates).
    check("Resize", [xu, EMPTY, f32(1, 1, 1.7, 0.6)], {"mode": "linear"}, opset=19, engine="ref",
          atol=1)  # float32 weights may tip an exact .5 tie
    half = X.astype(np.float16)
    got = run("Resize", [half, None, f32(1, 1, 2, 2)], {"mode": "linear"}, opset=19)[0]
    assert got.dtype == np.float16 and got.shape == (1, 2, 10, 14)


@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_upsample_and_resize_10_follow_onnxruntime(mode):
    check("Upsample", [X, f32(1, 1, 2.5, 1.7)], {"mode": mode}, opset=9)
    check("Upsample", [X], {"mode": mode, "scales": [1.0, 1.0, 2.0, 3.0]}, opset=7)
    check("Resize", [X, f32(1, 1, 0.5, 1.6)], {"mode": mode}, opset=10)


def test_resize_is_vectorised():
    x = RNG.random((1, 16, 128, 128), dtype=np.float32)
    start = time.perf_counter()
    y = run("Resize", [x, None, f32(1, 1, 2, 2)], {"mode": "cubic"}, opset=19)[0]
    assert y.shape == (1, 16, 256, 256)
    assert time.perf_counter() - start < 2.0  # a per-pixel loop would take minutes


def test_resize_errors():
    with pytest.raises(ValueError, match="exactly one of"):
        run("Resize", [X, None, f32(1, 1, 2, 2), np.array([1, 2, 3, 4], np.int64)], opset=19)
    with pytest.raises(UnsupportedOpError, match="coordinate_transformation_mode 'diagonal'"):
        run("Resize", [X, None, f32(1, 1, 2, 2)], {"coordinate_transformation_mode": "diagonal"},
            opset=19)
