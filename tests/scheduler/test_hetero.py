"""HETERO: split placement, manual affinity, PIPELINE_PARALLEL, balanced mode, pipeline overlap,
properties, state, the .dot dump -- on fault-injection devices and on the real CPU."""

import threading
import time

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import infermux as im
from infermux.devices.fault_device import FaultInjectionPlugin, InjectedFault
from infermux.errors import InfermuxError, InvalidDeviceStringError, PropertyError, UnsupportedOpError
from infermux.graph.partition import node_weight_bytes
from infermux.graph.stateful import make_stateful
from infermux.scheduler.hetero import HeteroPlugin
from tests.helpers import make_model

X = np.random.default_rng(0).standard_normal((2, 3)).astype(np.float32)


def _vi(name, shape=(2, 3)):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape))


def _aba_proto():
    """Relu -> Sigmoid -> Relu -> Add: Sigmoid is the op only device B supports."""
    return make_model([helper.make_node("Relu", ["x"], ["a"], name="r1"),
                       helper.make_node("Sigmoid", ["a"], ["b"], name="s1"),
                       helper.make_node("Relu", ["b"], ["c"], name="r2"),
                       helper.make_node("Add", ["c", "a"], ["y"], name="add")],
                      [_vi("x")], [_vi("y")])


def _core(**knobs):
    """A Core with FA (no Sigmoid) and FB (everything), both real CPU-backed devices."""
    core = im.Core()
    ops = {"Relu", "Add", "MatMul", "Mul", "ReadValue", "Assign"}
    core.register_plugin(FaultInjectionPlugin("FA", supported_ops=ops, **knobs.get("FA", {})), "FA")
    core.register_plugin(FaultInjectionPlugin("FB", **knobs.get("FB", {})), "FB")
    return core


def _cpu_result(model, x=X):
    return im.Core().compile_model(model, "CPU")(x)[0]


def test_op_only_b_supports_gives_three_submodels_equal_to_cpu():
    core = _core()
    model = core.read_model(_aba_proto())
    compiled = core.compile_model(model, "HETERO:FA,FB")
    assert compiled.get_property("HETERO_NUMBER_OF_SUBMODELS") == 3
    assert compiled.get_property("EXECUTION_DEVICES") == ["FA", "FB"]
    assert compiled.get_property("MULTI_DEVICE_PRIORITIES") == "FA,FB"
    np.testing.assert_array_equal(compiled(X)[0], _cpu_result(model))
    assert core.query_model(model, "HETERO:FA,FB") == {"r1": "FA", "s1": "FB", "r2": "FA", "add": "FA"}
    props = compiled.get_property("DEVICE_PROPERTIES")
    assert props["FA"]["NETWORK_NAME"] == "m_0" and props["FB"]["NETWORK_NAME"] == "m_1"


def test_last_device_is_the_fallback_and_unsupported_ops_are_named():
    core = _core()
    model = core.read_model(_aba_proto())
    compiled = core.compile_model(model, "HETERO:FB,FA")  # FB first claims everything
    assert compiled.get_property("HETERO_NUMBER_OF_SUBMODELS") == 1
    with pytest.raises(UnsupportedOpError, match=r"'s1' \(Sigmoid\)"):
        core.compile_model(model, "HETERO:FA")


def test_manual_affinity_is_respected_even_outside_the_list():
    core = _core()
    model = core.read_model(_aba_proto())
    for node, device in zip(model.get_ops(), ["FB", "FB", "CPU", "CPU"]):
        node.get_rt_info()["affinity"] = device
    compiled = core.compile_model(model, "HETERO:FA,FB")
    assert compiled.get_property("EXECUTION_DEVICES") == ["FB", "CPU"]
    np.testing.assert_array_equal(compiled(X)[0], _cpu_result(model))
    del model.get_ops()[3].get_rt_info()["affinity"]
    with pytest.raises(InfermuxError, match=r"'add' \(Add\) were not assigned to any device"):
        core.compile_model(model, "HETERO:FA,FB")


def _matmul_chain(n=4, size=64, seed=0):
    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array((rng.standard_normal((size, size)) / 8).astype(np.float32), f"w{i}")
             for i in range(n)]
    nodes, prev = [], "x"
    for i in range(n):
        out = "y" if i == n - 1 else f"h{i}"
        nodes.append(helper.make_node("MatMul", [prev, f"w{i}"], [out], name=f"mm{i}"))
        prev = out
    return make_model(nodes, [_vi("x", (1, size))], [_vi("y", (1, size))], inits)


def test_pipeline_parallel_follows_the_1_2x_memory_rule():
    proto = _matmul_chain()
    weights = 4 * 64 * 64 * 4
    x = np.ones((1, 64), np.float32)
    pp = {"MODEL_DISTRIBUTION_POLICY": {"PIPELINE_PARALLEL"}}
    big = _core(FA={"total_mem_bytes": int(1.2 * weights) + 1}, FB={"total_mem_bytes": 10})
    model = big.read_model(proto)
    assert sum(node_weight_bytes(model).values()) == weights
    whole = big.compile_model(model, "HETERO:FB,FA", pp)  # FB is too small; FA holds 1.2x: all on FA
    assert whole.get_property("EXECUTION_DEVICES") == ["FA"]
    assert whole.get_property("MODEL_DISTRIBUTION_POLICY") == {"PIPELINE_PARALLEL"}
    half = int(1.2 * weights / 2) + 1
    split = _core(FA={"total_mem_bytes": half}, FB={"total_mem_bytes": half})
    compiled = split.compile_model(model, "HETERO:FA,FB", pp)
    assert compiled.get_property("HETERO_NUMBER_OF_SUBMODELS") == 2
    assert split.query_model(model, "HETERO:FA,FB", pp) == {"mm0": "FA", "mm1": "FA", "mm2": "FB", "mm3": "FB"}
    np.testing.assert_allclose(compiled(x)[0], _cpu_result(model, x), rtol=1e-5)
    cpu = im.Core().compile_model(model, "HETERO:CPU", {"MODEL_DISTRIBUTION_POLICY": "PIPELINE_PARALLEL"})
    assert cpu.get_property("HETERO_NUMBER_OF_SUBMODELS") == 1  # CPU has no memory limit
    with pytest.raises(PropertyError, match=r"HETERO plugin only support \{ov::hint::ModelDistributionPolicy::"
                                            r"PIPELINE_PARALLEL\}"):
        im.Core().compile_model(model, "HETERO:CPU", {"MODEL_DISTRIBUTION_POLICY": "TENSOR_PARALLEL"})


def test_balanced_mode_profiles_and_splits_between_equal_devices():
    knobs = {"infer_delay_per_node_s": 0.002}
    core = _core(FA=knobs, FB=knobs)
    model = core.read_model(_matmul_chain(n=6))
    compiled = core.compile_model(model, "HETERO:FA,FB", {"HETERO_PARTITION_MODE": "balanced"})
    assert compiled.get_property("HETERO_PARTITION_MODE") == "balanced"
    assert compiled.get_property("EXECUTION_DEVICES") == ["FA", "FB"]
    assert compiled.device_model.plan.stages[0].nodes == ("mm0", "mm1", "mm2")
    x = np.ones((1, 64), np.float32)
    np.testing.assert_allclose(compiled(x)[0], _cpu_result(model, x), rtol=1e-5)


def test_requests_in_flight_overlap_the_stages():
    d = 0.1
    core = _core(FA={"infer_delay_s": d}, FB={"infer_delay_s": d})
    model = core.read_model(make_model([helper.make_node("Relu", ["x"], ["a"], name="r"),
                                        helper.make_node("Sigmoid", ["a"], ["y"], name="s")],
                                       [_vi("x")], [_vi("y")]))
    compiled = core.compile_model(model, "HETERO:FA,FB")
    assert compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS") == 2  # one per stage
    queue = im.AsyncInferQueue(compiled, 8)
    results = {}
    queue.set_callback(lambda req, i: results.__setitem__(i, req.results[0].copy()))
    t0 = time.perf_counter()
    for i in range(8):
        queue.start_async({"x": X * i}, i)
    queue.wait_all()
    elapsed = time.perf_counter() - t0
    assert 8 * d <= elapsed < 12 * d, f"8 requests took {elapsed / d:.1f} d; a pipeline takes ~9 d, none 16 d"
    for i in range(8):
        np.testing.assert_allclose(results[i], 1 / (1 + np.exp(-np.maximum(X * i, 0))), rtol=1e-6)
    stage_models = [core._dispatcher.plugin(n).compiled[-1] for n in ("FA", "FB")]
    assert [m.max_running for m in stage_models] == [1, 1]  # never above a stage's optimal count


def test_sync_infer_from_many_threads_and_failures_stay_with_their_request():
    core = _core(FB={"fail_on_infer": 3})
    model = core.read_model(_aba_proto())
    compiled = core.compile_model(model, "HETERO:FA,FB")
    expected = _cpu_result(model)
    errors, outputs = [], []

    def run():
        try:
            outputs.append(compiled.create_infer_request().infer({"x": X})[0])
        except InjectedFault as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(errors) == 1 and len(outputs) == 5
    for out in outputs:
        np.testing.assert_array_equal(out, expected)


def test_device_properties_forwarded_and_core_keys_never():
    core = _core()
    model = core.read_model(_aba_proto())
    compiled = core.compile_model(model, "HETERO:FA,FB", {
        "DEVICE_PROPERTIES": {"FB": {"PERFORMANCE_HINT": "THROUGHPUT"}},
        "CACHE_DIR": "/nonexistent/cache", "SOME_UNKNOWN_KEY": 1})
    props = compiled.get_property("DEVICE_PROPERTIES")
    assert props["FB"]["PERFORMANCE_HINT"] == "THROUGHPUT" and props["FA"]["PERFORMANCE_HINT"] == "LATENCY"
    assert compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS") == 1 + 2 + 1
    hinted = core.compile_model(model, "HETERO:FA,FB", {"PERFORMANCE_HINT": "THROUGHPUT"})
    assert {p["PERFORMANCE_HINT"] for p in hinted.get_property("DEVICE_PROPERTIES").values()} == {"THROUGHPUT"}
    on_cpu = im.Core().compile_model(model, "HETERO:CPU", {"CACHE_DIR": "/nonexistent/cache"})
    assert on_cpu.get_property("EXECUTION_DEVICES") == ["CPU"]  # CPU itself rejects CACHE_DIR


def test_settings_errors_and_plugin_properties():
    model = im.Core().read_model(_aba_proto())
    with pytest.raises(PropertyError, match="HETERO_PARTITION_MODE"):
        im.Core().compile_model(model, "HETERO:CPU", {"HETERO_PARTITION_MODE": "fastest"})
    plugin = HeteroPlugin()
    with pytest.raises(InvalidDeviceStringError, match="HETERO needs a device list"):
        plugin.compile_model(model, {}, "")
    assert set(plugin.get_property("SUPPORTED_PROPERTIES")) >= {
        "MULTI_DEVICE_PRIORITIES", "MODEL_DISTRIBUTION_POLICY", "HETERO_PARTITION_MODE"}
    plugin.set_property({"HETERO_PARTITION_MODE": "BALANCED", "NOT_A_HETERO_KEY": 1})
    assert plugin.get_property("HETERO_PARTITION_MODE") == "balanced"
    assert plugin.get_property("MODEL_DISTRIBUTION_POLICY") == set()
    compiled = im.Core().compile_model(model, "HETERO:CPU")
    with pytest.raises(PropertyError, match="already compiled"):
        compiled.set_property({"HETERO_PARTITION_MODE": "greedy"})


def test_state_lives_in_the_stage_of_its_read_and_write():
    proto = make_model([helper.make_node("Add", ["h_in", "x"], ["h_out"], name="acc"),
                        helper.make_node("Sigmoid", ["h_out"], ["y"], name="sig")],
                       [_vi("x"), _vi("h_in")], [_vi("y"), _vi("h_out")])
    core = _core()
    model = make_stateful(core.read_model(proto), {"h_in": "h_out"})
    compiled = core.compile_model(model, "HETERO:FA,FB")
    assert compiled.get_property("EXECUTION_DEVICES") == ["FA", "FB"]
    ones = np.ones((2, 3), np.float32)
    seen = [compiled(ones)[0][0, 0] for _ in range(3)]
    np.testing.assert_allclose(seen, 1 / (1 + np.exp(-np.array([1.0, 2.0, 3.0]))), rtol=1e-6)
    request = compiled.create_infer_request()  # state is per request
    request.infer(ones)
    [state] = request.query_state()
    np.testing.assert_array_equal(state.state.data, ones)
    state.state = im.Tensor(np.full((2, 3), 10, np.float32))
    np.testing.assert_allclose(request.infer(ones)[0], 1 / (1 + np.exp(-11.0)), rtol=1e-6)


def test_dump_writes_coloured_graph_and_partitions(tmp_path, monkeypatch):
    monkeypatch.setenv("INFERMUX_HETERO_DUMP", str(tmp_path))
    core = _core()
    core.compile_model(core.read_model(_aba_proto()), "HETERO:FA,FB")
    affinity = (tmp_path / "hetero_affinity_m.dot").read_text()
    subgraphs = (tmp_path / "hetero_subgraphs_m.dot").read_text()
    assert '"s1" [label="s1\\nSigmoid\\nFB"' in affinity
    assert subgraphs.count("subgraph \"cluster_") == 3 and "style=bold" in subgraphs


@pytest.mark.parametrize("name", ["light_squeezenet", "light_inception_v1"])
def test_real_models_on_hetero_cpu_and_split_over_two_cpu_devices(name):
    from infermux.conformance.data import light_models_dir

    core = im.Core()
    core.register_plugin(FaultInjectionPlugin("CPU2"), "CPU2")  # a second, knob-free CPU device
    model = core.read_model(str(light_models_dir() / f"{name}.onnx"))
    x = np.random.default_rng(1).standard_normal(model.inputs[0].shape).astype(np.float32)
    expected = core.compile_model(model, "CPU")(x)[0]
    single = core.compile_model(model, "HETERO:CPU")
    assert single.get_property("HETERO_NUMBER_OF_SUBMODELS") == 1
    np.testing.assert_array_equal(single(x)[0], expected)
    ops = model.get_ops()
    for i, node in enumerate(ops):
        node.get_rt_info()["affinity"] = "CPU" if i < len(ops) // 2 else "CPU2"
    split = core.compile_model(model, "HETERO:CPU,CPU2")
    assert split.get_property("EXECUTION_DEVICES") == ["CPU", "CPU2"]
    np.testing.assert_allclose(split(x)[0], expected, rtol=1e-5, atol=1e-6)
