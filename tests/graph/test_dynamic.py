"""Dynamic and bounded shapes: compile once, run any shape within the bounds, refuse the rest.

The CPU plan is shape-agnostic (see ``infermux/graph/reshape.py`` and ``devices/plan.py``): one
plan serves every shape, with no per-shape state.  These tests check the user-visible side of that
(results equal to onnxruntime's at each shape; a shape after another gives the same result as in
a fresh compile; the plan's step list and weights are untouched by runs).  The timing side is
``tools/dynamic_overhead.py``.  Tolerance: rtol 1e-4, atol 1e-5 against onnxruntime.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import infermux as im
from infermux.errors import ShapeMismatchError
from tests.helpers import make_model

RNG = np.random.default_rng(1)
W = RNG.standard_normal((8, 3, 3, 3)).astype(np.float32)
FC = RNG.standard_normal((8 * 16 * 16, 4)).astype(np.float32)


def conv_proto() -> onnx.ModelProto:
    nodes = [helper.make_node("Conv", ["x", "W"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["y"], name="relu")]
    return make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 16, 16])],
                      [numpy_helper.from_array(W, "W")])


def flatten_proto() -> onnx.ModelProto:
    """Conv -> Shape-driven flatten (Shape, Gather, Concat, Reshape) -> MatMul: shape ops at run time."""
    fc = numpy_helper.from_array(FC, "FC")
    consts = [numpy_helper.from_array(np.array(0, np.int64), "zero"),
              numpy_helper.from_array(np.array([-1], np.int64), "minus_one")]
    nodes = [helper.make_node("Conv", ["x", "W"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Shape", ["c"], ["s"], name="shape"),
             helper.make_node("Gather", ["s", "zero"], ["n"], name="batch"),
             helper.make_node("Unsqueeze", ["n", "zero_axes"], ["n1"], name="batch_1d"),
             helper.make_node("Concat", ["n1", "minus_one"], ["target"], name="target", axis=0),
             helper.make_node("Reshape", ["c", "target"], ["f"], name="flatten"),
             helper.make_node("MatMul", ["f", "FC"], ["y"], name="fc")]
    consts.append(numpy_helper.from_array(np.array([0], np.int64), "zero_axes"))
    return make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
                      [numpy_helper.from_array(W, "W"), fc, *consts])


def compiled_with(proto, shape):
    core = im.Core()
    model = core.read_model(proto.SerializeToString())
    model.reshape(shape)
    return model, core.compile_model(model, "CPU")


def reference(oracle, proto, x):
    dynamic = onnx.ModelProto()
    dynamic.CopyFrom(proto)
    for vi in list(dynamic.graph.input) + list(dynamic.graph.output):
        for d in vi.type.tensor_type.shape.dim:
            d.dim_param = "d"  # every dim dynamic: onnxruntime then accepts any shape
    return oracle.run_reference(dynamic, {"x": x})[0]


def test_bounded_batch_runs_every_batch_within_the_bounds(oracle):
    model, compiled = compiled_with(conv_proto(), "1..8,3,16,16")
    assert model.is_dynamic()
    assert str(compiled.input(0).partial_shape) == "[1..8,3,16,16]"
    assert str(compiled.output(0).partial_shape) == "[1..8,8,16,16]"
    for batch in (1, 3, 8):
        x = RNG.standard_normal((batch, 3, 16, 16)).astype(np.float32)
        out = compiled({"x": x})[0]
        assert out.shape == (batch, 8, 16, 16)
        np.testing.assert_allclose(out, reference(oracle, conv_proto(), x), rtol=1e-4, atol=1e-5)


def test_a_shape_outside_the_bounds_is_refused_naming_the_input():
    _, compiled = compiled_with(conv_proto(), "1..8,3,16,16")
    request = compiled.create_infer_request()
    with pytest.raises(ShapeMismatchError) as info:
        request.infer({"x": np.zeros((9, 3, 16, 16), np.float32)})
    text = str(info.value)
    assert "'x'" in text and "[1..8,3,16,16]" in text and "[9,3,16,16]" in text
    out = request.infer({"x": np.ones((2, 3, 16, 16), np.float32)})[0]  # the request still works
    assert out.shape == (2, 8, 16, 16)


def test_fully_dynamic_input(oracle):
    _, compiled = compiled_with(conv_proto(), [-1, 3, -1, -1])
    assert str(compiled.output(0).partial_shape) == "[?,8,?,?]"
    x = RNG.standard_normal((2, 3, 5, 7)).astype(np.float32)
    out = compiled(x)[0]
    assert out.shape == (2, 8, 5, 7)
    np.testing.assert_allclose(out, reference(oracle, conv_proto(), x), rtol=1e-4, atol=1e-5)


def test_one_plan_serves_every_shape_with_no_per_shape_state():
    _, compiled = compiled_with(flatten_proto(), "?,3,16,16")
    plan = compiled.device_model.plan
    steps_before = [(s.op_type, s.ins, s.outs) for s in plan.steps]
    shape_ops = {s.op_type for s in plan.steps} & {"Shape", "Gather", "Concat"}
    assert shape_ops, "with a dynamic batch the Shape subgraph must stay in the plan"
    x8 = RNG.standard_normal((8, 3, 16, 16)).astype(np.float32)
    x3 = x8[:3].copy()
    after_8 = compiled(x8)[0].copy()
    after_3 = compiled(x3)[0].copy()
    assert after_8.shape == (8, 4) and after_3.shape == (3, 4)
    np.testing.assert_allclose(after_3, after_8[:3], rtol=1e-5, atol=1e-6)
    _, fresh = compiled_with(flatten_proto(), "?,3,16,16")
    np.testing.assert_array_equal(fresh(x3)[0], after_3)
    assert compiled.device_model.plan is plan
    assert [(s.op_type, s.ins, s.outs) for s in plan.steps] == steps_before


def test_static_reshape_folds_the_shape_subgraph_away():
    _, compiled = compiled_with(flatten_proto(), [2, 3, 16, 16])
    ops = {s.op_type for s in compiled.device_model.plan.steps}
    assert not ops & {"Shape", "Gather", "Concat"}, ops
    assert compiled(np.zeros((2, 3, 16, 16), np.float32))[0].shape == (2, 4)


def test_a_symbolic_dim_from_the_file_runs_at_any_size():
    proto = conv_proto()
    proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "batch"
    proto.graph.output[0].type.tensor_type.shape.dim[0].dim_param = "batch"
    compiled = im.Core().compile_model(proto.SerializeToString(), "CPU")
    assert str(compiled.input(0).partial_shape) == "[?,3,16,16]"
    for batch in (1, 4):
        assert compiled(np.zeros((batch, 3, 16, 16), np.float32))[0].shape == (batch, 8, 16, 16)
