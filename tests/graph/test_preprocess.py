"""PrePostProcessor: steps embedded as ONNX ops, checked against the real OpenVINO.

Each case configures the same model with ``openvino.preprocess`` and ``infermux.preprocess`` (the
same calls; ``lib`` is the package), runs both on the same inputs and compares the outputs:
``max|infermux - openvino| <= 1e-4 * max|openvino| + 1e-5`` for f32 results (observed: about 1e-7
relative), 2e-3 relative for the f16 post-processing case.  ``print(ppp)`` must match OpenVINO's
text.  Cases that need no OpenVINO (errors, the graph ops, onnxruntime on the saved model) run
without it.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import infermux as im
import infermux.preprocess as imp
from infermux.errors import ShapeMismatchError, TensorNameError, UnsupportedOpError
from infermux.graph.layout import Layout
from infermux.graph.preprocess import PreprocessError
from infermux.preprocess import (
    ColorFormat,
    PaddingMode,
    PrePostProcessor,
    ResizeAlgorithm,
)
from tests.helpers import make_model

RNG = np.random.default_rng(0)
W = RNG.standard_normal((8, 3, 3, 3)).astype(np.float32)
B = RNG.standard_normal(8).astype(np.float32)


def conv_proto(opset: int = 17) -> onnx.ModelProto:
    """x[1,3,8,8] -> Conv(8, 3x3, pad 1) -> Relu -> y[1,8,8,8]."""
    nodes = [helper.make_node("Conv", ["x", "W", "B"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["y"], name="relu")]
    return make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 8, 8])],
                      [numpy_helper.from_array(W, "W"), numpy_helper.from_array(B, "B")], opset=opset)


def u8(*shape):
    return RNG.integers(0, 256, shape).astype(np.uint8)


# -- the configurations, written once for both packages ------------------------------------------------

class _Both:
    """``lib``: the top-level package; ``pp``: its preprocess module (OpenVINO needs its own Layout)."""

    def __init__(self, lib, pp, layout):
        self.lib, self.pp, self.Layout = lib, pp, layout


def _mean_scale_resize(alg):
    def cfg(b, p):
        p.input().tensor().set_element_type(b.lib.Type.u8).set_layout(b.Layout("NHWC")) \
            .set_shape([1, -1, -1, 3]).set_color_format(b.pp.ColorFormat.BGR)
        p.input().model().set_layout(b.Layout("NCHW"))
        p.input().preprocess().convert_element_type(b.lib.Type.f32).convert_color(b.pp.ColorFormat.RGB) \
            .resize(getattr(b.pp.ResizeAlgorithm, alg)).mean([1.0, 2.0, 3.0]).scale([2.0, 3.0, 4.0])
    return cfg


def _yuv(fmt, dst, element_type="u8"):
    def cfg(b, p):
        p.input().tensor().set_element_type(getattr(b.lib.Type, element_type)) \
            .set_color_format(getattr(b.pp.ColorFormat, fmt))
        p.input().model().set_layout(b.Layout("NCHW"))
        p.input().preprocess().convert_color(getattr(b.pp.ColorFormat, dst))
    return cfg


def _nv12_dynamic_resize(b, p):
    p.input().tensor().set_element_type(b.lib.Type.f32).set_color_format(b.pp.ColorFormat.NV12_SINGLE_PLANE) \
        .set_spatial_dynamic_shape()
    p.input().model().set_layout(b.Layout("NCHW"))
    p.input().preprocess().convert_color(b.pp.ColorFormat.RGB).resize(b.pp.ResizeAlgorithm.RESIZE_LINEAR)


def _crop_pad(mode):
    def cfg(b, p):
        p.input().tensor().set_shape([1, 3, 10, 10]).set_layout(b.Layout("NCHW"))
        p.input().preprocess().crop([0, 0, 1, 2], [1, 3, 7, 8]) \
            .pad([0, 0, 1, 1], [0, 0, 1, 1], 0.5, getattr(b.pp.PaddingMode, mode))
    return cfg


def _bgrx(b, p):
    p.input().tensor().set_layout(b.Layout("NHWC")).set_color_format(b.pp.ColorFormat.BGRX) \
        .set_element_type(b.lib.Type.u8)
    p.input().model().set_layout(b.Layout("NCHW"))
    p.input().preprocess().convert_color(b.pp.ColorFormat.RGB)


def _reverse_and_layouts(b, p):
    p.input().tensor().set_layout(b.Layout("NHWC"))
    p.input().model().set_layout(b.Layout("NCHW"))
    p.input().preprocess().reverse_channels().convert_layout([0, 3, 1, 2])


def _gray(b, p):
    p.input().tensor().set_layout(b.Layout("NHWC")).set_color_format(b.pp.ColorFormat.RGB) \
        .set_element_type(b.lib.Type.u8)
    p.input().model().set_layout(b.Layout("NCHW"))
    if b.lib is im:
        three = lambda v: v.apply("Concat", v, v, axis=3)
    else:
        import openvino.opset13 as ops

        three = lambda o: ops.concat([o, o, o], 3).output(0)
    p.input().preprocess().convert_color(b.pp.ColorFormat.GRAY).custom(three)


def _post(b, p):
    p.output().postprocess().convert_element_type(b.lib.Type.f16).convert_layout([0, 2, 3, 1])
    p.output().tensor().set_element_type(b.lib.Type.f16)


def _spatial_static(b, p):
    p.input().tensor().set_spatial_static_shape(16, 12).set_layout(b.Layout("NCHW"))
    p.input().preprocess().resize(b.pp.ResizeAlgorithm.RESIZE_CUBIC)


CASES = {
    "bgr_u8_linear_mean_scale": (_mean_scale_resize("RESIZE_LINEAR"), [u8(1, 20, 30, 3)]),
    "bgr_u8_linear_upscale": (_mean_scale_resize("RESIZE_LINEAR"), [u8(1, 5, 6, 3)]),
    "bgr_u8_cubic": (_mean_scale_resize("RESIZE_CUBIC"), [u8(1, 20, 30, 3)]),
    "bgr_u8_nearest": (_mean_scale_resize("RESIZE_NEAREST"), [u8(1, 13, 11, 3)]),
    "nv12_single_plane_rgb": (_yuv("NV12_SINGLE_PLANE", "RGB"), [u8(1, 12, 8, 1)]),
    "nv12_two_planes_bgr": (_yuv("NV12_TWO_PLANES", "BGR"), [u8(1, 8, 8, 1), u8(1, 4, 4, 2)]),
    "i420_single_plane_bgr": (_yuv("I420_SINGLE_PLANE", "BGR"), [u8(1, 12, 8, 1)]),
    "i420_three_planes_rgb": (_yuv("I420_THREE_PLANES", "RGB"),
                              [u8(1, 8, 8, 1), u8(1, 4, 4, 1), u8(1, 4, 4, 1)]),
    "nv12_f32_dynamic_then_resize": (_nv12_dynamic_resize, [u8(1, 24, 16, 1).astype(np.float32)]),
    "crop_pad_constant": (_crop_pad("CONSTANT"), [RNG.standard_normal((1, 3, 10, 10)).astype(np.float32)]),
    "crop_pad_reflect": (_crop_pad("REFLECT"), [RNG.standard_normal((1, 3, 10, 10)).astype(np.float32)]),
    "crop_pad_symmetric": (_crop_pad("SYMMETRIC"), [RNG.standard_normal((1, 3, 10, 10)).astype(np.float32)]),
    "bgrx_to_rgb": (_bgrx, [u8(1, 8, 8, 4)]),
    "reverse_channels_layout_dims": (_reverse_and_layouts, [RNG.standard_normal((1, 8, 8, 3)).astype(np.float32)]),
    "rgb_to_gray_custom": (_gray, [u8(1, 8, 8, 3)]),
    "post_f16_nhwc": (_post, [RNG.standard_normal((1, 3, 8, 8)).astype(np.float32)]),
    "spatial_static_cubic": (_spatial_static, [RNG.standard_normal((1, 3, 16, 12)).astype(np.float32)]),
}


def _infermux(cfg, proto=None):
    model = im.Core().read_model((proto or conv_proto()).SerializeToString())
    ppp = PrePostProcessor(model)
    cfg(_Both(im, imp, Layout), ppp)
    return ppp


def _openvino(cfg, path):
    ov = pytest.importorskip("openvino")
    import openvino.preprocess as ovp

    ppp = ovp.PrePostProcessor(ov.Core().read_model(str(path)))
    cfg(_Both(ov, ovp, ov.Layout), ppp)
    return ov, ppp


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("ppp") / "conv.onnx"
    onnx.save(conv_proto(), str(path))
    return path


@pytest.mark.parametrize("case", sorted(CASES))
def test_outputs_and_print_agree_with_openvino(case, model_path):
    cfg, feeds = CASES[case]
    ov, ov_ppp = _openvino(cfg, model_path)
    ours = _infermux(cfg)
    assert str(ours) == str(ov_ppp)
    expected = ov.Core().compile_model(ov_ppp.build(), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})(feeds)[0]
    got = im.Core().compile_model(ours.build(), "CPU")(feeds)[0]
    assert got.shape == expected.shape and got.dtype == expected.dtype
    rtol = 2e-3 if got.dtype == np.float16 else 1e-4
    err = np.max(np.abs(got.astype(np.float64) - expected.astype(np.float64)))
    assert err <= rtol * np.max(np.abs(expected.astype(np.float64))) + 1e-5, err


# -- what build() leaves in the model --------------------------------------------------------------------

def test_steps_are_standard_onnx_ops_that_onnxruntime_runs(oracle):
    ppp = _infermux(_mean_scale_resize("RESIZE_LINEAR"))
    ppp.output().tensor().set_element_type(im.Type.f16).set_layout(Layout("NHWC"))
    ppp.output().model().set_layout("NCHW")
    model = ppp.build()
    ops = [n.op_type for n in model.graph.nodes]
    assert ops == ["Cast", "Gather", "Resize", "Sub", "Div", "Transpose", "Conv", "Relu", "Cast", "Transpose"]
    assert [(p.any_name, str(p.partial_shape), p.element_type.name, str(p.layout)) for p in model.inputs] == \
        [("x", "[1,?,?,3]", "u8", "[N,H,W,C]")]
    assert [(p.any_name, str(p.partial_shape), p.element_type.name) for p in model.outputs] == [("y", "[1,8,8,8]", "f16")]
    from infermux.graph.onnx_writer import to_onnx

    proto = to_onnx(model)
    onnx.checker.check_model(proto)
    x = u8(1, 20, 30, 3)
    ref = oracle.run_reference(proto, {"x": x})[0]
    got = im.Core().compile_model(model, "CPU")({"x": x})[0]
    np.testing.assert_allclose(got.astype(np.float32), ref.astype(np.float32), rtol=2e-3, atol=1e-2)


def test_planar_inputs_become_one_named_input_per_plane():
    model = _infermux(_yuv("NV12_TWO_PLANES", "RGB")).build()
    assert [(p.any_name, str(p.partial_shape)) for p in model.inputs] == [("x/y", "[1,8,8,1]"), ("x/uv", "[1,4,4,2]")]
    ppp = _infermux(lambda b, p: p.input().tensor().set_color_format(ColorFormat.I420_THREE_PLANES, ["a", "b", "c"]))
    ppp.input().model().set_layout("NCHW")
    ppp.input().preprocess().convert_color(ColorFormat.BGR)
    assert [p.any_name for p in ppp.build().inputs] == ["x/a", "x/b", "x/c"]


def test_an_old_opset_model_is_converted_when_a_step_needs_resize():
    ppp = _infermux(_mean_scale_resize("RESIZE_LINEAR"), conv_proto(opset=9))
    model = ppp.build()
    assert model.opset() == 11
    assert model.graph.initializers["W"] is not None and model.input(0).layout == "NHWC"
    out = im.Core().compile_model(model, "CPU")(u8(1, 9, 9, 3))[0]
    assert out.shape == (1, 8, 8, 8)


def test_no_conversion_when_no_step_needs_a_newer_opset():
    model = _infermux(lambda b, p: p.input().preprocess().mean(1.0), conv_proto(opset=9)).build()
    assert model.opset() == 9 and next(n.op_type for n in model.graph.nodes) == "Sub"


def test_custom_step_gets_a_value_and_builds_on_it():
    seen = {}

    def custom(value):
        seen["value"] = (value.get_any_name(), str(value.get_partial_shape()), value.get_element_type().name)
        return value.apply("Abs") * 2.0

    model = _infermux(lambda b, p: p.input().preprocess().custom(custom)).build()
    assert seen["value"] == ("x", "[1,3,8,8]", "f32")
    x = RNG.standard_normal((1, 3, 8, 8)).astype(np.float32)
    plain = im.Core().compile_model(conv_proto().SerializeToString(), "CPU")
    np.testing.assert_allclose(im.Core().compile_model(model, "CPU")(x)[0], plain(np.abs(x) * 2)[0],
                               rtol=1e-5, atol=1e-5)
    with pytest.raises(TypeError, match="must return a Value"):
        _infermux(lambda b, p: p.input().preprocess().custom(lambda v: 3)).build()


def test_memory_type_is_accepted_shown_and_ignored():
    ppp = _infermux(lambda b, p: p.input().tensor().set_memory_type("GPU_SURFACE"))
    assert str(ppp).startswith('Input "x" memory type=GPU_SURFACE:')
    assert [n.op_type for n in ppp.build().graph.nodes] == ["Conv", "Relu"]


def test_dynamic_batch_with_preprocessing():
    model = im.Core().read_model(conv_proto().SerializeToString())
    model.reshape("?,3,8,8")
    ppp = PrePostProcessor(model)
    ppp.input().tensor().set_element_type(im.Type.u8).set_layout("NHWC").set_spatial_dynamic_shape()
    ppp.input().model().set_layout("NCHW")
    ppp.input().preprocess().resize(ResizeAlgorithm.RESIZE_LINEAR)
    compiled = im.Core().compile_model(ppp.build(), "CPU")
    assert str(compiled.input(0).partial_shape) == "[?,?,?,3]"
    assert compiled(u8(3, 11, 7, 3))[0].shape == (3, 8, 8, 8)


# -- errors ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cfg, error, message", [
    (lambda b, p: p.input().preprocess().resize(ResizeAlgorithm.RESIZE_LINEAR), PreprocessError,
     "Can't add resize for layout without W/H specified"),
    (lambda b, p: (p.input().tensor().set_element_type(im.Type.u8), p.input().preprocess().mean(2.0)),
     PreprocessError, "Mean preprocessing can be applied to 'float' inputs"),
    (lambda b, p: p.input().preprocess().mean([1.0, 2.0, 3.0]), PreprocessError,
     r"Layout \[\.\.\.\] doesn't have `channels` dimension"),
    (lambda b, p: (p.input().tensor().set_layout("NCHW"), p.input().preprocess().scale([1.0, 2.0])),
     PreprocessError, "Channels = 3, mean/scale = 2"),
    (lambda b, p: p.input().tensor().set_shape([1, 3, 16, 16]), ShapeMismatchError,
     (r"Resulting shape '\[1,3,16,16\]' after preprocessing is not aligned with original parameter's "
      r"shape: \[1,3,8,8\], input parameter: x")),
    (lambda b, p: p.input().preprocess().resize(ResizeAlgorithm.RESIZE_BILINEAR_PILLOW), PreprocessError,
     "without W/H"),
    (lambda b, p: (p.input().tensor().set_layout("NCHW"),
                   p.input().preprocess().resize(ResizeAlgorithm.RESIZE_BICUBIC_PILLOW, 8, 8)),
     UnsupportedOpError, "RESIZE_BICUBIC_PILLOW is not supported"),
    (lambda b, p: p.input().tensor().set_color_format(ColorFormat.NV12_TWO_PLANES), PreprocessError,
     "add preprocess\\(\\).convert_color"),
])
def test_build_errors(cfg, error, message):
    ppp = _infermux(cfg)
    with pytest.raises(error, match=message):
        ppp.build()
    assert [p.any_name for p in ppp._model.inputs] == ["x"]  # the model is untouched


def test_port_errors_and_scale_zero():
    ppp = _infermux(lambda b, p: None)
    with pytest.raises(TensorNameError, match="Model doesn't have input with name nope"):
        ppp.input("nope")
    with pytest.raises(TensorNameError, match="Model doesn't have input with index 5. Total number of inputs is 1"):
        ppp.input(5)
    with pytest.raises(TensorNameError, match="Model doesn't have output with name nope"):
        ppp.output("nope")
    with pytest.raises(PreprocessError, match="a scale of 0 would divide by zero"):
        ppp.input().preprocess().scale(0.0)
    assert ppp.input() is ppp.input("x") is ppp.input(0)
    assert isinstance(PaddingMode.SYMMETRIC, PaddingMode) and ColorFormat.NV12_TWO_PLANES.label == "NV12 (multi-plane)"
