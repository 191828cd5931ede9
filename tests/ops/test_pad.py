"""Pad (opsets 2, 11, 18, 19) against onnxruntime."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper
from onnx.reference import ReferenceEvaluator

from infermux.errors import ShapeMismatchError, UnsupportedOpError
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


X = np.arange(60, dtype=np.float32).reshape(3, 5, 4)


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge", "wrap"])
@pytest.mark.parametrize("pads", [(1, -1, 1, 1, 1, -1), (0, 2, 1, -1, 0, 0), (-1, 2, -1, 1, -2, -1)])
def test_pad_modes_with_negative_pads(mode, pads):
    check("Pad", [X, ints(*pads)], {"mode": mode}, opset=19)


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge", "wrap"])
def test_pad_18_axes_and_constant_value(mode):
    check("Pad", [X, ints(1, 2, 3, 0), np.array(2.5, np.float32), ints(-1, 0)], {"mode": mode},
          opset=19)


def test_pad_int_data_and_opset_2_attributes():
    check("Pad", [X.astype(np.int32), ints(0, 1, 0, 0, 2, 0), np.array(-7, np.int32)], opset=13)
    check("Pad", [X], {"mode": "constant", "pads": [1, 0, 0, 0, 1, 2], "value": 1.5}, opset=2)


def test_pad_errors():
    with pytest.raises(ShapeMismatchError, match="pads for 3 axes"):
        run("Pad", [X, ints(1, 1)], opset=13)
    with pytest.raises(UnsupportedOpError, match="mode 'symmetric'"):
        run("Pad", [X, ints(0, 0, 0, 0, 0, 0)], {"mode": "symmetric"}, opset=13)
