"""Compile passes of infermux/graph/passes.py that rewrite ops: per-channel Mul/Add folded into
Conv and BatchNormalization, Sum as Add, CastLike and large ConstantOfShape folding.  Each
rewrite is checked for its shape and, on random weights, against onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from infermux.devices.compile import kernel_chooser
from infermux.devices.plan import Plan
from infermux.devices.plugin import optimize_model
from infermux.graph import passes
from infermux.graph.onnx_reader import read_onnx

RNG = np.random.default_rng(0)


def _const(name, value, dtype=np.float32):
    return numpy_helper.from_array(np.asarray(value, dtype=dtype), name)


def _model(nodes, inputs, outputs, inits, opset=13, shapes=True):
    vi = lambda name, shape: helper.make_tensor_value_info(
        name, TensorProto.FLOAT, shape if shapes else None)
    graph = helper.make_graph(nodes, "g", [vi(*i) for i in inputs], [vi(*o) for o in outputs],
                              inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def _run(model, rewrite, feeds):
    """(ops after ``rewrite``, its outputs, onnxruntime's outputs)."""
    import onnxruntime as ort

    optimized = optimize_model(read_onnx(model))
    rewrite(optimized.graph, optimized.opsets)
    passes.eliminate_dead_code(optimized.graph)
    plan = Plan(optimized.graph, optimized.opsets, np, kernel_for=kernel_chooser(True))
    got = plan.run([feeds[n] for n in plan.input_names])
    want = ort.InferenceSession(model.SerializeToString(),
                                providers=["CPUExecutionProvider"]).run(None, feeds)
    return [n.op_type for n in optimized.graph.nodes], got, want


def _assert_close(got, want, rtol=1e-5):
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == w.dtype
        assert np.max(np.abs(g - w)) <= rtol * np.max(np.abs(w))


def _input(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def _affine(graph, opsets):
    return passes.fold_affine_into_conv(graph)


@pytest.mark.parametrize("steps", [("Mul", "Add"), ("Mul",), ("Add",)])
@pytest.mark.parametrize("scale_first", [False, True])
def test_per_channel_mul_add_fold_into_conv(steps, scale_first):
    inits = [_const("w", RNG.standard_normal((4, 3, 3, 3))), _const("b", RNG.standard_normal(4)),
             _const("s", RNG.standard_normal((4, 1, 1))),
             _const("t", RNG.standard_normal((4, 1, 1)))]
    nodes, last = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1])], "c"
    for op in steps:
        args = [last, "s" if op == "Mul" else "t"]
        nodes.append(helper.make_node(op, args[::-1] if scale_first else args, [f"{op}_out"]))
        last = f"{op}_out"
    nodes.append(helper.make_node("Relu", [last], ["y"]))
    model = _model(nodes, [("x", [1, 3, 5, 5])], [("y", [1, 4, 5, 5])], inits)
    ops, got, want = _run(model, _affine, {"x": _input(1, 3, 5, 5)})
    assert ops == ["Conv", "Relu"]
    _assert_close(got, want)


def test_mul_add_fold_into_batchnorm_when_the_rank_is_known_from_the_conv():
    c = 3
    inits = [_const("w", RNG.standard_normal((c, 2, 1, 1))),
             _const("scale", RNG.uniform(0.5, 2, c)), _const("bias", RNG.standard_normal(c)),
             _const("mean", RNG.standard_normal(c)), _const("var", RNG.uniform(0.5, 2, c)),
             _const("s", RNG.standard_normal((c, 1, 1))),
             _const("t", RNG.standard_normal((c, 1, 1)))]
    nodes = [helper.make_node("Conv", ["x", "w"], ["h"]),
             helper.make_node("MaxPool", ["h"], ["p"], kernel_shape=[2, 2]),
             helper.make_node("BatchNormalization", ["p", "scale", "bias", "mean", "var"], ["n"]),
             helper.make_node("Mul", ["n", "s"], ["m"]),
             helper.make_node("Add", ["m", "t"], ["y"])]
    model = _model(nodes, [("x", [1, 2, 6, 6])], [("y", [1, c, 5, 5])], inits, shapes=False)
    ops, got, want = _run(model, _affine, {"x": _input(1, 2, 6, 6)})
    assert ops == ["Conv", "MaxPool", "BatchNormalization"]
    _assert_close(got, want)


def test_constants_that_are_not_per_channel_stay():
    inits = [_const("w", RNG.standard_normal((4, 3, 1, 1))),
             _const("s", RNG.standard_normal((1, 1, 5))),  # along W, not channels
             _const("t", RNG.standard_normal((4, 1, 1)))]
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"]),
             helper.make_node("Mul", ["c", "s"], ["m"])]
    model = _model(nodes, [("x", [1, 3, 5, 5])], [("m", [1, 4, 5, 5])], inits)
    ops, got, want = _run(model, _affine, {"x": _input(1, 3, 5, 5)})
    assert ops == ["Conv", "Mul"]
    _assert_close(got, want)


def test_a_conv_output_read_twice_is_not_folded():
    inits = [_const("w", RNG.standard_normal((2, 2, 1, 1))), _const("s", [[[2.0]], [[3.0]]])]
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"]),
             helper.make_node("Mul", ["c", "s"], ["m"]),
             helper.make_node("Add", ["m", "c"], ["y"])]
    model = _model(nodes, [("x", [1, 2, 3, 3])], [("y", [1, 2, 3, 3])], inits)
    ops, got, want = _run(model, _affine, {"x": _input(1, 2, 3, 3)})
    assert ops == ["Conv", "Mul", "Add"]
    _assert_close(got, want)


def test_two_input_sum_becomes_add():
    nodes = [helper.make_node("Sum", ["a", "b"], ["s"]), helper.make_node("Relu", ["s"], ["y"]),
             helper.make_node("Sum", ["a", "b", "s"], ["z"])]
    model = _model(nodes, [("a", [2, 3]), ("b", [2, 3])], [("y", [2, 3]), ("z", [2, 3])], [])
    feeds = {"a": RNG.standard_normal((2, 3)).astype(np.float32),
             "b": RNG.standard_normal((2, 3)).astype(np.float32)}
    ops, got, want = _run(model, passes.sum_to_add, feeds)
    assert ops == ["Add", "Relu", "Sum"]
    _assert_close(got, want)


def test_castlike_of_a_constant_folds_when_the_type_is_known():
    nodes = [helper.make_node("CastLike", ["c", "x"], ["cx"]),
             helper.make_node("Mul", ["x", "cx"], ["y"])]
    model = _model(nodes, [("x", [4])], [("y", [4])], [_const("c", 2.5, np.float64)], opset=15)
    optimized = optimize_model(read_onnx(model))
    assert [n.op_type for n in optimized.graph.nodes] == ["Mul"]
    assert optimized.graph.initializers["cx"].dtype == np.float32


def test_large_constant_of_shape_is_folded():
    shape = numpy_helper.from_array(np.array([4100, 4100], np.int64), "shape")  # 67 MB > 64 MB
    node = helper.make_node("ConstantOfShape", ["shape"], ["w"],
                            value=numpy_helper.from_array(np.array([0.5], np.float32)))
    mm = helper.make_node("MatMul", ["x", "w"], ["y"])
    model = _model([node, mm], [("x", [1, 4100])], [("y", [1, 4100])], [shape])
    optimized = optimize_model(read_onnx(model))
    assert [n.op_type for n in optimized.graph.nodes] == ["MatMul"]
    assert optimized.graph.initializers["w"].shape == (4100, 4100)
