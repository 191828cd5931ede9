"""model.reshape, Layout, set_batch/get_batch: forms, re-inferred shapes, errors, running reshaped models.

Numbers are compared with onnxruntime (the ``oracle`` fixture's tolerance) or, for models whose
batch was baked into a Reshape, with the batch-1 model run one sample at a time (rtol 1e-5).
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import infermux as im
from infermux.errors import ShapeMismatchError, TensorNameError
from infermux.graph import layout as layout_helpers
from infermux.graph.layout import Layout
from infermux.graph.reshape import get_batch, set_batch
from tests.helpers import make_model

RNG = np.random.default_rng(0)


def conv_model(shape=(1, 3, 8, 8)) -> onnx.ModelProto:
    """x -> Conv(8 filters, 3x3, pad 1) -> Relu -> y."""
    w = numpy_helper.from_array(RNG.standard_normal((8, 3, 3, 3)).astype(np.float32), "W")
    b = numpy_helper.from_array(RNG.standard_normal(8).astype(np.float32), "B")
    nodes = [helper.make_node("Conv", ["x", "W", "B"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["y"], name="relu")]
    return make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, [shape[0], 8, *shape[2:]])], [w, b])


def classifier(flatten_target=(1, -1), shuffle=False) -> onnx.ModelProto:
    """x[1,4,4,4] -> Conv(4) -> [channel shuffle] -> Reshape(flatten_target) -> Gemm -> y[1,5]:
    the exporter pattern with the batch baked into constant Reshape targets."""
    w = numpy_helper.from_array(RNG.standard_normal((4, 4, 1, 1)).astype(np.float32), "W")
    fc = numpy_helper.from_array(RNG.standard_normal((5, 64)).astype(np.float32), "FC")
    nodes = [helper.make_node("Conv", ["x", "W"], ["c"], name="conv")]
    inits = [w, fc, numpy_helper.from_array(np.array(flatten_target, np.int64), "flat_shape")]
    last = "c"
    if shuffle:
        inits += [numpy_helper.from_array(np.array([1, 2, 2, 4, 4], np.int64), "split_shape"),
                  numpy_helper.from_array(np.array([1, 4, 4, 4], np.int64), "merge_shape")]
        nodes += [helper.make_node("Reshape", ["c", "split_shape"], ["s1"], name="shuffle_split"),
                  helper.make_node("Transpose", ["s1"], ["s2"], name="shuffle_swap", perm=[0, 2, 1, 3, 4]),
                  helper.make_node("Reshape", ["s2", "merge_shape"], ["s3"], name="shuffle_merge")]
        last = "s3"
    nodes += [helper.make_node("Reshape", [last, "flat_shape"], ["f"], name="flatten"),
              helper.make_node("Gemm", ["f", "FC"], ["y"], name="fc", transB=1)]
    return make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 4, 4])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])], inits)


def read(proto) -> im.Model:
    return im.Core().read_model(proto.SerializeToString())


# -- forms ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("request_shape, expected_in, expected_out", [
    ([2, 3, 8, 8], "[2,3,8,8]", "[2,8,8,8]"),
    ("?,3,?,?", "[?,3,?,?]", "[?,8,?,?]"),
    ({"x": [-1, 3, im.Dimension(1, 16), "8..32"]}, "[?,3,1..16,8..32]", "[?,8,?,?]"),
    ({0: "1..8,3,8,8"}, "[1..8,3,8,8]", "[1..8,8,8,8]"),
    (im.PartialShape([3, 3, 8, 8]), "[3,3,8,8]", "[3,8,8,8]"),
    ([(1, 4), 3, 8, 8], "[1..4,3,8,8]", "[1..4,8,8,8]"),
    ({"x": "..5,3,8,8"}, "[..5,3,8,8]", "[..5,8,8,8]"),
    ("[1,3,16,16]", "[1,3,16,16]", "[1,8,16,16]"),
])
def test_reshape_forms_give_openvinos_shapes(request_shape, expected_in, expected_out):
    model = read(conv_model())
    model.reshape(request_shape)
    assert str(model.input(0).partial_shape) == expected_in
    assert str(model.output(0).partial_shape) == expected_out
    assert model.is_dynamic() == ("?" in expected_in or ".." in expected_in)


def test_reshape_by_port_and_ports_taken_before_see_the_new_shape():
    model = read(conv_model())
    port = model.input(0)
    model.reshape({port: [4, 3, 8, 8]})
    assert port.partial_shape == [4, 3, 8, 8]
    assert model.output(0).partial_shape == [4, 8, 8, 8]
    assert all(not v.shape or v.shape[0] == 4 for k, v in model.graph.value_info.items()
               if v.shape is not None and k == "c")


# -- errors -------------------------------------------------------------------------------------

@pytest.mark.parametrize("request_shape, error, message", [
    ({"zz": [1, 3, 8, 8]}, TensorNameError, "Input for tensor name 'zz' is not found."),
    ({5: [1, 3, 8, 8]}, TensorNameError, "Input index 5 is out of range"),
    ([1, 5, 8, 8], ShapeMismatchError,
     r"Conv node 'conv': Data batch channel count \(5\) does not match filter input channel count \(3\)"),
    ([1, 3, 8], ShapeMismatchError, "Conv node 'conv'"),
    ("a,3,8,8", ValueError, "cannot parse dimension 'a'"),
])
def test_reshape_errors_name_the_tensor_or_op_and_leave_the_model_as_it_was(request_shape, error, message):
    model = read(conv_model())
    model.reshape([2, 3, 8, 8])
    nodes_before = [(n.op_type, list(n.inputs)) for n in model.graph.nodes]
    with pytest.raises(error, match=message):
        model.reshape(request_shape)
    assert model.input(0).partial_shape == [2, 3, 8, 8]
    assert model.output(0).partial_shape == [2, 8, 8, 8]
    assert [(n.op_type, list(n.inputs)) for n in model.graph.nodes] == nodes_before


def test_plain_shape_needs_a_single_input_model():
    from tests.helpers import two_input_add

    model = read(two_input_add())
    with pytest.raises(ShapeMismatchError, match=r"exactly one input; this one has 2 \(a, b\)"):
        model.reshape([4, 3])
    model.reshape({"a": [4, 3], "b": [4, 3]})
    assert [str(o.partial_shape) for o in model.outputs] == ["[4,3]", "[4,3]"]


def test_a_reshape_that_cannot_hold_the_new_size_fails_at_that_reshape():
    model = read(classifier(flatten_target=(1, 64)))
    with pytest.raises(ShapeMismatchError, match=r"Reshape node 'flatten'.*incompatible with input "
                                                  r"shape \[1,4,8,8\]"):
        model.reshape([1, 4, 8, 8])


# -- running reshaped models ------------------------------------------------------------------------

def test_reshaped_static_model_compiles_and_matches_onnxruntime(oracle):
    proto = conv_model()
    model = read(proto)
    model.reshape([4, 3, 8, 8])
    x = RNG.standard_normal((4, 3, 8, 8)).astype(np.float32)
    out = im.Core().compile_model(model, "CPU")({"x": x})[0]
    reshaped = onnx.ModelProto()
    reshaped.CopyFrom(proto)
    reshaped.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 4
    ref = oracle.run_reference(reshaped, {"x": x})[0]
    assert out.shape == (4, 8, 8, 8)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("target, shuffle", [((1, -1), False), ((1, 64), False), ((1, 64), True)])
@pytest.mark.parametrize("batch", [3, "?"])
def test_batch_baked_into_reshape_targets_follows_the_new_batch(target, shuffle, batch):
    proto = classifier(flatten_target=target, shuffle=shuffle)
    core = im.Core()
    single = core.compile_model(read(proto), "CPU")
    model = read(proto)
    model.reshape([batch, 4, 4, 4])
    rewritten = [n.name for n in model.graph.nodes if n.rt_info.get("reshape_batch")]
    assert rewritten == (["shuffle_split", "shuffle_merge", "flatten"] if shuffle else ["flatten"])
    assert str(model.output(0).partial_shape) == f"[{batch},5]"
    x = RNG.standard_normal((3, 4, 4, 4)).astype(np.float32)
    out = core.compile_model(model, "CPU")({"x": x})[0]
    expected = np.concatenate([single({"x": x[i:i + 1]})[0] for i in range(3)])
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def test_reshape_of_a_weight_is_not_rewritten():
    """A Reshape whose data does not depend on the input keeps its constant target."""
    fc = numpy_helper.from_array(RNG.standard_normal((1, 20)).astype(np.float32), "FCflat")
    nodes = [helper.make_node("Reshape", ["FCflat", "wshape"], ["FC"], name="weight_reshape"),
             helper.make_node("MatMul", ["x", "FC"], ["y"], name="mm")]
    proto = make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                       [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])],
                       [fc, numpy_helper.from_array(np.array([4, 5], np.int64), "wshape")])
    model = read(proto)
    model.reshape([6, 4])
    assert model.output(0).partial_shape == [6, 5]
    assert not any(n.rt_info.get("reshape_batch") for n in model.graph.nodes)


def test_light_resnet50_reshaped_to_batch_2_matches_per_sample_batch_1():
    from infermux.conformance.data import light_models_dir

    core = im.Core()
    path = light_models_dir() / "light_resnet50.onnx"
    model = core.read_model(path)
    model.reshape([2, 3, 224, 224])
    assert model.output(0).partial_shape == [2, 1000]
    x = RNG.standard_normal((2, 3, 224, 224)).astype(np.float32)
    out = core.compile_model(model, "CPU")(x)[0]
    single = core.compile_model(core.read_model(path), "CPU")
    expected = np.concatenate([single(x[i:i + 1])[0] for i in range(2)])
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-7)


# -- layouts and batch ---------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("NCHW", "[N,C,H,W]"), ("nchw", "[N,C,H,W]"), ("NC?", "[N,C,?]"), ("...C", "[...,C]"),
    ("N...C", "[N,...,C]"), ("[batch,channels,h,w]", "[N,C,H,W]"), ("[N, ?, C]", "[N,?,C]"),
    ("", "[...]"), ("NCDHW", "[N,C,D,H,W]"), ("[n,a_b,c]", "[N,A_B,C]"),
])
def test_layout_strings_normalise_as_openvino(text, expected):
    layout = Layout(text)
    assert layout.to_string() == str(layout) == expected
    assert repr(layout) == f"<Layout: {expected}>"
    assert layout == expected and Layout(expected) == layout


@pytest.mark.parametrize("text, message", [
    ("N.C", "Undefined number of dimensions"),
    ("NN", r"Dimension \(N\) is defined multiple times"),
    ("N*C", r"Layout name is invalid \(\*\)"),
])
def test_bad_layout_strings(text, message):
    with pytest.raises(ValueError, match=message):
        Layout(text)


def test_layout_indices_and_helpers():
    assert Layout("...C").get_index_by_name("C") == -1
    assert Layout("NCHW").get_index_by_name("w") == 3
    assert Layout("[batch,c]").has_name("N") and not Layout("...C").has_name("N")
    assert Layout().empty and not Layout("NCHW").empty
    with pytest.raises(ValueError, match="X dimension index is not defined"):
        Layout("NCHW").get_index_by_name("X")
    assert (layout_helpers.batch_idx("NHWC"), layout_helpers.channels_idx("NHWC"),
            layout_helpers.height_idx("...HWC"), layout_helpers.width_idx("NCHW")) == (0, 3, -3, 3)
    assert layout_helpers.has_depth("NCDHW") and not layout_helpers.has_depth("NCHW")


def test_port_layouts_set_through_parameters_or_inputs():
    model = read(conv_model())
    assert layout_helpers.get_layout(model.input(0)) == Layout()
    model.get_parameters()[0].set_layout(Layout("NCHW"))
    assert model.input(0).get_layout() == "NCHW" and model.input(0).layout == Layout("NCHW")
    layout_helpers.set_layout(model.output(0), "NCHW")
    assert model.output(0).layout == "NCHW"
    with pytest.raises(ShapeMismatchError, match=r"layout \[N,C\] is not compatible with shape \[1,3,8,8\]"):
        model.input(0).set_layout("NC")
    model.reshape([2, 3, 8, 8])
    assert model.input(0).layout == "NCHW" and model.output(0).layout == "NCHW"


def test_get_and_set_batch_need_a_layout_with_n():
    model = read(conv_model())
    for call in (lambda: get_batch(model), lambda: set_batch(model, 4)):
        with pytest.raises(ShapeMismatchError) as info:
            call()
        text = str(info.value)
        assert "0: { name='x', shape=[1,3,8,8], layout=[...], no batch specified }" in text
        assert "Please use 'set_layout' API to set layout with batch dimension" in text
    model.input(0).set_layout("NCHW")
    assert get_batch(model) == im.Dimension(1)
    set_batch(model, 4)
    assert (str(model.input(0).partial_shape), str(model.output(0).partial_shape)) == ("[4,3,8,8]", "[4,8,8,8]")
    set_batch(model, -1)
    assert str(model.input(0).partial_shape) == "[?,3,8,8]"
    set_batch(model, im.Dimension(1, 8))
    assert str(get_batch(model)) == "1..8" and str(model.output(0).partial_shape) == "[1..8,8,8,8]"


def test_batch_is_never_guessed_from_a_4d_input():
    model = read(conv_model())
    with pytest.raises(ShapeMismatchError, match="no batch specified"):
        set_batch(model, 2)
    assert model.input(0).partial_shape == [1, 3, 8, 8]
