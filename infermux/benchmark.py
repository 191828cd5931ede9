"""The benchmark loop behind ``infermux bench``, in OpenVINO ``benchmark_app``'s terms.

``run_benchmark(compiled, inputs, BenchSettings(...))`` warms up once, then runs synchronously on
one request or asynchronously through an :class:`~infermux.AsyncInferQueue` until both the
iteration and the time limits are met, and returns the latencies; ``print_report`` prints them in
benchmark_app's words.  A tqdm bar on stderr shows progress.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

__all__ = ["BenchResult", "BenchSettings", "print_report", "run_benchmark"]


@dataclasses.dataclass(frozen=True)
class BenchSettings:
    """How long and how to benchmark: benchmark_app's ``-api``, ``-nireq``, ``-niter``, ``-t``."""

    api: str = "async"
    num_requests: int = 0  # 0: the compiled model's OPTIMAL_NUMBER_OF_INFER_REQUESTS
    niter: int = 0
    duration_s: float = 0.0
    batch_size: int = 1
    progress: bool = True

    def keep_going(self, iterations: int, elapsed_s: float) -> bool:
        """benchmark_app's rule: run until both the iteration and the time limits are met."""
        return bool((self.niter and iterations < self.niter)
                    or (self.duration_s and elapsed_s < self.duration_s))


@dataclasses.dataclass(frozen=True)
class BenchResult:
    """What a benchmark measured; latencies are per request, sorted, in ms."""

    count: int
    duration_s: float
    latencies_ms: tuple[float, ...]
    first_inference_ms: float
    num_requests: int
    batch_size: int

    def percentile(self, percent: float) -> float:
        """benchmark_app's nearest-rank percentile of the latencies."""
        values = self.latencies_ms
        return values[max(0, math.ceil(len(values) * percent / 100) - 1)] if values else float("nan")

    @property
    def throughput_fps(self) -> float:
        """Frames per second: batch size x iterations / duration."""
        return self.batch_size * self.count / self.duration_s if self.duration_s else 0.0

    def to_dict(self) -> dict[str, Any]:
        """The numbers for ``--json``."""
        lat = self.latencies_ms
        return {"count": self.count, "duration_ms": self.duration_s * 1e3,
                "first_inference_ms": self.first_inference_ms, "num_requests": self.num_requests,
                "batch_size": self.batch_size, "throughput_fps": self.throughput_fps,
                "latency_ms": {"median": self.percentile(50), "average": sum(lat) / len(lat) if lat else None,
                               "min": lat[0] if lat else None, "max": lat[-1] if lat else None,
                               "p90": self.percentile(90), "p99": self.percentile(99)}}


@contextlib.contextmanager
def _progress(settings: BenchSettings) -> Iterator[Callable[[int, float], None]]:
    """A tqdm bar on stderr over the time limit (or the iterations).

    Yields ``tick(iterations, elapsed_s)``, to call after each iteration."""
    from tqdm import tqdm

    by_time = bool(settings.duration_s)
    total = settings.duration_s if by_time else settings.niter
    fmt = "{l_bar}{bar}| {elapsed}<{remaining}" if by_time else None
    with tqdm(total=total, file=sys.stderr, disable=not settings.progress, desc="Benchmarking",
              bar_format=fmt, unit="it", leave=False, dynamic_ncols=True) as bar:
        def tick(iterations: int, elapsed_s: float) -> None:
            bar.update(min(elapsed_s, total) - bar.n if by_time else iterations - bar.n)

        yield tick


def _bench_sync(compiled, inputs: dict[str, np.ndarray], settings: BenchSettings) -> BenchResult:
    request = compiled.create_infer_request()
    request.set_tensors(inputs)
    request.infer()
    first_ms, latencies, iterations = request.latency, [], 0
    start = time.perf_counter()
    with _progress(settings) as tick:
        while settings.keep_going(iterations, time.perf_counter() - start):
            request.infer()
            latencies.append(request.latency)
            iterations += 1
            tick(iterations, time.perf_counter() - start)
    duration_s = time.perf_counter() - start
    return BenchResult(iterations, duration_s, tuple(sorted(latencies)), first_ms, 1, settings.batch_size)


def _bench_async(compiled, inputs: dict[str, np.ndarray], settings: BenchSettings) -> BenchResult:
    from infermux.scheduler.async_queue import AsyncInferQueue

    queue = AsyncInferQueue(compiled, settings.num_requests)
    for request in queue:
        request.set_tensors(inputs)
    queue.start_async()
    queue.wait_all()
    first_ms = max(request.latency for request in queue)  # only one request ran
    latencies: list[float] = []  # list.append is atomic: safe from the callback threads
    queue.set_callback(lambda request, _: latencies.append(request.latency))
    iterations, start = 0, time.perf_counter()
    with _progress(settings) as tick:
        while settings.keep_going(iterations, time.perf_counter() - start):
            queue.start_async()
            iterations += 1
            tick(iterations, time.perf_counter() - start)
        queue.wait_all()
    duration_s = time.perf_counter() - start
    return BenchResult(iterations, duration_s, tuple(sorted(latencies)), first_ms, len(queue),
                       settings.batch_size)


def run_benchmark(compiled, inputs: dict[str, np.ndarray], settings: BenchSettings) -> BenchResult:
    """Warm up once, then run ``inputs`` repeatedly within the settings' limits (benchmark_app's loop).

    >>> settings = BenchSettings(api="sync", niter=10, progress=False)
    >>> run_benchmark(compiled, {"image": x}, settings).count          # doctest: +SKIP
    10
    """
    loop = _bench_sync if settings.api == "sync" else _bench_async
    return loop(compiled, inputs, settings)


def _info(message: str) -> None:
    print(f"[ INFO ] {message}")


def _latency(value_ms: float, average_ms: float) -> str:
    """benchmark_app prints microseconds when the average latency is under 1 ms."""
    return f"{value_ms * 1e3:.2f} us" if average_ms < 1.0 else f"{value_ms:.2f} ms"


def print_report(result: BenchResult, devices: list[str] | str) -> None:
    """The results in benchmark_app's words (plus the 90th and 99th percentiles)."""
    lat = result.latencies_ms
    average = sum(lat) / len(lat) if lat else float("nan")
    _info(f"Execution Devices:{list(devices) if not isinstance(devices, str) else devices}")
    _info(f"Count:            {result.count} iterations")
    _info(f"Duration:         {result.duration_s * 1e3:.2f} ms")
    _info("Latency:")
    _info(f"   Median:        {_latency(result.percentile(50), average)}")
    _info(f"   Average:       {_latency(average, average)}")
    _info(f"   Min:           {_latency(lat[0] if lat else float('nan'), average)}")
    _info(f"   Max:           {_latency(lat[-1] if lat else float('nan'), average)}")
    _info(f"   90 percentile:     {_latency(result.percentile(90), average)}")
    _info(f"   99 percentile:     {_latency(result.percentile(99), average)}")
    _info(f"Throughput:   {result.throughput_fps:.2f} FPS")
