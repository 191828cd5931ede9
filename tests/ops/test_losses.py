"""NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss against onnxruntime."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper
from onnx.reference import ReferenceEvaluator

from infermux.errors import UnsupportedOpError
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


RNG = np.random.default_rng(0)
SCORES = RNG.standard_normal((3, 5, 2, 4)).astype(np.float32)
TARGET = RNG.integers(0, 5, (3, 2, 4)).astype(np.int64)
TARGET[0, 0, :2] = 1  # some entries equal ignore_index
WEIGHT = RNG.uniform(0.2, 2.0, 5).astype(np.float32)


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("weight", [None, WEIGHT])
@pytest.mark.parametrize("ignore_index", [None, 1])
def test_nll_loss(reduction, weight, ignore_index):
    attrs = {"reduction": reduction}
    if ignore_index is not None:
        attrs["ignore_index"] = ignore_index
    check("NegativeLogLikelihoodLoss", [SCORES, TARGET, weight], attrs, opset=13)


@pytest.mark.parametrize("reduction", ["none", "mean"])
def test_softmax_cross_entropy_with_log_prob(reduction):
    attrs = {"reduction": reduction, "ignore_index": 1}
    check("SoftmaxCrossEntropyLoss", [SCORES, TARGET, WEIGHT], attrs, opset=13, n_out=2,
          rtol=1e-5)
    check("SoftmaxCrossEntropyLoss", [SCORES[:, :, 0, 0], TARGET[:, 0, 0]], opset=13)


def test_bad_reduction_and_shapes_raise():
    with pytest.raises(UnsupportedOpError, match="reduction='avg'"):
        run("NegativeLogLikelihoodLoss", [SCORES, TARGET], {"reduction": "avg"}, opset=13)
    with pytest.raises(ValueError, match="do not match"):
        run("NegativeLogLikelihoodLoss", [SCORES, TARGET[:, 0]], opset=13)
