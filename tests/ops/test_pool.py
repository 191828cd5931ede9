"""MaxPool, AveragePool, LpPool, global pools, MaxUnpool, MaxRoiPool and RoiAlign against onnxruntime."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from infermux.errors import ShapeMismatchError
from tests.ops import op_oracle
from tests.ops.op_oracle import run

RNG = np.random.default_rng(1)
check = functools.partial(op_oracle.check, atol=1e-5)


def randn(*shape, dtype=np.float32):
    return RNG.standard_normal(shape).astype(dtype)


WINDOWS = [
    {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]},
    {"kernel_shape": [3, 2], "strides": [2, 1], "pads": [1, 0, 0, 1], "ceil_mode": 1},
    {"kernel_shape": [2, 3], "dilations": [2, 2], "strides": [1, 2], "pads": [1, 1, 0, 1], "ceil_mode": 1},
    {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "SAME_UPPER"},
    {"kernel_shape": [2, 2], "strides": [2, 2], "auto_pad": "SAME_LOWER"},
    {"kernel_shape": [3, 3], "auto_pad": "VALID"},
]


@pytest.mark.parametrize("attrs", WINDOWS, ids=str)
def test_max_pool_with_indices(attrs):
    x = randn(2, 3, 9, 8)
    check("MaxPool", [x], attrs, opset=12, n_out=2)


def test_max_pool_column_major_indices_and_int8():
    x = randn(1, 2, 6, 5)
    attrs = {"kernel_shape": [2, 2], "storage_order": 1, "pads": [1, 1, 0, 0]}
    check("MaxPool", [x], attrs, opset=12, n_out=2)
    xi = RNG.integers(-128, 128, (1, 2, 6, 5), dtype=np.int8)
    check("MaxPool", [xi], {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}, opset=12)


@pytest.mark.parametrize("rank", [1, 3])
def test_max_and_average_pool_other_ranks(rank):
    x = randn(1, 2, *([7] * rank))
    attrs = {"kernel_shape": [3] * rank, "strides": [2] * rank, "pads": [1] * (2 * rank)}
    check("MaxPool", [x], attrs, opset=12, n_out=2)
    check("AveragePool", [x], dict(attrs, count_include_pad=1), opset=19)


@pytest.mark.parametrize("include_pad", [0, 1])
@pytest.mark.parametrize("attrs", WINDOWS, ids=str)
def test_average_pool(attrs, include_pad):
    x = randn(2, 3, 9, 8)
    check("AveragePool", [x], dict(attrs, count_include_pad=include_pad), opset=19)


@pytest.mark.parametrize("p", [1, 2, 3])
def test_lp_pool(p):
    x = randn(1, 3, 8, 7)
    check("LpPool", [x], {"kernel_shape": [3, 2], "strides": [2, 1], "pads": [1, 0, 1, 1], "p": p}, opset=18)


@pytest.mark.parametrize("op", ["GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool"])
def test_global_pools(op):
    check(op, [randn(2, 5, 4, 3)], {}, opset=17)


@pytest.mark.parametrize("with_shape", [False, True])
def test_max_unpool_matches_reference(with_shape):
    x = randn(1, 2, 6, 6)
    pooled, indices = run("MaxPool", [x], {"kernel_shape": [2, 2], "strides": [2, 2]}, opset=12, n_out=2)
    inputs = [pooled, indices] + ([np.array([1, 2, 7, 7], np.int64)] if with_shape else [])
    check("MaxUnpool", inputs, {"kernel_shape": [2, 2], "strides": [2, 2]}, opset=11, engine="reference")


def test_max_roi_pool():
    x = randn(2, 3, 10, 12)
    rois = np.array([[0, 1, 1, 8, 6], [1, 0, 2, 11, 9], [0, 3.6, 2.2, 5.1, 9.7]], np.float32)
    check("MaxRoiPool", [x, rois], {"pooled_shape": [3, 2], "spatial_scale": 0.9}, opset=1)


@pytest.mark.parametrize("mode", ["avg", "max"])
@pytest.mark.parametrize("transform", ["half_pixel", "output_half_pixel"])
@pytest.mark.parametrize("sampling_ratio", [0, 2])
def test_roi_align(mode, transform, sampling_ratio):
    x = randn(2, 3, 10, 9)
    rois = np.array([[0, 0, 8, 9], [1.5, 2.2, 6.1, 7.7], [-2, -1, 12, 11], [3, 3, 3.2, 3.1]], np.float32)
    batch = np.array([0, 1, 1, 0], np.int64)
    attrs = {"mode": mode, "coordinate_transformation_mode": transform, "output_height": 3,
             "output_width": 4, "sampling_ratio": sampling_ratio, "spatial_scale": 0.8}
    check("RoiAlign", [x, rois, batch], attrs, opset=16, rtol=1e-4, atol=1e-5)


def test_roi_align_opset_10_has_no_half_pixel_shift():
    x = randn(1, 2, 8, 8)
    rois, batch = np.array([[1, 1, 6, 5]], np.float32), np.array([0], np.int64)
    attrs = {"output_height": 2, "output_width": 2, "sampling_ratio": 2}
    check("RoiAlign", [x, rois, batch], attrs, opset=10, rtol=1e-4, atol=1e-5)


def test_pool_errors_name_the_problem():
    with pytest.raises(ShapeMismatchError, match="kernel_shape"):
        run("MaxPool", [randn(1, 1, 4, 4)], {}, opset=12)
    with pytest.raises(ShapeMismatchError, match="rank >= 3"):
        run("AveragePool", [randn(4, 4)], {"kernel_shape": [2]}, opset=19)
