"""Normalisations against onnxruntime / onnx.reference."""

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
X = RNG.standard_normal((2, 4, 3, 5)).astype(np.float32)
C = X.shape[1]


def per_channel(low=0.5, high=1.5):
    return RNG.uniform(low, high, C).astype(np.float32)


def test_batch_norm_inference_opsets():
    params = [per_channel(), per_channel(-1, 1), per_channel(-1, 1), per_channel()]
    check("BatchNormalization", [X, *params], {"epsilon": 1e-3}, opset=15)
    check("BatchNormalization", [X, *params], opset=9)


def test_batch_norm_training_mode_outputs():
    params = [per_channel(), per_channel(-1, 1), per_channel(-1, 1), per_channel()]
    check("BatchNormalization", [X, *params], {"training_mode": 1, "momentum": 0.8},
          opset=15, n_out=3, engine="ref")


@pytest.mark.parametrize("axis", [-1, 1, 0])
def test_layer_norm_with_mean_and_inv_std_dev(axis):
    shape = X.shape[axis:]
    scale = RNG.standard_normal(shape).astype(np.float32)
    bias = RNG.standard_normal(shape).astype(np.float32)
    check("LayerNormalization", [X, scale, bias], {"axis": axis}, opset=17, n_out=3, rtol=1e-4)
    check("LayerNormalization", [X, scale], {"axis": axis, "epsilon": 1e-2}, opset=17, rtol=1e-4)


def test_layer_norm_does_not_modify_its_input():
    x = X.copy()
    run("LayerNormalization", [x, np.ones(5, np.float32), np.zeros(5, np.float32)], opset=17)
    np.testing.assert_array_equal(x, X)


def test_layer_norm_float16_statistics_are_float32():
    out = run("LayerNormalization", [X.astype(np.float16), np.ones(5, np.float16)], opset=17,
              n_out=3)
    assert [o.dtype for o in out] == [np.float16, np.float32, np.float32]


def test_instance_and_group_normalization():
    check("InstanceNormalization", [X, per_channel(), per_channel(-1, 1)], opset=6, rtol=1e-4)
    check("GroupNormalization", [X, per_channel(), per_channel(-1, 1)], {"num_groups": 2},
          opset=21, engine="ref", rtol=1e-4)
    groups = [RNG.uniform(0.5, 1.5, 2).astype(np.float32) for _ in range(2)]
    check("GroupNormalization", [X, *groups], {"num_groups": 2}, opset=18, engine="ref",
          rtol=1e-4)


@pytest.mark.parametrize("axis", [-1, 2])
def test_rms_normalization(axis):
    scale = RNG.standard_normal(X.shape[axis:]).astype(np.float32)
    check("RMSNormalization", [X, scale], {"axis": axis}, opset=23, engine="ref", rtol=1e-4)


def test_lrn_mvn_lp_norm():
    check("LRN", [X], {"size": 3, "alpha": 0.01, "beta": 0.5, "bias": 2.0}, opset=13, rtol=1e-4)
    check("MeanVarianceNormalization", [X], opset=13, rtol=1e-4)
    check("MeanVarianceNormalization", [X], {"axes": [2, 3]}, opset=13, rtol=1e-4)
    x = np.array([[3, -4, 0], [0, 0, 0]], dtype=np.float32)
    check("LpNormalization", [x], {"p": 2}, opset=1)
    (out,) = run("LpNormalization", [x], {"p": 1}, opset=1)  # abs, not the signed sum
    np.testing.assert_allclose(out, [[3 / 7, -4 / 7, 0], [0, 0, 0]], rtol=1e-6)


def test_unsupported_attribute_values_raise():
    with pytest.raises(UnsupportedOpError, match="p=3"):
        run("LpNormalization", [X], {"p": 3}, opset=1)
    with pytest.raises(UnsupportedOpError, match="stash_type=0"):
        run("LayerNormalization", [X, np.ones(5, np.float32)], {"stash_type": 0}, opset=17)
