"""Faults: actors killed and nodes removed mid-run.  Every request gets a result or an error.

Each test adds a node of its own (``spare_node``) and kills or removes only that one.
"""

from __future__ import annotations

import logging
import threading
import time

import numpy as np
import pytest
import ray

import infermux as im
from infermux.cluster.actors import DeviceLostError
from infermux.scheduler.device_string import parse_device

pytestmark = pytest.mark.cluster

ONLY = ("infermux.devices.fault_device:FaultInjectionPlugin",
        {"name": "ONLY", "device_type": "DISCRETE", "infer_delay_s": 0.01})


def _queue_run(compiled, x, n, on_index=None, jobs=8):
    queue = im.AsyncInferQueue(compiled, jobs)
    results = {}
    queue.set_callback(lambda req, i: results.__setitem__(i, req.get_output_tensor(0).data.copy()))
    for i in range(n):
        if on_index is not None:
            on_index(i)
        queue.start_async({"input": x}, i)
    queue.wait_all()
    return results


def test_a_killed_actor_restarts_and_its_requests_run_again(core, resolver, spare_node, tiny):
    name, _ = spare_node()
    compiled = core.compile_model(tiny.model(), f"CPU@{name}")
    handle = resolver.handle(resolver.find(parse_device(f"CPU@{name}")))
    pid, generation = handle.info["pid"], handle.generation
    outputs, errors = [], []

    def loop():
        for _ in range(150):
            try:
                outputs.append(compiled({"input": tiny.x})[0].copy())
            except Exception as exc:  # noqa: BLE001 - must not happen
                errors.append(exc)
            time.sleep(0.01)

    def kill_at_50(i):
        if i == 50:
            ray.kill(handle.actor, no_restart=False)  # Ray restarts it (max_restarts)

    worker = threading.Thread(target=loop)
    worker.start()
    time.sleep(0.2)
    results = _queue_run(compiled, tiny.x, 150, kill_at_50, jobs=4)  # asynchronous requests too
    worker.join(120)
    assert errors == [] and len(outputs) == 150 and len(results) == 150
    assert all(np.array_equal(o, tiny.ref) for o in [*outputs, *results.values()])
    assert handle.generation == generation + 1 and handle.info["pid"] != pid


def test_multi_reruns_requests_of_a_removed_node_on_the_survivors(core, spare_node, ray_cluster, tiny, caplog):
    name, node = spare_node(resources={"SLOW": 1})  # 50 ms inferences: some are always running there
    compiled = core.compile_model(tiny.model(), f"MULTI:SLOW@{name},CPU@head,CPU@node-b")

    def remove_midway(i):
        if i == 80:
            ray_cluster.remove_node(node)

    with caplog.at_level(logging.INFO, logger="infermux"):
        results = _queue_run(compiled, tiny.x, 240, remove_midway)
    assert len(results) == 240 and all(np.array_equal(r, tiny.ref) for r in results.values())
    assert any(f"failed on SLOW@{name}" in r.message for r in caplog.records), "no runtime fallback seen"
    assert sum(p.served for p in compiled.device_model.pools) >= 240


def _split(tiny, first, second):
    model = tiny.model()
    for node in model.graph.nodes:
        node.rt_info["affinity"] = first if node.name in ("matmul", "bias") else second
    return model


def test_a_hetero_stage_moves_to_another_node_when_its_node_leaves(core, spare_node, ray_cluster, tiny):
    name, node = spare_node()
    compiled = core.compile_model(_split(tiny, "CPU@node-b", f"CPU@{name}"), f"HETERO:CPU@node-b,CPU@{name}")
    assert compiled.get_property("EXECUTION_DEVICES") == ["CPU@node-b", f"CPU@{name}"]
    np.testing.assert_array_equal(compiled({"input": tiny.x})[0], tiny.ref)
    ray_cluster.remove_node(node)
    outcomes = []
    for _ in range(20):
        try:
            outcomes.append(compiled({"input": tiny.x})[0].copy())
        except DeviceLostError as exc:  # only a request running at that moment may see this
            outcomes.append(exc)
    assert all(np.array_equal(o, tiny.ref) for o in outcomes[-10:])
    assert sum(isinstance(o, Exception) for o in outcomes) <= 1
    devices = compiled.get_property("EXECUTION_DEVICES")
    assert f"CPU@{name}" not in devices and devices[0] == "CPU@node-b" and devices[1].startswith("CPU@")


def test_a_hetero_stage_no_device_can_take_fails_with_a_clear_error(resolver, spare_node, ray_cluster, tiny):
    from infermux.cluster import connect

    core = im.Core(cluster=connect(plugins={**resolver.specs, "ONLY": ONLY}))
    name, node = spare_node(resources={"ONLY": 1})
    compiled = core.compile_model(_split(tiny, "CPU@node-b", f"ONLY@{name}"), f"HETERO:CPU@node-b,ONLY@{name}")
    np.testing.assert_array_equal(compiled({"input": tiny.x})[0], tiny.ref)
    ray_cluster.remove_node(node)
    for _ in range(3):
        t0 = time.monotonic()
        with pytest.raises(DeviceLostError, match=rf"node '{name}' left the cluster.*no other ONLY device"):
            for _ in range(50):  # the first calls may still find the node being removed
                compiled({"input": tiny.x})
                time.sleep(0.05)
        assert time.monotonic() - t0 < 30


def test_auto_moves_to_the_next_device_when_its_device_is_lost(resolver, spare_node, ray_cluster, tiny):
    from infermux.cluster import connect

    core = im.Core(cluster=connect(plugins={**resolver.specs, "ONLY": ONLY}))
    name, node = spare_node(resources={"ONLY": 1})
    compiled = core.compile_model(tiny.model(), f"AUTO:ONLY@{name},CPU@head")
    assert compiled.get_property("EXECUTION_DEVICES") == [f"ONLY@{name}"]

    def remove_midway(i):
        if i == 30:
            ray_cluster.remove_node(node)

    results = _queue_run(compiled, tiny.x, 120, remove_midway, jobs=4)
    assert len(results) == 120 and all(np.array_equal(r, tiny.ref) for r in results.values())
    assert compiled.get_property("EXECUTION_DEVICES") == ["CPU@head"]
