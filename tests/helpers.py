"""Small ONNX models built in code for unit tests."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def make_model(nodes, inputs, outputs, initializers=(), opset=17, name="m") -> onnx.ModelProto:
    """A checked ModelProto from helper-made pieces."""
    graph = helper.make_graph(nodes, name, inputs, outputs, list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def tiny_mlp(batch="N") -> onnx.ModelProto:
    """x[N,4] -> MatMul(W) -> Add(b) -> Relu -> y[N,3]."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((4, 3)).astype(np.float32), "W")
    b = numpy_helper.from_array(rng.standard_normal(3).astype(np.float32), "b")
    nodes = [helper.make_node("MatMul", ["x", "W"], ["h"], name="mm"),
             helper.make_node("Add", ["h", "b"], ["z"], name="add"),
             helper.make_node("Relu", ["z"], ["y"], name="relu")]
    return make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 4])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 3])], [w, b])


def two_input_add() -> onnx.ModelProto:
    """a[2,3] + b[2,3] -> s; a * b -> p (two outputs)."""
    nodes = [helper.make_node("Add", ["a", "b"], ["s"], name="add"),
             helper.make_node("Mul", ["a", "b"], ["p"], name="mul")]
    vi = lambda n: helper.make_tensor_value_info(n, TensorProto.FLOAT, [2, 3])  # noqa: E731
    return make_model(nodes, [vi("a"), vi("b")], [vi("s"), vi("p")])


def mlp_reference(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    """NumPy reference for :func:`tiny_mlp`."""
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    return np.maximum(x @ inits["W"] + inits["b"], 0)


def accumulator_model() -> onnx.ModelProto:
    """A stateful model: y = state + x; state <- y (a variable "acc" of shape [1], from zeros)."""
    read = helper.make_node("ReadValue", [], ["s"], name="read", domain="infermux",
                            variable_id="acc", variable_shape=[1], variable_type=TensorProto.FLOAT)
    add = helper.make_node("Add", ["s", "x"], ["y"], name="add")
    write = helper.make_node("Assign", ["y"], ["y_assigned"], name="write", domain="infermux",
                             variable_id="acc")
    graph = helper.make_graph([read, add, write], "acc",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                   helper.make_opsetid("infermux", 1)])


def replace_constant_weights(model: onnx.ModelProto, make_weight) -> onnx.ModelProto:
    """A copy whose ``ConstantOfShape`` weights become initializers ``make_weight(value, shape)``
    (the light models build every weight that way, which makes their outputs uniform), with the
    final Softmax's input exposed as an extra graph output."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    keep = []
    for node in graph.node:
        if node.op_type == "ConstantOfShape" and node.input[0] in inits:
            value = numpy_helper.to_array(node.attribute[0].t).reshape(())
            shape = tuple(int(d) for d in inits[node.input[0]])
            weight = np.asarray(make_weight(value, shape)).astype(value.dtype)
            graph.initializer.append(numpy_helper.from_array(weight, node.output[0]))
        else:
            keep.append(node)
    del graph.node[:]
    graph.node.extend(keep)
    last = graph.node[-1]
    if last.op_type == "Softmax":
        graph.output.append(helper.make_tensor_value_info(last.input[0], TensorProto.FLOAT, None))
    return out


def with_random_weights(model: onnx.ModelProto, seed: int = 0) -> onnx.ModelProto:
    """Light-model weights scaled by ``U(0.5, 1.5)`` (see :func:`replace_constant_weights`)."""
    rng = np.random.default_rng(seed)
    return replace_constant_weights(
        model, lambda value, shape: value * (0.5 + rng.random(shape, dtype=np.float32)).astype(value.dtype))
