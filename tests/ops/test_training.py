"""Optimizer kernels of ai.onnx.preview.training (Adagrad, Adam, Momentum) against
onnx.reference (onnxruntime's default build does not implement this domain)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper
from onnx.reference import ReferenceEvaluator

from infermux.errors import ShapeMismatchError, UnsupportedOpError
from infermux.ops.registry import lookup

TRAINING = "ai.onnx.preview.training"


def reference(op, inputs, attrs, n_out):
    names = [f"in{i}" for i in range(len(inputs))]
    node = helper.make_node(op, names, [f"out{i}" for i in range(n_out)], domain=TRAINING,
                            **attrs)
    graph_inputs = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(v.dtype),
                                                  v.shape) for n, v in zip(names, inputs)]
    outputs = [onnx.ValueInfoProto(name=f"out{i}") for i in range(n_out)]
    model = helper.make_model(helper.make_graph([node], "g", graph_inputs, outputs),
                              opset_imports=[helper.make_opsetid("", 21),
                                             helper.make_opsetid(TRAINING, 1)])
    return ReferenceEvaluator(model).run(None, dict(zip(names, inputs)))


def ours(op, inputs, attrs):
    return lookup(op, 1, TRAINING).fn(np, *inputs, **attrs)


def params(n, roles, dtype=np.float32, seed=0):
    """``roles`` blocks of ``n`` tensors (X..., G..., state...); state tensors are positive."""
    rng = np.random.default_rng(seed)
    shapes = [(3,), (2, 2), (1,)][:n]
    blocks = [[rng.normal(size=s).astype(dtype) for s in shapes] for _ in range(2)]
    blocks += [[np.abs(rng.normal(size=s)).astype(dtype) for s in shapes]
               for _ in range(roles - 2)]
    return [t for block in blocks for t in block]


def check(op, inputs, attrs, n_out):
    want, got = reference(op, inputs, attrs, n_out), ours(op, inputs, attrs)
    assert len(got) == n_out
    for g, w in zip(got, want):
        assert (g.dtype, g.shape) == (inputs[2].dtype, w.shape)
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


R, T0, T3 = np.array(0.1, np.float32), np.array(0, np.int64), np.array(3, np.int64)


@pytest.mark.parametrize("t", [T0, T3])
@pytest.mark.parametrize("n", [1, 3])
def test_adagrad(t, n):
    check("Adagrad", [R, t, *params(n, 3)],
          {"decay_factor": 0.1, "epsilon": 1e-5, "norm_coefficient": 0.01}, 2 * n)


@pytest.mark.parametrize("t", [T0, T3])
@pytest.mark.parametrize("n", [1, 2])
def test_adam(t, n):
    check("Adam", [R, t, *params(n, 4)], {"alpha": 0.95, "beta": 0.85, "epsilon": 1e-2,
                                          "norm_coefficient": 0.001,
                                          "norm_coefficient_post": 0.02}, 3 * n)


@pytest.mark.parametrize("mode", ["standard", "nesterov"])
@pytest.mark.parametrize("t", [T0, T3])
def test_momentum(mode, t):
    check("Momentum", [R, t, *params(2, 3)],
          {"alpha": 0.9, "beta": 0.5, "mode": mode, "norm_coefficient": 0.01}, 4)


def test_float64_parameters_keep_their_type_with_a_float32_rate():
    x_new, h_new = ours("Adagrad", [R, T3, *params(1, 3, np.float64)], {})
    assert x_new.dtype == h_new.dtype == np.float64


def test_errors():
    with pytest.raises(ShapeMismatchError, match="3 tensors per optimized parameter"):
        ours("Adagrad", [R, T0, *params(1, 3)[:2]], {})
    with pytest.raises(UnsupportedOpError, match="mode='heavy_ball'"):
        ours("Momentum", [R, T0, *params(1, 3)],
             {"alpha": 0.9, "beta": 0.5, "mode": "heavy_ball", "norm_coefficient": 0.0})
    with pytest.raises(ValueError, match="alpha, beta"):
        ours("Momentum", [R, T0, *params(1, 3)], {"mode": "standard", "norm_coefficient": 0.0})
