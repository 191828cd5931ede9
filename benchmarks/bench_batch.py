#!/usr/bin/env python
"""BATCH:CPU(8) against plain CPU on the zoo's tiny and MLP models (batch 1), in one run.

    python benchmarks/bench_batch.py                      # tiny and mlp, batch 8
    python benchmarks/bench_batch.py --models mlp --batch 8 --seconds 3 --timeout-ms 50

For each model it prints:

1. *Partial batches*: device time of one batched inference against k single inferences, for
   k = 1..N-1 pending requests, and what BATCH picked at compile time (pad from ``pad_from``).
2. *Saturation*: requests per second through an ``AsyncInferQueue`` with 2 x
   ``OPTIMAL_NUMBER_OF_INFER_REQUESTS`` jobs, CPU and BATCH:CPU(N) both compiled with
   ``PERFORMANCE_HINT=THROUGHPUT``; the gain is BATCH / CPU.
3. *Light load*: one request at a time (sync ``infer``); p50 latency of CPU and of BATCH with
   ``AUTO_BATCH_TIMEOUT``; the added latency is their difference (a lone request always waits
   the timeout for batch-mates, then runs on the unbatched model).

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

import infermux as im
import make_models
from infermux.scheduler.async_queue import AsyncInferQueue
from infermux.scheduler.batch import with_batch

JOBS_FACTOR = 2  # saturation: jobs per OPTIMAL_NUMBER_OF_INFER_REQUESTS (one round queued behind another)
TPUT = {"PERFORMANCE_HINT": "THROUGHPUT"}


def batch1_model(core: im.Core, name: str):
    """The zoo model with its symbolic batch fixed to 1 (BATCH needs dim 0 == 1)."""
    proto = make_models.BUILDERS[name](np.random.default_rng(0))
    return with_batch(core.read_model(proto), 1)


def best_of(fn, runs: int) -> float:
    """Smallest wall time of ``runs`` calls, in seconds."""
    best = float("inf")
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def partial_table(compiled, batch: int, runs: int) -> float:
    """Device time: one padded batch vs k single inferences, k = 1..N-1."""
    dm = compiled.device_model
    rule = dm.pad_rule
    batched, single = dm._batched, dm._unbatched
    xb = [np.zeros(tuple(int(d.get_length()) for d in i.shape), i.element_type.to_dtype())
          for i in batched.input_infos]
    x1 = [a[:1].copy() for a in xb]
    batched.infer(xb)
    single.infer(x1)
    t_batch = best_of(lambda: batched.infer(xb), runs)
    t_single = best_of(lambda: single.infer(x1), runs)
    print(f"  partial batches: batched({batch}) {t_batch * 1e3:.3f} ms, single {t_single * 1e3:.3f} ms; "
          f"compile-time rule: pad from k = {rule.pad_from} "
          f"(measured then: {rule.batch_s * 1e3:.3f} / {rule.single_s * 1e3:.3f} ms)")
    cells = []
    for k in range(1, batch):
        faster = "pad" if t_batch <= k * t_single else "single"
        picked = "pad" if k >= rule.pad_from else "single"
        cells.append(f"k={k}: {k * t_single * 1e3:.3f} ms singly -> {faster} faster, BATCH picks {picked}")
    print("   " + "\n   ".join(cells))
    ideal = batch * t_single / t_batch
    print(f"  device-bound ceiling of the gain: {batch} x single / batched = {ideal:.2f}x")
    return ideal


def saturation(compiled, seconds: float, x: np.ndarray) -> tuple[float, int]:
    """(requests per second, jobs) through an AsyncInferQueue kept full for ``seconds``."""
    jobs = JOBS_FACTOR * int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
    queue = AsyncInferQueue(compiled, jobs)
    for _ in range(jobs * 2):  # warm-up
        queue.start_async({0: x})
    queue.wait_all()
    done = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(jobs):
            queue.start_async({0: x})
        done += jobs
    queue.wait_all()
    return done / (time.perf_counter() - t0), jobs


def light_p50_ms(plain, batched, x: np.ndarray, count: int) -> tuple[float, float]:
    """p50 latency (ms) of one request at a time on ``plain`` and on ``batched``, interleaved."""
    requests = (plain.create_infer_request(), batched.create_infer_request())
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(count):
        for request, bucket in zip(requests, times):
            t0 = time.perf_counter()
            request.infer({0: x})
            bucket.append(time.perf_counter() - t0)
    return statistics.median(times[0]) * 1e3, statistics.median(times[1]) * 1e3


def bench_model(core: im.Core, name: str, args) -> dict:
    model = batch1_model(core, name)
    x = np.random.default_rng(1).standard_normal(
        tuple(int(d.get_length()) for d in model.graph.inputs[0].shape)).astype(np.float32)
    cpu = core.compile_model(model, "CPU", TPUT)
    batched = core.compile_model(model, f"BATCH:CPU({args.batch})",
                                 {**TPUT, "AUTO_BATCH_TIMEOUT": args.timeout_ms})
    print(f"{name}: input {list(x.shape)}; BATCH:CPU({args.batch}) optimal requests "
          f"{batched.get_property('OPTIMAL_NUMBER_OF_INFER_REQUESTS')}, CPU "
          f"{cpu.get_property('OPTIMAL_NUMBER_OF_INFER_REQUESTS')}")
    np.testing.assert_allclose(batched({0: x})[0], cpu({0: x})[0], rtol=1e-5, atol=1e-6)
    ideal = partial_table(batched, args.batch, runs=20 if name == "tiny" else 5)
    cpu_rps, cpu_jobs = saturation(cpu, args.seconds, x)
    batch_rps, batch_jobs = saturation(batched, args.seconds, x)
    gain = batch_rps / cpu_rps
    print(f"  saturation: CPU {cpu_rps:,.0f} req/s ({cpu_jobs} jobs), BATCH {batch_rps:,.0f} req/s "
          f"({batch_jobs} jobs): gain {gain:.2f}x")
    light = core.compile_model(model, f"BATCH:CPU({args.batch})", {"AUTO_BATCH_TIMEOUT": args.timeout_ms})
    plain = core.compile_model(model, "CPU")
    count = args.light_requests
    cpu_p50, batch_p50 = light_p50_ms(plain, light, x, count)
    added = batch_p50 - cpu_p50
    print(f"  light load ({count} requests one at a time, timeout {args.timeout_ms} ms): p50 CPU "
          f"{cpu_p50:.3f} ms, BATCH {batch_p50:.3f} ms: added {added:.3f} ms = "
          f"{added / args.timeout_ms:.3f} x timeout")
    for compiled in (cpu, batched, light, plain):
        compiled.release_memory()
    return {"gain": gain, "ideal": ideal, "added_ms": added}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="tiny,mlp")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=3.0, help="length of each saturation run")
    ap.add_argument("--timeout-ms", type=int, default=50)
    ap.add_argument("--light-requests", type=int, default=20)
    args = ap.parse_args(argv)
    core = im.Core()
    results = {name: bench_model(core, name, args) for name in args.models.split(",")}
    print("summary: " + "; ".join(
        f"{n} gain {r['gain']:.2f}x (ceiling {r['ideal']:.2f}x), light-load added p50 {r['added_ms']:.2f} ms "
        f"(timeout {args.timeout_ms} ms)" for n, r in results.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
