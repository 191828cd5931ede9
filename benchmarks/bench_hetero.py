#!/usr/bin/env python
"""HETERO: the cost of splitting a model, and the throughput of a two-stage pipeline, in one run.

    python benchmarks/bench_hetero.py                       # resnet18, 41 rounds; pipeline 64 requests
    python benchmarks/bench_hetero.py --model mobilenetv2 --rounds 21 --node-delay-ms 2

It prints:

1. *Split overhead*: the zoo model at batch 1 on plain ``CPU`` against ``HETERO:CPU,CPU2``, where
   ``CPU2`` is a second registration of the CPU (the knob-free fault-injection device) and the
   split is HETERO's ``balanced`` mode (both devices profiled, cut where stage times balance).
   Synchronous latency, the two interleaved (alternating which goes first), each round started when the
   machine is quiet (or after 2 s); the overhead is the ratio of the medians (target <= 1.10).
2. *Pipeline*: two test devices of equal speed (each sleeps ``--node-delay-ms`` per node of the
   sub-model it runs, so half the model takes half the time) on a 16-node chain, 8 requests in
   flight through an ``AsyncInferQueue``.  One device running the whole model against
   ``HETERO:PA,PB`` split in two; the gain is the ratio of the throughputs (target >= 1.7).

Timings are wall-clock on whatever else the machine is doing; ratios come from one run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

import numpy as np
from onnx import TensorProto, helper

import _harness as H
import infermux as im
import make_models
from infermux.devices.fault_device import FaultInjectionPlugin

IN_FLIGHT = 8
QUIET_CORES = 0.3   # other processes' load at most this many cores when a latency round starts
MAX_WAIT_S = 2.0    # ... or after waiting this long


def split_overhead(model_name: str, rounds: int) -> float:
    """Median sync latency of HETERO:CPU,CPU2 (balanced split) over plain CPU."""
    core = im.Core()
    core.register_plugin(FaultInjectionPlugin("CPU2"), "CPU2")
    model = core.read_model(make_models.BUILDERS[model_name](np.random.default_rng(0)))
    shape = make_models.INPUT_SHAPES[model_name](1)
    model.reshape({model.inputs[0].any_name: list(shape)})
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    cpu = core.compile_model(model, "CPU")
    t0 = time.perf_counter()
    hetero = core.compile_model(model, "HETERO:CPU,CPU2", {"HETERO_PARTITION_MODE": "balanced"})
    compile_s = time.perf_counter() - t0
    stages = hetero.device_model.plan.stages
    print(f"  {model_name}: {len(model.get_ops())} nodes; balanced split "
          f"{' | '.join(f'{s.device}: {len(s.nodes)} nodes' for s in stages)}; "
          f"boundary tensors {sum(len(s.feeds) for s in stages[1:])}; compile (with profiling) {compile_s:.2f} s")
    ref, out = cpu(x)[0], hetero(x)[0]
    err = float(np.max(np.abs(out - ref)) / max(float(np.max(np.abs(ref))), 1e-30))
    times: dict[str, list[float]] = {"cpu": [], "hetero": []}
    quiet = 0
    pair = [("cpu", cpu), ("hetero", hetero)]
    for r in range(rounds):
        quiet += H.wait_until_quiet(QUIET_CORES, MAX_WAIT_S)
        for name, compiled in pair if r % 2 else pair[::-1]:  # alternate who goes first
            t = time.perf_counter()
            compiled(x)
            times[name].append(time.perf_counter() - t)
    cpu_ms, het_ms = (statistics.median(times[k]) * 1e3 for k in ("cpu", "hetero"))
    best = min(times["hetero"]) / min(times["cpu"])
    ratio = het_ms / cpu_ms
    print(f"  latency p50: CPU {cpu_ms:.2f} ms, HETERO:CPU,CPU2 {het_ms:.2f} ms -> overhead {ratio:.3f}x "
          f"(target <= 1.10); best-of ratio {best:.3f}x; {quiet}/{rounds} rounds started on a quiet "
          f"machine; max rel diff {err:.1e}")
    return ratio


def chain_model(core: im.Core, nodes: int):
    ops = []
    prev = "x"
    for i in range(nodes):
        out = "y" if i == nodes - 1 else f"t{i}"
        ops.append(helper.make_node("Relu" if i % 2 else "Neg", [prev], [out], name=f"n{i}"))
        prev = out
    graph = helper.make_graph(ops, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16])])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    return core.read_model(proto)


def throughput(compiled, requests: int) -> float:
    """Requests per second with IN_FLIGHT jobs in an AsyncInferQueue."""
    queue = im.AsyncInferQueue(compiled, IN_FLIGHT)
    x = np.ones((1, 16), np.float32)
    for _ in range(IN_FLIGHT):  # warm-up
        queue.start_async({"x": x})
    queue.wait_all()
    t0 = time.perf_counter()
    for _ in range(requests):
        queue.start_async({"x": x})
    queue.wait_all()
    return requests / (time.perf_counter() - t0)


def pipeline_gain(node_delay_s: float, requests: int, nodes: int = 16) -> float:
    """Throughput of HETERO over two equal devices against one of them."""
    core = im.Core()
    for name in ("PA", "PB"):
        core.register_plugin(FaultInjectionPlugin(name, infer_delay_per_node_s=node_delay_s), name)
    model = chain_model(core, nodes)
    single = core.compile_model(model, "PA")
    hetero = core.compile_model(model, "HETERO:PA,PB", {"HETERO_PARTITION_MODE": "balanced"})
    split = [len(s.nodes) for s in hetero.device_model.plan.stages]
    one = throughput(single, requests)
    two = throughput(hetero, requests)
    print(f"  {nodes}-node chain, {node_delay_s * 1e3:g} ms per node per device; balanced split {split}; "
          f"{IN_FLIGHT} requests in flight")
    print(f"  throughput: one device {one:.1f} req/s, HETERO:PA,PB {two:.1f} req/s -> "
          f"gain {two / one:.2f}x (target >= 1.7)")
    return two / one


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="resnet18", choices=sorted(make_models.BUILDERS))
    ap.add_argument("--rounds", type=int, default=41, help="sync latency samples per device string")
    ap.add_argument("--node-delay-ms", type=float, default=1.25, help="test-device delay per node")
    ap.add_argument("--requests", type=int, default=64, help="requests timed through the pipeline")
    args = ap.parse_args(argv)
    print("HETERO split overhead (one CPU, two device names):")
    overhead = split_overhead(args.model, args.rounds)
    print("HETERO pipeline (two test devices of equal speed):")
    gain = pipeline_gain(args.node_delay_ms / 1e3, args.requests)
    print(f"summary: split overhead {overhead:.3f}x (<= 1.10), pipeline gain {gain:.2f}x (>= 1.7)")


if __name__ == "__main__":
    main()
