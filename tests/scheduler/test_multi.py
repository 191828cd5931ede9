"""MULTI (and the pools it shares with AUTO's CUMULATIVE_THROUGHPUT): reference section 5.5 / 6.

Multi-device cases use FaultInjectionPlugin devices (CPU-backed, with knobs); the real-plugin
cases run MULTI over the CPU and a second CPU-backed registration.
"""

import logging
import threading
import time

import numpy as np
import pytest

import infermux as im
from infermux.devices.fault_device import FaultInjectionPlugin, InjectedFault
from infermux.scheduler.pools import (
    DevicePool,
    NoWorkerError,
    RequestScheduler,
    WorkerThreads,
)
from tests.helpers import accumulator_model, mlp_reference, tiny_mlp


@pytest.fixture(scope="module")
def proto():
    return tiny_mlp(batch=2)


def _core(**fgpu_knobs):
    core = im.Core()
    fgpu = FaultInjectionPlugin("FGPU", ids=["0", "1"], device_type={"0": "DISCRETE", "1": "INTEGRATED"},
                                **fgpu_knobs)
    core.register_plugin(fgpu, "FGPU")
    return core, fgpu


def _inputs(n, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((2, 4)).astype(np.float32) for _ in range(n)]


def _run_queue(compiled, inputs, jobs=0):
    queue = im.AsyncInferQueue(compiled, jobs)
    results = {}
    queue.set_callback(lambda request, i: results.__setitem__(i, request.results[0].copy()))
    for i, x in enumerate(inputs):
        queue.start_async({"x": x}, i)
    queue.wait_all()
    return [results[i] for i in range(len(inputs))]


def _compiled_on(plugin, device_name):
    return [m for m in plugin.compiled if m.device_name == device_name]


# -- pools, results, counts ------------------------------------------------------------------

def test_pools_of_4_and_2_never_overrun_and_results_equal_single_device(proto):
    core, fgpu = _core(infer_delay_s=0.02)
    model = core.read_model(proto)
    compiled = core.compile_model(model, "MULTI:FGPU.0(4),FGPU.1(2)")
    assert compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS") == 6
    inputs = _inputs(64)
    outputs = _run_queue(compiled, inputs, jobs=8)  # 8 in flight > 6 slots: some wait in the queue
    [gpu0], [gpu1] = _compiled_on(fgpu, "FGPU.0"), _compiled_on(fgpu, "FGPU.1")
    assert (gpu0.max_running, gpu1.max_running) == (4, 2)
    assert gpu0.requests_seen + gpu1.requests_seen == 64
    single = core.compile_model(model, "CPU")
    for x, out in zip(inputs, outputs):
        np.testing.assert_array_equal(out, single(x)[0])


def test_optimal_requests_is_the_sum_and_counts_the_given_n(proto):
    core, _ = _core(optimal_requests=3)
    model = core.read_model(proto)
    compiled = core.compile_model(model, "MULTI:FGPU.0,CPU")
    children = compiled.get_property("DEVICE_PROPERTIES")
    assert list(children) == ["FGPU.0", "CPU"]
    assert children["FGPU.0"]["OPTIMAL_NUMBER_OF_INFER_REQUESTS"] == 3  # THROUGHPUT forced
    assert compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS") == sum(
        c["OPTIMAL_NUMBER_OF_INFER_REQUESTS"] for c in children.values())
    # unlike OpenVINO (which reports 2 for MULTI:CPU(4)), the (N) that sizes the pool is reported
    assert core.compile_model(model, "MULTI:CPU(4)").get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS") == 4


def test_properties_and_execution_devices(proto):
    core, _ = _core()
    compiled = core.compile_model(core.read_model(proto), "MULTI:FGPU.1(3),CPU")
    assert compiled.get_property("EXECUTION_DEVICES") == ["FGPU.1", "CPU"]
    assert compiled.get_property("MULTI_DEVICE_PRIORITIES") == "FGPU.1(3),CPU"
    assert compiled.get_property("PERFORMANCE_HINT") == "THROUGHPUT"
    assert compiled.get_property("SCHEDULE_POLICY") == "DEVICE_PRIORITY"
    assert set(compiled.get_property("SUPPORTED_PROPERTIES")) >= {
        "EXECUTION_DEVICES", "OPTIMAL_NUMBER_OF_INFER_REQUESTS", "SCHEDULE_POLICY", "DEVICE_PROPERTIES"}
    with pytest.raises(im.PropertyError, match="not possible to set property of an already compiled"):
        compiled.set_property({"PERFORMANCE_HINT": "LATENCY"})
    with pytest.raises(im.PropertyError, match="Unsupported property NUM_STREAMS"):
        compiled.get_property("NUM_STREAMS")


def test_a_device_listed_twice_is_used_once(proto):
    core = im.Core()
    compiled = core.compile_model(core.read_model(proto), "MULTI:CPU,CPU")
    assert compiled.get_property("EXECUTION_DEVICES") == ["CPU"]


# -- scheduling policy -----------------------------------------------------------------------

def _two_speeds_core():
    core = im.Core()
    fast = FaultInjectionPlugin("FAST", infer_delay_s=0.005, optimal_requests=2)
    slow = FaultInjectionPlugin("SLOW", infer_delay_s=0.03, optimal_requests=2)
    core.register_plugin(fast, "FAST")
    core.register_plugin(slow, "SLOW")
    return core, fast, slow


@pytest.mark.parametrize("policy, expected", [("DEVICE_PRIORITY", (12, 0)), ("ROUND_ROBIN", (6, 6))])
def test_schedule_policy_one_request_at_a_time(proto, policy, expected):
    core, fast, slow = _two_speeds_core()
    compiled = core.compile_model(core.read_model(proto), "MULTI:FAST,SLOW", {"SCHEDULE_POLICY": policy})
    request = compiled.create_infer_request()
    for x in _inputs(12):
        request.infer({"x": x})
    assert (fast.compiled[0].requests_seen, slow.compiled[0].requests_seen) == expected


def test_device_priority_fills_the_first_device_before_the_second(proto):
    core, fast, slow = _two_speeds_core()
    compiled = core.compile_model(core.read_model(proto), "MULTI:FAST(2),SLOW(2)")
    _run_queue(compiled, _inputs(40), jobs=3)  # 3 in flight: FAST's 2 slots, then one on SLOW
    assert fast.compiled[0].requests_seen > 2 * slow.compiled[0].requests_seen
    assert slow.compiled[0].requests_seen > 0
    assert (fast.compiled[0].max_running, slow.compiled[0].max_running) == (2, 1)


def test_waiters_are_served_in_arrival_order():
    scheduler = RequestScheduler([DevicePool("D", object(), 1)])
    first = scheduler.acquire()
    order = []

    def wait_turn(i):
        pool = scheduler.acquire()
        order.append(i)
        scheduler.release(pool)

    threads = [threading.Thread(target=wait_turn, args=(i,)) for i in range(5)]
    for t in threads:
        t.start()
        time.sleep(0.02)  # they arrive one after another while the only slot is taken
    scheduler.release(first)
    for t in threads:
        t.join(5)
    assert order == [0, 1, 2, 3, 4]


def test_a_waiter_for_a_device_that_cannot_come_fails_instead_of_hanging():
    scheduler = RequestScheduler([DevicePool("D", object(), 1)])
    with pytest.raises(NoWorkerError, match="already failed on D"):
        scheduler.acquire(exclude=["D"])
    pool = scheduler.acquire()
    outcome = []

    def waiter():
        try:
            scheduler.acquire()
        except NoWorkerError as exc:
            outcome.append(str(exc))

    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(0.05)
    scheduler.close("the compiled model was released")
    t.join(5)
    assert outcome == ["the compiled model was released"]
    scheduler.release(pool)


def test_worker_threads_grow_to_the_limit_and_start_jobs_in_order():
    threads = WorkerThreads(2)
    started, names = [], set()

    def job(i):
        started.append(i)
        names.add(threading.current_thread().name)
        time.sleep(0.01)

    for future in [threads.submit(lambda i=i: job(i)) for i in range(8)]:
        future.result(5)
    assert sorted(started) == list(range(8)) and len(names) == 2
    threads.shutdown()
    one, started[:] = WorkerThreads(1), []
    for future in [one.submit(lambda i=i: job(i)) for i in range(5)]:
        future.result(5)
    assert started == list(range(5))  # one thread: strictly first come, first served
    one.shutdown()
    assert threads.submit(lambda: 42).result(5) == 42  # a later submit starts a thread again
    threads.shutdown()


# -- hints and configuration -----------------------------------------------------------------

def test_latency_hint_is_overridden_with_a_warning(proto, caplog):
    core = im.Core()
    model = core.read_model(proto)
    with caplog.at_level(logging.WARNING, logger="infermux.scheduler.multi"):
        compiled = core.compile_model(model, "MULTI:CPU", {"PERFORMANCE_HINT": "LATENCY"})
    assert "MULTI supports THROUGHPUT only" in caplog.text
    assert compiled.get_property("PERFORMANCE_HINT") == "THROUGHPUT"
    assert compiled.get_property("DEVICE_PROPERTIES")["CPU"]["PERFORMANCE_HINT"] == "THROUGHPUT"


def test_device_properties_override_one_device(proto):
    core, _ = _core(optimal_requests=3)
    config = {"DEVICE_PROPERTIES": {"FGPU": {"PERFORMANCE_HINT": "LATENCY"},
                                    "CPU": {"PERFORMANCE_HINT_NUM_REQUESTS": 1}}}
    compiled = core.compile_model(core.read_model(proto), "MULTI:FGPU.0,CPU", config)
    children = compiled.get_property("DEVICE_PROPERTIES")
    assert children["FGPU.0"]["PERFORMANCE_HINT"] == "LATENCY"
    assert children["FGPU.0"]["OPTIMAL_NUMBER_OF_INFER_REQUESTS"] == 1
    assert children["CPU"]["OPTIMAL_NUMBER_OF_INFER_REQUESTS"] == 1  # capped by NUM_REQUESTS
    assert compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS") == 2


def test_unknown_keys_are_ignored_known_keys_validated(proto):
    core, _ = _core()
    model = core.read_model(proto)
    compiled = core.compile_model(model, "MULTI:FGPU.0,CPU", {"FOO_BAR": 1, "NUM_STREAMS": 1})
    assert compiled.get_property("EXECUTION_DEVICES") == ["FGPU.0", "CPU"]
    assert compiled.get_property("DEVICE_PROPERTIES")["CPU"]["NUM_STREAMS"] == 1  # forwarded where supported
    for key, value in [("PERFORMANCE_HINT", "FAST"), ("SCHEDULE_POLICY", "RANDOM"), ("MODEL_PRIORITY", "URGENT")]:
        with pytest.raises(im.PropertyError, match=f"Invalid value for property {key}: {value}"):
            core.compile_model(model, "MULTI:CPU", {key: value})


def test_multi_needs_a_device_list(proto):
    core = im.Core()
    model = core.read_model(proto)
    with pytest.raises(im.InvalidDeviceStringError, match="MULTI needs a device list"):
        core.compile_model(model, "MULTI")
    multi = core._dispatcher.plugin("MULTI")
    with pytest.raises(im.InvalidDeviceStringError, match="KEY_MULTI_DEVICE_PRIORITIES key is not set for MULTI"):
        multi.compile_model(model, {}, "")
    with pytest.raises(im.InvalidDeviceStringError, match="must be > 0"):
        core.compile_model(model, "MULTI:CPU(0)")


def test_plugin_level_properties():
    core = im.Core()
    multi = core._dispatcher.plugin("MULTI")
    supported = multi.get_property("SUPPORTED_PROPERTIES")
    assert {"MULTI_DEVICE_PRIORITIES", "SCHEDULE_POLICY", "PERFORMANCE_HINT"} <= set(supported)
    assert "ENABLE_STARTUP_FALLBACK" not in supported and supported["FULL_DEVICE_NAME"] == "RO"
    assert multi.get_property("FULL_DEVICE_NAME") == "MULTI"
    assert "EXPORT_IMPORT" not in multi.get_property("OPTIMIZATION_CAPABILITIES")
    multi.set_property({"SCHEDULE_POLICY": "ROUND_ROBIN"})
    assert multi.get_property("SCHEDULE_POLICY") == "ROUND_ROBIN"


# -- compile: parallel, dropped devices, aggregated errors -----------------------------------

def test_children_compile_in_parallel(proto):
    core, _ = _core(compile_delay_s=0.4)
    model = core.read_model(proto)
    t0 = time.monotonic()
    compiled = core.compile_model(model, "MULTI:FGPU.0,FGPU.1")
    assert time.monotonic() - t0 < 0.75  # two 0.4 s compiles at once, not one after the other
    assert compiled.get_property("EXECUTION_DEVICES") == ["FGPU.0", "FGPU.1"]


def test_a_device_that_fails_to_compile_is_dropped_all_failing_is_one_error(proto, caplog):
    core = im.Core()
    core.register_plugin(FaultInjectionPlugin("FBAD", ids=["0", "1"], compile_fails=True), "FBAD")
    model = core.read_model(proto)
    with caplog.at_level(logging.WARNING):
        compiled = core.compile_model(model, "MULTI:FBAD.0,CPU")
    assert compiled.get_property("EXECUTION_DEVICES") == ["CPU"]
    assert "FBAD.0 failed to compile" in caplog.text
    with pytest.raises(im.InfermuxError, match=r"\[MULTI\] compile model failed, FBAD.0:.*; FBAD.1:"):
        core.compile_model(model, "MULTI:FBAD.0,FBAD.1")


def test_an_unregistered_device_is_an_error(proto):
    core = im.Core()
    with pytest.raises(im.DeviceNotFoundError, match='"NOPE" name is not registered'):
        core.compile_model(core.read_model(proto), "MULTI:NOPE,CPU")


# -- runtime fallback and failures -----------------------------------------------------------

def test_a_failed_request_runs_again_on_another_device(proto):
    core, fgpu = _core(fail_on_infer=3)
    model = core.read_model(proto)
    compiled = core.compile_model(model, "MULTI:FGPU.0,CPU")
    request = compiled.create_infer_request()
    inputs = _inputs(6)
    outputs = [request.infer({"x": x})[0].copy() for x in inputs]
    for x, out in zip(inputs, outputs):
        np.testing.assert_allclose(out, mlp_reference(proto, x), rtol=1e-6)
    assert _compiled_on(fgpu, "FGPU.0")[0].requests_seen == 6  # the 3rd failed there, ran on CPU

    compiled = core.compile_model(model, "MULTI:FGPU.0,CPU", {"ENABLE_RUNTIME_FALLBACK": False})
    request = compiled.create_infer_request()
    request.infer({"x": inputs[0]}), request.infer({"x": inputs[1]})
    with pytest.raises(InjectedFault, match="request 3 failed"):
        request.infer({"x": inputs[2]})


def test_every_request_gets_its_error_when_every_device_fails(proto):
    core, fgpu = _core(fail_on_infer=lambda n: True, infer_delay_s=0.005)
    compiled = core.compile_model(core.read_model(proto), "MULTI:FGPU.0,FGPU.1")
    requests = [compiled.create_infer_request() for _ in range(6)]
    for request, x in zip(requests, _inputs(6)):
        request.start_async({"x": x})
    errors = []
    for request in requests:
        with pytest.raises(InjectedFault) as info:
            request.wait()
        errors.append(str(info.value))
    assert all("failed (injected)" in e for e in errors)
    assert sum(m.requests_seen for m in fgpu.compiled) == 12  # each request tried both devices once


def test_callback_exceptions_surface_at_wait_all_with_their_type(proto):
    core, _ = _core()
    compiled = core.compile_model(core.read_model(proto), "MULTI:FGPU.0,CPU")
    queue = im.AsyncInferQueue(compiled)
    assert len(queue) == compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")

    def callback(request, userdata):
        if userdata == 3:
            raise ValueError("bad userdata 3")

    queue.set_callback(callback)
    for i, x in enumerate(_inputs(8)):
        queue.start_async({"x": x}, i)
    with pytest.raises(ValueError, match="bad userdata 3"):
        queue.wait_all()


# -- stateful models -------------------------------------------------------------------------

def test_stateful_model_on_one_device_keeps_state_per_request():
    core = im.Core()
    core.register_plugin(FaultInjectionPlugin("FNOSTATE", supported_ops={"Add"}), "FNOSTATE")
    model = core.read_model(accumulator_model())
    one = np.ones(1, np.float32)
    for device in ("MULTI:CPU", "MULTI:FNOSTATE,CPU"):  # FNOSTATE cannot hold state: CPU alone
        compiled = core.compile_model(model, device)
        assert compiled.get_property("EXECUTION_DEVICES") == ["CPU"]
        a, b = compiled.create_infer_request(), compiled.create_infer_request()
        assert [float(a.infer(one)[0][0]) for _ in range(3)] == [1.0, 2.0, 3.0]
        assert float(b.infer(one)[0][0]) == 1.0


def test_stateful_requests_are_pinned_to_the_device_of_their_first_inference():
    core = im.Core()
    core.register_plugin(FaultInjectionPlugin("FA"), "FA")
    core.register_plugin(FaultInjectionPlugin("FB"), "FB")
    compiled = core.compile_model(core.read_model(accumulator_model()), "MULTI:FA(1),FB(1)",
                                  {"SCHEDULE_POLICY": "ROUND_ROBIN"})
    assert compiled.get_property("EXECUTION_DEVICES") == ["FA", "FB"]
    one = np.ones(1, np.float32)
    requests = [compiled.create_infer_request() for _ in range(4)]
    for step in range(1, 4):  # round robin would move a request between devices; the state pins it
        for r in requests:
            r.start_async(one)
        for r in requests:
            r.wait()
            assert float(r.results[0][0]) == float(step)
    homes = {r._state.home for r in requests}
    assert homes == {"FA", "FB"}  # both devices served, each request always on its own


# -- query_model, real plugins ---------------------------------------------------------------

def test_query_model_is_the_intersection_labelled_multi(proto):
    core = im.Core()
    core.register_plugin(FaultInjectionPlugin("FPART", supported_ops={"MatMul", "Add"}), "FPART")
    model = core.read_model(proto)
    assert core.query_model(model, "MULTI:FPART,CPU") == {"mm": "MULTI", "add": "MULTI"}
    assert core.query_model(model, "MULTI:CPU") == {"mm": "MULTI", "add": "MULTI", "relu": "MULTI"}


def test_multi_over_the_cpu_and_a_second_cpu_registration(proto):
    core = im.Core()
    core.register_plugin(FaultInjectionPlugin("CPU2"), "CPU2")  # no knobs: a plain CPU-backed device
    model = core.read_model(tiny_mlp())  # dynamic batch
    compiled = core.compile_model(model, "MULTI:CPU2,CPU", {"SCHEDULE_POLICY": "ROUND_ROBIN"})
    rng = np.random.default_rng(1)
    inputs = [rng.standard_normal((i % 3 + 1, 4)).astype(np.float32) for i in range(12)]
    outputs = _run_queue(compiled, inputs)
    single = core.compile_model(model, "CPU")
    for x, out in zip(inputs, outputs):
        np.testing.assert_array_equal(out, single(x)[0])
    served = {p.name: p.served for p in compiled.device_model.pools}
    assert served["CPU2"] > 0 and served["CPU"] > 0
