"""Gather/Scatter kernels against onnxruntime."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper
from onnx.reference import ReferenceEvaluator

from infermux.errors import ShapeMismatchError
from infermux.ops.gather_scatter import _scatter_in_rounds
from infermux.ops.registry import lookup


def oracle(op, inputs, attrs, *, opset, n_out=1, engine="ort"):
    """Outputs of one ``op`` node run by ORT or onnx.reference; None inputs are omitted ones."""
    names = [f"in{i}" if v is not None else "" for i, v in enumerate(inputs)]
    node = helper.make_node(op, names, [f"out{i}" for i in range(n_out)], **attrs)
    graph_inputs = [
        helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
        for n, v in zip(names, inputs) if n]
    outputs = [onnx.ValueInfoProto(name=f"out{i}") for i in range(n_out)]
    model = helper.make_model(helper.make_graph([node], "g", graph_inputs, outputs),
                              opset_imports=[helper.make_opsetid("", opset)], ir_version=10)
    model = onnx.shape_inference.infer_shapes(model)
    feeds = {n: v for n, v in zip(names, inputs) if n}
    if engine == "ort":
        session = ort.InferenceSession(model.SerializeToString(),
                                       providers=["CPUExecutionProvider"])
        return session.run(None, feeds)
    return ReferenceEvaluator(model).run(None, feeds)


def run(op, inputs, attrs=None, *, opset, n_out=1):
    k = lookup(op, opset)
    kwargs = dict(attrs or {})
    if k.wants_num_outputs:
        kwargs["_num_outputs"] = n_out
    out = k.fn(np, *inputs, **kwargs)
    return list(out) if isinstance(out, (tuple, list)) else [out]


def check(op, inputs, attrs=None, *, opset, n_out=1, engine="ort"):
    expected = oracle(op, inputs, attrs or {}, opset=opset, n_out=n_out, engine=engine)
    got = run(op, inputs, attrs, opset=opset, n_out=n_out)
    for e, g in zip(expected, got):
        assert g.dtype == e.dtype and g.shape == e.shape, (g.dtype, g.shape, e.dtype, e.shape)
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6)


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
