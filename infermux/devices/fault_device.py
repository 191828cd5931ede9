"""A fault-injection device for testing the scheduler: a real CPU plugin behind knobs.

It executes for real on the CPU kernels; only the knobs are artificial: its name and ids, device
type, compile delay or failure, infer delay (fixed, or per node of the compiled model: a device
whose speed is proportional to the work), failure on the n-th request, the op types it claims,
its memory size, optimal request count and batch size, capabilities.  The scheduler tests use it
to create the multi-device situations this machine lacks::

    core.register_plugin(FaultInjectionPlugin("FGPU", ids=["0", "1"], device_type="DISCRETE",
                                              compile_delay_s=2.0), "FGPU")
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from infermux.devices.cpu import CPUPlugin
from infermux.devices.properties import (
    RW, PerformanceMode, PropertySpec, bool_validator, enum_validator, int_validator, validate_config)
from infermux.errors import DeviceNotFoundError, InfermuxError, PropertyError
from infermux.graph.model import Model

__all__ = ["FaultInjectionPlugin", "InjectedFault"]


class InjectedFault(InfermuxError):
    """The failure a knob asked for."""


class FaultInjectionPlugin:
    """A CPU-backed device with knobs (see the module docstring)."""

    def __init__(self, name: str = "TEST", *, ids: Iterable[str] = ("",),
                 device_type: str | Mapping[str, str] = "INTEGRATED",
                 capabilities: Sequence[str] = ("FP32", "FP16"), compile_delay_s: float = 0.0,
                 compile_fails: bool = False, infer_delay_s: float = 0.0,
                 fail_on_infer: Callable[[int], bool] | int | None = None,
                 supported_ops: Iterable[str] | None = None, total_mem_bytes: int | None = None,
                 optimal_requests: int = 2, optimal_batch_size: int | None = None,
                 full_name: str | None = None, infer_delay_per_node_s: float = 0.0):
        self.name = name
        self.ids = list(ids)
        self.device_type = device_type
        self.capabilities = list(capabilities)
        self.compile_delay_s = compile_delay_s
        self.compile_fails = compile_fails
        self.infer_delay_s = infer_delay_s
        self.infer_delay_per_node_s = infer_delay_per_node_s
        if isinstance(fail_on_infer, int):
            n = fail_on_infer
            fail_on_infer = lambda i: i == n  # noqa: E731 - the n-th request (1-based)
        self.fail_on_infer = fail_on_infer
        self.supported_ops = set(supported_ops) if supported_ops is not None else None
        self.total_mem_bytes = total_mem_bytes
        self.optimal_requests = optimal_requests
        self.optimal_batch_size = optimal_batch_size
        self.full_name = full_name or f"{name} (fault-injection device on the CPU)"
        self._cpu = CPUPlugin()
        self.compiled: list[FaultInjectionCompiledModel] = []  # for tests to inspect
        self._defaults: dict[str, Any] = {}
        self._specs = {s.key: s for s in [
            PropertySpec("PERFORMANCE_HINT", RW, PerformanceMode.LATENCY,
                         enum_validator(PerformanceMode, "PERFORMANCE_HINT")),
            PropertySpec("PERFORMANCE_HINT_NUM_REQUESTS", RW, 0, int_validator("PERFORMANCE_HINT_NUM_REQUESTS")),
            PropertySpec("NUM_STREAMS", RW, 1, int_validator("NUM_STREAMS", 0, ("AUTO",))),
            PropertySpec("PERF_COUNT", RW, False, bool_validator("PERF_COUNT")),
            PropertySpec("INFERENCE_PRECISION_HINT", RW, "f32"),
        ]}

    def devices(self) -> list[str]:
        """The configured ids."""
        return list(self.ids)

    def _check(self, device_id: str) -> str:
        device_id = device_id or ""
        if device_id == "" and self.ids and self.ids[0] != "":
            device_id = self.ids[0]
        if device_id not in self.ids:
            raise DeviceNotFoundError(f"{self.name} has no device '{device_id}' (ids: {self.ids})")
        return device_id

    def get_property(self, key: str, device_id: str = "") -> Any:
        """Metrics from the knobs."""
        dev = self._check(device_id)
        device_type = self.device_type  # one type, or {id: type} (e.g. FGPU.0 discrete, FGPU.1 integrated)
        table = {
            "FULL_DEVICE_NAME": self.full_name,
            "DEVICE_TYPE": device_type[dev] if isinstance(device_type, Mapping) else device_type,
            "OPTIMIZATION_CAPABILITIES": list(self.capabilities), "AVAILABLE_DEVICES": list(self.ids),
            "RANGE_FOR_STREAMS": (1, self.optimal_requests),
            "RANGE_FOR_ASYNC_INFER_REQUESTS": (1, self.optimal_requests, 1),
            "SUPPORTED_PROPERTIES": {k: s.mutability for k, s in self._specs.items()},
        }
        if self.total_mem_bytes is not None:
            table["DEVICE_TOTAL_MEM_SIZE"] = self.total_mem_bytes
        if self.optimal_batch_size is not None:
            table["OPTIMAL_BATCH_SIZE"] = self.optimal_batch_size
        if key in table:
            return table[key]
        if key in self._specs:
            return self._defaults.get(key, self._specs[key].default)
        raise PropertyError(f"Cannot get unsupported property {key} of {self.name}")

    def set_property(self, properties: Mapping[str, Any], device_id: str = "") -> None:
        """Defaults for later compiles."""
        self._defaults.update(validate_config(self._specs, properties, self.name))

    def query_model(self, model: Model, config: Mapping[str, Any] | None = None,
                    device_id: str = "") -> dict[str, str]:
        """The CPU's answer, filtered by ``supported_ops``."""
        dev = self._check(device_id)
        label = self.name + (f".{dev}" if dev else "")
        cpu = self._cpu.query_model(model)
        ops = {n.name: n.op_type for n in model.graph.nodes}
        return {n: label for n in cpu if self.supported_ops is None or ops[n] in self.supported_ops}

    def compile_model(self, model: Model, config: Mapping[str, Any] | None = None,
                      device_id: str = "") -> FaultInjectionCompiledModel:
        """Compile on the CPU after ``compile_delay_s``; fail if ``compile_fails``."""
        dev = self._check(device_id)
        cfg = dict(self._defaults)
        cfg.update(validate_config(self._specs, config, self.name))
        if self.compile_delay_s:
            time.sleep(self.compile_delay_s)
        if self.compile_fails:
            raise InjectedFault(f"{self.name}: compile failed (injected)")
        if self.supported_ops is not None:
            bad = sorted({n.op_type for n in model.graph.nodes} - self.supported_ops)
            if bad:
                raise InjectedFault(f"{self.name} does not support {', '.join(bad)}")
        inner = self._cpu.compile_model(model, {"PERF_COUNT": cfg.get("PERF_COUNT", False)})
        hint = cfg.get("PERFORMANCE_HINT", PerformanceMode.LATENCY)
        optimal = self.optimal_requests if hint != PerformanceMode.LATENCY else 1
        cap = cfg.get("PERFORMANCE_HINT_NUM_REQUESTS") or 0
        if cap:
            optimal = min(optimal, cap)
        compiled = FaultInjectionCompiledModel(self, inner, self.name + (f".{dev}" if dev else ""),
                                               optimal, dict(cfg))
        compiled.num_nodes = len(model.graph.nodes)
        self.compiled.append(compiled)
        return compiled


class FaultInjectionCompiledModel:
    """The CPU compiled model behind the knobs; counts requests and concurrency for tests."""

    def __init__(self, plugin: FaultInjectionPlugin, inner, device_name: str, optimal: int, cfg: dict):
        self.plugin, self._inner, self.device_name = plugin, inner, device_name
        self.input_infos, self.output_infos = inner.input_infos, inner.output_infos
        self.variables = inner.variables
        self._optimal = optimal
        self._cfg = cfg
        self._lock = threading.Lock()
        self.requests_seen = 0
        self.running = 0
        self.max_running = 0
        self.num_nodes = 0  # nodes of the model it was compiled from (infer_delay_per_node_s)
        self._executor = ThreadPoolExecutor(max(1, optimal), thread_name_prefix=f"infermux-{device_name}")

    def infer(self, inputs: Sequence[Any], *, profile: bool = False, state=None):
        """Run on the CPU, with the delay and failure knobs applied."""
        with self._lock:
            self.requests_seen += 1
            n = self.requests_seen
            self.running += 1
            self.max_running = max(self.max_running, self.running)
        try:
            delay = self.plugin.infer_delay_s + self.plugin.infer_delay_per_node_s * self.num_nodes
            if delay:
                time.sleep(delay)
            if self.plugin.fail_on_infer is not None and self.plugin.fail_on_infer(n):
                raise InjectedFault(f"{self.device_name}: request {n} failed (injected)")
            return self._inner.infer(inputs, profile=profile, state=state)
        finally:
            with self._lock:
                self.running -= 1

    def initial_state(self, variable_id: str):
        """As the CPU's."""
        return self._inner.initial_state(variable_id)

    def submit(self, fn: Callable[[], Any]) -> Future:
        """Run on this device's own threads (``optimal`` of them)."""
        return self._executor.submit(fn)

    def get_property(self, key: str) -> Any:
        """Compiled-model properties."""
        if key == "OPTIMAL_NUMBER_OF_INFER_REQUESTS":
            return self._optimal
        if key == "EXECUTION_DEVICES":
            return [self.device_name]
        if key == "PERFORMANCE_HINT":
            return str(self._cfg.get("PERFORMANCE_HINT", "LATENCY"))
        if key == "NETWORK_NAME":
            return self._inner.get_property("NETWORK_NAME")
        raise PropertyError(f"Unsupported property {key} of a {self.plugin.name} compiled model")

    def set_property(self, properties: Mapping[str, Any]) -> None:
        """Immutable."""
        raise PropertyError("It's not possible to set property of an already compiled model.")

    def release(self) -> None:
        """Stop the threads."""
        self._executor.shutdown(wait=False)
