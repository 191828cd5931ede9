"""GridSample, AffineGrid and Col2Im against onnxruntime (and onnx.reference for 3-D cubic)."""

from __future__ import annotations

import numpy as np
import pytest

from infermux.errors import ShapeMismatchError, UnsupportedOpError
from tests.ops.op_oracle import check, run


def ints(*v):
    return np.array(v, dtype=np.int64)


RNG = np.random.default_rng(0)
X = RNG.normal(size=(2, 3, 4, 5)).astype(np.float32)
GRID = RNG.uniform(-1.8, 1.8, size=(2, 3, 6, 2)).astype(np.float32)


@pytest.mark.parametrize("mode", ["nearest", "linear", "cubic"])
@pytest.mark.parametrize("padding_mode", ["zeros", "border", "reflection"])
@pytest.mark.parametrize("align_corners", [0, 1])
def test_grid_sample_2d(mode, padding_mode, align_corners):
    attrs = {"mode": mode, "padding_mode": padding_mode, "align_corners": align_corners}
    check("GridSample", [X, GRID], attrs, opset=20)


@pytest.mark.parametrize("mode, engine", [("nearest", "ort"), ("linear", "ort"), ("cubic", "ref")])
def test_grid_sample_3d(mode, engine):
    x = RNG.normal(size=(1, 2, 3, 4, 5)).astype(np.float32)
    grid = RNG.uniform(-1.3, 1.3, size=(1, 2, 3, 4, 3)).astype(np.float32)
    check("GridSample", [x, grid], {"mode": mode, "padding_mode": "reflection"}, opset=20,
          engine=engine)


def test_grid_sample_16_mode_names():
    check("GridSample", [X, GRID], {"mode": "bicubic"}, opset=16)
    check("GridSample", [X, GRID], {"mode": "bilinear", "padding_mode": "border"}, opset=16)


@pytest.mark.parametrize("theta_shape, size",
                         [((2, 2, 3), (2, 3, 4, 5)), ((2, 3, 4), (2, 3, 4, 5, 6))])
@pytest.mark.parametrize("align_corners", [0, 1])
def test_affine_grid(theta_shape, size, align_corners):
    theta = RNG.normal(size=theta_shape).astype(np.float32)
    check("AffineGrid", [theta, ints(*size)], {"align_corners": align_corners}, opset=20)


def test_col2im_strides_pads_dilations():
    cols = RNG.normal(size=(2, 3 * 2 * 3, 9)).astype(np.float32)
    attrs = {"strides": [2, 1], "pads": [1, 0, 0, 1]}
    check("Col2Im", [cols, ints(5, 4), ints(2, 3)], attrs, opset=18)
    cols = RNG.normal(size=(1, 2 * 2 * 2, 6)).astype(np.float32)
    check("Col2Im", [cols, ints(5, 5), ints(2, 2)], {"dilations": [2, 3]}, opset=18)


def test_spatial_errors():
    with pytest.raises(ShapeMismatchError, match="sliding"):
        run("Col2Im", [np.zeros((1, 8, 4), np.float32), ints(5, 5), ints(2, 2)], opset=18)
    with pytest.raises(UnsupportedOpError, match="padding_mode 'wrap'"):
        run("GridSample", [X, GRID], {"padding_mode": "wrap"}, opset=20)
