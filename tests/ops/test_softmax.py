"""Softmax, LogSoftmax and Hardmax (opset < 13 flattening vs opset 13 per-axis) against onnxruntime."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper
from onnx.reference import ReferenceEvaluator

from infermux.ops.registry import lookup


def oracle(op, inputs, attrs=None, *, opset, n_out=1, engine="ort"):
    """Run one ``op`` node (None: an omitted optional input) with onnxruntime or onnx.reference."""
    names = [f"in{i}" if v is not None else "" for i, v in enumerate(inputs)]
    node = helper.make_node(op, names, [f"out{i}" for i in range(n_out)], **(attrs or {}))
    graph_inputs = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
                    for n, v in zip(names, inputs) if n]
    outputs = [onnx.ValueInfoProto(name=f"out{i}") for i in range(n_out)]
    model = helper.make_model(helper.make_graph([node], "g", graph_inputs, outputs),
                              opset_imports=[helper.make_opsetid("", opset)], ir_version=10)
    feeds = {n: v for n, v in zip(names, inputs) if n}
    if engine == "ort":
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        return session.run(None, feeds)
    return ReferenceEvaluator(model).run(None, feeds)


def run(op, inputs, attrs=None, *, opset, n_out=1):
    """Call the registered kernel the way the runner does."""
    k = lookup(op, opset)
    kwargs = dict(attrs or {})
    if k.wants_num_outputs:
        kwargs["_num_outputs"] = n_out
    if k.wants_used_outputs:
        kwargs["_used_outputs"] = (True,) * n_out
    out = k.fn(np, *inputs, **kwargs)
    return (list(out) if isinstance(out, (tuple, list)) else [out])[:n_out]


def check(op, inputs, attrs=None, *, opset, n_out=1, engine="ort", rtol=1e-5, atol=1e-6):
    """Kernel outputs equal the oracle's: same dtype, shape and values within tolerance."""
    expected = oracle(op, inputs, attrs, opset=opset, n_out=n_out, engine=engine)
    got = run(op, inputs, attrs, opset=opset, n_out=n_out)
    assert len(got) == len(expected)
    for e, g in zip(expected, got):
        assert (g.dtype, g.shape) == (e.dtype, e.shape)
        np.testing.assert_allclose(g.astype(np.float64), e.astype(np.float64), rtol=rtol, atol=atol)


X = np.random.default_rng(0).standard_normal((2, 3, 4)).astype(np.float32) * 5


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax", "Hardmax"])
@pytest.mark.parametrize("opset, axis", [(11, 1), (11, -1), (11, 0), (13, 1), (13, -1), (13, 0)])
def test_against_onnxruntime(op, opset, axis):
    check(op, [X], {"axis": axis}, opset=opset)


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
def test_large_logits_do_not_overflow(op):
    x = np.array([[1000.0, 1001.0, 1002.0], [-1e4, 0.0, 1e4]], dtype=np.float32)
    (out,) = run(op, [x], opset=13)
    assert np.isfinite(out).all()
    check(op, [x], opset=13)


def test_softmax_keeps_float16_and_leaves_input_alone():
    x = X.astype(np.float16)
    before = x.copy()
    (out,) = run("Softmax", [x], {"axis": 1}, opset=13)
    assert out.dtype == np.float16
    np.testing.assert_array_equal(x, before)
    np.testing.assert_allclose(out.sum(axis=1), 1, rtol=2e-3)


def test_hardmax_ties_pick_the_first():
    x = np.array([[1, 3, 3, 0]], dtype=np.float32)
    (out,) = run("Hardmax", [x], opset=13)
    assert out.tolist() == [[0, 1, 0, 0]]


def test_axis_out_of_range_raises():
    with pytest.raises(ValueError, match="axis 3"):
        run("Softmax", [X], {"axis": 3}, opset=13)
