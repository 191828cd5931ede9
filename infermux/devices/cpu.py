"""The CPU plugin: kernels on NumPy, BLAS thread control, streams for throughput.

Compile runs the shared passes (function expansion, constant folding, BatchNormalization folded
into Conv, dead-code removal, in-place activation epilogues) and lowers the model to a flat plan.
``PERFORMANCE_HINT`` picks streams: LATENCY runs one request at a time with every BLAS thread;
THROUGHPUT runs one stream per core, each with ``INFERENCE_NUM_THREADS / streams`` BLAS threads.
Async requests run on the compiled model's stream threads (NumPy and BLAS release the GIL).
Compiled models export to a blob (``devices/cache.py``) and import from one without the passes.
"""

from __future__ import annotations

import logging
import os
import platform
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from infermux.devices.cache import read_blob, write_blob
from infermux.devices._memory import tune_allocator
from infermux.devices.compile import lower_optimized, supported_nodes
from infermux.devices.plan import Plan
from infermux.devices.plugin import optimize_model
from infermux.devices.properties import (
    RO,
    RW,
    ExecutionMode,
    PerformanceMode,
    PropertySpec,
    PropertyTable,
    bool_validator,
    enum_validator,
    int_validator,
    precision_validator,
)
from infermux.errors import DeviceNotFoundError, PropertyError
from infermux.graph.model import Model

__all__ = ["CPUCompiledModel", "CPUPlugin", "cpu_count", "host_memory_bytes"]

log = logging.getLogger(__name__)


def cpu_count() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def host_memory_bytes() -> tuple[int, int]:
    """``(total, available)`` bytes of host memory (psutil if installed, else /proc/meminfo)."""
    try:
        import psutil

        vm = psutil.virtual_memory()
        return int(vm.total), int(vm.available)
    except ImportError:
        pass
    fields = {}
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                name, _, rest = line.partition(":")
                fields[name] = int(rest.split()[0]) * 1024
    except (OSError, ValueError, IndexError):
        return 0, 0
    total = fields.get("MemTotal", 0)
    return total, fields.get("MemAvailable", fields.get("MemFree", 0))


def _config_specs() -> list[PropertySpec]:
    n = cpu_count()
    return [
        PropertySpec("AVAILABLE_DEVICES", RO, [""]),
        PropertySpec("FULL_DEVICE_NAME", RO, _cpu_name()),
        PropertySpec("DEVICE_TYPE", RO, "INTEGRATED"),
        PropertySpec("DEVICE_ARCHITECTURE", RO, platform.machine()),
        PropertySpec("OPTIMIZATION_CAPABILITIES", RO, ["FP32", "INT8", "EXPORT_IMPORT"]),
        PropertySpec("RANGE_FOR_STREAMS", RO, (1, n)),
        PropertySpec("RANGE_FOR_ASYNC_INFER_REQUESTS", RO, (1, n, 1)),
        PropertySpec("CACHING_PROPERTIES", RO, ["INFERENCE_PRECISION_HINT"]),
        PropertySpec("DEVICE_TOTAL_MEM_SIZE", RO, compute=lambda _id: host_memory_bytes()[0]),
        PropertySpec("DEVICE_AVAILABLE_MEM_SIZE", RO, compute=lambda _id: host_memory_bytes()[1]),
        PropertySpec("PERFORMANCE_HINT", RW, PerformanceMode.LATENCY,
                     enum_validator(PerformanceMode, "PERFORMANCE_HINT")),
        PropertySpec("PERFORMANCE_HINT_NUM_REQUESTS", RW, 0,
                     int_validator("PERFORMANCE_HINT_NUM_REQUESTS")),
        PropertySpec("NUM_STREAMS", RW, 1, int_validator("NUM_STREAMS", 0, ("AUTO", "NUMA"))),
        PropertySpec("INFERENCE_NUM_THREADS", RW, 0, int_validator("INFERENCE_NUM_THREADS")),
        PropertySpec("INFERENCE_PRECISION_HINT", RW, "f32",
                     precision_validator("INFERENCE_PRECISION_HINT", ("f32",), "CPU")),
        PropertySpec("EXECUTION_MODE_HINT", RW, ExecutionMode.PERFORMANCE,
                     enum_validator(ExecutionMode, "EXECUTION_MODE_HINT")),
        PropertySpec("ENABLE_CPU_PINNING", RW, False, bool_validator("ENABLE_CPU_PINNING")),
        PropertySpec("PERF_COUNT", RW, False, bool_validator("PERF_COUNT")),
    ]


_COMPILED_KEYS = ("SUPPORTED_PROPERTIES", "NETWORK_NAME", "OPTIMAL_NUMBER_OF_INFER_REQUESTS",
                  "EXECUTION_DEVICES", "PERFORMANCE_HINT", "PERFORMANCE_HINT_NUM_REQUESTS",
                  "NUM_STREAMS", "INFERENCE_NUM_THREADS", "INFERENCE_PRECISION_HINT",
                  "EXECUTION_MODE_HINT", "ENABLE_CPU_PINNING", "PERF_COUNT", "LOADED_FROM_CACHE")


class _BlasThreads:
    """Process-wide BLAS thread count (OpenBLAS/MKL have one global pool)."""

    _lock = threading.Lock()
    _current: int | None = None
    _controller = None

    @classmethod
    def set(cls, threads: int) -> None:
        with cls._lock:
            if cls._current == threads:
                return
            try:
                from threadpoolctl import threadpool_limits

                cls._controller = threadpool_limits(limits=threads, user_api="blas")
                cls._current = threads
            except Exception as exc:  # noqa: BLE001 - best effort, logged
                log.debug("could not set BLAS threads to %d: %s", threads, exc)


class CPUPlugin:
    """The ``CPU`` device (one device, id ``''``)."""

    name = "CPU"

    def __init__(self) -> None:
        tune_allocator()  # keep freed activation buffers mapped (see devices/_memory.py)
        self.properties = PropertyTable(self.name, _config_specs())

    def devices(self) -> list[str]:
        """The one CPU device."""
        return [""]

    def _check_id(self, device_id: str) -> None:
        if device_id not in ("", None):
            raise DeviceNotFoundError(f"CPU plugin supports only '' as device id, got '{device_id}'")

    def get_property(self, key: str, device_id: str = "") -> Any:
        """A device property or metric."""
        self._check_id(device_id)
        return self.properties.get(key)

    def set_property(self, properties: Mapping[str, Any], device_id: str = "") -> None:
        """Set defaults for later compiles (validated)."""
        self._check_id(device_id)
        self.properties.set(properties)

    def query_model(self, model: Model, config: Mapping[str, Any] | None = None,
                    device_id: str = "") -> dict[str, str]:
        """{node name: 'CPU'} for every node the CPU kernels (or ONNX function bodies) cover."""
        self._check_id(device_id)
        return {name: self.name for name, ok in supported_nodes(model).items() if ok}

    def compile_model(self, model: Model, config: Mapping[str, Any] | None = None,
                      device_id: str = "") -> CPUCompiledModel:
        """Compile for the CPU."""
        self._check_id(device_id)
        cfg, explicit = self.properties.resolve(config)
        return CPUCompiledModel(optimize_model(model), cfg, explicit=explicit)

    def import_model(self, data: bytes | bytearray | memoryview, config: Mapping[str, Any] | None = None,
                     device_id: str = "") -> CPUCompiledModel:
        """A compiled model from a blob that ``export_model`` wrote (no compile passes run)."""
        self._check_id(device_id)
        cfg, explicit = self.properties.resolve(config)
        blob = read_blob(data, plugin=self.name)
        return CPUCompiledModel(blob.model, cfg, explicit=explicit, loaded_from_cache=True)


def _resolve_streams(cfg: dict[str, Any], explicit: set[str]) -> tuple[int, int]:
    cores = cpu_count()
    hint = cfg["PERFORMANCE_HINT"]
    cap = cfg["PERFORMANCE_HINT_NUM_REQUESTS"] or None
    if "NUM_STREAMS" in explicit and cfg["NUM_STREAMS"] not in ("AUTO", "NUMA"):
        streams = max(1, int(cfg["NUM_STREAMS"]))
    elif hint in (PerformanceMode.THROUGHPUT, PerformanceMode.CUMULATIVE_THROUGHPUT) or \
            cfg["NUM_STREAMS"] in ("AUTO", "NUMA"):
        streams = cores
    else:
        streams = 1
    if cap and "NUM_STREAMS" not in explicit:
        streams = max(1, min(streams, cap))
    threads = int(cfg["INFERENCE_NUM_THREADS"]) or cores
    return streams, max(1, threads // streams)


class CPUCompiledModel:
    """A model compiled for the CPU: its plan, its stream threads and its properties.

    ``optimized`` is the model after the compile passes (:func:`~infermux.devices.plugin.optimize_model`
    or a blob's); it is kept for :meth:`export_model` (its weights are the plan's, not a copy).
    """

    device_type = "CPU"
    compiled_keys = _COMPILED_KEYS

    def __init__(self, optimized: Model, cfg: dict[str, Any], explicit: set[str] = frozenset(), *,
                 loaded_from_cache: bool = False, device_name: str | None = None):
        self.device_name = device_name or self.device_type
        self.model_name = optimized.friendly_name
        self.input_infos = list(optimized.graph.inputs)
        self.output_infos = list(optimized.graph.outputs)
        self.loaded_from_cache = loaded_from_cache
        self._optimized = optimized
        self._cfg = cfg
        self.num_streams, self.threads_per_stream = self._streams(cfg, set(explicit))
        if cfg.get("NUM_STREAMS") == "AUTO" and cfg["PERFORMANCE_HINT"] == PerformanceMode.LATENCY:
            self._cfg["PERFORMANCE_HINT"] = PerformanceMode.THROUGHPUT
        self.plan = self._make_plan(optimized)
        self._executor: ThreadPoolExecutor | None = None
        self._executor_lock = threading.Lock()

    def _streams(self, cfg: dict[str, Any], explicit: set[str]) -> tuple[int, int]:
        streams, threads = _resolve_streams(cfg, explicit)
        _BlasThreads.set(threads)
        return streams, threads

    def _make_plan(self, optimized: Model) -> Plan:
        """The CPU's rewrites (fusions), the plan with NumPy fast paths, numba kernels warmed."""
        return lower_optimized(optimized, np, fast=True)

    def export_model(self) -> bytearray:
        """The compiled model as a blob (see :mod:`infermux.devices.cache` for the format)."""
        caching = {"INFERENCE_PRECISION_HINT": self._cfg.get("INFERENCE_PRECISION_HINT")}
        return write_blob(self._optimized, self.device_type, caching, value_info=False)

    def infer(self, inputs: Sequence[Any], *, profile: bool = False, state=None):
        """Run once in the calling thread (``state``: the request's variables, if stateful)."""
        if profile or self._cfg["PERF_COUNT"]:
            return self.plan.run_profiled(inputs, state=state)
        return self.plan.run(inputs, state=state), None

    @property
    def variables(self) -> dict:
        """{variable id: its ReadValue/Assign node} (empty for stateless models)."""
        return self.plan.variables

    def initial_state(self, variable_id: str):
        """A variable's initial value, or None when it is computed during inference."""
        return self.plan.initial_value(variable_id)

    def submit(self, fn: Callable[[], Any]) -> Future:
        """Run ``fn`` on one of the model's stream threads."""
        if self._executor is None:
            with self._executor_lock:
                if self._executor is None:
                    self._executor = ThreadPoolExecutor(
                        self.num_streams, thread_name_prefix=f"infermux-{self.device_type.lower()}-stream")
        return self._executor.submit(fn)

    def get_property(self, key: str) -> Any:
        """A compiled-model property."""
        key = str(getattr(key, "value", key))
        if key == "SUPPORTED_PROPERTIES":
            return {k: RO for k in self.compiled_keys}
        if key == "NETWORK_NAME":
            return self.model_name
        if key == "OPTIMAL_NUMBER_OF_INFER_REQUESTS":
            return self.num_streams
        if key == "EXECUTION_DEVICES":
            return [self.device_name]
        if key == "LOADED_FROM_CACHE":
            return self.loaded_from_cache
        if key == "NUM_STREAMS":
            return self.num_streams
        if key == "INFERENCE_NUM_THREADS":
            return self.threads_per_stream * self.num_streams
        if key in self._cfg and key in self.compiled_keys:
            value = self._cfg[key]
            return str(value) if hasattr(value, "value") else value
        raise PropertyError(f"Unsupported property {key} of a {self.device_type} compiled model. "
                            f"Supported: {', '.join(self.compiled_keys)}.")

    def set_property(self, properties: Mapping[str, Any]) -> None:
        """Compiled models are immutable."""
        raise PropertyError("It's not possible to set property of an already compiled model. "
                            "Set property to Core::compile_model during compilation")

    def release(self) -> None:
        """Stop the stream threads."""
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None
