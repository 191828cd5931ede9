"""OpenVINO IR reading and writing, checked against the real ``openvino`` runtime.

Each reader case builds a small graph with OpenVINO's own opset API, saves it as IR v11, reads it
with :func:`read_ir`, runs it on infermux's CPU device and compares with OpenVINO's CPU plugin in
f32 (atol 1e-4, rtol 1e-3; integer and bool outputs must be equal).  The same infermux model is
then written back with :func:`save_ir` and OpenVINO must read and run that IR to the same result,
so every ONNX op the reader produces is also covered by the writer.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import infermux as im
from infermux.errors import ModelReadError, UnsupportedOpError
from infermux.graph.ir import read_ir
from infermux.graph.ir import save_ir

try:  # the real openvino package is a test-only oracle
    import openvino as ov
    import openvino.opset1 as o1
    import openvino.opset8 as o8
    import openvino.opset15 as o15
except ImportError:  # pragma: no cover
    ov = None
needs_openvino = pytest.mark.skipif(ov is None, reason="the openvino package is the oracle for these tests")

MODELS = Path(__file__).resolve().parents[2] / "models"
ATOL, RTOL = 1e-4, 1e-3
RNG = np.random.default_rng(0)


def _f32(*shape, lo=-2.0, hi=2.0):
    return RNG.uniform(lo, hi, shape).astype(np.float32)


def _compare(ours, ref) -> float:
    """Max abs difference; asserts shape/dtype match and the tolerance."""
    ours, ref = np.asarray(ours), np.asarray(ref)
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    if ref.dtype.kind in "biu":
        assert ours.dtype == ref.dtype, (ours.dtype, ref.dtype)
        np.testing.assert_array_equal(ours, ref)
        return 0.0
    np.testing.assert_allclose(ours, ref, atol=ATOL, rtol=RTOL)
    return float(np.abs(ours.astype(np.float64) - ref).max()) if ref.size else 0.0


def _ov_run(xml, feeds):
    return ov.Core().compile_model(str(xml), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})(feeds)


def _check(tmp_path, outputs, params, feeds, compress=False, write_back=True):
    """Save an OpenVINO model as IR, read it with infermux, compare; then write it back for OpenVINO."""
    model = ov.Model(outputs, params, "case")
    xml = tmp_path / "case.xml"
    ov.save_model(model, str(xml), compress_to_fp16=compress)
    ours_model = read_ir(xml)
    ours = im.Core().compile_model(ours_model, "CPU")(feeds)
    ref = _ov_run(xml, feeds)
    worst = max(_compare(ours[i], ref[i]) for i in range(len(outputs)))
    if write_back:
        save_ir(ours_model, tmp_path / "back.xml", compress_to_fp16=False)
        again = _ov_run(tmp_path / "back.xml", feeds)
        worst = max([worst] + [_compare(again[i], ref[i]) for i in range(len(outputs))])
    return worst


def _p(name, shape, dtype=np.float32):
    return o1.parameter(shape, dtype, name=name)


def _out(node):
    return [node.output(i) for i in range(node.get_output_size())]


# Each case: () -> (outputs, params, feeds)
def case_unary():
    x = _p("x", [2, 3, 4])
    ops = [o1.relu, o1.sigmoid, o1.tanh, o1.exp, o1.log, o1.sqrt, o1.abs, o1.negative, o1.floor,
           o1.ceiling, o1.erf, o15.softplus, o15.softsign, o15.hswish, o15.hsigmoid, o15.mish,
           o1.sign, o1.sin, o1.cos, o1.atan]
    return [op(x).output(0) for op in ops], [x], {"x": _f32(2, 3, 4, lo=0.1, hi=3)}


def case_binary():
    a, b = _p("a", [2, 3, 4]), _p("b", [3, 1])
    ops = [o1.add, o1.subtract, o1.multiply, o1.divide, o1.maximum, o1.minimum,
           o1.squared_difference, o1.floor_mod, o1.mod, o1.equal, o1.not_equal, o1.less,
           o1.greater_equal]
    outs = [op(a, b).output(0) for op in ops] + [o1.power(o1.abs(a), b).output(0)]
    return outs, [a, b], {"a": _f32(2, 3, 4), "b": _f32(3, 1, lo=0.5, hi=2)}


def case_integer_division():
    # Divide's m_pythondiv (floor division) is left out: OpenVINO's CPU plugin truncates instead,
    # against its own spec; test_integer_divide_floors checks infermux follows the spec.
    a, b = _p("a", [6], np.int32), _p("b", [6], np.int32)
    outs = [o1.floor_mod(a, b).output(0), o1.mod(a, b).output(0)]
    feeds = {"a": np.array([7, -7, 7, -7, 0, 9], np.int32), "b": np.array([2, 2, -2, -2, 3, 4], np.int32)}
    return outs, [a, b], feeds


@needs_openvino
def test_integer_divide_floors(tmp_path):
    a, b = _p("a", [6], np.int32), _p("b", [6], np.int32)
    ov.save_model(ov.Model([o1.divide(a, b).output(0)], [a, b], "div"), str(tmp_path / "d.xml"))
    feeds = {"a": np.array([7, -7, 7, -7, 0, 9], np.int32), "b": np.array([2, 2, -2, -2, 3, 4], np.int32)}
    got = im.Core().compile_model(read_ir(tmp_path / "d.xml"), "CPU")(feeds)[0]
    np.testing.assert_array_equal(got, np.floor_divide(feeds["a"], feeds["b"]))
    assert got.dtype == np.int32


def case_logical():
    a, b = _p("a", [4], np.bool_), _p("b", [4], np.bool_)
    outs = [o1.logical_and(a, b), o1.logical_or(a, b), o1.logical_xor(a, b), o1.logical_not(a),
            o1.select(a, o1.convert(b, "f32"), o1.constant(np.float32(5)))]
    feeds = {"a": np.array([1, 0, 1, 0], bool), "b": np.array([1, 1, 0, 0], bool)}
    return [o.output(0) for o in outs], [a, b], feeds


def case_activations():
    x = _p("x", [2, 3, 4, 4])
    slope = o1.constant(np.array([0.1, 0.2, 0.3], np.float32))
    outs = [o1.clamp(x, -0.5, 0.75), o1.elu(x, 0.7), o1.prelu(x, slope),
            o15.swish(x, o1.constant(np.float32(1.5))), o15.swish(x), o15.gelu(x, "erf"),
            o15.gelu(x, "tanh"), o15.round(x, "half_away_from_zero"), o15.round(x, "half_to_even"),
            o1.hard_sigmoid(x, o1.constant(np.float32(0.3)), o1.constant(np.float32(0.4))),
            o1.selu(x, o1.constant(np.float32(1.6)), o1.constant(np.float32(1.05)))]
    return [o.output(0) for o in outs], [x], {"x": _f32(2, 3, 4, 4)}


def case_convolution():
    x = _p("x", [1, 4, 9, 9])
    w = o1.constant(_f32(6, 4, 3, 3))
    gw = o1.constant(_f32(2, 3, 2, 3, 3))
    outs = [o1.convolution(x, w, [2, 1], [1, 0], [0, 2], [1, 2]),
            o1.convolution(x, w, [2, 2], [0, 0], [0, 0], [1, 1], "same_upper"),
            o1.group_convolution(x, gw, [1, 1], [1, 1], [1, 1], [1, 1])]
    return [o.output(0) for o in outs], [x], {"x": _f32(1, 4, 9, 9)}


def case_deconvolution():
    x = _p("x", [1, 4, 5, 5])
    w = o1.constant(_f32(4, 3, 3, 3))
    gw = o1.constant(_f32(2, 2, 3, 3, 3))
    outs = [o1.convolution_backprop_data(x, w, [2, 2], pads_begin=[1, 1], pads_end=[1, 0],
                                         dilations=[1, 1], output_padding=[1, 1]),
            o1.convolution_backprop_data(x, w, [2, 2], o1.constant(np.array([10, 10], np.int64))),
            o1.convolution_backprop_data(x, w, [2, 1], pads_begin=[0, 0], pads_end=[0, 0],
                                         dilations=[1, 2], auto_pad="same_upper"),
            o1.group_convolution_backprop_data(x, gw, [2, 2], pads_begin=[1, 0], pads_end=[0, 1],
                                               dilations=[1, 1])]
    return [o.output(0) for o in outs], [x], {"x": _f32(1, 4, 5, 5)}


def case_pooling():
    x = _p("x", [1, 3, 9, 9])
    mp8 = o8.max_pool(x, [2, 2], [1, 1], [0, 0], [1, 1], [3, 3], "ceil")
    outs = [o1.max_pool(x, [2, 2], [1, 1], [1, 1], [3, 3], "floor").output(0), mp8.output(0), mp8.output(1),
            o1.avg_pool(x, [2, 2], [1, 1], [1, 1], [3, 3], True, "ceil").output(0),
            o1.avg_pool(x, [1, 1], [1, 1], [1, 1], [3, 3], False).output(0)]
    return outs, [x], {"x": _f32(1, 3, 9, 9)}


def case_matmul_batchnorm_softmax():
    a, b = _p("a", [2, 4, 3]), _p("b", [2, 5, 4])
    x = _p("x", [2, 3, 4, 4])
    g, be, mu = (o1.constant(_f32(3)) for _ in range(3))
    var = o1.constant(_f32(3, lo=0.5, hi=2))
    outs = [o1.matmul(a, b, True, True), o1.matmul(a, o1.constant(_f32(3, 2)), False, False),
            o1.batch_norm_inference(x, g, be, mu, var, 1e-3),
            o8.batch_norm_inference(x, g, be, mu, var, 1e-3),  # opset5: data first
            o1.softmax(x, 1), o8.softmax(x, -1), o8.log_softmax(x, 2)]
    return [o.output(0) for o in outs], [a, b, x], {"a": _f32(2, 4, 3), "b": _f32(2, 5, 4),
                                                    "x": _f32(2, 3, 4, 4)}


def case_normalisation():
    x = _p("x", [2, 3, 4, 5])
    axes = o1.constant(np.array([2, 3], np.int64))
    outs = [o1.normalize_l2(x, o1.constant(np.array([1], np.int64)), 1e-6, "add"),
            o1.normalize_l2(x, axes, 1e-3, "max"),
            o15.mvn(x, axes, True, 1e-3, "inside_sqrt"), o15.mvn(x, axes, True, 1e-1, "outside_sqrt"),
            o15.mvn(x, axes, False, 1e-3, "inside_sqrt"),
            o1.lrn(x, o1.constant(np.array([1], np.int64)), 1e-2, 0.75, 1.0, 3)]
    import openvino.opset2 as o2

    outs.append(o2.mvn(x, across_channels=True, normalize_variance=True, eps=1e-2))
    return [o.output(0) for o in outs], [x], {"x": _f32(2, 3, 4, 5)}


def case_reductions():
    x = _p("x", [2, 3, 4])
    axes = o1.constant(np.array([0, 2], np.int64))
    outs = [o1.reduce_mean(x, axes, True), o1.reduce_sum(x, axes, False), o1.reduce_max(x, axes),
            o1.reduce_min(x, axes), o1.reduce_prod(x, axes), o15.reduce_l1(x, axes), o15.reduce_l2(x, axes, True),
            o1.reduce_logical_and(o1.greater(x, o1.constant(np.float32(-1.5))), axes)]
    return [o.output(0) for o in outs], [x], {"x": _f32(2, 3, 4, lo=0.5, hi=1.5)}


def case_topk():
    x = _p("x", [3, 7])
    k = o1.constant(np.int64(3))
    t1 = o15.topk(x, k, 1, "max", "value", "i32")
    t2 = o15.topk(x, k, 1, "min", "index", "i64")
    t3 = o1.topk(x, k, 0, "max", "value")
    return _out(t1) + _out(t2) + _out(t3), [x], {"x": RNG.permutation(21).reshape(3, 7).astype(np.float32)}


def case_shapes():
    x = _p("x", [-1, 6, 4])
    shape = o1.shape_of(x)
    batch = o8.gather(shape, o1.constant(np.array([0], np.int64)), o1.constant(np.int64(0)))
    target = o1.concat([batch, o1.constant(np.array([4, -1], np.int64))], 0)
    outs = [o1.reshape(x, target, False), o1.reshape(x, o1.constant(np.array([0, -1], np.int32)), True),
            o1.squeeze(o1.unsqueeze(x, o1.constant(np.int64(1))), o1.constant(np.array([1], np.int64))),
            o1.transpose(x, o1.constant(np.array([2, 0, 1], np.int64))), o15.shape_of(x, "i32"),
            o8.gather(x, o1.constant(np.array([[3, -1]], np.int64)), o1.constant(np.int64(1)))]
    return [o.output(0) for o in outs], [x], {"x": _f32(2, 6, 4)}


def case_split_concat():
    x = _p("x", [2, 9, 4])
    s = o1.split(x, o1.constant(np.int64(1)), 3)
    v = o1.variadic_split(x, o1.constant(np.int64(1)), o1.constant(np.array([2, -1, 3], np.int64)))
    outs = _out(s) + _out(v) + [o1.concat([s.output(2), v.output(0)], 1).output(0)]
    return outs, [x], {"x": _f32(2, 9, 4)}


def _strided(x, begin, end, strides, bm, em, nm=(), sm=(), el=()):
    c = lambda v: o1.constant(np.array(v, np.int64))
    return o1.strided_slice(x, c(begin), c(end), c(strides), list(bm), list(em), list(nm), list(sm), list(el))


def case_strided_slice():
    x = _p("x", [4, 5, 6])
    outs = [_strided(x, [1, 0], [3, 4], [1, 2], [0, 1], [0, 0]),
            _strided(x, [-1, 4, 0], [0, 0, 6], [-1, -2, 3], [1, 0, 0], [1, 1, 0]),
            _strided(x, [1, 0, 0, 2], [3, 0, 0, 4], [1, 1, 1, 1], [0] * 4, [0] * 4, [0, 1, 0, 0], [], [0, 0, 1, 0]),
            _strided(x, [0, -1], [0, 0], [1, 1], [0, 0], [0, 0], [], [0, 1], [1, 0]),
            _strided(x, [1], [3], [1], [0], [0], [0], [0], [0]),
            o8.slice(x, o1.constant(np.array([1, -1], np.int64)), o1.constant(np.array([4, 0], np.int64)),
                     o1.constant(np.array([2, -2], np.int64)), o1.constant(np.array([0, 2], np.int64)))]
    return [o.output(0) for o in outs], [x], {"x": _f32(4, 5, 6)}


@needs_openvino
def test_strided_slice_new_axis_with_shrink(tmp_path):
    """OpenVINO's CPU plugin returns garbage for this mask mix; numpy is the oracle here."""
    x = _p("x", [4, 5, 6])
    outs = [_strided(x, [0, 2, 1], [0, 3, 5], [1, 1, 1], [0] * 3, [0] * 3, [1, 0, 0], [0, 1, 0]),
            _strided(x, [2, 0, 1], [3, 0, 5], [1, 1, 1], [0] * 3, [0] * 3, [0, 1, 0], [1, 0, 0])]
    ov.save_model(ov.Model([o.output(0) for o in outs], [x], "ss"), str(tmp_path / "ss.xml"))
    data = np.arange(120, dtype=np.float32).reshape(4, 5, 6)
    got = im.Core().compile_model(read_ir(tmp_path / "ss.xml"), "CPU")({"x": data})
    np.testing.assert_array_equal(got[0], data[None, 2, 1:5])
    np.testing.assert_array_equal(got[1], data[2, None, 1:5])


def case_broadcast_tile_pad():
    x = _p("x", [3, 1])
    c = lambda v, t=np.int64: o1.constant(np.array(v, t))
    outs = [o1.broadcast(x, c([2, 3, 4])), o15.broadcast(x, c([2, 1, 1]), broadcast_spec="bidirectional"),
            o1.broadcast(o1.reshape(x, c([3]), False), c([2, 3, 4]), c([1]), "explicit"),
            o1.tile(x, c([2, 3])), o1.tile(x, c([2, 1, 2])),
            o1.pad(x, c([1, 0]), c([2, 1]), "constant", o1.constant(np.float32(7))),
            o1.pad(x, c([1, 0]), c([1, 0]), "reflect"), o1.pad(x, c([2, 1]), c([0, 2]), "edge"),
            o15.pad(x, c([-1, 1]), c([0, 1]), "constant")]
    return [o.output(0) for o in outs], [x], {"x": _f32(3, 1)}


def case_space_depth():
    x = _p("x", [1, 8, 2, 3])
    outs = [o1.depth_to_space(x, "blocks_first", 2), o1.depth_to_space(x, "depth_first", 2),
            o1.space_to_depth(o1.depth_to_space(x, "blocks_first", 2), "blocks_first", 2),
            o15.shuffle_channels(x, 1, 4)]
    return [o.output(0) for o in outs], [x], {"x": _f32(1, 8, 2, 3)}


def _interpolate4(x, sizes, scales, axes, **attrs):
    from openvino.utils.node_factory import NodeFactory

    full = {"mode": "nearest", "shape_calculation_mode": "sizes", "antialias": False,
            "coordinate_transformation_mode": "half_pixel", "nearest_mode": "round_prefer_floor",
            "pads_begin": [0, 0, 0, 0], "pads_end": [0, 0, 0, 0], "cube_coeff": -0.75, **attrs}
    return NodeFactory("opset4").create("Interpolate", [x, sizes, scales, axes], full)


def case_interpolate():
    import openvino.opset11 as o11

    x = _p("x", [1, 2, 4, 6])
    c = lambda v, t=np.int64: o1.constant(np.array(v, t))
    outs = [_interpolate4(x, c([8, 9]), c([2.0, 1.5], np.float32), c([2, 3]),
                          coordinate_transformation_mode="asymmetric", nearest_mode="floor"),
            _interpolate4(x, c([8, 12]), c([2.0, 2.0], np.float32), c([2, 3]), mode="linear_onnx",
                          shape_calculation_mode="scales", pads_begin=[0, 0, 1, 0]),
            o11.interpolate(x, c([3, 4]), "cubic", "sizes", axes=c([2, 3]),
                            coordinate_transformation_mode="align_corners"),
            o11.interpolate(x, c([1.0, 1.0, 1.5, 0.5], np.float32), "nearest", "scales",
                            coordinate_transformation_mode="half_pixel", nearest_mode="round_prefer_ceil"),
            o11.interpolate(x, c([2.0, 1.5], np.float32), "linear", "scales", axes=c([2, 3]),
                            coordinate_transformation_mode="pytorch_half_pixel"),
            o1.interpolate(x, c([8, 12]), {"axes": [2, 3], "mode": "nearest"}),
            o1.interpolate(x, c([2, 3]), {"axes": [2, 3], "mode": "nearest"}),
            o1.interpolate(x, c([7, 9]), {"axes": [2, 3], "mode": "linear", "align_corners": True}),
            o1.interpolate(x, c([7, 9]), {"axes": [2, 3], "mode": "linear"})]
    return [o.output(0) for o in outs], [x], {"x": _f32(1, 2, 4, 6)}


def case_misc():
    x = _p("x", [2, 5])
    i = _p("i", [2, 3], np.int64)
    c = lambda v, t=np.int64: o1.constant(np.array(v, t))
    outs = [o1.convert(x, "f16"), o1.convert(x, "i32"), o1.convert_like(i, x),
            o15.range(c(1), c(10), c(2), "f32"), o1.range(c(0), c(5), c(1)),
            o1.one_hot(i, c(5), c(2.0, np.float32), c(-1.0, np.float32), -1),
            o15.cumsum(x, c(1), exclusive=True, reverse=True),
            o1.fake_quantize(x, c(-1.0, np.float32), c(1.0, np.float32), c(0.0, np.float32),
                             c(2.0, np.float32), 5),
            o15.einsum([x, x], "ij,kj->ik"),
            o15.gather_elements(x, c([[0, 4], [1, 1]]), 1),
            o15.gather_nd(x, c([[1, 2], [0, 4]])),
            o15.scatter_nd_update(x, c([[1, 2], [0, 0]]), c([9.0, 8.0], np.float32)),
            o15.scatter_elements_update(x, c([[1, 0]]), c([[5.0, 6.0]], np.float32), c(1)),
            o15.reverse_sequence(x, c([3, 5]), 0, 1)]
    return [o.output(0) for o in outs], [x, i], {"x": _f32(2, 5), "i": np.array([[0, 4, 2], [1, 1, 3]])}


def case_grid_sample():
    x, g = _p("x", [1, 2, 4, 5]), _p("g", [1, 3, 3, 2])
    outs = [o15.grid_sample(x, g, {"align_corners": False, "mode": "bilinear", "padding_mode": "zeros"}),
            o15.grid_sample(x, g, {"align_corners": True, "mode": "nearest", "padding_mode": "border"})]
    return [o.output(0) for o in outs], [x, g], {"x": _f32(1, 2, 4, 5), "g": _f32(1, 3, 3, 2, lo=-1, hi=1)}


CASES = {name[5:]: fn for name, fn in sorted(globals().items()) if name.startswith("case_")}


@needs_openvino
@pytest.mark.parametrize("case", sorted(CASES))
def test_layer_matches_openvino(tmp_path, case):
    outputs, params, feeds = CASES[case]()
    _check(tmp_path, outputs, params, feeds)


@needs_openvino
def test_fp16_compressed_weights_are_decompressed(tmp_path):
    x = _p("x", [1, 3, 8, 8])
    conv = o1.convolution(x, o1.constant(_f32(4, 3, 3, 3)), [1, 1], [1, 1], [1, 1], [1, 1])
    _check(tmp_path, [conv.output(0)], [x], {"x": _f32(1, 3, 8, 8)}, compress=True)
    model = read_ir(tmp_path / "case.xml")
    weights = [a for a in model.graph.initializers.values() if a.ndim == 4]
    assert weights and weights[0].dtype == np.float16
    assert any(n.op_type == "Cast" and n.rt_info.get("decompression") == "" for n in model.graph.nodes)


@needs_openvino
def test_names_and_port_order_follow_openvino(tmp_path):
    x, y = _p("x", [2, 3]), _p("y", [2, 3])
    s = o1.add(x, y)
    s.output(0).get_tensor().set_names({"sum"})
    m = o1.multiply(x, y)
    model = ov.Model([m.output(0), s.output(0)], [y, x], "names")
    ov.save_model(model, str(tmp_path / "n.xml"))
    ours = read_ir(tmp_path / "n.xml")
    ref = ov.Core().read_model(tmp_path / "n.xml")
    assert [p.any_name for p in ours.inputs] == [p.any_name for p in ref.inputs] == ["y", "x"]
    assert [p.any_name for p in ours.outputs] == [p.get_any_name() for p in ref.outputs]
    assert ours.outputs[1].any_name == "sum"


@needs_openvino
def test_xml_bytes_with_weights_array(tmp_path):
    x = _p("x", [2, 3])
    model = ov.Model([o1.add(x, o1.constant(_f32(2, 3))).output(0)], [x], "bytes")
    ov.save_model(model, str(tmp_path / "b.xml"), compress_to_fp16=False)
    xml_bytes = (tmp_path / "b.xml").read_bytes()
    weights = np.fromfile(tmp_path / "b.bin", np.uint8)
    feeds = {"x": _f32(2, 3)}
    ref = ov.Core().compile_model(model, "CPU")(feeds)[0]
    for w in (weights, weights.tobytes(), im.Tensor(weights)):
        got = im.Core().compile_model(read_ir(xml_bytes, w), "CPU")(feeds)[0]
        np.testing.assert_allclose(got, ref, rtol=1e-6)


_NET = """<?xml version="1.0"?>
<net name="t" version="{version}">
  <layers>
    <layer id="0" name="x" type="Parameter" version="opset1">
      <data shape="2" element_type="f32"/><output><port id="0" precision="FP32" names="x"><dim>2</dim></port></output>
    </layer>
    <layer id="1" name="w" type="Const" version="opset1">
      <data element_type="f32" shape="2" offset="{offset}" size="8"/><output><port id="0" precision="FP32"><dim>2</dim></port></output>
    </layer>
    <layer id="2" name="sum" type="{op}" version="opset1">
      <rt_info><attribute name="fused_names" version="0" value="a, b"/><attribute name="affinity" value="CPU"/></rt_info>
      <input><port id="0"/><port id="1"/></input><output><port id="2" precision="FP32" names="y"/></output>
    </layer>
    <layer id="3" name="out" type="Result" version="opset1"><input><port id="0"/></input></layer>
  </layers>
  <edges>
    <edge from-layer="0" from-port="0" to-layer="2" to-port="0"/>
    <edge from-layer="1" from-port="0" to-layer="2" to-port="1"/>
    <edge from-layer="2" from-port="2" to-layer="3" to-port="0"/>
  </edges>
</net>"""


def _net(version=11, offset=0, op="Add") -> bytes:
    return _NET.format(version=version, offset=offset, op=op).encode()


@pytest.mark.parametrize("version", [10, 11])
def test_handwritten_ir_runs_and_keeps_rt_info(version):
    w = np.array([1.5, -2.0], np.float32)
    model = read_ir(_net(version=version), w.tobytes())
    node = next(n for n in model.graph.nodes if n.op_type == "Add")
    assert node.name == "sum" and node.rt_info == {"fused_names": "a, b", "affinity": "CPU"}
    out = im.Core().compile_model(model, "CPU")({"x": np.ones(2, np.float32)})
    np.testing.assert_array_equal(out[0], [2.5, -1.0])
    assert model.outputs[0].any_name == ("sum" if version == 10 else "y")  # v10: also the layer name


@pytest.mark.parametrize("xml, weights, error, match", [
    (_net(offset=4), bytes(8), ModelReadError, r"layer 'w'.*bytes 4\.\.12 are outside.* 8 bytes"),
    (_net(offset=-8), bytes(8), ModelReadError, r"layer 'w'.*outside"),
    (_net(), None, ModelReadError, r"layer 'w'.*needs weights"),
    (_net(version=7), bytes(8), ModelReadError, r"IR version '7' is not supported"),
    (_net(op="Frobnicate"), bytes(8), UnsupportedOpError, r"layer 'sum' \(type Frobnicate.*not supported"),
    (_net(op="DetectionOutput"), bytes(8), UnsupportedOpError, r"DetectionOutput.*SSD post-processing"),
    ((b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY l2 "&lol;&lol;">]>'
      b'<net version="11">&l2;</net>'), None, ModelReadError, r"DTDs and entity declarations are refused"),
    ('<?xml version="1.0" encoding="UTF-16"?><net version="11"/>'.encode("utf-16"), None, ModelReadError,
     r"UTF-8"),
    (b"<net version='11'><layers>", None, ModelReadError, r"malformed XML"),
    (_net().replace(b'to-layer="3"', b'to-layer="9"'), bytes(8), ModelReadError, r"layer id '9'"),
    (_net().replace(b'from-port="2"', b'from-port="5"'), bytes(8), ModelReadError, r"no such output port"),
])
def test_untrusted_ir_is_rejected_clearly(xml, weights, error, match):
    with pytest.raises(error, match=match):
        read_ir(xml, weights)


@needs_openvino
@pytest.mark.skipif(not (MODELS / "mp_face_detection_ir").is_dir(),
                    reason="dev models not fetched (shared/models/get_dev_models.sh puts them in models/)")
def test_face_detection_ir_matches_openvino():
    manifest = json.loads((MODELS / "manifest.json").read_text())
    entry = next(e for e in manifest["models"] if e["id"] == "mp_face_detection_ir")
    spec = entry["test_inputs"]["input"]
    x = np.random.default_rng(0).uniform(-1, 1, spec["shape"]).astype(spec["dtype"])
    xml = MODELS / entry["file"]
    model = read_ir(xml)
    assert [o.any_name for o in model.outputs] == ["output", "525"]
    ours = im.Core().compile_model(model, "CPU")({"input": x})
    ref = ov.Core().compile_model(str(xml), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})({"input": x})
    for i in range(2):
        _compare(ours[i], ref[i])



# -- the IR writer: ONNX models written as IR, read by OpenVINO and infermux -------------------

def _onnx_cnn():
    from onnx import TensorProto, helper, numpy_helper

    from tests.helpers import make_model

    r = np.random.default_rng(1)
    t = lambda name, *shape, lo=-1, hi=1: numpy_helper.from_array(
        r.uniform(lo, hi, shape).astype(np.float32), name)
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], strides=[2, 2], name="conv1"),
             helper.make_node("BatchNormalization", ["c1", "s", "bb", "m", "v"], ["bn"], name="bn"),
             helper.make_node("Relu", ["bn"], ["r1"], name="relu"),
             helper.make_node("Conv", ["r1", "w2"], ["c2"], group=8, pads=[1, 1, 1, 1], name="dw"),
             helper.make_node("MaxPool", ["c2"], ["p"], kernel_shape=[2, 2], strides=[2, 2], name="pool"),
             helper.make_node("GlobalAveragePool", ["p"], ["g"], name="gap"),
             helper.make_node("Flatten", ["g"], ["f"], axis=1, name="flat"),
             helper.make_node("Gemm", ["f", "fc", "fcb"], ["z"], transB=1, alpha=0.5, name="fc"),
             helper.make_node("Softmax", ["z"], ["y"], axis=-1, name="softmax")]
    inits = [t("w1", 8, 3, 3, 3), t("b1", 8), t("w2", 8, 1, 3, 3), t("fc", 5, 8), t("fcb", 5),
             t("s", 8, lo=0.5, hi=1.5), t("bb", 8), t("m", 8), t("v", 8, lo=0.5, hi=2)]
    return make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 16, 16])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])], inits)


@needs_openvino
@pytest.mark.parametrize("net", ["mlp", "cnn"])
@pytest.mark.parametrize("compress", [False, True])
def test_writer_roundtrips_through_openvino_and_infermux(tmp_path, net, compress):
    from infermux.graph.onnx_reader import read_onnx
    from tests.helpers import tiny_mlp

    proto, shape = (tiny_mlp(), (3, 4)) if net == "mlp" else (_onnx_cnn(), (2, 3, 16, 16))
    model = read_onnx(proto)
    x = np.random.default_rng(2).standard_normal(shape).astype(np.float32)
    ref = im.Core().compile_model(model, "CPU")({"x": x})[0]
    save_ir(model, tmp_path / "w.xml", compress_to_fp16=compress)
    tol = {"atol": 2e-2, "rtol": 2e-2} if compress else {"atol": ATOL, "rtol": RTOL}
    by_openvino = _ov_run(tmp_path / "w.xml", {"x": x})
    np.testing.assert_allclose(by_openvino[0], ref, **tol)
    assert by_openvino[0].shape == ref.shape
    back = read_ir(tmp_path / "w.xml")
    assert [o.any_name for o in back.outputs] == ["y"] and back.inputs[0].get_partial_shape().is_dynamic
    np.testing.assert_allclose(im.Core().compile_model(back, "CPU")({"x": x})[0], ref, **tol)
    if compress and net == "cnn":
        assert any(a.dtype == np.float16 for a in back.graph.initializers.values())


def _onnx_case(node_args, inputs, inits=(), opset=17, outputs=()):
    """A shape-inferred ONNX model from (op, inputs, outputs[, attrs]) tuples."""
    from onnx import helper, numpy_helper, shape_inference

    nodes = [helper.make_node(*a[:3], name=f"n{i}", **(a[3] if len(a) > 3 else {}))
             for i, a in enumerate(node_args)]
    ins = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
           for n, v in inputs.items()]
    outs = [helper.make_tensor_value_info(o, 0, None) for o in outputs]
    graph_inits = [numpy_helper.from_array(np.asarray(v), k) for k, v in dict(inits).items()]
    model = helper.make_model(helper.make_graph(nodes, "w", ins, outs, graph_inits),
                              opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return shape_inference.infer_shapes(model)


_X = RNG.uniform(-2, 2, (2, 3, 4, 5)).astype(np.float32)
_I64 = lambda *v: np.array(v, np.int64)
WRITER_CASES = {
    "activations": ([("Clip", ["x", "lo", "hi"], ["a"]), ("Clip", ["x", "", "x2"], ["a2"]), ("LeakyRelu", ["x"], ["b"], {"alpha": 0.3}),
                     ("Reciprocal", ["a"], ["c"]), ("Max", ["x", "a", "b"], ["d"]), ("Mean", ["x", "b"], ["e"]),
                     ("Sum", ["x", "b", "a"], ["f"]), ("Dropout", ["f"], ["g"]), ("Gelu", ["x"], ["h"], {"approximate": "tanh"})],
                    {"x": _X, "x2": np.array(0.5, np.float32)}, {"lo": np.float32(-1), "hi": np.float32(1.5)}, 20,
                    ["c", "d", "e", "g", "h", "a2"]),
    "norms": ([("InstanceNormalization", ["x", "s", "b"], ["a"]), ("LayerNormalization", ["x", "ls", "lb"], ["c"], {"axis": -2}),
               ("LpNormalization", ["x"], ["d"], {"axis": 1}), ("ReduceSumSquare", ["x", "ax"], ["e"]),
               ("ReduceLogSumExp", ["x", "ax"], ["f"], {"keepdims": 0}), ("ArgMax", ["x"], ["g"], {"axis": 2, "keepdims": 0})],
              {"x": _X}, {"s": np.ones(3, np.float32) * 1.5, "b": np.ones(3, np.float32) * 0.1,
                          "ls": RNG.uniform(0, 1, (4, 5)).astype(np.float32), "lb": np.zeros((4, 5), np.float32),
                          "ax": _I64(1, 3)}, 18, ["a", "c", "d", "e", "f", "g"]),
    "shapes": ([("Shape", ["x"], ["a"], {"start": 1}), ("Size", ["x"], ["b"]), ("ConstantOfShape", ["a"], ["c"]),
                ("Split", ["x", "sp"], ["d1", "d2"], {"axis": 3}), ("Slice", ["x", "st", "en"], ["e"]),
                ("Squeeze", ["x1"], ["f"]), ("Pad", ["x", "pads", "pv", "pax"], ["g"]),
                ("Constant", [], ["k"], {"value_floats": [1.0, 2.0]}),
                ("DepthToSpace", ["x4"], ["h"], {"blocksize": 2, "mode": "CRD"}),
                ("Resize", ["x", "", "scales"], ["r"], {"mode": "linear"})],
               {"x": _X, "x1": np.ones((1, 3, 1), np.float32), "x4": RNG.standard_normal((1, 8, 2, 3)).astype(np.float32)},
               {"sp": _I64(2, 3), "st": _I64(0, 1), "en": _I64(1, 3), "pads": _I64(1, 2, 0, 1), "pv": np.float32(3),
                "pax": _I64(1, -1), "scales": np.array([1, 1, 2, 0.5], np.float32)}, 18,
               ["a", "b", "c", "d1", "d2", "e", "f", "g", "k", "h", "r"]),
}


@needs_openvino
@pytest.mark.parametrize("case", sorted(WRITER_CASES))
def test_writer_ops_match_onnxruntime(tmp_path, case):
    import onnxruntime as ort

    from infermux.graph.onnx_reader import read_onnx

    nodes, feeds, inits, opset, outs = WRITER_CASES[case]
    proto = _onnx_case(nodes, feeds, inits, opset, outs)
    save_ir(read_onnx(proto), tmp_path / "w.xml", compress_to_fp16=False)
    got = _ov_run(tmp_path / "w.xml", feeds)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    ref = ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"]).run(None, feeds)
    for i, r in enumerate(ref):
        _compare(got[i], r)


def test_writer_names_the_node_it_cannot_write(tmp_path):
    from infermux.graph.onnx_reader import read_onnx

    proto = _onnx_case([("Det", ["x"], ["y"])], {"x": np.eye(3, dtype=np.float32)}, (), 17, ["y"])
    with pytest.raises(UnsupportedOpError, match=r"node 'n0' \(Det\).*no IR translation"):
        save_ir(read_onnx(proto), tmp_path / "w.xml")


_NET_V10 = """<?xml version="1.0"?>
<net name="t" version="{version}">
  <layers>
    <layer id="0" name="xin" type="Parameter" version="opset1">
      <data shape="2" element_type="f16"/><output><port id="0" precision="FP16" names="x"><dim>2</dim></port></output>
    </layer>
    <layer id="4" name="i" type="Parameter" version="opset1">
      <data shape="2" element_type="i64"/><output><port id="0" precision="I64" names="i"><dim>2</dim></port></output>
    </layer>
    <layer id="2" name="neg" type="Negative" version="opset1">
      <input><port id="0" precision="FP16"><dim>2</dim></port></input>
      <output><port id="1" precision="FP16" names="y"><dim>2</dim></port></output>
    </layer>
    <layer id="5" name="negi" type="Negative" version="opset1">
      <input><port id="0" precision="I64"><dim>2</dim></port></input>
      <output><port id="1" precision="I64" names="z"><dim>2</dim></port></output>
    </layer>
    <layer id="3" name="out" type="Result" version="opset1"><input><port id="0" precision="FP16"/></input></layer>
    <layer id="6" name="out2" type="Result" version="opset1"><input><port id="0" precision="I64"/></input></layer>
  </layers>
  <edges>
    <edge from-layer="0" from-port="0" to-layer="2" to-port="0"/>
    <edge from-layer="2" from-port="1" to-layer="3" to-port="0"/>
    <edge from-layer="4" from-port="0" to-layer="5" to-port="0"/>
    <edge from-layer="5" from-port="1" to-layer="6" to-port="0"/>
  </edges>
</net>"""


@needs_openvino
@pytest.mark.parametrize("version", [10, 11])
def test_ir_v10_keeps_legacy_names_and_types_like_openvino(version):
    """IR v10: f16 inputs are fed as f32, outputs are i32/f32 and also named after their layer."""
    xml = _NET_V10.format(version=version).encode()
    ours = read_ir(xml, b"")
    ref = ov.Core().read_model(xml, ov.Tensor(np.zeros(0, np.uint8)))
    assert [(p.any_name, p.element_type.to_dtype()) for p in ours.inputs] == \
        [(p.get_any_name(), p.get_element_type().to_dtype()) for p in ref.inputs]
    assert [(p.any_name, p.element_type.to_dtype()) for p in ours.outputs] == \
        [(p.get_any_name(), p.get_element_type().to_dtype()) for p in ref.outputs]
    feeds = {"x": np.array([1, 2], ours.inputs[0].element_type.to_dtype()), "i": np.array([3, 4])}
    got = im.Core().compile_model(ours, "CPU")(feeds)
    want = ov.Core().compile_model(ref, "CPU")(feeds)
    for i in range(2):
        _compare(got[i], want[i])
