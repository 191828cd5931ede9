"""AUTO: selection, startup acceleration, runtime fallback, MODEL_PRIORITY, CTPUT (reference section 5).

Multi-device cases use FaultInjectionPlugin devices: FGPU.0 (discrete), FGPU.1 (integrated) and
the CPU, as in the acceptance sequence of reference section 19.
"""

import gc
import logging
import time

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import infermux as im
from infermux.devices.fault_device import FaultInjectionPlugin, InjectedFault
from infermux.devices.properties import PerformanceMode, Priority
from infermux.scheduler.auto import PRIORITIES, listed_candidates, model_precision
from infermux.scheduler.device_string import parse_device
from tests.helpers import accumulator_model, make_model, mlp_reference, tiny_mlp

NO_HELPER = {"ENABLE_STARTUP_FALLBACK": False}


@pytest.fixture(scope="module")
def proto():
    return tiny_mlp(batch=2)  # static shapes: a dynamic model goes to the CPU


def _core(name="FGPU", **knobs):
    core = im.Core()
    plugin = FaultInjectionPlugin(name, ids=["0", "1"], device_type={"0": "DISCRETE", "1": "INTEGRATED"}, **knobs)
    core.register_plugin(plugin, name)
    return core, plugin


def _x(seed=0):
    return np.random.default_rng(seed).standard_normal((2, 4)).astype(np.float32)


def _compiled_names(plugin):
    return [m.device_name for m in plugin.compiled]


def _wait_for(condition, timeout_s=5.0):
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


# -- selection -------------------------------------------------------------------------------

def test_default_list_is_discrete_integrated_then_cpu(proto):
    core, _ = _core()
    assert listed_candidates(core._dispatcher, ()) == [("FGPU.0", None), ("FGPU.1", None), ("CPU", None)]
    compiled = core.compile_model(core.read_model(proto), "AUTO", NO_HELPER)
    assert compiled.get_property("EXECUTION_DEVICES") == ["FGPU.0"]
    assert compiled.get_property("MULTI_DEVICE_PRIORITIES") == "FGPU.0,FGPU.1,CPU"
    np.testing.assert_allclose(compiled(_x())[0], mlp_reference(proto, _x()), rtol=1e-6)


@pytest.mark.parametrize("device, expected, never_compiled", [
    ("AUTO:CPU,FGPU.1", ["CPU"], ["FGPU.0", "FGPU.1"]),
    ("AUTO:-FGPU.0", ["FGPU.1"], ["FGPU.0"]),
    ("AUTO:FGPU,-FGPU.0", ["FGPU.1"], ["FGPU.0"]),  # a bare FGPU stands for every FGPU.N
    ("AUTO:FGPU.1(3)", ["FGPU.1"], ["FGPU.0"]),
])
def test_lists_and_exclusions(proto, device, expected, never_compiled):
    core, fgpu = _core()
    compiled = core.compile_model(core.read_model(proto), device, NO_HELPER)
    assert compiled.get_property("EXECUTION_DEVICES") == expected
    assert not set(never_compiled) & set(_compiled_names(fgpu))


def test_request_count_sizes_the_pool(proto):
    core, _ = _core()
    compiled = core.compile_model(core.read_model(proto), "AUTO:FGPU.1(3)", NO_HELPER)
    assert compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS") == 3


def test_list_errors(proto):
    core = im.Core()
    model = core.read_model(proto)
    with pytest.raises(im.InfermuxError, match="Please, check environment due to no supported devices"):
        core.compile_model(model, "AUTO:-CPU")
    with pytest.raises(im.InvalidDeviceStringError, match="lists CPU and also excludes it"):
        core.compile_model(model, "AUTO:CPU,-CPU")  # OpenVINO silently runs on CPU
    with pytest.raises(im.DeviceNotFoundError, match='"NOPE" name is not registered'):
        core.compile_model(model, "AUTO:NOPE,CPU")


def test_dynamic_model_goes_to_the_cpu():
    core, fgpu = _core()
    compiled = core.compile_model(core.read_model(tiny_mlp()), "AUTO")
    assert compiled.get_property("EXECUTION_DEVICES") == ["CPU"]
    assert fgpu.compiled == []


def _fp16_model():
    w = numpy_helper.from_array(np.eye(4, dtype=np.float16), "W")
    node = helper.make_node("MatMul", ["x", "W"], ["y"], name="mm")
    vi = lambda n: helper.make_tensor_value_info(n, TensorProto.FLOAT16, [2, 4])
    return make_model([node], [vi("x")], [vi("y")], [w])


def _int8_model():
    scale = numpy_helper.from_array(np.array(0.1, np.float32), "scale")
    zero = numpy_helper.from_array(np.array(0, np.int8), "zero")
    nodes = [helper.make_node("QuantizeLinear", ["x", "scale", "zero"], ["q"], name="q"),
             helper.make_node("DequantizeLinear", ["q", "scale", "zero"], ["y"], name="dq")]
    vi = lambda n: helper.make_tensor_value_info(n, TensorProto.FLOAT, [2, 4])
    return make_model(nodes, [vi("x")], [vi("y")], [scale, zero])


def test_precision_filter(proto):
    core, _ = _core(capabilities=("FP32", "FP16"))  # the CPU lists FP32, INT8
    int8, fp16 = core.read_model(_int8_model()), core.read_model(_fp16_model())
    assert [model_precision(m) for m in (int8, fp16, core.read_model(proto))] == ["INT8", "FP16", "FP32"]
    assert core.compile_model(int8, "AUTO:FGPU.0,CPU").get_property("EXECUTION_DEVICES") == ["CPU"]
    assert core.compile_model(fp16, "AUTO:CPU,FGPU.0").get_property("EXECUTION_DEVICES") == ["FGPU.0"]
    # FP32 is accepted by an FP16 device; a single candidate is never filtered
    assert core.compile_model(core.read_model(proto), "AUTO:FGPU.0,CPU", NO_HELPER).get_property(
        "EXECUTION_DEVICES") == ["FGPU.0"]
    assert core.compile_model(int8, "AUTO:FGPU.0").get_property("EXECUTION_DEVICES") == ["FGPU.0"]


# -- startup acceleration --------------------------------------------------------------------

def test_the_cpu_serves_until_the_target_is_ready(proto):
    core, fgpu = _core(compile_delay_s=1.0)
    model = core.read_model(proto)
    t0 = time.monotonic()
    compiled = core.compile_model(model, "AUTO")
    first = compiled(_x())[0]
    assert time.monotonic() - t0 < 0.5
    np.testing.assert_allclose(first, mlp_reference(proto, _x()), rtol=1e-6)
    assert compiled.get_property("EXECUTION_DEVICES") == ["(CPU)"]
    assert _wait_for(lambda: compiled.get_property("EXECUTION_DEVICES") == ["FGPU.0"])
    compiled(_x(1))
    assert fgpu.compiled[0].requests_seen == 1  # the request after the switch ran on FGPU.0


def test_no_startup_fallback_waits_for_the_target(proto):
    core, _ = _core(compile_delay_s=0.6)
    t0 = time.monotonic()
    compiled = core.compile_model(core.read_model(proto), "AUTO", NO_HELPER)
    compiled(_x())
    assert time.monotonic() - t0 >= 0.6
    assert compiled.get_property("EXECUTION_DEVICES") == ["FGPU.0"]


def test_optimal_requests_before_and_after_the_target_is_ready(proto):
    core, _ = _core(compile_delay_s=0.5, optimal_requests=3)
    compiled = core.compile_model(core.read_model(proto), "AUTO", {"PERFORMANCE_HINT": "THROUGHPUT"})
    assert compiled.get_property("EXECUTION_DEVICES") == ["(CPU)"]
    assert compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS") == 6  # 2 x RANGE_FOR_STREAMS max
    assert _wait_for(lambda: compiled.get_property("EXECUTION_DEVICES") == ["FGPU.0"])
    assert compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS") == 3
    capped = core.compile_model(core.read_model(proto), "AUTO", {
        "PERFORMANCE_HINT": "THROUGHPUT", "PERFORMANCE_HINT_NUM_REQUESTS": 1})
    assert capped.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS") == 1


def test_requests_in_flight_across_the_switch_all_complete(proto):
    core, fgpu = _core(compile_delay_s=0.3, infer_delay_s=0.01)
    compiled = core.compile_model(core.read_model(proto), "AUTO", {"PERFORMANCE_HINT": "THROUGHPUT"})
    queue = im.AsyncInferQueue(compiled, 4)
    results = {}
    queue.set_callback(lambda request, i: results.__setitem__(i, request.results[0].copy()))
    t0 = time.monotonic()
    i = 0
    while time.monotonic() - t0 < 0.6:
        queue.start_async({"x": _x(i % 5)}, i)
        i += 1
    queue.wait_all()
    assert len(results) == i
    for k, out in results.items():
        np.testing.assert_allclose(out, mlp_reference(proto, _x(k % 5)), rtol=1e-6)
    assert compiled.get_property("EXECUTION_DEVICES") == ["FGPU.0"]
    assert 0 < fgpu.compiled[0].requests_seen < i  # some ran on the CPU helper, some on FGPU.0


def test_a_target_that_fails_leaves_the_cpu_serving_and_says_so(proto, caplog):
    core, _ = _core(compile_delay_s=0.2, compile_fails=True)
    with caplog.at_level(logging.WARNING, logger="infermux.scheduler.auto"):
        compiled = core.compile_model(core.read_model(proto), "AUTO:FGPU.0,CPU")
        assert compiled.get_property("EXECUTION_DEVICES") == ["(CPU)"]
        # OpenVINO keeps reporting ['(CPU)'] forever; here the helper becomes the device
        assert _wait_for(lambda: compiled.get_property("EXECUTION_DEVICES") == ["CPU"])
    assert "FGPU.0: FGPU: compile failed (injected)" in caplog.text
    assert "the CPU startup helper serves from now on" in caplog.text
    np.testing.assert_allclose(compiled(_x())[0], mlp_reference(proto, _x()), rtol=1e-6)


def test_every_candidate_failing_is_one_error(proto):
    core, _ = _core(compile_fails=True)
    with pytest.raises(im.InfermuxError, match=r"\[AUTO\] compile model failed, FGPU.0:.*; FGPU.1:"):
        core.compile_model(core.read_model(proto), "AUTO:FGPU")


def test_a_failing_target_falls_to_the_next_candidate(proto):
    core = im.Core()
    core.register_plugin(FaultInjectionPlugin("FBAD", compile_fails=True, device_type="DISCRETE"), "FBAD")
    fgpu = FaultInjectionPlugin("FGPU", device_type="INTEGRATED")
    core.register_plugin(fgpu, "FGPU")
    compiled = core.compile_model(core.read_model(proto), "AUTO", NO_HELPER)
    assert compiled.get_property("EXECUTION_DEVICES") == ["FGPU"]


# -- runtime fallback ------------------------------------------------------------------------

def test_a_failed_request_is_run_again_on_the_next_device(proto):
    core, fgpu = _core(fail_on_infer=3)
    compiled = core.compile_model(core.read_model(proto), "AUTO", NO_HELPER)
    request = compiled.create_infer_request()
    for i in range(4):
        np.testing.assert_allclose(request.infer({"x": _x(i)})[0], mlp_reference(proto, _x(i)), rtol=1e-6)
    assert compiled.get_property("EXECUTION_DEVICES") == ["FGPU.1"]  # compiled on demand
    # the 3rd request failed on FGPU.0 and ran again on FGPU.1, which serves the 4th too
    assert [(m.device_name, m.requests_seen) for m in fgpu.compiled] == [("FGPU.0", 3), ("FGPU.1", 2)]


def test_without_runtime_fallback_the_error_reaches_wait_and_the_callback(proto):
    core, _ = _core(fail_on_infer=2)
    compiled = core.compile_model(core.read_model(proto), "AUTO",
                                  {**NO_HELPER, "ENABLE_RUNTIME_FALLBACK": False})
    request = compiled.create_infer_request()
    seen = []
    request.set_callback(seen.append, "done")
    request.start_async({"x": _x()})
    request.wait()
    request.start_async({"x": _x()})
    with pytest.raises(InjectedFault, match="request 2 failed"):
        request.wait()
    assert seen == ["done", "done"]


def test_with_no_device_left_only_the_failed_request_errs(proto):
    core, _ = _core(fail_on_infer=2)
    compiled = core.compile_model(core.read_model(proto), "AUTO:FGPU.0")
    request = compiled.create_infer_request()
    request.infer({"x": _x()})
    with pytest.raises(InjectedFault):
        request.infer({"x": _x()})
    request.infer({"x": _x()})  # the device keeps serving
    assert compiled.get_property("EXECUTION_DEVICES") == ["FGPU.0"]


# -- MODEL_PRIORITY --------------------------------------------------------------------------

def test_model_priority_takes_devices_from_lower_priorities(proto):
    gc.collect()
    core, _ = _core("PGPU")  # a name no other test's models hold (the registry is process-wide)
    model = core.read_model(proto)
    config = lambda p: {**NO_HELPER, "MODEL_PRIORITY": p}
    high = core.compile_model(model, "AUTO:PGPU,CPU", config("HIGH"))
    assert high.get_property("EXECUTION_DEVICES") == ["PGPU.0"]
    assert high.get_property("MODEL_PRIORITY") == Priority.HIGH
    low = core.compile_model(model, "AUTO:PGPU,CPU", config("LOW"))
    assert low.get_property("EXECUTION_DEVICES") == ["PGPU.1"]
    medium = core.compile_model(model, "AUTO:PGPU.0", config("MEDIUM"))  # only held devices: it takes the last
    assert medium.get_property("EXECUTION_DEVICES") == ["PGPU.0"]
    del high, medium
    gc.collect()
    assert core.compile_model(model, "AUTO:PGPU,CPU", config("LOW")).get_property("EXECUTION_DEVICES") == ["PGPU.0"]
    low.release_memory()  # releasing the compiled model leaves the registry too
    assert "PGPU.1" not in PRIORITIES.held()


# -- stateful --------------------------------------------------------------------------------

def test_stateful_model_turns_the_fallbacks_off_and_keeps_state():
    core, _ = _core(compile_delay_s=0.2)
    model = core.read_model(accumulator_model())
    compiled = core.compile_model(model, "AUTO")
    assert compiled.get_property("EXECUTION_DEVICES") == ["FGPU.0"]  # no CPU helper
    one = np.ones(1, np.float32)
    assert [float(compiled(one)[0][0]) for _ in range(3)] == [1.0, 2.0, 3.0]
    assert float(compiled.query_state()[0].state.data[0]) == 3.0
    with pytest.raises(im.InfermuxError, match="AUTO cumulative model doesn't support stateful model"):
        core.compile_model(model, "AUTO", {"PERFORMANCE_HINT": "CUMULATIVE_THROUGHPUT"})


def test_stateful_model_under_ctput_runs_on_the_one_capable_device():
    core = im.Core()
    core.register_plugin(FaultInjectionPlugin("FNOSTATE", supported_ops={"Add"}), "FNOSTATE")
    compiled = core.compile_model(core.read_model(accumulator_model()), "AUTO:FNOSTATE,CPU",
                                  {"PERFORMANCE_HINT": "CUMULATIVE_THROUGHPUT"})
    assert compiled.get_property("EXECUTION_DEVICES") == ["CPU"]
    request = compiled.create_infer_request()
    one = np.ones(1, np.float32)
    assert [float(request.infer(one)[0][0]) for _ in range(2)] == [1.0, 2.0]


# -- CUMULATIVE_THROUGHPUT -------------------------------------------------------------------

def test_cumulative_throughput_serves_from_every_candidate(proto):
    core, fgpu = _core(infer_delay_s=0.01)
    compiled = core.compile_model(core.read_model(proto), "AUTO", {"PERFORMANCE_HINT": "CUMULATIVE_THROUGHPUT"})
    assert compiled.get_property("EXECUTION_DEVICES") == ["FGPU.0", "FGPU.1", "CPU"]
    assert compiled.get_property("PERFORMANCE_HINT") == PerformanceMode.CUMULATIVE_THROUGHPUT
    children = compiled.get_property("DEVICE_PROPERTIES")
    assert {c["PERFORMANCE_HINT"] for c in children.values()} == {"THROUGHPUT"}
    assert compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS") == sum(
        c["OPTIMAL_NUMBER_OF_INFER_REQUESTS"] for c in children.values())
    queue = im.AsyncInferQueue(compiled)
    for i in range(30):
        queue.start_async({"x": _x(i)}, i)
    queue.wait_all()
    assert all(m.requests_seen > 0 for m in fgpu.compiled)


def test_cumulative_throughput_drops_a_device_that_fails_to_compile(proto):
    core = im.Core()
    core.register_plugin(FaultInjectionPlugin("FBAD", compile_fails=True), "FBAD")
    compiled = core.compile_model(core.read_model(proto), "AUTO:FBAD,CPU",
                                  {"PERFORMANCE_HINT": "CUMULATIVE_THROUGHPUT"})
    assert compiled.get_property("EXECUTION_DEVICES") == ["CPU"]


def test_cumulative_throughput_leaves_the_cpu_out_beside_three_accelerators(proto):
    core = im.Core()
    core.register_plugin(FaultInjectionPlugin("FGPU", ids=["0", "1", "2"], device_type="DISCRETE"), "FGPU")
    model = core.read_model(proto)
    ctput = {"PERFORMANCE_HINT": "CUMULATIVE_THROUGHPUT"}
    assert core.compile_model(model, "AUTO", ctput).get_property("EXECUTION_DEVICES") == ["FGPU.0", "FGPU.1", "FGPU.2"]
    assert "CPU" in core.compile_model(model, "AUTO:FGPU,CPU", ctput).get_property("EXECUTION_DEVICES")


# -- properties and configuration ------------------------------------------------------------

def test_compiled_model_properties(proto):
    core = im.Core()
    compiled = core.compile_model(core.read_model(proto), "AUTO")
    assert set(compiled.get_property("SUPPORTED_PROPERTIES")) == {
        "NETWORK_NAME", "SUPPORTED_PROPERTIES", "EXECUTION_DEVICES", "PERFORMANCE_HINT",
        "OPTIMAL_NUMBER_OF_INFER_REQUESTS", "MULTI_DEVICE_PRIORITIES", "DEVICE_PROPERTIES",
        "MODEL_PRIORITY", "LOADED_FROM_CACHE", "PERF_COUNT"}
    assert compiled.get_property("PERFORMANCE_HINT") is PerformanceMode.LATENCY
    assert compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS") == 1
    assert compiled.get_property("MULTI_DEVICE_PRIORITIES") == "CPU"
    assert compiled.get_property("LOADED_FROM_CACHE") is False
    assert compiled.get_property("NUM_STREAMS") == 1  # read from the device's model
    with pytest.raises(im.PropertyError, match="It's not possible to set property of an already compiled model"):
        compiled.set_property({"PERFORMANCE_HINT": "THROUGHPUT"})


def test_device_properties_override_the_top_level_hint(proto):
    core = im.Core()
    compiled = core.compile_model(core.read_model(proto), "AUTO:CPU", {
        "PERFORMANCE_HINT": "THROUGHPUT", "DEVICE_PROPERTIES": {"CPU": {"PERFORMANCE_HINT": "LATENCY"}}})
    assert compiled.get_property("PERFORMANCE_HINT") == "THROUGHPUT"
    assert compiled.get_property("DEVICE_PROPERTIES")["CPU"]["PERFORMANCE_HINT"] == "LATENCY"


@pytest.mark.parametrize("key, value", [("PERFORMANCE_HINT", "FAST"), ("MODEL_PRIORITY", "URGENT"),
                                        ("ENABLE_STARTUP_FALLBACK", "maybe")])
def test_known_keys_are_validated(proto, key, value):
    core = im.Core()
    with pytest.raises(im.PropertyError, match=f"Invalid value for property {key}: {value}"):
        core.compile_model(core.read_model(proto), "AUTO", {key: value})


def test_unknown_keys_are_ignored(proto):
    core = im.Core()
    compiled = core.compile_model(core.read_model(proto), "AUTO", {"FOO_BAR": 1})
    assert compiled.get_property("EXECUTION_DEVICES") == ["CPU"]


def test_plugin_level_properties():
    core, _ = _core(capabilities=("FP32", "FP16", "EXPORT_IMPORT"))
    auto = core._dispatcher.plugin("AUTO")
    supported = auto.get_property("SUPPORTED_PROPERTIES")
    assert len(supported) == 17 and supported["ENABLE_STARTUP_FALLBACK"] == "RW"
    assert auto.get_property("PERFORMANCE_HINT") == PerformanceMode.LATENCY
    assert auto.get_property("ENABLE_RUNTIME_FALLBACK") is True
    caps = auto.get_property("OPTIMIZATION_CAPABILITIES")
    assert {"FP32", "FP16", "INT8"} <= set(caps) and "EXPORT_IMPORT" not in caps
    auto.set_property({"PERFORMANCE_HINT": "THROUGHPUT"})  # persists to later compiles
    compiled = core.compile_model(core.read_model(tiny_mlp()), "AUTO")
    assert compiled.get_property("PERFORMANCE_HINT") == PerformanceMode.THROUGHPUT


def test_query_model_is_the_intersection_labelled_auto(proto):
    core = im.Core()
    core.register_plugin(FaultInjectionPlugin("FPART", supported_ops={"MatMul", "Relu"}), "FPART")
    model = core.read_model(proto)
    assert core.query_model(model, "AUTO:FPART,CPU") == {"mm": "AUTO", "relu": "AUTO"}
    assert set(core.query_model(model, "AUTO").values()) == {"AUTO"}  # the default candidates


# -- real plugins and the request API --------------------------------------------------------

def test_auto_over_the_cpu_and_a_second_cpu_registration(proto):
    core = im.Core()
    cpu2 = FaultInjectionPlugin("CPU2", device_type="DISCRETE")  # a plain CPU-backed device
    core.register_plugin(cpu2, "CPU2")
    model = core.read_model(proto)
    compiled = core.compile_model(model, "AUTO:CPU2,CPU")
    single = core.compile_model(model, "CPU")
    queue = im.AsyncInferQueue(compiled, 3)
    results = {}
    queue.set_callback(lambda request, i: results.__setitem__(i, request.results[0].copy()))
    for i in range(12):
        queue.start_async({"x": _x(i)}, i)
    queue.wait_all()
    for i, out in results.items():
        np.testing.assert_array_equal(out, single(_x(i))[0])
    assert _wait_for(lambda: compiled.get_property("EXECUTION_DEVICES") == ["CPU2"])


def test_callback_exceptions_surface_at_wait_all_with_their_type(proto):
    core = im.Core()
    compiled = core.compile_model(core.read_model(proto), "AUTO", {"PERFORMANCE_HINT": "THROUGHPUT"})
    queue = im.AsyncInferQueue(compiled)

    def callback(request, userdata):
        raise KeyError(f"job {userdata}")

    queue.set_callback(callback)
    for i in range(4):
        queue.start_async({"x": _x(i)}, i)
    with pytest.raises(KeyError, match="job"):
        queue.wait_all()


def test_parse_of_auto_lists_is_shared_with_the_grammar():
    assert parse_device("AUTO:FGPU(2),-CPU").items[1].excluded
