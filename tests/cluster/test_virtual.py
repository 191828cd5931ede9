"""MULTI, AUTO, HETERO and BATCH over cluster devices, with no cluster code in the scheduler."""

from __future__ import annotations

import time

import numpy as np
import pytest
from onnx import TensorProto, helper

import infermux as im

pytestmark = pytest.mark.cluster


def _run_all(compiled, inputs, jobs=8):
    """Every input through an AsyncInferQueue; {index: output 0}."""
    queue = im.AsyncInferQueue(compiled, jobs)
    results = {}
    queue.set_callback(lambda req, i: results.__setitem__(i, req.get_output_tensor(0).data.copy()))
    for i, x in enumerate(inputs):
        queue.start_async(x, i)
    queue.wait_all()
    return results


def test_multi_spreads_requests_over_three_nodes(core, tiny):
    compiled = core.compile_model(tiny.model(), "MULTI:CPU@head,CPU@node-b,CPU@node-c",
                                  {"SCHEDULE_POLICY": "ROUND_ROBIN"})
    assert compiled.get_property("EXECUTION_DEVICES") == ["CPU@head", "CPU@node-b", "CPU@node-c"]
    results = _run_all(compiled, [{"input": tiny.x}] * 60)
    assert len(results) == 60 and all(np.array_equal(r, tiny.ref) for r in results.values())
    served = {p.name: p.served for p in compiled.device_model.pools}
    assert sum(served.values()) == 60 and all(n > 0 for n in served.values()), served


def test_auto_prefers_the_discrete_cluster_device(core, tiny):
    """AUTO ranks every cluster device: the DISCRETE one wins, the local CPU helps at start.
    (The VPU is excluded by hand: AUTO's explicit-only check reads 'VPU@node-b' as a kind.)"""
    compiled = core.compile_model(tiny.model(), "AUTO:-VPU@node-b")
    deadline = time.monotonic() + 30
    while compiled.get_property("EXECUTION_DEVICES") != ["FGPU@node-c"] and time.monotonic() < deadline:
        compiled({"input": tiny.x})
        time.sleep(0.05)
    assert compiled.get_property("EXECUTION_DEVICES") == ["FGPU@node-c"]
    np.testing.assert_array_equal(compiled({"input": tiny.x})[0], tiny.ref)


def test_auto_cumulative_throughput_uses_the_whole_cluster(core, tiny):
    compiled = core.compile_model(tiny.model(), "AUTO", {"PERFORMANCE_HINT": "CUMULATIVE_THROUGHPUT"})
    devices = compiled.get_property("EXECUTION_DEVICES")
    assert {"CPU@head", "CPU@node-b", "CPU@node-c", "FGPU@node-c", "SLOW@node-b"} <= set(devices)
    results = _run_all(compiled, [{"input": tiny.x}] * 30)
    for out in results.values():  # fp16 where the VPU served
        np.testing.assert_allclose(out, tiny.ref, atol=3e-3, rtol=0)


def _sine_model(core):
    """x[4,16] -> MatMul -> Relu -> Sin (no VPU kernel) -> Add -> y: HETERO splits it in three."""
    rng = np.random.default_rng(3)
    w = helper.make_tensor("w", TensorProto.FLOAT, [16, 16], rng.standard_normal(256).astype(np.float32) * 0.2)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["a"], name="mm"),
             helper.make_node("Relu", ["a"], ["b"], name="relu"),
             helper.make_node("Sin", ["b"], ["c"], name="sin"),
             helper.make_node("Add", ["c", "b"], ["y"], name="add")]
    graph = helper.make_graph(nodes, "sine", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 16])], [w])
    return core.read_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))


def test_hetero_splits_a_model_between_nodes_by_what_each_supports(core):
    model = _sine_model(core)
    compiled = core.compile_model(model, "HETERO:VPU@node-b,CPU@node-c")
    assert compiled.get_property("HETERO_NUMBER_OF_SUBMODELS") == 3
    assert compiled.get_property("EXECUTION_DEVICES") == ["VPU@node-b", "CPU@node-c"]
    x = np.random.default_rng(4).standard_normal((4, 16)).astype(np.float32)
    ref = im.Core().compile_model(model, "CPU")({"x": x})[0]
    np.testing.assert_allclose(compiled({"x": x})[0], ref, atol=3e-3)


def test_hetero_stages_on_different_nodes_overlap(core, tiny, slow_delay_s):
    """Two 50 ms stages on two nodes: with 8 requests in flight the pipeline takes about half
    of the serial time (each stage is busy while the other works on another request)."""
    model = tiny.model()
    for node in model.graph.nodes:
        node.rt_info["affinity"] = "SLOW@node-b" if node.name in ("matmul", "bias") else "SLOW@node-c"
    compiled = core.compile_model(model, "HETERO:SLOW@node-b,SLOW@node-c")
    assert compiled.get_property("EXECUTION_DEVICES") == ["SLOW@node-b", "SLOW@node-c"]
    compiled({"input": tiny.x})  # warm both stages
    n = 16
    t0 = time.perf_counter()
    results = _run_all(compiled, [{"input": tiny.x}] * n, jobs=8)
    elapsed = time.perf_counter() - t0
    assert all(np.array_equal(r, tiny.ref) for r in results.values())
    serial = n * 2 * slow_delay_s
    assert elapsed < 0.85 * serial, f"{elapsed:.2f} s for {n} requests; serial would take {serial:.2f} s"


def test_a_slow_stage_never_holds_more_than_its_requests(core, resolver, tiny):
    """Backpressure: 40 requests into a pipeline whose second stage is slow; the slow device
    never runs more inferences at once than its slots (2), and nothing piles up unbounded."""
    model = tiny.model()
    for node in model.graph.nodes:
        node.rt_info["affinity"] = "CPU@node-b" if node.name in ("matmul", "bias") else "SLOW@node-c"
    compiled = core.compile_model(model, "HETERO:CPU@node-b,SLOW@node-c")
    slow = resolver.handle(resolver.find(im.scheduler.device_string.parse_device("SLOW@node-c")))
    slow.call("stats", True)
    results = _run_all(compiled, [{"input": tiny.x}] * 40, jobs=16)
    assert len(results) == 40
    stats = slow.call("stats")
    assert 1 <= stats["max_running"] <= 2, stats


def test_batch_over_a_cluster_device(core, tiny):
    model = tiny.model()
    model.reshape({"input": [-1, 16]})
    compiled = core.compile_model(model, "BATCH:CPU@node-c(4)", {"AUTO_BATCH_TIMEOUT": 50})
    inputs = [{"input": tiny.x[i:i + 1]} for i in range(4)] * 5
    results = _run_all(compiled, inputs, jobs=8)
    for i, out in results.items():
        np.testing.assert_allclose(out, tiny.ref[i % 4:i % 4 + 1], rtol=1e-6, atol=1e-6)


def test_multi_mixing_local_and_cluster_devices(core, tiny):
    compiled = core.compile_model(tiny.model(), "MULTI:CPU,CPU@node-b")
    results = _run_all(compiled, [{"input": tiny.x}] * 20)
    assert all(np.array_equal(r, tiny.ref) for r in results.values())
