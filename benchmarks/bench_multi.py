#!/usr/bin/env python
"""MULTI against its devices alone, and the scheduler's overhead per request, in one run.

    python benchmarks/bench_multi.py                       # everything (about a minute)
    python benchmarks/bench_multi.py --seconds 1 --models tiny

It prints:

1. *Known speeds*: two fault-injection devices whose inferences take 20 ms and 30 ms (pools of
   2 each).  Requests per second of each device alone and of ``MULTI:FAST20,SLOW30``; MULTI
   should reach >= 0.9 x the sum of the two.
2. *CPU + a second CPU-backed device* (``CPU2``: a FaultInjectionPlugin with no knobs) on the
   zoo's tiny and MLP models (batch 1).  Both share this machine's cores, so the sum of their
   throughputs alone is not reachable together; the line also shows MULTI against the better
   device alone (it should not lose).
3. *Scheduler overhead*: mean microseconds per request on the tiny model, ``MULTI:CPU(1)``
   against ``CPU`` directly (both under ``PERFORMANCE_HINT=THROUGHPUT``, so the CPU runs
   identically), sync ``infer`` and ``start_async`` + ``wait``; interleaved rounds, medians.

Saturation runs use an ``AsyncInferQueue`` with 2 x ``OPTIMAL_NUMBER_OF_INFER_REQUESTS`` jobs, so
a request is always queued behind the running ones.  Timings are wall-clock on whatever else
the machine is doing; ratios come from one run.
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
import onnx

import infermux as im
import make_models
from infermux.devices.fault_device import FaultInjectionPlugin

TPUT = {"PERFORMANCE_HINT": "THROUGHPUT"}


def static_batch(proto: onnx.ModelProto, batch: int = 1) -> onnx.ModelProto:
    """The model with every symbolic input/output dimension fixed to ``batch``."""
    proto = onnx.ModelProto.FromString(proto.SerializeToString())
    for value in list(proto.graph.input) + list(proto.graph.output):
        for dim in value.type.tensor_type.shape.dim:
            if dim.HasField("dim_param"):
                dim.dim_value = batch
    return proto


def feeds_for(compiled) -> dict:
    """Zeros for every input of a compiled model."""
    return {p.any_name: np.zeros([int(d.get_length()) for d in p.partial_shape], np.float32)
            for p in compiled.inputs}


def throughput(compiled, seconds: float) -> float:
    """Requests per second through an AsyncInferQueue at saturation."""
    jobs = 2 * int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
    queue = im.AsyncInferQueue(compiled, jobs)
    feeds = feeds_for(compiled)
    for _ in range(jobs):
        queue.start_async(feeds)
    queue.wait_all()
    count, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        queue.start_async(feeds)
        count += 1
    queue.wait_all()
    return count / (time.perf_counter() - t0)


def compare(core: im.Core, model, devices: list[str], multi: str, seconds: float, config: dict) -> None:
    alone = {d: throughput(core.compile_model(model, d, config), seconds) for d in devices}
    compiled = core.compile_model(model, multi, config)
    together = throughput(compiled, seconds)
    total, best = sum(alone.values()), max(alone.values())
    pools = ", ".join(f"{p.name} {p.size}" for p in compiled.device_model.pools)
    cells = ", ".join(f"{d} {r:.1f}/s" for d, r in alone.items())
    print(f"  alone: {cells}; {multi} (pools {pools}): {together:.1f}/s")
    print(f"  MULTI / sum of the devices alone = {together / total:.2f} (target >= 0.90); "
          f"MULTI / the better device alone = {together / best:.2f}")


def known_speeds(seconds: float) -> None:
    print("## 1. Two devices of known speed (20 ms and 30 ms per inference, 2 slots each)")
    core = im.Core()
    core.register_plugin(FaultInjectionPlugin("FAST20", infer_delay_s=0.020, optimal_requests=2), "FAST20")
    core.register_plugin(FaultInjectionPlugin("SLOW30", infer_delay_s=0.030, optimal_requests=2), "SLOW30")
    model = core.read_model(static_batch(make_models.build_tiny(np.random.default_rng(0))))
    compare(core, model, ["FAST20", "SLOW30"], "MULTI:FAST20,SLOW30", seconds, TPUT)


def cpu_pair(names: list[str], seconds: float) -> None:
    print("\n## 2. CPU + a second CPU-backed device (CPU2), batch 1; both share this machine's cores")
    core = im.Core()
    core.register_plugin(FaultInjectionPlugin("CPU2", optimal_requests=2), "CPU2")
    for name in names:
        print(f"- {name}")
        model = core.read_model(static_batch(make_models.BUILDERS[name](np.random.default_rng(0))))
        compare(core, model, ["CPU", "CPU2"], "MULTI:CPU,CPU2", seconds, TPUT)


def per_call_us(request, feeds, calls: int, asynchronous: bool) -> float:
    t0 = time.perf_counter()
    if asynchronous:
        for _ in range(calls):
            request.start_async(feeds)
            request.wait()
    else:
        for _ in range(calls):
            request.infer(feeds)
    return (time.perf_counter() - t0) / calls * 1e6


def overhead(rounds: int, calls: int) -> None:
    print("\n## 3. Scheduler overhead per request, tiny model: MULTI:CPU(1) vs CPU directly")
    core = im.Core()
    model = core.read_model(static_batch(make_models.build_tiny(np.random.default_rng(0))))
    direct = core.compile_model(model, "CPU", TPUT).create_infer_request()
    multi = core.compile_model(model, "MULTI:CPU(1)", TPUT).create_infer_request()
    feeds = feeds_for(core.compile_model(model, "CPU", TPUT))
    for asynchronous in (False, True):
        times: dict[str, list[float]] = {"CPU": [], "MULTI": []}
        for request in (direct, multi):  # warm-up
            per_call_us(request, feeds, calls // 4, asynchronous)
        for _ in range(rounds):
            times["CPU"].append(per_call_us(direct, feeds, calls, asynchronous))
            times["MULTI"].append(per_call_us(multi, feeds, calls, asynchronous))
        cpu, mux = statistics.median(times["CPU"]), statistics.median(times["MULTI"])
        kind = "start_async+wait" if asynchronous else "sync infer"
        print(f"  {kind}: CPU {cpu:.1f} us, MULTI:CPU(1) {mux:.1f} us per request -> "
              f"overhead {mux - cpu:.1f} us (target <= 100 us); medians of {rounds} interleaved rounds "
              f"of {calls} calls")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each saturation run")
    parser.add_argument("--models", default="tiny,mlp", help="zoo models for part 2")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds for part 3")
    parser.add_argument("--calls", type=int, default=2000, help="calls per round for part 3")
    args = parser.parse_args(argv)
    known_speeds(args.seconds)
    cpu_pair([m for m in args.models.split(",") if m], args.seconds)
    overhead(args.rounds, args.calls)


if __name__ == "__main__":
    main()
