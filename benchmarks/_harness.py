"""Measuring machinery for ``bench_cpu.py``: runtime workers, timed bursts, the quiet-machine gate.

Every runtime runs in its own spawned worker process, with the thread environment variables set
before NumPy or the runtime is imported, so the ORT, OpenVINO and OpenBLAS thread pools never meet.
The orchestrator drives the workers of one model in shuffled rounds of short bursts. Around each
burst the worker reads its own CPU time and the machine's idle time from ``/proc/stat``; the CPU
the machine spent on anything else during the burst is the burst's *foreign load*, and only bursts
with little of it ("quiet" bursts) enter the medians.  See ``benchmarks/README.md``.

This module imports nothing heavy at the top: spawned workers import it before they have set
their thread environment.
"""

from __future__ import annotations

import dataclasses
import os
import random
import statistics
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = [
    "RUNTIMES", "THREAD_ENV_VARS", "Burst", "GatePlan", "Summary", "Worker", "WorkerError",
    "busy_since", "machine_busy_cores", "measure_model", "read_idle", "set_thread_env", "summarize", "wait_until_quiet",
]

RUNTIMES = ("infermux", "ort", "ov-f32")
THREAD_ENV_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")
_MAX_CALLS_PER_BURST = 5000


def set_thread_env(threads: int) -> None:
    """Pin every BLAS/OpenMP pool to ``threads``; only effective before those libraries load."""
    for name in THREAD_ENV_VARS:
        os.environ[name] = str(threads)


# -- machine load ------------------------------------------------------------------------------

def read_idle() -> tuple[float, int] | None:
    """(idle + iowait seconds summed over CPUs, number of CPUs) from ``/proc/stat``; None off Linux."""
    try:
        with open("/proc/stat") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    fields = [int(v) for v in lines[0].split()[1:]]
    cpus = sum(1 for line in lines[1:] if line.startswith("cpu"))
    return (fields[3] + fields[4]) / os.sysconf("SC_CLK_TCK"), cpus


def machine_busy_cores(probe_s: float = 0.1) -> float:
    """Cores busy (not idle) on the whole machine, averaged over ``probe_s`` of sleeping here."""
    idle0, t0 = read_idle(), time.perf_counter()
    time.sleep(probe_s)
    wall = time.perf_counter() - t0
    return max(0.0, busy_since(idle0, wall) / wall)


def busy_since(idle0: tuple[float, int] | None, wall_s: float) -> float:
    """CPU-seconds the machine was not idle in the ``wall_s`` since ``idle0 = read_idle()``.

    Off Linux this is 0.0, so no burst ever shows foreign load.
    """
    idle1 = read_idle()
    if idle0 is None or idle1 is None:
        return 0.0
    return wall_s * idle0[1] - (idle1[0] - idle0[0])


def wait_until_quiet(quiet_cores: float, max_wait_s: float, probe_s: float = 0.1) -> bool:
    """Sleep until the machine's load is at most ``quiet_cores`` (True) or ``max_wait_s`` passed."""
    deadline = time.monotonic() + max_wait_s
    while True:
        if machine_busy_cores(probe_s) <= quiet_cores:
            return True
        if time.monotonic() >= deadline:
            return False


@dataclasses.dataclass(frozen=True)
class Burst:
    """One timed burst of back-to-back calls in a worker."""

    calls: int
    wall_s: float
    own_cpu_s: float
    machine_busy_s: float  # CPU-seconds the whole machine was not idle during the burst

    @property
    def per_call_s(self) -> float:
        return self.wall_s / self.calls

    @property
    def foreign_cores(self) -> float:
        """Average number of cores used by other processes during the burst."""
        return max(0.0, (self.machine_busy_s - self.own_cpu_s) / self.wall_s)


# -- the worker process ------------------------------------------------------------------------

def _load_infermux(model_path: str, feeds: Mapping, threads: int, free_dims: Mapping):
    import numpy as np

    import infermux as im

    core = im.Core()
    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads}
    compiled = core.compile_model(core.read_model(model_path), "CPU", config)
    n_out = len(compiled.outputs)
    return (lambda: compiled(feeds)), (lambda r: [np.asarray(r[i]) for i in range(n_out)]), {}


def _load_ort(model_path: str, feeds: Mapping, threads: int, free_dims: Mapping):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3  # no "removing unused initializer" chatter from the light models
    for dim, size in free_dims.items():
        so.add_free_dimension_override_by_name(dim, size)
    sess = ort.InferenceSession(model_path, so, providers=["CPUExecutionProvider"])
    return (lambda: sess.run(None, dict(feeds))), list, {"version": ort.__version__}


def _load_ov_f32(model_path: str, feeds: Mapping, threads: int, free_dims: Mapping):
    import numpy as np
    import openvino as ov

    core = ov.Core()
    model = core.read_model(model_path)
    model.reshape({name: ov.PartialShape(list(a.shape)) for name, a in feeds.items()})
    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32",
              "INFERENCE_NUM_THREADS": threads}
    compiled = core.compile_model(model, "CPU", config)
    request = compiled.create_infer_request()
    outputs = compiled.outputs
    precision = compiled.get_property("INFERENCE_PRECISION_HINT")  # an ov.Type: check it is f32
    info = {"version": ov.__version__,
            "precision": getattr(precision, "get_type_name", lambda: str(precision))()}
    return ((lambda: request.infer(feeds, share_inputs=True)),
            (lambda r: [np.array(r[o]) for o in outputs]), info)


_LOADERS: dict[str, Callable] = {"infermux": _load_infermux, "ort": _load_ort, "ov-f32": _load_ov_f32}


def _describe(exc: BaseException) -> str:
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    first = lines[0] if lines else ""
    return f"{type(exc).__name__}: {first}"[:400]


def _warm_up(call: Callable[[], Any], warmup_s: float) -> float:
    """Run a few more calls (at least one, about ``warmup_s``); the fastest call's seconds."""
    best = float("inf")
    t_end = time.perf_counter() + warmup_s
    while True:
        t0 = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - t0)
        if time.perf_counter() >= t_end:
            return best


def _timed_burst(call: Callable[[], Any], calls: int) -> Burst:
    idle0 = read_idle()
    cpu0, t0 = time.process_time(), time.perf_counter()
    for _ in range(calls):
        call()
    t1, cpu1 = time.perf_counter(), time.process_time()
    return Burst(calls, t1 - t0, cpu1 - cpu0, busy_since(idle0, t1 - t0))


def worker_main(conn, runtime: str, model_path: str, feeds: dict, threads: int,
                free_dims: dict, warmup_s: float, repo_root: str) -> None:
    """Process entry point: load ``runtime``, report ("ready", ...) or ("error", ...), serve bursts."""
    set_thread_env(threads)
    import sys

    if repo_root not in sys.path:
        sys.path.insert(0, repo_root)
    try:
        t0 = time.perf_counter()
        call, to_arrays, info = _LOADERS[runtime](model_path, feeds, threads, free_dims)
        load_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        outputs = [a.copy() for a in to_arrays(call())]
        first_call_s = time.perf_counter() - t0
        per_call_s = _warm_up(call, warmup_s)
    except BaseException as exc:  # noqa: BLE001 - reported to the orchestrator, which goes on
        conn.send(("error", _describe(exc), traceback.format_exc()))
        return
    conn.send(("ready", {"load_s": load_s, "first_call_s": first_call_s, "per_call_s": per_call_s,
                         "outputs": outputs, "info": info}))
    while True:
        msg = conn.recv()
        if msg[0] != "burst":
            return
        _, burst_s, max_calls = msg
        calls = max(1, min(max_calls, round(burst_s / max(per_call_s, 1e-9))))
        try:
            burst = _timed_burst(call, calls)
        except BaseException as exc:  # noqa: BLE001
            conn.send(("error", _describe(exc), traceback.format_exc()))
            return
        per_call_s = burst.per_call_s
        conn.send(("burst", dataclasses.asdict(burst)))


class WorkerError(RuntimeError):
    """A worker failed to load, crashed, or ran past its time limit."""

    def __init__(self, message: str, details: str = ""):
        super().__init__(message)
        self.details = details


class Worker:
    """The orchestrator's handle on one runtime's worker process."""

    def __init__(self, ctx, runtime: str, model_path: str, feeds: dict, threads: int,
                 free_dims: dict, warmup_s: float, repo_root: str):
        self.runtime = runtime
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=worker_main, name=f"bench-{runtime}", daemon=True,
                                args=(child, runtime, model_path, feeds, threads, free_dims,
                                      warmup_s, repo_root))
        self.proc.start()
        child.close()
        self.ready: dict | None = None

    def _recv(self, timeout_s: float):
        if not self.conn.poll(timeout_s):
            self.close()
            raise WorkerError(f"{self.runtime} did not answer within {timeout_s:.0f} s")
        try:
            msg = self.conn.recv()
        except EOFError:
            self.proc.join(1.0)
            raise WorkerError(f"{self.runtime} worker died (exit code {self.proc.exitcode})") from None
        if msg[0] == "error":
            raise WorkerError(msg[1], msg[2])
        return msg[1]

    def wait_ready(self, timeout_s: float) -> dict:
        """The worker's load report: load_s, first_call_s, per_call_s, outputs, info."""
        self.ready = self._recv(timeout_s)
        return self.ready

    def burst(self, burst_s: float, call_timeout_s: float) -> Burst:
        """Run one timed burst of about ``burst_s`` seconds in the worker."""
        self.conn.send(("burst", burst_s, _MAX_CALLS_PER_BURST))
        return Burst(**self._recv(2 * burst_s + call_timeout_s))

    def close(self) -> None:
        """Stop the worker (politely, then by force)."""
        try:
            self.conn.send(("close",))
        except (OSError, BrokenPipeError):
            pass
        self.proc.join(2.0)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(2.0)
        self.conn.close()


# -- orchestration -----------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class GatePlan:
    """How bursts are taken and which ones count.

    ``quiet_cores=None`` turns gating off: every burst counts (``--quick``).
    """

    burst_s: float = 0.4
    min_quiet: int = 5
    quiet_cores: float | None = 0.1
    max_wait_s: float = 5.0
    max_model_s: float = 300.0
    call_timeout_s: float = 600.0

    def is_quiet(self, burst: Burst) -> bool:
        return self.quiet_cores is None or burst.foreign_cores <= self.quiet_cores


@dataclasses.dataclass(frozen=True)
class Summary:
    """The median of one runtime's bursts on one model."""

    median_s: float
    n_quiet: int
    n_bursts: int
    flag: str  # "" enough quiet bursts; "*" fewer than asked; "!" none quiet, all bursts used

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def summarize(bursts: Sequence[Burst], plan: GatePlan) -> Summary:
    """Median per-call time over the quiet bursts (over all of them if none is quiet)."""
    quiet = [b.per_call_s for b in bursts if plan.is_quiet(b)]
    if quiet:
        flag = "" if len(quiet) >= plan.min_quiet else "*"
        return Summary(statistics.median(quiet), len(quiet), len(bursts), flag)
    return Summary(statistics.median(b.per_call_s for b in bursts), 0, len(bursts), "!")


def measure_model(workers: Sequence[Worker], plan: GatePlan, progress=None,
                  rng: random.Random | None = None) -> dict[str, list[Burst]]:
    """Interleave bursts of ``workers`` in shuffled rounds until each has ``min_quiet`` quiet ones.

    Stops early after ``plan.max_model_s``. A worker that fails mid-way is dropped; its error is
    under the key ``runtime + ":error"`` of the result as a one-element list of the message.
    """
    rng = rng or random.Random()
    bursts: dict[str, list] = {w.runtime: [] for w in workers}
    quiet = dict.fromkeys(bursts, 0)
    active = list(workers)
    t_end = time.monotonic() + plan.max_model_s
    while time.monotonic() < t_end:
        needed = [w for w in active if quiet[w.runtime] < plan.min_quiet]
        if not needed:
            break
        rng.shuffle(needed)
        for w in needed:
            if plan.quiet_cores is not None:
                wait_until_quiet(plan.quiet_cores, plan.max_wait_s)
            try:
                b = w.burst(plan.burst_s, plan.call_timeout_s)
            except WorkerError as exc:
                bursts[w.runtime + ":error"] = [str(exc)]
                active.remove(w)
                continue
            bursts[w.runtime].append(b)
            if plan.is_quiet(b):
                quiet[w.runtime] += 1
                if progress is not None:
                    progress.update(1)
            if progress is not None:
                progress.set_postfix_str(f"{w.runtime} load={b.foreign_cores:.2f}", refresh=False)
    return bursts
