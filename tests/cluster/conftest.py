"""Session fixtures for the cluster tests: one real 3-node Ray cluster on this machine.

Every Ray process the tests start binds loopback only: the variables below are set when this
file is imported, before any Ray process starts (``../shared/reference/ray_notes.md`` section 1).
The nodes (1 CPU each; custom resources stand in for accelerators):

* ``head``   -- CPU
* ``node-b`` -- CPU, ``VPU`` (hosted by the VPU plugin's emulation backend) and ``SLOW``
* ``node-c`` -- CPU, ``FGPU`` (a fault-injection device of type DISCRETE: a "GPU" node) and ``SLOW``

``SLOW`` is a fault-injection device whose inferences take 50 ms (for pipelining tests).

Destructive tests add a node of their own (:func:`spare_node`) and remove that one, never these.
The cluster is started once, by the first test that needs it, and stopped right after the last
test of this folder (not at the end of the whole session: the other suites need the cores).
"""

from __future__ import annotations

import itertools
import os
import time
from pathlib import Path

for _key, _value in {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled",
                     "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",      # node IP 127.0.0.1, loopback binds
                     "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",  # SIGTERM exits at once
                     "RAY_CGRAPH_teardown_timeout": "5", "RAY_DEDUP_LOGS": "0"}.items():
    os.environ.setdefault(_key, _value)
os.environ.pop("RAY_ADDRESS", None)

import pytest

OBJECT_STORE_BYTES = 256 << 20
PLUGINS = {
    "VPU": ("infermux.devices.vpu:VPUPlugin", {"emulate": True}),
    "FGPU": ("infermux.devices.fault_device:FaultInjectionPlugin",
             {"name": "FGPU", "device_type": "DISCRETE", "capabilities": ["FP32", "FP16"]}),
    "SLOW": ("infermux.devices.fault_device:FaultInjectionPlugin",
             {"name": "SLOW", "infer_delay_s": 0.05, "optimal_requests": 2}),
}
SLOW_DELAY_S = 0.05
_HERE = Path(__file__).resolve().parent
_running: dict = {}
_spare_names = itertools.count(1)


@pytest.fixture(scope="session")
def ray_cluster():
    """The session's 3-node cluster, with this process connected to it as the driver."""
    ray = pytest.importorskip("ray")
    pytest.importorskip("zmq")
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "include_dashboard": False, "object_store_memory": OBJECT_STORE_BYTES,
        "labels": {"infermux-node": "head"}})
    _running["cluster"] = cluster
    cluster.add_node(num_cpus=1, resources={"VPU": 1, "SLOW": 1}, object_store_memory=OBJECT_STORE_BYTES,
                     labels={"infermux-node": "node-b"})
    cluster.add_node(num_cpus=1, resources={"FGPU": 1, "SLOW": 1}, object_store_memory=OBJECT_STORE_BYTES,
                     labels={"infermux-node": "node-c"})
    ray.init(address=cluster.address, log_to_driver=False, logging_level="WARNING")
    try:
        yield cluster
    finally:
        _stop_cluster()


def _stop_cluster() -> None:
    cluster = _running.pop("cluster", None)
    if cluster is not None:
        import ray

        from infermux.cluster.shm import sweep_stale_segments

        ray.shutdown()
        cluster.shutdown()
        time.sleep(0.5)  # let the killed actors' processes go
        sweep_stale_segments()  # what they left in /dev/shm


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item, nextitem):
    """Stop the cluster once the next test is not one of this folder's."""
    if nextitem is None or _HERE not in Path(str(nextitem.path)).resolve().parents:
        _stop_cluster()


@pytest.fixture(scope="session")
def resolver(ray_cluster):
    """The devices of the session cluster (VPU emulated, FGPU a fault-injection device)."""
    from infermux.cluster import connect

    return connect(ray_cluster.address, plugins=PLUGINS, restart_timeout_s=20)


@pytest.fixture
def core(resolver):
    """A Core seeing the cluster (device actors are shared by every Core of the session)."""
    import infermux as im

    return im.Core(cluster=resolver)


@pytest.fixture(scope="session")
def tiny():
    """The zoo's tiny model at batch 4 (static shapes), an input and its local-CPU output."""
    import types

    import numpy as np
    from onnx import helper

    import infermux as im

    rng = np.random.default_rng(0)
    d = 16
    inits = [helper.make_tensor(name, 1, arr.shape, arr.astype(np.float32).ravel())
             for name, arr in (("w", rng.standard_normal((d, d)) * 0.25), ("b", rng.normal(0, 0.1, d)),
                               ("scale", np.array(0.5)), ("shift", rng.normal(0, 0.1, d)))]
    nodes = [helper.make_node("MatMul", ["input", "w"], ["mm"], name="matmul"),
             helper.make_node("Add", ["mm", "b"], ["biased"], name="bias"),
             helper.make_node("Relu", ["biased"], ["act"], name="relu"),
             helper.make_node("Mul", ["act", "scale"], ["scaled"], name="mul"),
             helper.make_node("Add", ["scaled", "shift"], ["output"], name="shift_add")]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("input", 1, [4, d])],
                              [helper.make_tensor_value_info("output", 1, [4, d])], inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    local = im.Core()
    x = rng.standard_normal((4, d)).astype(np.float32)
    ref = local.compile_model(local.read_model(proto.SerializeToString()), "CPU")({"input": x})[0]
    return types.SimpleNamespace(proto=proto, x=x, ref=np.array(ref),
                                 model=lambda: local.read_model(proto.SerializeToString()))


@pytest.fixture
def spare_node(ray_cluster, resolver):
    """Adds a 1-CPU node named ``spare-N`` (``make(**resources)`` for others); removes it after."""
    added = []

    def make(**kwargs):
        name = f"spare-{next(_spare_names)}"
        kwargs.setdefault("num_cpus", 1)
        node = ray_cluster.add_node(object_store_memory=OBJECT_STORE_BYTES,
                                    labels={"infermux-node": name}, **kwargs)
        wait_for(lambda: any(d.endswith(f"@{name}") for d in resolver.available_devices()),
                 what=f"{name} to join")
        added.append(node)
        return name, node

    yield make
    for node in added:
        if node in ray_cluster.worker_nodes:
            ray_cluster.remove_node(node)


@pytest.fixture
def slow_delay_s() -> float:
    """How long one inference of a ``SLOW`` device takes."""
    return SLOW_DELAY_S


@pytest.fixture
def wait_until():
    """``wait_until(predicate, timeout_s, what)``: poll until true, else fail the test."""
    return wait_for


def wait_for(predicate, timeout_s: float = 30.0, what: str = "a condition"):
    """Poll ``predicate`` every 0.1 s until true; fail the test after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
