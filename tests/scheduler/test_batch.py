"""BATCH: gathering from any request, timeouts, partial batches, failures, properties, implicit batching.

Timing checks use B=4 and a 300 ms timeout (the §19 step 7 scenario): "fast" means well under
the timeout, "waited" means about the timeout.
"""

import logging
import threading
import time

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import infermux as im
from infermux.devices.fault_device import FaultInjectionPlugin, InjectedFault
from infermux.devices.registry import PluginRegistry
from infermux.errors import (
    InfermuxError,
    InvalidDeviceStringError,
    PropertyError,
    ShapeMismatchError,
    TypeMismatchError,
)
from infermux.scheduler.async_queue import AsyncInferQueue
from infermux.scheduler.batch import (
    BatchNotSupportedError,
    BatchPlugin,
    PadRule,
    batch_refusal,
    maybe_auto_batch,
    with_batch,
)
from infermux.scheduler.dispatch import Dispatcher
from tests.helpers import (
    accumulator_model,
    make_model,
    mlp_reference,
    tiny_mlp,
    two_input_add,
)

TIMEOUT = {"AUTO_BATCH_TIMEOUT": 300}
FAST_S = 0.25     # under the 300 ms timeout: the batch ran without waiting for it (see also counts)
LOG = "infermux.scheduler.batch"


@pytest.fixture(scope="module")
def proto():
    return tiny_mlp(batch=1)


@pytest.fixture
def core():
    core = im.Core()
    core.register_plugin(FaultInjectionPlugin("FGPU", optimal_requests=2, optimal_batch_size=8), "FGPU")
    core.register_plugin(FaultInjectionPlugin("TCPU"), "TCPU")  # a second CPU, no knobs
    return core


@pytest.fixture
def compiled(core, proto):
    cm = core.compile_model(core.read_model(proto), "BATCH:CPU(4)", TIMEOUT)
    yield cm
    cm.release_memory()


def _x(seed):
    return np.random.default_rng(seed).standard_normal((1, 4)).astype(np.float32)


def _start_all(requests, seeds):
    t0 = time.monotonic()
    for request, seed in zip(requests, seeds):
        request.start_async({"x": _x(seed)})
    for request in requests:
        request.wait()
    return time.monotonic() - t0


def _children(plugin, batch):
    """The (batched, unbatched) children a FaultInjectionPlugin compiled, by their dim 0."""
    by_batch = {int(c.input_infos[0].shape[0].get_length()): c for c in plugin.compiled}
    return by_batch[batch], by_batch[1]


# -- gathering and timeouts -----------------------------------------------------------------------

def test_four_requests_together_complete_well_before_the_timeout(compiled, proto):
    requests = [compiled.create_infer_request() for _ in range(4)]
    assert _start_all(requests, range(4)) < FAST_S
    assert compiled.device_model.counts == {"full": 1}  # one batch, no timeout
    for request, seed in zip(requests, range(4)):
        np.testing.assert_allclose(request.results[0], mlp_reference(proto, _x(seed)), rtol=1e-6)


def test_requests_batch_together_regardless_of_creation_order(compiled, proto):
    # OpenVINO binds request k to slot k % B of worker k // B: requests 1..4 span two workers and
    # wait out the timeout.  Here any four pending requests form a batch.
    requests = [compiled.create_infer_request() for _ in range(8)]
    assert _start_all(requests[1:5], range(4)) < FAST_S
    chosen = [requests[i] for i in (7, 2, 5, 0)]
    assert _start_all(chosen, range(10, 14)) < FAST_S
    assert compiled.device_model.counts == {"full": 2}
    for request, seed in zip(chosen, range(10, 14)):
        np.testing.assert_allclose(request.results[0], mlp_reference(proto, _x(seed)), rtol=1e-6)


def test_a_stray_request_joins_the_next_three(compiled):
    requests = [compiled.create_infer_request() for _ in range(4)]
    t0 = time.monotonic()
    requests[3].start_async({"x": _x(0)})
    time.sleep(0.05)
    _start_all(requests[:3], range(3))
    requests[3].wait()
    assert time.monotonic() - t0 < 0.05 + FAST_S
    assert compiled.device_model.counts == {"full": 1}


def test_a_lone_request_completes_in_about_the_timeout(compiled, proto):
    request = compiled.create_infer_request()
    t0 = time.monotonic()
    result = request.infer({"x": _x(5)})[0]
    assert 0.29 <= time.monotonic() - t0 < 0.6
    assert compiled.device_model.counts == {"timeouts": 1, "single": 1}  # alone, on the unbatched model
    np.testing.assert_allclose(result, mlp_reference(proto, _x(5)), rtol=1e-6)


def test_timeout_zero_set_at_runtime_removes_the_wait(compiled):
    assert compiled.get_property("AUTO_BATCH_TIMEOUT") == 300
    compiled.set_property({"AUTO_BATCH_TIMEOUT": 0})
    assert compiled.get_property("AUTO_BATCH_TIMEOUT") == 0
    request = compiled.create_infer_request()
    t0 = time.monotonic()
    request.infer({"x": _x(0)})
    assert time.monotonic() - t0 < FAST_S
    assert compiled.device_model.counts == {"single": 1}


def test_a_shorter_timeout_applies_to_requests_already_waiting(compiled):
    request = compiled.create_infer_request()
    compiled.set_property({"AUTO_BATCH_TIMEOUT": 10_000})
    t0 = time.monotonic()
    request.start_async({"x": _x(0)})
    time.sleep(0.05)
    compiled.set_property({"AUTO_BATCH_TIMEOUT": 0})
    request.wait()
    assert time.monotonic() - t0 < 0.05 + FAST_S


def test_async_infer_queue_over_batch_batches_every_job(core, proto):
    plugin = core._plugins.get("FGPU")
    cm = core.compile_model(core.read_model(proto), "BATCH:FGPU(4)",
                            {"PERFORMANCE_HINT": "THROUGHPUT", **TIMEOUT})
    batched, unbatched = _children(plugin, 4)
    seen_batched, seen_single = batched.requests_seen, unbatched.requests_seen
    queue = AsyncInferQueue(cm)
    assert len(queue) == 8  # B x the device's optimal (2)
    results = {}
    queue.set_callback(lambda request, i: results.__setitem__(i, request.results[0].copy()))
    for i in range(40):
        queue.start_async({"x": _x(i)}, i)
    queue.wait_all()
    assert sorted(results) == list(range(40))
    for i, value in results.items():
        np.testing.assert_allclose(value, mlp_reference(proto, _x(i)), rtol=1e-6)
    assert batched.requests_seen - seen_batched == 10
    assert unbatched.requests_seen == seen_single
    cm.release_memory()


# -- partial batches ------------------------------------------------------------------------------

@pytest.mark.parametrize("pad_from, batched_runs, single_runs", [(2, 1, 0), (4, 0, 3)])
def test_a_partial_batch_is_padded_or_run_singly_by_the_rule(core, proto, pad_from, batched_runs, single_runs):
    plugin = core._plugins.get("FGPU")
    cm = core.compile_model(core.read_model(proto), "BATCH:FGPU(4)", {"AUTO_BATCH_TIMEOUT": 50})
    batched, unbatched = _children(plugin, 4)
    before = batched.requests_seen, unbatched.requests_seen
    cm.device_model.pad_rule = PadRule(1.0, 1.0, pad_from)
    requests = [cm.create_infer_request() for _ in range(3)]
    _start_all(requests, range(3))
    assert (batched.requests_seen - before[0], unbatched.requests_seen - before[1]) == (batched_runs, single_runs)
    assert cm.device_model.counts == {"timeouts": 1, **({"padded": 1} if batched_runs else {"single": 3})}
    for request, seed in zip(requests, range(3)):
        np.testing.assert_allclose(request.results[0], mlp_reference(proto, _x(seed)), rtol=1e-6)
    cm.release_memory()


@pytest.mark.parametrize("batch_s, single_s, pad_from", [
    (1.04, 1.0, 2),     # tiny on the CPU: a batch costs one inference, pad from 2
    (2.95, 1.0, 3),     # the zoo MLP on the CPU
    (3.6, 1.0, 4),
    (9.0, 1.0, 8),      # batching never pays: only full batches run batched
    (0.5, 1.0, 2),      # padding a lone request never pays
])
def test_pad_rule_from_measured_times(batch_s, single_s, pad_from):
    assert PadRule.from_times(batch_s, single_s, 8).pad_from == pad_from


def test_compile_measures_the_rule(compiled):
    rule = compiled.device_model.pad_rule
    assert rule.batch_s > 0 and rule.single_s > 0 and 2 <= rule.pad_from <= 4


# -- results and failures -------------------------------------------------------------------------

def test_results_equal_unbatched_results_and_are_not_overwritten(core, compiled, proto):
    reference = core.compile_model(core.read_model(proto), "CPU")
    requests = [compiled.create_infer_request() for _ in range(4)]
    _start_all(requests, range(4))
    first = [r.results[0] for r in requests]
    kept = [a.copy() for a in first]
    _start_all(requests, range(20, 24))
    for array, copy_, seed in zip(first, kept, range(4)):
        np.testing.assert_array_equal(array, copy_)
        np.testing.assert_allclose(array, reference({"x": _x(seed)})[0], rtol=1e-6)
    assert all(r.results[0].shape == (1, 3) for r in requests)


def test_a_failing_batch_fails_exactly_its_requests(core, proto):
    target = {"n": -1}
    plugin = FaultInjectionPlugin("FAIL", fail_on_infer=lambda n: n == target["n"])
    core.register_plugin(plugin, "FAIL")
    cm = core.compile_model(core.read_model(proto), "BATCH:FAIL(4)", TIMEOUT)
    batched, _ = _children(plugin, 4)
    target["n"] = batched.requests_seen + 1  # the next batched inference fails
    requests = [cm.create_infer_request() for _ in range(8)]
    for i, request in enumerate(requests):
        request.start_async({"x": _x(i)})
    errors, good = [], []
    for i, request in enumerate(requests):
        try:
            request.wait()
            good.append(i)
        except InjectedFault as exc:
            errors.append(exc)
    assert len(errors) == 4 and len(good) == 4
    assert len({id(e) for e in errors}) == 4  # each request raises its own copy
    for i in good:
        np.testing.assert_allclose(requests[i].results[0], mlp_reference(proto, _x(i)), rtol=1e-6)
    cm.release_memory()


def test_a_bad_input_fails_alone_at_the_boundary(compiled, proto):
    worker = compiled.device_model
    with pytest.raises(ShapeMismatchError, match="expecting \\[1, 4\\]"):
        worker.infer([np.zeros((2, 4), np.float32)])
    with pytest.raises(TypeMismatchError, match="float64"):
        worker.infer([np.zeros((1, 4), np.float64)])
    requests = [compiled.create_infer_request() for _ in range(4)]
    assert _start_all(requests, range(4)) < FAST_S
    assert compiled.device_model.counts == {"full": 1}


def test_close_fails_pending_requests_and_later_ones(core, proto):
    cm = core.compile_model(core.read_model(proto), "BATCH:CPU(4)", {"AUTO_BATCH_TIMEOUT": 10_000})
    request = cm.create_infer_request()
    request.start_async({"x": _x(0)})
    time.sleep(0.05)
    cm.release_memory()
    with pytest.raises(InfermuxError, match="closed while this request was waiting"):
        request.wait()
    with pytest.raises(InfermuxError, match="is closed"):
        cm.device_model.infer([_x(1)])


# -- batchability ---------------------------------------------------------------------------------

def _reshape_to_row_model():
    """x[1,4] -> Reshape([1,-1]) -> y[1,4]: a fixed 1 that survives reshaping the input."""
    shape = numpy_helper.from_array(np.array([1, -1], np.int64), "shape")
    node = helper.make_node("Reshape", ["x", "shape"], ["y"], name="flatten")
    return make_model([node], [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], [shape])


@pytest.mark.parametrize("model, reason", [
    (tiny_mlp(), "dynamic"),
    (two_input_add(), "dim 0 must be 1"),
    (_reshape_to_row_model(), "not dim 0 == 4"),
])
def test_unbatchable_models_run_unbatched_and_say_why(core, caplog, model, reason):
    caplog.set_level(logging.INFO, logger=LOG)
    m = core.read_model(model)
    cm = core.compile_model(m, "BATCH:CPU(4)", TIMEOUT)
    assert cm.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS") == 1  # the CPU's (LATENCY)
    assert cm.device_model.batch_size == 1
    assert any("not batchable" in r.message and reason in r.message for r in caplog.records), caplog.text
    feeds = {p.any_name: np.ones([int(d.get_length()) if d.is_static else 1 for d in p.partial_shape],
                                 np.float32) for p in cm.inputs}
    t0 = time.monotonic()
    cm(feeds)
    assert time.monotonic() - t0 < FAST_S  # no gathering, no timeout


def test_batch_refusal_and_with_batch(core, proto):
    model = core.read_model(proto)
    assert batch_refusal(model) is None
    assert "dynamic" in batch_refusal(core.read_model(tiny_mlp()))
    eight = with_batch(model, 8)
    assert [str(v.shape) for v in eight.graph.outputs] == ["[8,3]"]
    assert str(model.graph.inputs[0].shape) == "[1,4]"  # the original is untouched


def test_stateful_models_are_refused(core):
    proto = accumulator_model()
    with pytest.raises(BatchNotSupportedError, match="BATCH does not support stateful models: 'acc'"):
        core.compile_model(core.read_model(proto), "BATCH:CPU(4)")


# -- batch size and properties --------------------------------------------------------------------

@pytest.mark.parametrize("device, config, batch, optimal", [
    ("BATCH:CPU(4)", {}, 4, 4),                                   # B x 1 (LATENCY)
    ("BATCH:CPU(1)", {}, 1, 1),                                   # batch 1: no batching
    ("BATCH:CPU", {}, 1, 1),                                      # CPU has no OPTIMAL_BATCH_SIZE
    ("BATCH:TCPU(4)", {"PERFORMANCE_HINT": "THROUGHPUT"}, 4, 8),  # B x the device's optimal (2)
    ("BATCH:FGPU", {}, 8, 8),                                     # the device's OPTIMAL_BATCH_SIZE
    ("BATCH:FGPU", {"PERFORMANCE_HINT_NUM_REQUESTS": 4}, 4, 4),   # capped, never below B
    ("BATCH:FGPU", {"PERFORMANCE_HINT_NUM_REQUESTS": 2}, 1, 1),   # an automatic batch of 2 is not used
    ("BATCH:FGPU(4)", {"PERFORMANCE_HINT_NUM_REQUESTS": 6}, 4, 6),
])
def test_batch_size_and_optimal_number_of_requests(core, proto, device, config, batch, optimal):
    cm = core.compile_model(core.read_model(proto), device, config)
    assert cm.device_model.batch_size == batch
    assert cm.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS") == optimal
    cm.release_memory()


def test_compiled_properties(compiled):
    supported = compiled.get_property("SUPPORTED_PROPERTIES")
    assert supported["AUTO_BATCH_TIMEOUT"] == "RW"
    assert all(supported[k] == "RO" for k in ("OPTIMAL_NUMBER_OF_INFER_REQUESTS", "EXECUTION_DEVICES",
                                              "MULTI_DEVICE_PRIORITIES", "NETWORK_NAME"))
    assert compiled.get_property("EXECUTION_DEVICES") == ["CPU"]
    assert compiled.get_property("MULTI_DEVICE_PRIORITIES") == "CPU(4)"
    with pytest.raises(PropertyError, match="only AUTO_BATCH_TIMEOUT"):
        compiled.set_property({"PERFORMANCE_HINT": "THROUGHPUT"})
    with pytest.raises(PropertyError, match="AUTO_BATCH_TIMEOUT"):
        compiled.set_property({"AUTO_BATCH_TIMEOUT": -1})
    with pytest.raises(NotImplementedError, match="Not Implemented"):
        compiled.device_model.export_model()


def test_config_keys(core, proto):
    model = core.read_model(proto)
    with pytest.raises(PropertyError, match="Unsupported config key: FOO"):
        core.compile_model(model, "BATCH:CPU(4)", {"FOO": 1})
    cm = core.compile_model(model, "BATCH:CPU(4)", {"NUM_STREAMS": 2, "ALLOW_AUTO_BATCHING": False})
    assert cm.get_property("AUTO_BATCH_TIMEOUT") == 1000  # the default
    assert cm.get_property("NUM_STREAMS") == 2            # forwarded to the CPU
    assert cm.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS") == 8
    cm.release_memory()


def test_plugin_properties_and_the_priorities_form(core, proto):
    plugin = BatchPlugin()
    plugin.bind(core._dispatcher)
    assert plugin.get_property("AUTO_BATCH_TIMEOUT") == 1000
    assert set(plugin.get_property("SUPPORTED_PROPERTIES")) == {
        "SUPPORTED_PROPERTIES", "FULL_DEVICE_NAME", "MULTI_DEVICE_PRIORITIES", "AUTO_BATCH_TIMEOUT", "PERF_COUNT"}
    with pytest.raises(PropertyError, match="The Value is not set for MULTI_DEVICE_PRIORITIES"):
        plugin.get_property("MULTI_DEVICE_PRIORITIES")
    with pytest.raises(InvalidDeviceStringError, match="priorities key for AUTO BATCH is not set"):
        plugin.compile_model(core.read_model(proto), {}, "")
    with pytest.raises(PropertyError, match="Unsupported config key: FOO"):
        plugin.set_property({"FOO": 1})
    plugin.set_property({"AUTO_BATCH_TIMEOUT": 20})
    cm = plugin.compile_model(core.read_model(proto), {"MULTI_DEVICE_PRIORITIES": "CPU(2)"}, "")
    assert (cm.batch_size, cm.get_property("AUTO_BATCH_TIMEOUT")) == (2, 20)
    cm.release()


def test_batch_on_the_second_cpu_equals_batch_on_cpu(core, proto):
    cms = [core.compile_model(core.read_model(proto), f"BATCH:{d}(2)", {"AUTO_BATCH_TIMEOUT": 20})
           for d in ("CPU", "TCPU")]
    for cm in cms:
        requests = [cm.create_infer_request() for _ in range(2)]
        _start_all(requests, (7, 8))
        np.testing.assert_allclose(requests[1].results[0], mlp_reference(proto, _x(8)), rtol=1e-6)
        cm.release_memory()
    assert cms[1].get_property("EXECUTION_DEVICES") == ["TCPU"]


# -- implicit batching ----------------------------------------------------------------------------

@pytest.fixture
def dispatcher():
    registry = PluginRegistry()
    registry.register(FaultInjectionPlugin("FGPU", optimal_batch_size=8), "FGPU")
    registry.register(FaultInjectionPlugin("SMALL", optimal_batch_size=2), "SMALL")
    return Dispatcher(registry)


@pytest.mark.parametrize("device, config, expected", [
    ("FGPU", {"PERFORMANCE_HINT": "THROUGHPUT"}, "BATCH:FGPU(8)"),
    ("FGPU", {"PERFORMANCE_HINT": "LATENCY"}, "FGPU"),
    ("FGPU", {}, "FGPU"),                                                        # default hint LATENCY
    ("FGPU", {"PERFORMANCE_HINT": "THROUGHPUT", "ALLOW_AUTO_BATCHING": False}, "FGPU"),
    ("FGPU", {"PERFORMANCE_HINT": "THROUGHPUT", "ALLOW_AUTO_BATCHING": "NO"}, "FGPU"),
    ("FGPU", {"PERFORMANCE_HINT": "THROUGHPUT", "PERFORMANCE_HINT_NUM_REQUESTS": 4}, "BATCH:FGPU(4)"),
    ("FGPU", {"PERFORMANCE_HINT": "THROUGHPUT", "PERFORMANCE_HINT_NUM_REQUESTS": 2}, "FGPU"),
    ("SMALL", {"PERFORMANCE_HINT": "THROUGHPUT"}, "SMALL"),                      # batch 2 is not used
    ("CPU", {"PERFORMANCE_HINT": "THROUGHPUT"}, "CPU"),                          # never on the CPU
    ("MULTI:FGPU", {"PERFORMANCE_HINT": "THROUGHPUT"}, "MULTI:FGPU"),            # only hardware
    ("BATCH:FGPU(4)", {"PERFORMANCE_HINT": "THROUGHPUT"}, "BATCH:FGPU(4)"),
])
def test_maybe_auto_batch(dispatcher, proto, device, config, expected):
    model = im.Core().read_model(proto)
    assert maybe_auto_batch(dispatcher, model, device, config) == expected


def test_maybe_auto_batch_leaves_unbatchable_and_stateful_models(dispatcher):
    model = im.Core().read_model(tiny_mlp())  # dynamic
    assert maybe_auto_batch(dispatcher, model, "FGPU", {"PERFORMANCE_HINT": "THROUGHPUT"}) == "FGPU"


def test_implicit_batching_through_the_dispatcher_does_not_recurse(proto):
    registry = PluginRegistry()
    plugin = FaultInjectionPlugin("FGPU", optimal_batch_size=8)
    registry.register(plugin, "FGPU")
    dispatcher = Dispatcher(registry)
    model = im.Core().read_model(proto)
    worker = dispatcher.compile(model, "FGPU", {"PERFORMANCE_HINT": "THROUGHPUT", "AUTO_BATCH_TIMEOUT": 20})
    assert worker.device_name == "BATCH:FGPU(8)"
    assert sorted(int(c.input_infos[0].shape[0].get_length()) for c in plugin.compiled) == [1, 8]
    assert worker.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS") == 16
    plain = dispatcher.compile(model, "FGPU", {"PERFORMANCE_HINT": "THROUGHPUT", "ALLOW_AUTO_BATCHING": False,
                                               "AUTO_BATCH_TIMEOUT": 20})
    assert plain.device_name == "FGPU"
    worker.release()


def test_batches_from_many_threads_calling_infer_directly(compiled, proto):
    """Sync infer from 8 user threads on 8 requests: two full batches, every result right."""
    requests = [compiled.create_infer_request() for _ in range(8)]
    out = {}
    barrier = threading.Barrier(8)

    def run(i):
        barrier.wait()
        out[i] = requests[i].infer({"x": _x(i)})[0]

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert time.monotonic() - t0 < FAST_S
    assert compiled.device_model.counts == {"full": 2}
    for i in range(8):
        np.testing.assert_allclose(out[i], mlp_reference(proto, _x(i)), rtol=1e-6)


def test_query_model_and_perf_count_go_to_the_device(core, proto):
    model = core.read_model(proto)
    assert core.query_model(model, "BATCH:CPU(2)") == core.query_model(model, "CPU")
    cm = core.compile_model(model, "BATCH:CPU(2)", {"PERF_COUNT": True, "AUTO_BATCH_TIMEOUT": 20})
    requests = [cm.create_infer_request() for _ in range(2)]
    _start_all(requests, range(2))
    assert any("MatMul" in p.node_type for p in requests[0].profiling_info)  # MatMul or a fused MatMul
    cm.release_memory()
