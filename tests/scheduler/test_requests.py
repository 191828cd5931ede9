"""Infer requests: sync/async, busy, cancel, callbacks, isolation of failures; AsyncInferQueue."""

import threading
import time

import numpy as np
import pytest

import infermux as im
from tests.helpers import mlp_reference, tiny_mlp


@pytest.fixture(scope="module")
def proto():
    return tiny_mlp()


@pytest.fixture
def compiled(proto):
    return im.Core().compile_model(im.Core().read_model(proto), "CPU", {"PERFORMANCE_HINT": "THROUGHPUT"})


def _x(seed=0, n=1):
    return np.random.default_rng(seed).standard_normal((n, 4)).astype(np.float32)


def test_sync_infer_and_output_tensor(compiled, proto):
    req = compiled.create_infer_request()
    x = _x()
    req.infer({"x": x})
    np.testing.assert_allclose(req.get_output_tensor(0).data, mlp_reference(proto, x), rtol=1e-6)
    np.testing.assert_allclose(req.results["y"], mlp_reference(proto, x), rtol=1e-6)
    assert req.latency > 0
    assert req.get_input_tensor(0).shape == (1, 4)


def test_set_tensor_then_infer_without_inputs(compiled, proto):
    req = compiled.create_infer_request()
    x = _x(3)
    req.set_tensor("x", im.Tensor(x))
    np.testing.assert_allclose(req.infer()[0], mlp_reference(proto, x), rtol=1e-6)


def test_async_with_callback(compiled, proto):
    req = compiled.create_infer_request()
    seen = []
    req.set_callback(lambda data: seen.append((data, req.results[0].copy())), "tag")
    x = _x(1)
    req.start_async({"x": x})
    req.wait()
    assert seen[0][0] == "tag"
    np.testing.assert_allclose(seen[0][1], mlp_reference(proto, x), rtol=1e-6)
    assert req.wait_for(10) is True


def test_busy_request_raises_like_openvino():
    one = im.Core().compile_model(im.Core().read_model(tiny_mlp()), "CPU", {"NUM_STREAMS": 1})
    blocker, req = one.create_infer_request(), one.create_infer_request()
    gate = threading.Event()
    blocker.set_callback(lambda _: gate.wait(5))
    blocker.start_async({"x": _x()})
    req.start_async({"x": _x()})  # queued behind the blocker: still busy
    try:
        with pytest.raises(RuntimeError, match="Infer Request is busy"):
            req.start_async({"x": _x()})
        with pytest.raises(RuntimeError, match="Infer Request is busy"):
            req.infer({"x": _x()})
    finally:
        gate.set()
        blocker.wait()
        req.wait()


def test_cancel_then_wait_raises(compiled):
    # one stream, two requests: the second waits in the executor queue and can be cancelled
    one = im.Core().compile_model(im.Core().read_model(tiny_mlp()), "CPU", {"NUM_STREAMS": 1})
    blocker, victim = one.create_infer_request(), one.create_infer_request()
    gate = threading.Event()
    blocker.set_callback(lambda _: gate.wait(5))
    blocker.start_async({"x": _x()})
    victim.start_async({"x": _x()})
    victim.cancel()
    gate.set()
    with pytest.raises(RuntimeError, match="Infer Request was canceled"):
        victim.wait()
    blocker.wait()


def test_a_failing_request_leaves_others_and_the_model_intact(compiled, proto):
    good, bad = compiled.create_infer_request(), compiled.create_infer_request()
    with pytest.raises(im.ShapeMismatchError):
        bad.start_async({"x": np.ones((1, 7), np.float32)})
    x = _x(2)
    good.start_async({"x": x})
    good.wait()
    np.testing.assert_allclose(good.results[0], mlp_reference(proto, x), rtol=1e-6)
    np.testing.assert_allclose(compiled({"x": x})[0], mlp_reference(proto, x), rtol=1e-6)


def test_async_inputs_are_copied_unless_shared(compiled, proto):
    req = compiled.create_infer_request()
    gate = threading.Event()
    req.set_callback(lambda _: None)
    x = _x(4)
    expected = mlp_reference(proto, x)
    blocker = compiled.create_infer_request()
    blocker.set_callback(lambda _: gate.wait(5))
    blocker.start_async({"x": x})
    blocker2 = compiled.create_infer_request()
    blocker2.set_callback(lambda _: gate.wait(5))
    blocker2.start_async({"x": x})
    req.start_async({"x": x})
    x[:] = 100.0  # the request copied its input
    gate.set()
    req.wait(), blocker.wait(), blocker2.wait()
    np.testing.assert_allclose(req.results[0], expected, rtol=1e-6)


def test_async_infer_queue_returns_every_result(compiled, proto):
    q = im.AsyncInferQueue(compiled, 3)
    assert len(q) == 3
    results = {}
    q.set_callback(lambda request, i: results.__setitem__(i, request.results[0].copy()))
    xs = [_x(i) for i in range(20)]
    for i, x in enumerate(xs):
        q.start_async({"x": x}, i)
    q.wait_all()
    assert sorted(results) == list(range(20))
    for i, x in enumerate(xs):
        np.testing.assert_allclose(results[i], mlp_reference(proto, x), rtol=1e-6)
    assert q.is_ready() and len(q.userdata) == 3


def test_async_infer_queue_default_size_is_the_optimal_count(compiled):
    assert len(im.AsyncInferQueue(compiled)) == compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")


def test_callback_exception_resurfaces_at_wait_all_with_its_type(compiled):
    q = im.AsyncInferQueue(compiled, 2)

    def callback(request, userdata):
        if userdata == 3:
            raise ValueError("bad userdata 3")

    q.set_callback(callback)
    for i in range(6):
        q.start_async({"x": _x(i)}, i)
    with pytest.raises(ValueError, match="bad userdata 3"):
        q.wait_all()
    q.start_async({"x": _x()}, 0)  # the queue keeps working
    q.wait_all()


def test_start_async_blocks_until_a_job_is_idle(compiled):
    q = im.AsyncInferQueue(compiled, 1)
    q.set_callback(lambda request, userdata: time.sleep(0.2))
    t0 = time.monotonic()
    q.start_async({"x": _x()})
    q.start_async({"x": _x()})
    assert time.monotonic() - t0 >= 0.15
    q.wait_all()


def test_get_idle_request_id_names_the_request_start_async_uses(compiled):
    q = im.AsyncInferQueue(compiled, 2)
    for i in range(5):
        expected = q.get_idle_request_id()
        q.start_async({"x": _x(i)}, i)
        q[expected].wait()
        assert q.userdata[expected] == i
    q.wait_all()
