"""AUTO: pick the device for a model, serve at once from the CPU, fall back when a device fails.

``compile_model(model, "AUTO")`` (or ``AUTO:GPU,CPU``, ``AUTO:-CPU``) chooses one device:

1. **Candidates**: the listed devices in their order (a bare ``GPU`` stands for every ``GPU.N``),
   or every available device ordered discrete > integrated > other > CPU by ``DEVICE_TYPE``
   (NPU-like accelerators, :data:`EXPLICIT_ONLY_DEVICES`, only when listed); ``-X`` excludes.
2. **Filters**: ``PERF_COUNT=True`` keeps devices that support it; a dynamic model goes to the
   CPU if it is a candidate; a stateful model keeps the devices whose ``query_model`` covers its
   ReadValue/Assign ops and turns both fallbacks off; the model's precision (INT8 when it holds
   quantize ops, else the type of its first Conv/MatMul/Gemm weights, else FP32) must be in a
   device's ``OPTIMIZATION_CAPABILITIES`` (FP16 devices take FP32 models) unless one candidate
   is left.
3. **MODEL_PRIORITY**: a process-wide registry records the device each AUTO model holds; a new
   model skips devices held by models of strictly higher priority (else it takes the last
   candidate).  An entry goes when its compiled model is released or garbage-collected.
4. **Startup acceleration** (``ENABLE_STARTUP_FALLBACK``, default on): when the chosen device is
   not the CPU and the CPU is a candidate, the CPU (hint LATENCY) and the target compile at once;
   ``compile_model`` returns when the CPU copy is ready (or, if it fails, the target), the CPU
   serves until the target is ready, then requests move there and the CPU copy is released once
   its last inference ends.
   ``EXECUTION_DEVICES`` reads ``['(CPU)']`` meanwhile, then ``['GPU.0']``.
5. **Runtime fallback** (``ENABLE_RUNTIME_FALLBACK``, default on): an inference that fails on a
   device is run again on the next candidate, compiled on demand, which then serves every
   request; with no candidate left the original error reaches ``wait()``/the callback.

Hints: the devices get AUTO's ``PERFORMANCE_HINT`` (default LATENCY; ``DEVICE_PROPERTIES`` may set
another per device); ``OPTIMAL_NUMBER_OF_INFER_REQUESTS`` is the serving device's count (while the
CPU helper serves, OpenVINO's estimate from the target's metrics), capped by
``PERFORMANCE_HINT_NUM_REQUESTS``.

``PERFORMANCE_HINT=CUMULATIVE_THROUGHPUT`` compiles on every candidate instead and serves from
all of them (:mod:`infermux.scheduler.multi`); with no list and three or more accelerators the
CPU is left out.

Differences from OpenVINO, on purpose (``reference/openvino_semantics.md`` sections 17-18):

- When the target fails to compile and the CPU helper keeps serving, a warning says so and
  ``EXECUTION_DEVICES`` reads ``['CPU']`` (OpenVINO keeps reporting ``['(CPU)']`` forever).
- ``AUTO:CPU,-CPU`` is an error naming the conflict (OpenVINO silently runs on CPU).
- A device name that is not registered is an error (a typo is not skipped); a device that fails
  to compile is skipped, with a warning.
- If no other device can take over after a runtime failure, the device keeps serving: only the
  failed request gets its error, the compiled model stays usable.
- ``query_model`` on a bare ``AUTO`` uses the default candidates (OpenVINO: an error).
- The precision check also reads MatMul/Gemm weights (OpenVINO: Conv only), so transformer
  models are classified too.

>>> compiled = core.compile_model(model, "AUTO", {"PERFORMANCE_HINT": "THROUGHPUT"})   # doctest: +SKIP
>>> compiled.get_property("EXECUTION_DEVICES")                                         # doctest: +SKIP
['(CPU)']
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import threading
import weakref
from collections.abc import Mapping
from concurrent.futures import Future
from typing import Any

import numpy as np

from infermux.devices.properties import RO, PerformanceMode, Priority, SchedulePolicy
from infermux.errors import InfermuxError, InvalidDeviceStringError, PropertyError
from infermux.graph.model import Model
from infermux.scheduler.device_string import Item, parse_device
from infermux.scheduler.multi import (
    COMPILED_MODEL_IMMUTABLE, CumulativeCompiledModel, VirtualPluginBase, _key, _one_stateful_device,
    _rw_keys, canonical_name, child_config, child_properties, compile_error, compile_pools, hardware,
    is_stateful, load_kernels, optimal_requests, query_intersection, stateful_capable)
from infermux.scheduler.pools import DevicePool, RequestScheduler, WorkerThreads, run_with_fallback

__all__ = ["EXPLICIT_ONLY_DEVICES", "PRIORITIES", "AutoCompiledModel", "AutoPlugin", "Candidate",
           "default_candidates", "listed_candidates", "model_precision"]

log = logging.getLogger(__name__)

EXPLICIT_ONLY_DEVICES = ("NPU", "VPU")
_NO_DEVICE = "Please, check environment due to no supported devices can be used"
_INT8_OPS = {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "QLinearConv",
             "QLinearMatMul", "ConvInteger", "MatMulInteger", "FakeQuantize"}
_WEIGHT_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")
_HELPER_LABEL = "(CPU)"


@dataclasses.dataclass(frozen=True)
class Candidate:
    """A device AUTO may use: its name, ``(N)`` worker slots if given, its compile config."""

    name: str
    requests: int | None
    config: dict


# -- candidates ------------------------------------------------------------------------------

def _device_rank(dispatcher: Any, device: str) -> int:
    if hardware(device).name == "CPU":  # also CPU@node
        return 3
    try:
        plugin, device_id, _ = dispatcher.split(hardware(device))
        kind = str(plugin.get_property("DEVICE_TYPE", device_id)).upper()
    except Exception:  # noqa: BLE001 - no type: "other"
        kind = ""
    return {"DISCRETE": 0, "INTEGRATED": 1}.get(kind, 2)


def default_candidates(dispatcher: Any) -> list[str]:
    """Available devices, discrete > integrated > other > CPU; NPU-like ones left out."""
    devices = [d for d in dispatcher.available_devices() if hardware(d).name not in EXPLICIT_ONLY_DEVICES]
    return sorted(devices, key=lambda d: _device_rank(dispatcher, d))


def listed_candidates(dispatcher: Any, items: tuple[Item, ...]) -> list[tuple[str, int | None]]:
    """``[(device, requests)]`` for an AUTO list (``()`` = the default list), exclusions applied."""
    excluded = [i.device for i in items if i.excluded]

    def is_excluded(name: str) -> bool:
        return any(str(e) == name or (not e.id and e.name == hardware(name).name) for e in excluded)

    includes = [i for i in items if not i.excluded]
    result: dict[str, int | None] = {}
    if not includes:
        result = {d: None for d in default_candidates(dispatcher) if not is_excluded(d)}
    for item in includes:
        hw = item.device
        ids = [i for i in dispatcher.plugin(hw.name).devices() if i] if not (hw.id or hw.node) else []
        if ids:  # a bare GPU stands for every GPU.N present
            names = [f"{hw.name}.{i}" for i in ids if not is_excluded(f"{hw.name}.{i}")]
        else:
            names = [canonical_name(dispatcher, hw)]
            if is_excluded(names[0]):
                raise InvalidDeviceStringError(
                    f"AUTO lists {names[0]} and also excludes it: keep one of the two (OpenVINO "
                    f"silently runs on it)")
        for name in names:
            result.setdefault(name, item.requests)
    if not result:
        raise InfermuxError(f"{_NO_DEVICE}: every device is excluded (available: "
                            f"{', '.join(dispatcher.available_devices())})")
    return list(result.items())


def model_precision(model: Model) -> str:
    """``INT8`` (quantize ops), else ``FP16``/``FP32`` from the first weighted op, else ``FP32``."""
    nodes = model.graph.nodes
    if any(n.op_type in _INT8_OPS for n in nodes):
        return "INT8"
    weights = model.graph.initializers
    for node in nodes:
        if node.op_type in _WEIGHT_OPS and len(node.inputs) > 1 and node.inputs[1] in weights:
            return "FP16" if weights[node.inputs[1]].dtype == np.float16 else "FP32"
    return "FP32"


def _capabilities(dispatcher: Any, device: str) -> list[str]:
    try:
        plugin, device_id, _ = dispatcher.split(hardware(device))
        return list(plugin.get_property("OPTIMIZATION_CAPABILITIES", device_id))
    except Exception:  # noqa: BLE001 - a device that cannot say is assumed FP32
        return ["FP32"]


def _filter(dispatcher: Any, model: Model, devices: list[tuple[str, int | None]],
            values: Mapping[str, Any], stateful: bool) -> list[tuple[str, int | None]]:
    """Section 5.1 steps 2-4: PERF_COUNT, dynamic, stateful and precision filters."""
    if values["PERF_COUNT"]:
        devices = [d for d in devices if "PERF_COUNT" in _rw_keys(dispatcher, d[0])]
        if not devices:
            raise InfermuxError("There is no device support the current configure: no candidate "
                                "supports PERF_COUNT=True")
    names = [d for d, _ in devices]
    if "CPU" in names and model.is_dynamic():
        if len(names) > 1:
            log.info("AUTO: the model has dynamic shapes, so it runs on the CPU")
        return [d for d in devices if d[0] == "CPU"]
    if stateful:
        capable = stateful_capable(dispatcher, model, names)
        if not capable:
            raise InfermuxError(f"{_NO_DEVICE}: none of {', '.join(names)} supports the stateful "
                                f"ops (ReadValue/Assign) of this model")
        devices = [d for d in devices if d[0] in capable]
    if len(devices) > 1:
        precision = model_precision(model)
        kept = [d for d in devices if _accepts(_capabilities(dispatcher, d[0]), precision)]
        if not kept:
            raise InfermuxError(f"{_NO_DEVICE}: the model computes in {precision} and none of "
                                f"{', '.join(names)} lists it in OPTIMIZATION_CAPABILITIES")
        for device in sorted(set(names) - {d for d, _ in kept}):
            log.info("AUTO: %s is skipped: it lacks %s in OPTIMIZATION_CAPABILITIES", device, precision)
        devices = kept
    return devices


def _accepts(capabilities: list[str], precision: str) -> bool:
    return precision in capabilities or (precision == "FP32" and "FP16" in capabilities)


# -- MODEL_PRIORITY --------------------------------------------------------------------------

_RANK = {Priority.HIGH: 0, Priority.MEDIUM: 1, Priority.LOW: 2}


class PriorityRegistry:
    """Process-wide: the device each live AUTO model holds, with its MODEL_PRIORITY rank."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[int, tuple[int, str]] = {}
        self._tokens = itertools.count(1)

    def choose(self, rank: int, devices: list[str], token: int | None = None) -> tuple[str, int]:
        """The first device not held by a higher-priority model (else the last); recorded under ``token``."""
        with self._lock:
            held = {d for t, (r, d) in self._entries.items() if r < rank and t != token}
            free = [d for d in devices if d not in held]
            device = free[0] if free else devices[-1]
            token = token or next(self._tokens)
            self._entries[token] = (rank, device)
            return device, token

    def update(self, token: int | None, device: str) -> None:
        """``token``'s model now holds ``device``."""
        with self._lock:
            if token in self._entries:
                self._entries[token] = (self._entries[token][0], device)

    def release(self, token: int | None) -> None:
        """Forget ``token``'s model."""
        with self._lock:
            self._entries.pop(token, None)

    def held(self) -> dict[str, list[int]]:
        """{device: [rank, ...]} of the live entries (for tests and debugging)."""
        with self._lock:
            result: dict[str, list[int]] = {}
            for rank, device in self._entries.values():
                result.setdefault(device, []).append(rank)
            return result


PRIORITIES = PriorityRegistry()


# Targets load on these daemon threads (kept between compiles: starting a thread costs more than
# compiling a small model on the CPU helper).
_LOADERS = WorkerThreads(32, "infermux-auto-load")


def _forget(threads: WorkerThreads, token: int | None) -> None:
    threads.shutdown()
    PRIORITIES.release(token)


def _release_pool(pool: DevicePool) -> None:
    pool.model.release()


# -- the compiled model ----------------------------------------------------------------------

_AUTO_KEYS = ("NETWORK_NAME", "SUPPORTED_PROPERTIES", "EXECUTION_DEVICES", "PERFORMANCE_HINT",
              "OPTIMAL_NUMBER_OF_INFER_REQUESTS", "MULTI_DEVICE_PRIORITIES", "DEVICE_PROPERTIES",
              "MODEL_PRIORITY", "LOADED_FROM_CACHE", "PERF_COUNT")


class AutoCompiledModel:
    """AUTO's compiled model: one device serves at a time (see the module docstring)."""

    def __init__(self, dispatcher: Any, model: Model, candidates: list[Candidate],
                 values: Mapping[str, Any], *, stateful: bool):
        self.device_name = "AUTO"
        self.input_infos: list = []
        self.output_infos: list = []
        self.variables: dict = {}
        self._dispatcher, self._model = dispatcher, model
        self._candidates = candidates
        self._cfg = dict(values)
        self._hint = PerformanceMode(values["PERFORMANCE_HINT"])
        fallback = values["ENABLE_RUNTIME_FALLBACK"] and not values["DEVICE_BIND_BUFFER"]
        self._runtime_fallback = bool(fallback) and not stateful
        self._failed: dict[str, BaseException] = {}
        self._lock = threading.RLock()  # device switches
        self._scheduler = RequestScheduler([], SchedulePolicy.DEVICE_PRIORITY, name="AUTO")
        self._threads = WorkerThreads(1, "infermux-auto")
        self._active: DevicePool | None = None
        self._target: Candidate | None = None
        self._helper: Future | None = None  # -> the CPU helper's pool, or None if it failed
        self._helper_config: dict | None = None
        self._loading = False
        self._released = False
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self._rank = _RANK[Priority(values["MODEL_PRIORITY"])]
        self._token: int | None = None
        target = self._select()
        self._finalizer = weakref.finalize(self, _forget, self._threads, self._token)
        try:
            self._start(target, bool(values["ENABLE_STARTUP_FALLBACK"]) and not stateful)
        except BaseException:
            self._finalizer()
            raise

    # -- choosing and loading devices ---------------------------------------------------------
    def _select(self) -> Candidate | None:
        remaining = [c for c in self._candidates if c.name not in self._failed]
        if not remaining:
            return None
        name, self._token = PRIORITIES.choose(self._rank, [c.name for c in remaining], self._token)
        self._target = next(c for c in remaining if c.name == name)
        return self._target

    def _start(self, target: Candidate, startup_fallback: bool) -> None:
        cpu = next((c for c in self._candidates if c.name == "CPU"), None)
        if not (startup_fallback and cpu is not None and target.name != "CPU"):
            self._activate(self._load_from(target))
            return
        self._helper_config = {**cpu.config, "PERFORMANCE_HINT": PerformanceMode.LATENCY}
        self._helper = Future()
        self._loading = True
        self._scheduler.begin_loading()
        load_kernels()
        _LOADERS.submit(lambda: self._load_in_background(target))
        self._compile_helper()  # here: the CPU copy is almost always ready first
        self._ready.wait()
        if self._active is None:
            raise self._startup_error

    def _load_from(self, candidate: Candidate | None) -> DevicePool | None:
        """Compile ``candidate``, else the next ones; None when the CPU helper can serve instead."""
        while candidate is not None:
            if candidate.name == "CPU" and self._helper_can_serve(candidate):
                return None
            try:
                model = self._dispatcher.compile(self._model, hardware(candidate.name), candidate.config)
            except Exception as exc:  # noqa: BLE001 - the next candidate is tried
                self._failed[candidate.name] = exc
                log.warning("AUTO: %s failed to compile: %s", candidate.name, exc)
                candidate = self._select()
                continue
            size = candidate.requests or optimal_requests(model)
            return DevicePool(candidate.name, model, size, on_idle=_release_pool)
        raise compile_error("AUTO", self._failed)

    def _helper_can_serve(self, candidate: Candidate) -> bool:
        if self._helper is None or candidate.config != self._helper_config:
            return False
        helper = self._helper.result()
        return helper is not None and not helper.retired

    def _compile_helper(self) -> None:
        try:
            model = self._dispatcher.compile(self._model, hardware("CPU"), self._helper_config)
        except Exception as exc:  # noqa: BLE001 - the target still comes
            log.warning("AUTO: the CPU startup helper failed to compile (%s); waiting for %s",
                        exc, self._target.name)
            self._helper.set_result(None)
            return
        helper = DevicePool("CPU", model, optimal_requests(model), label=_HELPER_LABEL,
                            on_idle=_release_pool)
        self._helper.set_result(helper)
        with self._lock:
            if self._active is None and self._loading and not self._released:
                log.info("AUTO: serving from the CPU while %s compiles", self._target.name)
                self._activate(helper)
                return
            if helper is self._active:  # the loader already made it the device
                return
            helper.retired = True
        _release_pool(helper)  # the target was ready first

    def _load_in_background(self, target: Candidate) -> None:
        try:
            pool = self._load_from(target)
            with self._lock:
                if pool is None:
                    self._keep_helper()
                else:
                    self._activate(pool)
        except BaseException as exc:  # noqa: BLE001 - compile_model or the waiting requests get it
            self._startup_error = exc
            if self._active is not None:
                log.error("AUTO: no device could be loaded: %s", exc)
        finally:
            with self._lock:
                self._loading = False
            self._scheduler.end_loading()
            self._ready.set()

    def _keep_helper(self) -> None:
        helper = self._helper.result()
        helper.label = "CPU"
        failed = "; ".join(f"{d}: {e}" for d, e in self._failed.items())
        log.warning("AUTO: %s; the CPU startup helper serves from now on", failed or "the CPU is next")
        self._activate(helper)

    def _activate(self, pool: DevicePool) -> None:
        with self._lock:
            if self._released:
                _release_pool(pool)
                return
            old, self._active = self._active, pool
            if not self.input_infos:
                self.input_infos = list(pool.model.input_infos)
                self.output_infos = list(pool.model.output_infos)
                self.variables = dict(getattr(pool.model, "variables", None) or {})
            self._threads.set_limit(pool.size)
            if old is None:
                self._scheduler.add(pool)
            elif old is not pool:
                log.info("AUTO: requests move from %s to %s", old.label, pool.label)
                self._scheduler.replace(old, pool)
            if pool.label != _HELPER_LABEL:
                PRIORITIES.update(self._token, pool.name)
            self._ready.set()

    def _on_failure(self, pool: DevicePool, error: BaseException) -> bool:
        """Runtime fallback: move to the next candidate and let the request run again there."""
        with self._lock:
            if pool is not self._active:
                return True  # another request already moved AUTO on
            if pool.label == _HELPER_LABEL and self._loading:
                log.warning("AUTO: an inference failed on the CPU startup helper (%s); requests wait "
                            "for %s", error, self._target.name)
                self._active = None
                self._scheduler.retire(pool)
                return True
            self._failed[pool.name] = error
            try:
                new = self._load_from(self._select())
            except Exception:  # noqa: BLE001 - nothing can take over
                new = None
            if new is None:
                log.warning("AUTO: an inference failed on %s (%s) and no other device can run it",
                            pool.name, error)
                PRIORITIES.update(self._token, pool.name)
                return False
            log.warning("AUTO: an inference failed on %s (%s); %s takes over", pool.name, error, new.name)
            self._activate(new)
            return True

    # -- the device-compiled-model protocol ---------------------------------------------------
    def infer(self, inputs, *, profile: bool = False, state=None):
        """Run on the current device, re-running elsewhere on failure (runtime fallback)."""
        return run_with_fallback(self._scheduler, inputs, profile=profile, state=state,
                                 on_failure=self._on_failure if self._runtime_fallback else None)

    def submit(self, fn):
        """Run an asynchronous request's job on AUTO's threads."""
        return self._threads.submit(fn)

    def initial_state(self, variable_id: str):
        """A variable's initial value (stateful models never change device)."""
        return self._active.model.initial_state(variable_id)

    def get_property(self, key: str) -> Any:
        """A compiled-model property; other keys are read from the current device's model."""
        key = _key(key)
        active = self._active
        if key == "SUPPORTED_PROPERTIES":
            return {k: RO for k in _AUTO_KEYS}
        if key == "EXECUTION_DEVICES":
            return [p.label for p in self._scheduler.pools]
        if key == "OPTIMAL_NUMBER_OF_INFER_REQUESTS":
            return self._optimal_requests()
        if key == "MULTI_DEVICE_PRIORITIES":
            return ",".join(c.name for c in self._candidates)
        if key == "DEVICE_PROPERTIES":
            return {active.name: child_properties(active.model)} if active else {}
        simple = {"NETWORK_NAME": self._model.friendly_name, "PERFORMANCE_HINT": self._hint,
                  "MODEL_PRIORITY": Priority(self._cfg["MODEL_PRIORITY"]),
                  "PERF_COUNT": self._cfg["PERF_COUNT"]}
        if key in simple:
            return simple[key]
        try:
            return active.model.get_property(key)
        except Exception:  # noqa: BLE001 - LOADED_FROM_CACHE defaults below
            if key == "LOADED_FROM_CACHE":
                return False
            raise PropertyError(f"Unsupported property {key} of an AUTO compiled model. Supported: "
                                f"{', '.join(_AUTO_KEYS)}.") from None

    def _optimal_requests(self) -> int:
        active = self._active
        if active is not None and active.label != _HELPER_LABEL:
            count = active.size
        else:
            count = self._optimal_before_ready()
        cap = int(self._cfg.get("PERFORMANCE_HINT_NUM_REQUESTS") or 0)
        return min(count, cap) if cap else count

    def _optimal_before_ready(self) -> int:
        """OpenVINO's estimate from the target device's metrics while it is still compiling."""
        target = self._target
        if target.requests:
            return target.requests
        plugin, device_id, _ = self._dispatcher.split(hardware(target.name))

        def metric(key):
            try:
                return plugin.get_property(key, device_id)
            except Exception:  # noqa: BLE001
                return None

        own = metric("OPTIMAL_NUMBER_OF_INFER_REQUESTS")
        if isinstance(own, int) and own > 0:
            return own
        if self._hint == PerformanceMode.LATENCY:
            return 1
        streams = (metric("RANGE_FOR_STREAMS") or (1, 0))[1]
        batch = metric("OPTIMAL_BATCH_SIZE") or 0
        if batch > 1 and self._cfg.get("ALLOW_AUTO_BATCHING", True) is not False:
            return max(int(self._cfg.get("PERFORMANCE_HINT_NUM_REQUESTS") or batch * streams * 2), batch)
        if target.name.split(".")[0] == "NPU":
            return 8
        return 2 * streams if streams else 4

    def set_property(self, properties: Mapping[str, Any]) -> None:
        """Compiled AUTO models are immutable."""
        raise PropertyError(COMPILED_MODEL_IMMUTABLE)

    def release(self) -> None:
        """Free the devices' models, stop AUTO's threads and leave the MODEL_PRIORITY registry."""
        with self._lock:
            self._released = True
            pools = [p for p in (self._active,) if p is not None]
        for pool in pools:
            pool.model.release()
        self._finalizer()


# -- the plugin ------------------------------------------------------------------------------

class AutoPlugin(VirtualPluginBase):
    """``AUTO[:<devices>]``: see the module docstring."""

    name = "AUTO"

    def _devices(self, device_id: str) -> tuple[list[tuple[str, int | None]], bool]:
        items = parse_device(f"AUTO:{device_id}").items if device_id else ()
        explicit = any(not i.excluded for i in items)
        return listed_candidates(self._dispatcher, items), explicit

    def query_model(self, model: Model, config: Mapping[str, Any] | None = None,
                    device_id: str = "") -> dict[str, str]:
        """The nodes every candidate supports, labelled ``AUTO``."""
        devices, _ = self._devices(device_id)
        return query_intersection(self._dispatcher, model, [d for d, _ in devices], "AUTO")

    def compile_model(self, model: Model, config: Mapping[str, Any] | None = None,
                      device_id: str = ""):
        """Select a device and compile (see the module docstring)."""
        values, user = self._config(config)
        devices, explicit = self._devices(device_id)
        stateful = is_stateful(model)
        devices = _filter(self._dispatcher, model, devices, values, stateful)
        hint = PerformanceMode(values["PERFORMANCE_HINT"])
        if hint == PerformanceMode.CUMULATIVE_THROUGHPUT:
            return self._compile_cumulative(model, devices, values, user, explicit, stateful)
        candidates = [Candidate(d, n, child_config(self._dispatcher, d, user, hint)) for d, n in devices]
        return AutoCompiledModel(self._dispatcher, model, candidates, values, stateful=stateful)

    def _compile_cumulative(self, model, devices, values, user, explicit: bool, stateful: bool):
        accelerators = [d for d in devices if d[0] != "CPU"]
        if not explicit and len(accelerators) >= 3:
            devices = accelerators  # the CPU would slow the accelerators down (OpenVINO #11753)
        if stateful:
            devices = _one_stateful_device(self._dispatcher, model, devices, "AUTO")
        pools = compile_pools(self._dispatcher, model, devices, user, PerformanceMode.THROUGHPUT, "AUTO")
        return CumulativeCompiledModel(
            "AUTO", pools, values, hint=PerformanceMode.CUMULATIVE_THROUGHPUT,
            network_name=model.friendly_name, priorities=",".join(p.name for p in pools))
