#!/usr/bin/env python
"""Throughput of PERFORMANCE_HINT=THROUGHPUT (one stream per core) vs LATENCY (one stream).

``python benchmarks/bench_streams.py [--models tiny,mlp,lstm] [--seconds 2] [--rounds 3]``

Each model is compiled twice on the CPU; each compiled model is driven through an
``AsyncInferQueue`` with twice its ``OPTIMAL_NUMBER_OF_INFER_REQUESTS`` jobs (benchmark_app's
async mode), for ``--seconds`` per burst, the two hints alternating over ``--rounds``; the median
throughput of each and their ratio are printed.  Batch 1, f32.  Not gated on foreign load: run it
on a quiet machine and read the ratio, not the absolute numbers.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import make_models  # noqa: E402

import infermux as im  # noqa: E402

BUILDERS = {"tiny": make_models.build_tiny, "mlp": make_models.build_mlp, "lstm": make_models.build_lstm,
            "resnet18": make_models.build_resnet18}


def _feeds(compiled) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    feeds = {}
    for port in compiled.inputs:
        dims = [d.get_length() if d.is_static else 1 for d in port.partial_shape]
        feeds[port.any_name] = rng.standard_normal(dims).astype(port.element_type.to_dtype())
    return feeds


def _burst(compiled, feeds, seconds: float) -> float:
    queue = im.AsyncInferQueue(compiled, 2 * int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
    for request in queue:
        request.set_tensors(feeds)
    queue.start_async()
    queue.wait_all()
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        queue.start_async()
        count += 1
    queue.wait_all()
    return count / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="tiny,mlp,lstm")
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    core = im.Core()
    for name in args.models.split(","):
        proto = BUILDERS[name](np.random.default_rng(0))
        model = core.read_model(proto)
        compiled = {hint: core.compile_model(model, "CPU", {"PERFORMANCE_HINT": hint})
                    for hint in ("LATENCY", "THROUGHPUT")}
        feeds = _feeds(compiled["LATENCY"])
        rates: dict[str, list[float]] = {"LATENCY": [], "THROUGHPUT": []}
        for _ in range(args.rounds):
            for hint in ("LATENCY", "THROUGHPUT"):
                # BLAS threads are process-wide: recompiling sets them for this hint
                compiled[hint] = core.compile_model(model, "CPU", {"PERFORMANCE_HINT": hint})
                rates[hint].append(_burst(compiled[hint], feeds, args.seconds))
        lat, tput = statistics.median(rates["LATENCY"]), statistics.median(rates["THROUGHPUT"])
        streams = compiled["THROUGHPUT"].get_property("NUM_STREAMS")
        print(f"{name:10} LATENCY {lat:10.1f} inf/s   THROUGHPUT ({streams} streams) {tput:10.1f} inf/s   "
              f"gain {tput / lat:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
