"""Graph fusions (infermux/graph/fusion.py): each pattern fuses into the expected ``infermux`` op,
the fused graph computes what onnxruntime computes on the original, and near-misses stay unfused."""

from __future__ import annotations

import math

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from infermux.devices.compile import kernel_chooser, lower_optimized
from infermux.devices.plan import Plan
from infermux.devices.plugin import optimize_model
from infermux.graph import fusion
from infermux.graph.onnx_reader import read_onnx

RNG = np.random.default_rng(0)


def _const(name, value, dtype=np.float32):
    return numpy_helper.from_array(np.asarray(value, dtype=dtype), name)


def _model(nodes, inputs, outputs, inits, opset=17):
    vi = lambda name, shape: helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)
    graph = helper.make_graph(nodes, "g", [vi(*i) for i in inputs], [vi(*o) for o in outputs],
                              inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _fused_graph(model):
    optimized = optimize_model(read_onnx(model))
    counts = fusion.fuse_all(optimized.graph, optimized.opsets)
    return optimized.graph, counts


def _ops(graph):
    return [(n.domain + "::" if n.domain else "") + n.op_type for n in graph.nodes]


def _ort(model, feeds):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), options,
                                providers=["CPUExecutionProvider"]).run(None, feeds)


def _check_outputs(model, feeds, rtol=1e-5):
    """The fused plan, with fast and with reference kernels, matches onnxruntime on ``model``."""
    expected = _ort(model, feeds)
    optimized = optimize_model(read_onnx(model))
    fast = lower_optimized(optimized, np, fast=True)
    graph, _ = _fused_graph(model)
    reference = Plan(graph, optimized.opsets, np, kernel_for=kernel_chooser(False))
    ordered = [feeds[n] for n in fast.input_names]
    for plan in (fast, reference):
        for got, want in zip(plan.run(ordered), expected):
            assert got.dtype == want.dtype and got.shape == want.shape
            err = np.max(np.abs(got.astype(np.float64) - want)) / np.max(np.abs(want))
            assert err <= rtol, f"max rel error {err:.3g}"


def _x(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


# -- Gelu ------------------------------------------------------------------------------------

def _gelu_nodes(order: str):
    """0.5 * x * (1 + erf(x / sqrt 2)) in three spellings found in exported models."""
    head = [helper.make_node("Div", ["x", "sqrt2"], ["t"]) if order != "mul_scale" else
            helper.make_node("Mul", ["x", "inv_sqrt2"], ["t"]),
            helper.make_node("Erf", ["t"], ["e"]),
            helper.make_node("Add", ["e", "one"], ["a"])]
    if order == "half_last":
        return head + [helper.make_node("Mul", ["x", "a"], ["m"]),
                       helper.make_node("Mul", ["m", "half"], ["y"])]
    if order == "half_first":
        return head + [helper.make_node("Mul", ["half", "x"], ["hx"]),
                       helper.make_node("Mul", ["hx", "a"], ["y"])]
    return head + [helper.make_node("Mul", ["a", "half"], ["ah"]),
                   helper.make_node("Mul", ["x", "ah"], ["y"])]


_GELU_CONSTS = [_const("sqrt2", math.sqrt(2)), _const("inv_sqrt2", math.sqrt(0.5)),
                _const("one", 1.0), _const("half", 0.5)]


@pytest.mark.parametrize("order", ["half_last", "half_first", "mul_scale"])
def test_gelu_patterns_fuse_into_one_op(order):
    model = _model(_gelu_nodes(order), [("x", [3, 50])], [("y", [3, 50])], _GELU_CONSTS)
    graph, counts = _fused_graph(model)
    assert counts["fuse_gelu"] == 1 and _ops(graph) == ["infermux::Gelu"]
    _check_outputs(model, {"x": _x(3, 50) * 3})


def test_gelu_with_a_wrong_constant_or_a_shared_intermediate_stays():
    wrong = [_const("sqrt2", math.sqrt(2)), _const("one", 1.0), _const("half", 0.6)]
    graph, counts = _fused_graph(_model(_gelu_nodes("half_last"), [("x", [3, 4])],
                                        [("y", [3, 4])], wrong))
    assert counts["fuse_gelu"] == 0 and "Erf" in _ops(graph)
    shared = _model(_gelu_nodes("half_last"), [("x", [3, 4])], [("y", [3, 4]), ("e", [3, 4])],
                    _GELU_CONSTS)
    graph, counts = _fused_graph(shared)
    assert counts["fuse_gelu"] == 0 and "Erf" in _ops(graph)


def test_gelu_function_body_is_fused_after_castlike_folding():
    """ONNX's own Gelu body: CastLike'd constants, Sum for the add (as in the expanded tests)."""
    nodes = [helper.make_node("CastLike", ["half_d", "x"], ["half"]),
             helper.make_node("CastLike", ["one_d", "x"], ["one"]),
             helper.make_node("CastLike", ["two_d", "x"], ["two"]),
             helper.make_node("Sqrt", ["two"], ["sqrt2"]),
             helper.make_node("Div", ["x", "sqrt2"], ["t"]),
             helper.make_node("Erf", ["t"], ["e"]),
             helper.make_node("Sum", ["one", "e"], ["phi"]),
             helper.make_node("Mul", ["half", "x"], ["hx"]),
             helper.make_node("Mul", ["hx", "phi"], ["y"])]
    inits = [_const(n, v, np.float64) for n, v in (("half_d", 0.5), ("one_d", 1.0), ("two_d", 2.0))]
    model = _model(nodes, [("x", [4, 9])], [("y", [4, 9])], inits)
    graph, counts = _fused_graph(model)
    assert counts["fuse_gelu"] == 1 and _ops(graph) == ["infermux::Gelu"]
    _check_outputs(model, {"x": _x(4, 9) * 3})


# -- MatMul + bias (+ activation) ------------------------------------------------------------

def _linear(activation: str, opset=17):
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]),
             helper.make_node("Add", ["b", "h"], ["z"])]
    out = "z"
    if activation == "Relu":
        nodes.append(helper.make_node("Relu", ["z"], ["y"]))
        out = "y"
    elif activation == "Gelu":
        nodes.append(helper.make_node("Gelu", ["z"], ["y"]))
        out = "y"
    inits = [_const("w", _x(16, 24)), _const("b", _x(24))]
    return _model(nodes, [("x", [2, 5, 16])], [(out, [2, 5, 24])], inits, opset=opset)


@pytest.mark.parametrize("activation, opset", [("", 17), ("Relu", 17), ("Gelu", 20)])
def test_matmul_bias_activation_fuses(activation, opset):
    model = _linear(activation, opset)
    graph, counts = _fused_graph(model)
    assert counts["fuse_matmul_bias"] == 1 and _ops(graph) == ["infermux::FusedMatMul"]
    assert graph.nodes[0].attrs["activation"] == activation
    _check_outputs(model, {"x": _x(2, 5, 16)})


def test_matmul_with_a_2d_bias_or_a_shared_product_stays():
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]),
             helper.make_node("Add", ["h", "b"], ["y"])]
    two_d = _model(nodes, [("x", [3, 4])], [("y", [3, 2])], [_const("w", _x(4, 2)),
                                                              _const("b", _x(1, 2))])
    assert _fused_graph(two_d)[1]["fuse_matmul_bias"] == 0
    shared = _model(nodes, [("x", [3, 4])], [("y", [3, 2]), ("h", [3, 2])],
                    [_const("w", _x(4, 2)), _const("b", _x(2))])
    assert _fused_graph(shared)[1]["fuse_matmul_bias"] == 0


# -- attention -------------------------------------------------------------------------------

def _attention_model(hidden=16, heads=4, seq=6, key_layout="direct", scale_op="Div",
                     kv_input="x", split=(0, 0)):
    dh = hidden // heads
    inits = [_const("split", [*split, heads, dh], np.int64),
             _const("merge", [0, 0, hidden], np.int64),
             _const("c", math.sqrt(dh) if scale_op == "Div" else 1 / math.sqrt(dh))]
    nodes = []
    for p, src in (("q", "x"), ("k", kv_input), ("v", kv_input)):
        inits += [_const(f"{p}_w", _x(hidden, hidden) * 0.3), _const(f"{p}_b", _x(hidden) * 0.1)]
        nodes += [helper.make_node("MatMul", [src, f"{p}_w"], [f"{p}_mm"]),
                  helper.make_node("Add", [f"{p}_mm", f"{p}_b"], [f"{p}_lin"]),
                  helper.make_node("Reshape", [f"{p}_lin", "split"], [f"{p}_4d"])]
    nodes.append(helper.make_node("Transpose", ["q_4d"], ["q_h"], perm=[0, 2, 1, 3]))
    nodes.append(helper.make_node("Transpose", ["v_4d"], ["v_h"], perm=[0, 2, 1, 3]))
    if key_layout == "direct":
        nodes.append(helper.make_node("Transpose", ["k_4d"], ["k_t"], perm=[0, 2, 3, 1]))
    else:
        nodes += [helper.make_node("Transpose", ["k_4d"], ["k_h"], perm=[0, 2, 1, 3]),
                  helper.make_node("Transpose", ["k_h"], ["k_t"], perm=[0, 1, 3, 2])]
    nodes += [helper.make_node("MatMul", ["q_h", "k_t"], ["s"]),
              helper.make_node(scale_op, ["s", "c"], ["s2"]),
              helper.make_node("Softmax", ["s2"], ["p"], axis=-1),
              helper.make_node("MatMul", ["p", "v_h"], ["ctx"]),
              helper.make_node("Transpose", ["ctx"], ["ctx_t"], perm=[0, 2, 1, 3]),
              helper.make_node("Reshape", ["ctx_t", "merge"], ["y"])]
    inputs = [("x", [2, seq, hidden])] + ([("m", [2, seq + 1, hidden])] if kv_input == "m" else [])
    return _model(nodes, inputs, [("y", [2, seq, hidden])], inits)


@pytest.mark.parametrize("key_layout, scale_op", [("direct", "Div"), ("two_transposes", "Mul")])
def test_self_attention_fuses_with_merged_qkv(key_layout, scale_op):
    model = _attention_model(key_layout=key_layout, scale_op=scale_op)
    graph, counts = _fused_graph(model)
    assert counts["fuse_attention"] == 1 and counts["merge_qkv"] == 1
    assert _ops(graph) == ["infermux::FusedMatMul", "infermux::SelfAttention"]
    attention = graph.nodes[1]
    assert attention.attrs == {"num_heads": 4, "scale": 1.0} and len(attention.inputs) == 1
    assert graph.initializers[graph.nodes[0].inputs[1]].shape == (16, 48)
    _check_outputs(model, {"x": _x(2, 6, 16)})


def test_cross_attention_keeps_three_inputs_and_folds_the_scale_into_q():
    model = _attention_model(kv_input="m")
    graph, counts = _fused_graph(model)
    assert counts["fuse_attention"] == 1 and counts["merge_qkv"] == 1
    assert _ops(graph).count("infermux::FusedMatMul") == 3
    attention = graph.nodes[-1]
    assert attention.op_type == "SelfAttention" and len(attention.inputs) == 3
    assert attention.attrs["scale"] == 1.0
    _check_outputs(model, {"x": _x(2, 6, 16), "m": _x(2, 7, 16)})


def test_attention_with_a_literal_batch_in_the_head_split_stays():
    graph, counts = _fused_graph(_attention_model(split=(2, 6)))
    assert counts["fuse_attention"] == 0 and "Softmax" in _ops(graph)


def test_bert_layer_fuses_completely(make_models):
    model = make_models.build_bert(np.random.default_rng(1), layers=2, hidden=32, heads=4, seq=8,
                                   ffn=64)
    graph, counts = _fused_graph(model)
    assert counts == {"fuse_layernorm_chain": 0, "fuse_gelu": 2, "fuse_attention": 2,
                      "fuse_matmul_bias": 12, "merge_qkv": 2, "fuse_skip_layernorm": 4,
                      "fuse_batchnorm_activation": 0, "fuse_add_activation": 0}
    per_layer = ["infermux::FusedMatMul", "infermux::SelfAttention", "infermux::FusedMatMul",
                 "infermux::LayerNorm", "infermux::FusedMatMul", "infermux::FusedMatMul",
                 "infermux::LayerNorm"]
    assert _ops(graph) == per_layer * 2 + ["Identity"]
    _check_outputs(model, {"hidden": _x(1, 8, 32)})


# -- LayerNorm -------------------------------------------------------------------------------

def test_residual_add_fuses_into_layer_norm():
    nodes = [helper.make_node("Add", ["a", "b"], ["s"]),
             helper.make_node("LayerNormalization", ["s", "g", "beta"], ["y"], epsilon=1e-6)]
    model = _model(nodes, [("a", [2, 3, 10]), ("b", [2, 3, 10])], [("y", [2, 3, 10])],
                   [_const("g", _x(10)), _const("beta", _x(10))])
    graph, counts = _fused_graph(model)
    assert counts["fuse_skip_layernorm"] == 1 and _ops(graph) == ["infermux::LayerNorm"]
    assert graph.nodes[0].attrs == {"axis": -1, "epsilon": pytest.approx(1e-6)}
    _check_outputs(model, {"a": _x(2, 3, 10), "b": _x(2, 3, 10)})


def test_add_of_a_constant_is_not_a_skip_input():
    nodes = [helper.make_node("Add", ["a", "c"], ["s"]),
             helper.make_node("LayerNormalization", ["s", "g"], ["y"])]
    model = _model(nodes, [("a", [2, 10])], [("y", [2, 10])], [_const("g", _x(10)),
                                                               _const("c", _x(10))])
    graph, counts = _fused_graph(model)
    assert counts["fuse_skip_layernorm"] == 0 and _ops(graph) == ["Add", "LayerNormalization"]


@pytest.mark.parametrize("opset, square", [(13, "Pow"), (18, "Mul")])
def test_layer_norm_chain_fuses(opset, square):
    axes = {"axes": [-1]} if opset < 18 else {}
    mean_in = ["x"] + (["axes"] if opset >= 18 else [])
    var_in = ["sq"] + (["axes"] if opset >= 18 else [])
    nodes = [helper.make_node("ReduceMean", mean_in, ["mu"], **axes),
             helper.make_node("Sub", ["x", "mu"], ["d"]),
             helper.make_node("Pow", ["d", "two"], ["sq"]) if square == "Pow" else
             helper.make_node("Mul", ["d", "d"], ["sq"]),
             helper.make_node("ReduceMean", var_in, ["var"], **axes),
             helper.make_node("Add", ["var", "eps"], ["ve"]),
             helper.make_node("Sqrt", ["ve"], ["std"]),
             helper.make_node("Div", ["d", "std"], ["n"]),
             helper.make_node("Mul", ["n", "g"], ["ng"]),
             helper.make_node("Add", ["ng", "beta"], ["y"])]
    inits = [_const("two", 2.0), _const("eps", 1e-5), _const("g", _x(12)), _const("beta", _x(12)),
             _const("axes", [-1], np.int64)]
    model = _model(nodes, [("x", [3, 4, 12])], [("y", [3, 4, 12])], inits, opset=opset)
    graph, counts = _fused_graph(model)
    assert counts["fuse_layernorm_chain"] == 1 and _ops(graph) == ["infermux::LayerNorm"]
    assert graph.nodes[0].attrs["epsilon"] == pytest.approx(1e-5)
    _check_outputs(model, {"x": _x(3, 4, 12) * 2 + 1})


# -- BatchNormalization and residual Add with their Relu -------------------------------------

@pytest.mark.parametrize("relu", [True, False])
def test_batchnorm_becomes_a_channel_affine(relu):
    c = 5
    inits = [_const("scale", RNG.uniform(0.5, 2, c)), _const("bias", _x(c)), _const("mean", _x(c)),
             _const("var", RNG.uniform(0.5, 2, c))]
    nodes = [helper.make_node("BatchNormalization", ["x", "scale", "bias", "mean", "var"],
                              ["n"], epsilon=1e-3)]
    if relu:
        nodes.append(helper.make_node("Relu", ["n"], ["y"]))
    model = _model(nodes, [("x", [2, c, 3, 4])], [("y" if relu else "n", [2, c, 3, 4])], inits,
                   opset=14)
    graph, counts = _fused_graph(model)
    assert counts["fuse_batchnorm_activation"] == 1 and _ops(graph) == ["infermux::ChannelAffine"]
    assert graph.nodes[0].attrs == {"activation": "Relu" if relu else ""}
    _check_outputs(model, {"x": _x(2, c, 3, 4)})


def test_training_batchnorm_stays():
    c = 3
    inits = [_const(n, RNG.uniform(0.5, 2, c)) for n in ("scale", "bias", "mean", "var")]
    node = helper.make_node("BatchNormalization", ["x", "scale", "bias", "mean", "var"],
                            ["n", "rm", "rv"], training_mode=1)
    model = _model([node], [("x", [2, c, 4])], [("n", [2, c, 4]), ("rm", [c]), ("rv", [c])],
                   inits, opset=15)
    assert _fused_graph(model)[1]["fuse_batchnorm_activation"] == 0


def test_residual_add_and_relu_fuse():
    nodes = [helper.make_node("Add", ["a", "b"], ["s"]), helper.make_node("Relu", ["s"], ["y"])]
    model = _model(nodes, [("a", [2, 3, 4]), ("b", [2, 3, 4])], [("y", [2, 3, 4])], [])
    graph, counts = _fused_graph(model)
    assert counts["fuse_add_activation"] == 1 and _ops(graph) == ["infermux::AddActivation"]
    _check_outputs(model, {"a": _x(2, 3, 4), "b": _x(2, 3, 4)})
    # broadcasting operands go through the reference path, with the same result
    model = _model(nodes, [("a", [2, 3, 4]), ("b", [3, 1])], [("y", [2, 3, 4])], [])
    _check_outputs(model, {"a": _x(2, 3, 4), "b": _x(3, 1)})


def test_add_of_a_constant_with_relu_is_left_to_the_plan_epilogue():
    nodes = [helper.make_node("Add", ["a", "b"], ["s"]), helper.make_node("Relu", ["s"], ["y"])]
    model = _model(nodes, [("a", [2, 3])], [("y", [2, 3])], [_const("b", _x(3))])
    assert _fused_graph(model)[1]["fuse_add_activation"] == 0
