"""Gather/Scatter kernels against onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest

from infermux.errors import ShapeMismatchError
from infermux.ops.gather_scatter import _scatter_in_rounds
from tests.ops.op_oracle import check, run


def ints(*v):
    return np.array(v, dtype=np.int64)


RNG = np.random.default_rng(0)
X = RNG.normal(size=(3, 5, 4)).astype(np.float32)


def test_gather_negative_indices():
    check("Gather", [X, ints(-1, 0, 2, -5).reshape(2, 2)], {"axis": 1}, opset=13)


@pytest.mark.parametrize("axis, shape", [(2, (3, 2, 4)), (0, (2, 2, 4)), (-2, (1, 3, 2))])
def test_gather_elements_indices_smaller_than_data(axis, shape):
    dim = X.shape[axis]
    check("GatherElements", [X, RNG.integers(-dim, dim, size=shape)], {"axis": axis}, opset=13)


@pytest.mark.parametrize("batch_dims, indices", [
    (0, ints(1, -1, 2, 0).reshape(2, 2)), (1, ints(1, 3, -1, 0, 2, 4).reshape(3, 2, 1))])
def test_gather_nd(batch_dims, indices):
    check("GatherND", [X, indices], {"batch_dims": batch_dims}, opset=13)


@pytest.mark.parametrize("reduction", ["none", "add", "mul", "max", "min"])
def test_scatter_elements_reductions(reduction):
    indices = ints(0, 1, 0, -1, 2, 2).reshape(1, 2, 3)
    updates = RNG.normal(size=(1, 2, 3)).astype(np.float32)
    check("ScatterElements", [X, indices, updates], {"axis": 1, "reduction": reduction}, opset=18)


@pytest.mark.parametrize("reduction", ["none", "add", "mul", "max", "min"])
def test_scatter_nd_reductions(reduction):
    indices = ints(1, 2, 0, -1) if reduction == "none" else ints(1, 2, 1, 2, 0, -1)
    indices = indices.reshape(-1, 2)
    updates = RNG.normal(size=(indices.shape[0], 4)).astype(np.float32)
    check("ScatterND", [X, indices, updates], {"reduction": reduction}, opset=18)


def test_scatter_does_not_touch_its_input():
    before = X.copy()
    run("ScatterND", [X, ints(0).reshape(1, 1), np.zeros((1, 5, 4), np.float32)], opset=13)
    assert (X == before).all()


def test_deprecated_scatter_is_scatter_elements():
    check("Scatter", [X, ints(0, 2).reshape(1, 1, 2), np.ones((1, 1, 2), np.float32)], {"axis": 2},
          opset=9)


@pytest.mark.parametrize("ufunc", [np.multiply, np.add, np.maximum])
def test_rounds_fallback_matches_ufunc_at(ufunc):
    out, expected = X.copy(), X.copy()
    key = (RNG.integers(0, 3, size=(2, 6)), RNG.integers(0, 5, size=(2, 6)), ints(1))
    updates = RNG.normal(size=(2, 6)).astype(np.float32)
    ufunc.at(expected, key, updates)
    _scatter_in_rounds(np, out, key, updates, ufunc)
    np.testing.assert_allclose(out, expected, rtol=1e-6)


@pytest.mark.parametrize("mode", ["linear", "circular"])
def test_tensor_scatter(mode):
    cache = RNG.normal(size=(2, 3, 5, 4)).astype(np.float32)
    update = RNG.normal(size=(2, 3, 2, 4)).astype(np.float32)
    check("TensorScatter", [cache, update, ints(1, 4 if mode == "circular" else 3)], {"mode": mode},
          opset=24, engine="ref")


def test_index_errors():
    with pytest.raises(IndexError, match="out of range"):
        run("Gather", [X, ints(5)], {"axis": 1}, opset=13)
    with pytest.raises(ShapeMismatchError, match="updates shape"):
        run("ScatterND", [X, ints(0).reshape(1, 1), np.zeros((1, 4), np.float32)], opset=13)
