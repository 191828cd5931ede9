"""The user's program from the CPU issue, and the Core's device/property errors."""

import numpy as np
import pytest

import infermux as im
from tests.helpers import mlp_reference, tiny_mlp, two_input_add


@pytest.fixture
def core():
    return im.Core()


def test_available_devices_lists_only_real_devices(core):
    assert core.available_devices == ["CPU"]
    assert core.get_available_devices() == ["CPU"]


def test_compile_and_call_reuses_one_request(core):
    proto = tiny_mlp()
    compiled = core.compile_model(core.read_model(proto), "CPU", {"PERFORMANCE_HINT": "THROUGHPUT"})
    x = np.random.default_rng(1).standard_normal((2, 4)).astype(np.float32)
    out = compiled({"x": x})[0]
    np.testing.assert_allclose(out, mlp_reference(proto, x), rtol=1e-6)
    assert compiled._default_request is not None
    first = compiled._default_request
    compiled({"x": x})
    assert compiled._default_request is first


def test_compile_from_a_path_defaults_to_cpu(core, tmp_path):
    import onnx

    path = tmp_path / "mlp.onnx"
    onnx.save(tiny_mlp(), path)
    compiled = core.compile_model(str(path))
    assert compiled.get_property("EXECUTION_DEVICES") == ["CPU"]
    assert im.compile_model(str(path)).outputs[0].any_name == "y"


def test_results_indexable_by_name_index_and_port(core):
    compiled = core.compile_model(core.read_model(two_input_add()), "CPU")
    a, b = np.ones((2, 3), np.float32), np.full((2, 3), 2, np.float32)
    res = compiled([a, b])
    for key in ("s", 0, compiled.output(0), compiled.outputs[0]):
        np.testing.assert_array_equal(res[key], a + b)
    np.testing.assert_array_equal(res["p"], a * b)
    assert len(res) == 2 and list(res.to_tuple()[1].ravel()) == [2.0] * 6


@pytest.mark.parametrize("given", ["dict_by_name", "dict_by_index", "dict_by_port", "list", "tensor"])
def test_inputs_by_name_index_port_or_list(core, given):
    proto = tiny_mlp()
    compiled = core.compile_model(core.read_model(proto), "CPU")
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    inputs = {"dict_by_name": {"x": x}, "dict_by_index": {0: x}, "dict_by_port": {compiled.input(0): x},
              "list": [x], "tensor": im.Tensor(x)}[given]
    np.testing.assert_allclose(compiled(inputs)[0], mlp_reference(proto, x), rtol=1e-6)


def test_numpy_dtypes_are_converted_to_the_model_type(core):
    proto = tiny_mlp()
    compiled = core.compile_model(core.read_model(proto), "CPU")
    x64 = np.arange(8, dtype=np.float64).reshape(2, 4)
    out = compiled({"x": x64})[0]
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, mlp_reference(proto, x64.astype(np.float32)), rtol=1e-6)
    out_i = compiled({"x": x64.astype(np.int32)})[0]
    assert out_i.dtype == np.float32


def test_wrong_input_name_shape_and_type_are_clear(core):
    compiled = core.compile_model(core.read_model(tiny_mlp()), "CPU")
    with pytest.raises(im.TensorNameError, match="Port for tensor name zz was not found"):
        compiled({"zz": np.ones((1, 4), np.float32)})
    with pytest.raises(im.ShapeMismatchError, match=r"shape: \[\?,4\] is incompatible with provided "
                                                     r"dimensions: \[1,5\] \(input 'x'\)"):
        compiled({"x": np.ones((1, 5), np.float32)})
    static = core.compile_model(core.read_model(tiny_mlp(batch=2)), "CPU")
    with pytest.raises(im.ShapeMismatchError, match=r"got \[1,4\] expecting \[2,4\] \(input 'x'\)"):
        static({"x": np.ones((1, 4), np.float32)})
    with pytest.raises(im.TypeMismatchError, match="expects f32"):
        compiled({"x": np.array([["a"] * 4])})
    with pytest.raises(RuntimeError):  # drop-in: OpenVINO users catch RuntimeError
        compiled({"x": np.ones((3,), np.float32)})


@pytest.mark.parametrize("device, message", [
    ("cpu", 'Device with "cpu" name is not registered'),
    ("FOO", 'Device with "FOO" name is not registered'),
    ("CPU.0", "CPU plugin supports only '' as device id"),
    ("CPU x", "spaces are not allowed"),
])
def test_bad_device_names(core, device, message):
    with pytest.raises(RuntimeError, match=message):
        core.compile_model(core.read_model(tiny_mlp()), device)


def test_unknown_op_names_the_node(core):
    from onnx import TensorProto, helper

    node = helper.make_node("FancyOp", ["x"], ["y"], name="fancy", domain="com.example")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("com.example", 1)])
    with pytest.raises(im.UnsupportedOpError, match="FancyOp.*'fancy'"):
        core.compile_model(core.read_model(proto), "CPU")


def test_query_model_and_versions(core):
    model = core.read_model(tiny_mlp())
    assert core.query_model(model, "CPU") == {"mm": "CPU", "add": "CPU", "relu": "CPU"}
    assert "CPU" in core.get_versions("CPU")


@pytest.mark.parametrize("device, key", [("HETERO", "MODEL_DISTRIBUTION_POLICY"), ("MULTI", "SCHEDULE_POLICY"),
                                         ("AUTO", "ENABLE_STARTUP_FALLBACK"), ("BATCH", "AUTO_BATCH_TIMEOUT")])
def test_virtual_devices_have_properties_without_a_list(core, device, key):
    assert key in core.get_property(device, "SUPPORTED_PROPERTIES")
    with pytest.raises(RuntimeError, match=f"only get_property of the {device} itself"):
        core.get_property(f"{device}:CPU", "SUPPORTED_PROPERTIES")


def test_set_property_on_a_virtual_device_becomes_its_default(core):
    core.set_property("AUTO", {"PERFORMANCE_HINT": "THROUGHPUT"})
    compiled = core.compile_model(core.read_model(tiny_mlp()))
    assert str(compiled.get_property("PERFORMANCE_HINT")) == "THROUGHPUT"


def test_read_model_dispatches_on_the_format_and_save_model_round_trips(core, tmp_path):
    model = core.read_model(tiny_mlp(batch=2))
    im.save_model(model, tmp_path / "mlp.xml", compress_to_fp16=False)
    im.save_model(model, tmp_path / "mlp.onnx")
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    ref = core.compile_model(model, "CPU")(x)[0]
    for path in (tmp_path / "mlp.xml", tmp_path / "mlp.onnx"):
        np.testing.assert_allclose(core.compile_model(str(path), "CPU")(x)[0], ref, rtol=1e-6)
    xml = (tmp_path / "mlp.xml").read_bytes()
    weights = np.frombuffer((tmp_path / "mlp.bin").read_bytes(), np.uint8)
    np.testing.assert_allclose(core.compile_model(core.read_model(xml, im.Tensor(weights)), "CPU")(x)[0], ref,
                               rtol=1e-6)
    with pytest.raises(im.ModelReadError, match="'.tflite' format is not supported"):
        core.read_model(str(tmp_path / "m.tflite"))
