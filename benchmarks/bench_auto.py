#!/usr/bin/env python
"""AUTO's startup acceleration: time to the first result when the target compiles for 3 s.

    python benchmarks/bench_auto.py                        # tiny and mlp, 5 runs each
    python benchmarks/bench_auto.py --models mlp --compile-s 3 --runs 5

For each model (zoo builders, batch 1) it measures, on fresh Cores:

- *CPU*: ``compile_model(model, "CPU")`` plus its first inference (LATENCY hint, as AUTO's CPU
  helper), the budget: AUTO's first result should come within it + 10%;
- *AUTO*: ``compile_model(model, "AUTO:FGPU,CPU")`` plus its first inference, where FGPU is a
  fault-injection device whose compile takes ``--compile-s`` seconds (then compiles for real);
- *AUTO without the helper* (``ENABLE_STARTUP_FALLBACK=False``): the same, for contrast;

and when AUTO moved its requests to FGPU (``EXECUTION_DEVICES`` from ``['(CPU)']`` to
``['FGPU']``).  Medians over ``--runs``; ratios come from one run.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

import numpy as np

import infermux as im
import make_models
from bench_multi import feeds_for, static_batch
from infermux.devices.fault_device import FaultInjectionPlugin


def first_result_s(core: im.Core, model, device: str, config: dict | None = None):
    """Seconds from compile_model to the first result, the compiled model, and the start time."""
    gc.collect()  # no collection of the previous run's models inside the timing
    t0 = time.perf_counter()
    compiled = core.compile_model(model, device, config or {})
    compiled(feeds_for(compiled))
    return time.perf_counter() - t0, compiled, t0


def switch_s(compiled, t0: float, timeout_s: float) -> float:
    """Seconds from ``t0`` until EXECUTION_DEVICES no longer shows the CPU helper."""
    while compiled.get_property("EXECUTION_DEVICES") == ["(CPU)"]:
        if time.perf_counter() - t0 > timeout_s:
            return float("nan")
        time.sleep(0.005)
    return time.perf_counter() - t0


def fresh_core(compile_s: float) -> im.Core:
    core = im.Core()
    core.register_plugin(FaultInjectionPlugin("FGPU", device_type="DISCRETE", compile_delay_s=compile_s), "FGPU")
    return core


def measure(name: str, compile_s: float, runs: int) -> None:
    proto = static_batch(make_models.BUILDERS[name](np.random.default_rng(0)))
    cpu, auto, no_helper, switch = [], [], [], []
    warm = fresh_core(compile_s)
    first_result_s(warm, warm.read_model(proto), "CPU")  # kernels imported, caches warm
    first_result_s(warm, warm.read_model(proto), "AUTO:FGPU,CPU")  # AUTO's modules imported
    for run in range(runs):
        core = fresh_core(compile_s)
        model = core.read_model(proto)
        if run % 2:  # alternate which goes first
            cpu.append(first_result_s(core, model, "CPU", {"PERFORMANCE_HINT": "LATENCY"})[0])
        seconds, compiled, t0 = first_result_s(core, model, "AUTO:FGPU,CPU")
        assert compiled.get_property("EXECUTION_DEVICES") == ["(CPU)"], "the helper should serve first"
        if not run % 2:
            cpu.append(first_result_s(fresh_core(compile_s), model, "CPU", {"PERFORMANCE_HINT": "LATENCY"})[0])
        auto.append(seconds)
        switch.append(switch_s(compiled, t0, compile_s * 3))
        no_helper.append(first_result_s(fresh_core(compile_s), model, "AUTO:FGPU,CPU",
                                        {"ENABLE_STARTUP_FALLBACK": False})[0])
    budget, first = statistics.median(cpu), statistics.median(auto)
    print(f"| {name} | {budget * 1e3:.1f} | {first * 1e3:.1f} | {first / budget:.2f} | "
          f"{statistics.median(switch):.2f} | {statistics.median(no_helper):.2f} |")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="tiny,mlp")
    parser.add_argument("--compile-s", type=float, default=3.0, help="the target's compile time")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    print(f"AUTO:FGPU,CPU with an FGPU compile of {args.compile_s:g} s; medians of {args.runs} runs\n")
    print("| model | CPU compile + 1st infer ms | AUTO 1st result ms | AUTO / CPU (target <= 1.10) | "
          "switch to FGPU s | no helper: 1st result s |")
    print("|---|---|---|---|---|---|")
    for name in [m for m in args.models.split(",") if m]:
        measure(name, args.compile_s, args.runs)


if __name__ == "__main__":
    main()
