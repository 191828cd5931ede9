"""Cluster devices one at a time: compile on a device actor, infer, properties, errors."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

import infermux as im

pytestmark = pytest.mark.cluster


@pytest.mark.parametrize("device, atol", [
    ("CPU@head", 0), ("CPU@node-b", 0), ("CPU@node-c", 0), ("FGPU@node-c", 0),
    ("VPU@node-b", 2e-3),  # fp16 on the emulated VPU
])
def test_each_device_runs_the_model_like_the_local_cpu(core, tiny, device, atol):
    compiled = core.compile_model(tiny.model(), device)
    assert compiled.get_property("EXECUTION_DEVICES") == [device]
    assert compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS") >= 1
    request = compiled.create_infer_request()
    for _ in range(3):
        out = request.infer({"input": tiny.x})[0]
        np.testing.assert_allclose(out, tiny.ref, atol=atol, rtol=0)
    assert out.dtype == np.float32 and out.shape == (4, 16)


def test_async_requests_on_a_cluster_device(core, tiny):
    compiled = core.compile_model(tiny.model(), "CPU@node-b")
    queue = im.AsyncInferQueue(compiled, 4)
    results = {}
    queue.set_callback(lambda req, i: results.__setitem__(i, req.get_output_tensor(0).data.copy()))
    for i in range(20):
        queue.start_async({"input": tiny.x * (i + 1)}, i)
    queue.wait_all()
    local = im.Core().compile_model(tiny.model(), "CPU")
    for i, out in results.items():
        np.testing.assert_array_equal(out, local({"input": tiny.x * (i + 1)})[0])
    assert len(results) == 20


def test_query_model_names_the_cluster_device(core, tiny):
    supported = core.query_model(tiny.model(), "VPU@node-b")
    assert supported == {n: "VPU@node-b" for n in ("matmul", "bias", "relu", "mul", "shift_add")}


def test_properties_set_on_a_cluster_device_go_with_its_compiles(core, tiny):
    core.set_property("CPU@node-c", {"PERFORMANCE_HINT": "THROUGHPUT"})
    assert core.get_property("CPU@node-c", "PERFORMANCE_HINT") == "THROUGHPUT"
    compiled = core.compile_model(tiny.model(), "CPU@node-c")
    assert compiled.get_property("PERFORMANCE_HINT") == "THROUGHPUT"
    other = im.Core(cluster=core._dispatcher.remote)  # another Core sharing the actors
    assert other.compile_model(tiny.model(), "CPU@node-c").get_property("PERFORMANCE_HINT") == "LATENCY"
    with pytest.raises(im.errors.PropertyError, match="does not support setting NO_SUCH_KEY"):
        core.set_property("CPU@node-c", {"NO_SUCH_KEY": 1})


def test_errors_on_the_actor_come_back_as_infermux_errors(core):
    sine = helper.make_graph([helper.make_node("Sin", ["x"], ["y"], name="sin")], "sine",
                             [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                             [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    model = core.read_model(helper.make_model(sine, opset_imports=[helper.make_opsetid("", 17)]))
    with pytest.raises(im.errors.UnsupportedOpError, match=r"Sin.*\[on VPU@node-b\]"):
        core.compile_model(model, "VPU@node-b")
    with pytest.raises(im.errors.PropertyError, match="NUM_STREAMS"):
        core.compile_model(model, "CPU@head", {"NUM_STREAMS": "many"})


def test_stateful_models_stay_local(core):
    read = helper.make_node("ReadValue", [], ["s"], name="read", domain="infermux", variable_id="acc",
                            variable_shape=[1], variable_type=TensorProto.FLOAT)
    add = helper.make_node("Add", ["s", "x"], ["y"], name="add")
    write = helper.make_node("Assign", ["y"], ["y_assigned"], name="write", domain="infermux",
                             variable_id="acc")
    graph = helper.make_graph([read, add, write], "acc",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    model = core.read_model(helper.make_model(graph, opset_imports=[
        helper.make_opsetid("", 17), helper.make_opsetid("infermux", 1)]))
    with pytest.raises(im.errors.InfermuxError, match="stateful models .* run on local devices only"):
        core.compile_model(model, "CPU@node-b")
    assert set(core.query_model(model, "CPU@node-b")) == {"add"}  # state nodes stay local
    hetero = core.compile_model(model, "HETERO:CPU@node-b,CPU")
    ones = np.ones(1, np.float32)
    assert [float(hetero(ones)[0][0]) for _ in range(3)] == [1.0, 2.0, 3.0]


@pytest.mark.parametrize("transport", ["auto", "tcp", "ray"])
def test_every_transport_carries_small_and_large_tensors(resolver, transport):
    from infermux.cluster import connect

    identity = helper.make_graph([helper.make_node("Identity", ["x"], ["y"], name="id")], "ident",
                                 [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n"])],
                                 [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n"])])
    core = im.Core(cluster=connect(plugins=resolver.specs, transport=transport))
    compiled = core.compile_model(core.read_model(helper.make_model(
        identity, opset_imports=[helper.make_opsetid("", 17)])), "CPU@head")
    for n in (1024, 4 << 20):  # 4 KiB inline, 16 MiB through shared memory (auto)
        x = np.random.default_rng(n).standard_normal(n).astype(np.float32)
        np.testing.assert_array_equal(compiled({"x": x})[0], x)


def test_a_model_changed_after_a_compile_is_sent_again(core, tiny):
    model = tiny.model()
    first = core.compile_model(model, "CPU@node-b")
    model.reshape({"input": [2, 16]})
    second = core.compile_model(model, "CPU@node-b")
    reference = im.Core().compile_model(model, "CPU")({"input": tiny.x[:2]})[0]
    np.testing.assert_array_equal(second({"input": tiny.x[:2]})[0], reference)
    np.testing.assert_array_equal(first({"input": tiny.x})[0], tiny.ref)


def test_profiling_timings_come_back(core, tiny):
    compiled = core.compile_model(tiny.model(), "CPU@node-b", {"PERF_COUNT": True})
    request = compiled.create_infer_request()
    request.infer({"input": tiny.x})
    names = [p.node_name for p in request.profiling_info]
    assert names and set(names) <= {"matmul", "bias", "relu", "mul", "shift_add"}
