#!/usr/bin/env python
"""The cluster layer measured in one run, on a real 3-node Ray cluster started on this machine.

    python benchmarks/bench_cluster.py                 # everything (about 3 minutes)
    python benchmarks/bench_cluster.py --only transfer --seconds 2

Every Ray process binds loopback only (the variables set below, before Ray starts).  Nodes:
``head``, ``n1``, ``n2`` with 1 CPU each (Ray resources), plus a ``spare`` node for the fault run.

1. **Data plane** (the table of ``docs/cluster.md``): one-way time of one tensor from this
   process to a device actor, p50 over many sends, for 4 KiB, 1 MiB and 16 MiB, through:
   the infermux channel over ipc + shared memory (what the cluster uses on one host), the same
   channel over tcp with inline ZeroMQ frames (what it uses across hosts), a Ray actor call
   with the array as argument (object refs), and a Ray compiled graph (run in a child process
   with a time limit and ``teardown(kill_actors=True)``, as they can hang).  The receiver
   stamps the arrival with ``time.perf_counter()`` -- one clock for every process of a host.
2. **Per-request overhead** of a cluster device against the same device in this process, on the
   zoo's tiny model, synchronous requests, interleaved rounds: p50 and p99.
3. **Scale-out**: a small conv net at saturation (an ``AsyncInferQueue`` of 2 x the optimal
   number of requests), ``MULTI`` over the three 1-CPU nodes against one node.  Each node's CPU
   device is given one stream of one thread (``NUM_STREAMS=1``, ``INFERENCE_NUM_THREADS=1``), so
   a node is one core's worth of work, as its Ray resources say.
4. **Fault**: 1,000 requests through ``MULTI`` over three nodes; the spare node is removed after
   the 500th; every result is compared with the single-device (local CPU) reference.  The
   inferences that were running on the removed node are run again by MULTI on the others
   (runtime fallback); the removed node's share then moves to another node (relocation).
"""

from __future__ import annotations

import os

for _key, _value in {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled",
                     "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",
                     "RAY_CGRAPH_teardown_timeout": "5", "RAY_DEDUP_LOGS": "0"}.items():
    os.environ.setdefault(_key, _value)
os.environ.pop("RAY_ADDRESS", None)

import argparse
import json
import logging
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

import make_models
import numpy as np
from bench_multi import static_batch
from onnx import TensorProto, helper, numpy_helper

import infermux as im

SIZES = {"4 KiB": 4 << 10, "1 MiB": 1 << 20, "16 MiB": 16 << 20}
ONE_CORE = {"NUM_STREAMS": 1, "INFERENCE_NUM_THREADS": 1}
STORE = 512 << 20


# -- the cluster ---------------------------------------------------------------------------------

def start_cluster():
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "include_dashboard": False, "object_store_memory": STORE,
        "labels": {"infermux-node": "head"}})
    for name in ("n1", "n2"):
        cluster.add_node(num_cpus=1, object_store_memory=STORE, labels={"infermux-node": name})
    ray.init(address=cluster.address, log_to_driver=False, logging_level="WARNING")
    return cluster


def percentile(values, q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


# -- 1. data plane -------------------------------------------------------------------------------

class _Sink:
    """A Ray actor that stamps when an array arrived (object refs / compiled graph)."""

    def arrived(self, sent_and_array):
        return time.perf_counter()

    def ready(self):
        return True


def _channel_one_way(client, x, n: int) -> list[float]:
    times = []
    for _ in range(n):
        sent = time.perf_counter()
        header, _ = client.request({"op": "ping", "sent": sent}, [x])
        times.append(header["arrived"] - sent)
    return times


def _ray_one_way(actor, x, n: int) -> list[float]:
    import ray

    times = []
    for _ in range(n):
        sent = time.perf_counter()
        times.append(ray.get(actor.arrived.remote((sent, x)), timeout=60) - sent)
    return times


def _compiled_graph_child(address: str, node_id: str, n: int) -> None:
    """Runs in a child process: one-way times through a Ray compiled graph, as JSON on stdout."""
    import ray
    from ray.dag import InputNode
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    ray.init(address=address, log_to_driver=False, logging_level="ERROR")
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import us
    actor = ray.remote(_Sink).options(
        num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False)).remote()
    ray.get(actor.ready.remote(), timeout=60)
    result = {}
    for label, nbytes in SIZES.items():
        x = np.zeros(nbytes // 4, np.float32)
        with InputNode() as inp:
            dag = actor.arrived.bind(inp)
        try:
            graph = dag.experimental_compile(_max_inflight_executions=1)
        except Exception as exc:  # noqa: BLE001 - reported as such
            result[label] = f"compile failed: {type(exc).__name__}"
            continue
        times = []
        try:
            for _ in range(n if nbytes < (8 << 20) else max(20, n // 10)):
                sent = time.perf_counter()
                arrived = ray.get(graph.execute((sent, x)), timeout=20)
                times.append(arrived - sent)
            result[label] = times[5:]  # the first executions set the channels up
        except Exception as exc:  # noqa: BLE001
            result[label] = f"failed: {type(exc).__name__}: {str(exc)[:80]}"
        finally:
            graph.teardown(kill_actors=False)
        print(json.dumps(result), flush=True)
    print(json.dumps(result), flush=True)
    ray.shutdown()


def _compiled_graph(cluster, node_id: str, n: int, timeout_s: float = 150) -> dict:
    code = (f"import sys; sys.path[:0] = {[str(HERE), str(HERE.parent)]!r}; import bench_cluster; "
            f"bench_cluster._compiled_graph_child({cluster.address!r}, {node_id!r}, {n})")
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    try:
        out, _ = child.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, 9)  # our own child's group: it hung (ray_notes section 3d)
        out = child.stdout.read() if child.stdout else ""
    lines = [line for line in (out or "").splitlines() if line.startswith("{")]
    return json.loads(lines[-1]) if lines else {}


def data_plane(cluster, resolver, n: int) -> None:
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    print("## 1. Data plane: one tensor from this process to an actor on node n1, one-way p50 "
          "(p99) in ms, and GB/s at p50")
    device = next(d for d in resolver.devices() if d.name == "CPU@n1")
    handle = resolver.handle(device)
    handle.ensure()
    sink = ray.remote(_Sink).options(
        num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(device.node_id, soft=False)).remote()
    ray.get(sink.ready.remote(), timeout=60)
    rows = {"infermux channel, ipc + shared memory": lambda x, k: _channel_one_way(handle.channel("auto"), x, k),
            "infermux channel, tcp, inline frames": lambda x, k: _channel_one_way(handle.channel("tcp"), x, k),
            "Ray actor call (object refs)": lambda x, k: _ray_one_way(sink, x, k)}
    table: dict[str, dict[str, object]] = {}
    for name, fn in rows.items():
        table[name] = {}
        for label, nbytes in SIZES.items():
            x = np.zeros(nbytes // 4, np.float32)
            count = n if nbytes < (8 << 20) else max(20, n // 10)
            fn(x, 5)  # warm-up
            table[name][label] = fn(x, count)
    table["Ray compiled graph"] = _compiled_graph(cluster, device.node_id, n)
    print(f"| path | {' | '.join(SIZES)} |\n|---|{'---|' * len(SIZES)}")
    for name, cells in table.items():
        row = []
        for label, nbytes in SIZES.items():
            times = cells.get(label)
            if not isinstance(times, list) or not times:
                row.append(str(times or "n/a"))
                continue
            p50, p99 = percentile(times, 0.5), percentile(times, 0.99)
            row.append(f"{p50 * 1e3:.3f} ({p99 * 1e3:.2f}), {nbytes / p50 / 1e9:.2f} GB/s")
        print(f"| {name} | {' | '.join(row)} |")
    threshold_sweep(handle, n)
    shm = table["infermux channel, ipc + shared memory"]
    p50_small = percentile(shm["4 KiB"], 0.5)
    p50_big = percentile(shm["16 MiB"], 0.5)
    print(f"\nstage-to-stage 4 KiB p50: {p50_small * 1e6:.0f} us (target <= 100 us); "
          f"16 MiB: {SIZES['16 MiB'] / p50_big / 1e9:.1f} GB/s (target >= 4 GB/s)")
    ray.kill(sink)


def threshold_sweep(handle, n: int) -> None:
    """Where shared memory starts to beat inline frames on ipc (sets ``SHM_MIN_BYTES``)."""
    from infermux.cluster.channel import SHM_MIN_BYTES, ChannelClient

    inline = ChannelClient(handle.client.endpoint, alive=handle.alive, use_shm=False)
    shm = ChannelClient(handle.client.endpoint, alive=handle.alive)
    shm.min_shm_bytes = 0  # every tensor through shared memory
    cells = []
    for kib in (16, 64, 128, 256, 512, 1024):
        x = np.zeros(kib * 256, np.float32)
        _channel_one_way(inline, x, 5)
        a = percentile(_channel_one_way(inline, x, n // 2), 0.5)
        b = percentile(_channel_one_way(shm, x, n // 2), 0.5)
        cells.append(f"{kib} KiB {a * 1e3:.3f}/{b * 1e3:.3f}")
    inline.close()
    shm.close()
    print(f"\nipc one-way p50 ms, inline frames / shared memory: {'; '.join(cells)} "
          f"(tensors of {SHM_MIN_BYTES >> 10} KiB and more use shared memory)")


# -- 2. per-request overhead ----------------------------------------------------------------------

def overhead(core, rounds: int, calls: int) -> None:
    print("\n## 2. Per-request overhead, tiny model, synchronous requests: CPU@n1 vs CPU in-process")
    model = core.read_model(static_batch(make_models.build_tiny(np.random.default_rng(0)), 1))
    requests = {"CPU (in-process)": core.compile_model(model, "CPU", ONE_CORE).create_infer_request(),
                "CPU@n1 (cluster)": core.compile_model(model, "CPU@n1", ONE_CORE).create_infer_request()}
    x = {"input": np.random.default_rng(1).standard_normal((1, 16)).astype(np.float32)}
    times: dict[str, list[float]] = {k: [] for k in requests}
    for request in requests.values():
        for _ in range(50):
            request.infer(x)
    for _ in range(rounds):
        for name, request in requests.items():
            for _ in range(calls):
                t0 = time.perf_counter()
                request.infer(x)
                times[name].append(time.perf_counter() - t0)
    stats = {k: (percentile(v, 0.5), percentile(v, 0.99)) for k, v in times.items()}
    for name, (p50, p99) in stats.items():
        print(f"  {name}: p50 {p50 * 1e3:.3f} ms, p99 {p99 * 1e3:.3f} ms")
    local, remote = stats["CPU (in-process)"], stats["CPU@n1 (cluster)"]
    print(f"  overhead of the cluster device: p50 +{(remote[0] - local[0]) * 1e3:.3f} ms (target <= 1 ms), "
          f"p99 +{(remote[1] - local[1]) * 1e3:.3f} ms")


# -- 3. scale-out ---------------------------------------------------------------------------------

def conv_net() -> bytes:
    """x[1,3,96,96] -> 3 x (Conv 3x3 + Relu) with a MaxPool -> GlobalAveragePool -> Gemm(10)."""
    rng = np.random.default_rng(0)

    def w(*shape):
        return (rng.standard_normal(shape) * np.sqrt(2.0 / np.prod(shape[1:]))).astype(np.float32)

    inits = {"c1": w(32, 3, 3, 3), "c2": w(32, 32, 3, 3), "c3": w(64, 32, 3, 3), "fc": w(10, 64),
             "fcb": np.zeros(10, np.float32)}
    conv = {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}
    nodes = [helper.make_node("Conv", ["x", "c1"], ["a"], name="conv1", **conv),
             helper.make_node("Relu", ["a"], ["b"], name="relu1"),
             helper.make_node("Conv", ["b", "c2"], ["c"], name="conv2", **conv),
             helper.make_node("Relu", ["c"], ["d"], name="relu2"),
             helper.make_node("MaxPool", ["d"], ["e"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Conv", ["e", "c3"], ["f"], name="conv3", **conv),
             helper.make_node("Relu", ["f"], ["g"], name="relu3"),
             helper.make_node("GlobalAveragePool", ["g"], ["h"], name="gap"),
             helper.make_node("Flatten", ["h"], ["i"], name="flat"),
             helper.make_node("Gemm", ["i", "fc", "fcb"], ["y"], name="fc", transB=1)]
    graph = helper.make_graph(nodes, "convnet", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 96, 96])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])],
                              [numpy_helper.from_array(v, k) for k, v in inits.items()])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    return proto.SerializeToString()


def saturated(compiled, seconds: float) -> float:
    jobs = 2 * int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
    queue = im.AsyncInferQueue(compiled, jobs)
    x = {"x": np.random.default_rng(2).standard_normal((1, 3, 96, 96)).astype(np.float32)}
    for _ in range(jobs):
        queue.start_async(x)
    queue.wait_all()
    count, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        queue.start_async(x)
        count += 1
    queue.wait_all()
    return count / (time.perf_counter() - t0)


def scale_out(core, seconds: float, rounds: int) -> None:
    print("\n## 3. MULTI over three 1-CPU nodes vs one node, conv net [1,3,96,96], at saturation")
    model = core.read_model(conv_net())
    one = core.compile_model(model, "MULTI:CPU@head", ONE_CORE)
    three = core.compile_model(model, "MULTI:CPU@head,CPU@n1,CPU@n2", ONE_CORE)
    rates: dict[str, list[float]] = {"one node": [], "three nodes": []}
    for _ in range(rounds):
        rates["one node"].append(saturated(one, seconds))
        rates["three nodes"].append(saturated(three, seconds))
    med = {k: statistics.median(v) for k, v in rates.items()}
    cores = len(os.sched_getaffinity(0))
    print(f"  one node: {med['one node']:.1f}/s; three nodes: {med['three nodes']:.1f}/s; "
          f"ratio {med['three nodes'] / med['one node']:.2f}x (rounds: "
          + ", ".join(f"{b / a:.2f}" for a, b in zip(rates["one node"], rates["three nodes"])) + ")")
    print(f"  this machine has {cores} cores (load average {os.getloadavg()[0]:.1f}): three 1-core "
          f"nodes can use at most {min(3, cores)} of them, so the ceiling here is {min(3, cores)}.0x")


# -- 4. fault ------------------------------------------------------------------------------------

class _Count(logging.Handler):
    def __init__(self, needle: str):
        super().__init__(logging.INFO)
        self.needle, self.count = needle, 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += self.needle in record.getMessage()


def fault(cluster, core, n: int = 1000) -> None:
    print(f"\n## 4. Fault: {n} requests through MULTI over three nodes, the third removed midway")
    spare = cluster.add_node(num_cpus=1, object_store_memory=STORE, labels={"infermux-node": "spare"})
    deadline = time.monotonic() + 60
    while "CPU@spare" not in core.available_devices and time.monotonic() < deadline:
        time.sleep(0.1)
    model = core.read_model(conv_net())
    x = np.random.default_rng(3).standard_normal((1, 3, 96, 96)).astype(np.float32)
    reference = np.array(im.Core().compile_model(model, "CPU", ONE_CORE)({"x": x})[0])
    compiled = core.compile_model(model, "MULTI:CPU@head,CPU@n1,CPU@spare", ONE_CORE)
    fallbacks = _Count("running it on another device")
    logging.getLogger("infermux.scheduler.multi").addHandler(fallbacks)
    logging.getLogger("infermux.scheduler.multi").setLevel(logging.INFO)
    queue = im.AsyncInferQueue(compiled, 8)
    results = {}
    queue.set_callback(lambda req, i: results.__setitem__(i, req.get_output_tensor(0).data.copy()))
    t0 = time.perf_counter()
    for i in range(n):
        if i == n // 2:
            cluster.remove_node(spare)
            removed_at = time.perf_counter() - t0
        queue.start_async({"x": x}, i)
    queue.wait_all()
    elapsed = time.perf_counter() - t0
    equal = sum(np.array_equal(r, reference) for r in results.values())
    served = ", ".join(f"{p.name} {p.served}" for p in compiled.device_model.pools)
    moved = [p.model.get_property("EXECUTION_DEVICES")[0] for p in compiled.device_model.pools if p.name == "CPU@spare"]
    print(f"  {len(results)} results, {equal} equal to the single-device reference; {elapsed:.1f} s, node "
          f"removed at {removed_at:.1f} s; {fallbacks.count} inferences re-run by MULTI's runtime fallback; "
          f"served: {served}; CPU@spare's model now runs on {moved[0] if moved else '-'}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["transfer", "overhead", "scale", "fault"], action="append")
    parser.add_argument("--seconds", type=float, default=4.0, help="per saturation measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sends", type=int, default=400, help="per payload size in the data-plane table")
    args = parser.parse_args(argv)
    parts = set(args.only or ["transfer", "overhead", "scale", "fault"])
    import ray

    from infermux.cluster import connect

    t0 = time.perf_counter()
    cluster = start_cluster()
    try:
        resolver = connect(cluster.address)
        core = im.Core(cluster=resolver)
        print(f"cluster up in {time.perf_counter() - t0:.1f} s: {core.available_devices}; "
              f"load average {os.getloadavg()[0]:.1f}\n")
        if "transfer" in parts:
            data_plane(cluster, resolver, args.sends)
        if "overhead" in parts:
            overhead(core, args.rounds, 500)
        if "scale" in parts:
            scale_out(core, args.seconds, args.rounds)
        if "fault" in parts:
            fault(cluster, core)
    finally:
        from infermux.cluster.shm import sweep_stale_segments

        ray.shutdown()
        cluster.shutdown()
        time.sleep(0.5)
        sweep_stale_segments()
    return 0


if __name__ == "__main__":
    sys.exit(main())
