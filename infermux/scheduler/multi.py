"""MULTI, and AUTO under ``CUMULATIVE_THROUGHPUT``: one model on several devices at once.

``compile_model(model, "MULTI:GPU(4),CPU")`` compiles the model on every listed device in
parallel (threads; CPU started last, as OpenVINO does), drops a device that fails to compile
(all failing is one error naming each), and gives each device a pool of worker slots: the
``(N)`` of the string, else the device's ``OPTIMAL_NUMBER_OF_INFER_REQUESTS``.  User requests are
device-agnostic; each inference takes an idle slot by ``SCHEDULE_POLICY`` (``DEVICE_PRIORITY``:
the first device of the list with an idle slot; ``ROUND_ROBIN``: the starting device rotates),
waits in one shared first-come queue when every slot is busy, and no device ever runs more
inferences than its pool (:mod:`infermux.scheduler.pools`).  An inference that fails on one
device is run again on another (``ENABLE_RUNTIME_FALLBACK``, default on); the first error
reaches the request once every device has failed it.

Configuration, for MULTI and AUTO alike (this module also holds the pieces AUTO shares):

- Their own keys are validated (``Invalid value for property PERFORMANCE_HINT: FAST``); unknown
  keys are ignored at this level, as OpenVINO does, and forwarded to each device that lists them
  in its ``SUPPORTED_PROPERTIES``.  ``DEVICE_PROPERTIES={"CPU": {...}, "GPU.1": {...}}`` overrides
  the configuration of one device (by type or by full name), and is passed as given.
- Children get ``PERFORMANCE_HINT=THROUGHPUT`` unless ``DEVICE_PROPERTIES`` sets their hint.
  A ``LATENCY`` hint given to MULTI is replaced, with the warning OpenVINO logs
  (``MULTI supports THROUGHPUT only``).  ``PERFORMANCE_HINT_NUM_REQUESTS`` goes to every device,
  so it caps each device's optimal count, hence each pool without an ``(N)``.

Differences from OpenVINO, on purpose (``reference/openvino_semantics.md`` section 18):

- ``OPTIMAL_NUMBER_OF_INFER_REQUESTS`` is the number of worker slots, so ``(N)`` counts:
  ``MULTI:CPU(4)`` reports 4 (OpenVINO reports the device's 2 and ignores the 4 it schedules).
- MULTI keeps its scheduler with a single device (no "passthrough"), so ``(N)`` still bounds it.
- ``MULTI`` takes ``ENABLE_RUNTIME_FALLBACK`` too (OpenVINO only reads it through AUTO).
- A stateful model is accepted when exactly one listed device runs its ReadValue/Assign ops
  (the others are dropped, with a log line); with more, compile fails and says to list one.

>>> compiled = core.compile_model(model, "MULTI:GPU(4),CPU")          # doctest: +SKIP
>>> compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")         # doctest: +SKIP
6
"""

from __future__ import annotations

import enum
import functools
import logging
import weakref
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from infermux.devices.properties import (
    RO, RW, ExecutionMode, PerformanceMode, Priority, PropertySpec, SchedulePolicy,
    bool_validator, enum_validator, int_validator)
from infermux.errors import InfermuxError, InvalidDeviceStringError, PropertyError
from infermux.graph.model import Model
from infermux.ops.registry import registered_ops
from infermux.scheduler.device_string import Hardware, parse_device
from infermux.scheduler.pools import DevicePool, RequestScheduler, WorkerThreads, run_with_fallback

__all__ = ["COMPILED_MODEL_IMMUTABLE", "CumulativeCompiledModel", "MultiPlugin", "VirtualPluginBase",
           "child_config", "compile_pools", "hardware", "is_stateful", "load_kernels", "property_specs",
           "query_intersection", "resolve_config", "stateful_capable"]

log = logging.getLogger(__name__)

COMPILED_MODEL_IMMUTABLE = ("It's not possible to set property of an already compiled model. "
                            "Set property to Core::compile_model during compilation")
_LOG_LEVELS = ("LOG_NONE", "LOG_ERROR", "LOG_WARNING", "LOG_INFO", "LOG_DEBUG", "LOG_TRACE")
_AUTO_ONLY_KEYS = ("DEVICES_UTILIZATION_THRESHOLD", "ENABLE_STARTUP_FALLBACK", "PERF_CURVE_TABLE",
                   "LOW_POWER_DEVICE")
_NOT_FORWARDED = ("MULTI_DEVICE_PRIORITIES", "DEVICE_PROPERTIES")
_STATEFUL_OPS = ("ReadValue", "Assign")


# -- configuration ---------------------------------------------------------------------------

def _key(key: Any) -> str:
    return str(key.value) if isinstance(key, enum.Enum) else str(key)


def _invalid_value(key: str, check, expected: str):
    """Wrap a validator so it fails with AUTO's message."""
    def validate(value):
        try:
            return check(value)
        except PropertyError:
            raise PropertyError(f"Invalid value for property {key}: {value}. Expected {expected}.") from None
    return validate


def _choice(key: str, choices: tuple[str, ...]):
    def check(value):
        if str(value) not in choices:
            raise PropertyError(key)
        return str(value)
    return _invalid_value(key, check, "/".join(choices))


def _mapping(key: str):
    def check(value):
        if not isinstance(value, Mapping):
            raise PropertyError(key)
        return dict(value)
    return _invalid_value(key, check, "a dict")


def _enum(key: str, cls) -> Any:
    return _invalid_value(key, enum_validator(cls, key), "/".join(dict.fromkeys(m.value for m in cls)))


def property_specs(kind: str) -> dict[str, PropertySpec]:
    """The plugin-level keys of AUTO (17, as OpenVINO) or MULTI (AUTO's less the AUTO-only ones)."""
    boolean = lambda k: _invalid_value(k, bool_validator(k), "True/False")
    specs = [
        PropertySpec("DEVICES_UTILIZATION_THRESHOLD", RW, {}, _mapping("DEVICES_UTILIZATION_THRESHOLD")),
        PropertySpec("DEVICE_BIND_BUFFER", RW, False, boolean("DEVICE_BIND_BUFFER")),
        PropertySpec("ENABLE_RUNTIME_FALLBACK", RW, True, boolean("ENABLE_RUNTIME_FALLBACK")),
        PropertySpec("ENABLE_STARTUP_FALLBACK", RW, True, boolean("ENABLE_STARTUP_FALLBACK")),
        PropertySpec("EXECUTION_MODE_HINT", RW, ExecutionMode.PERFORMANCE,
                     _enum("EXECUTION_MODE_HINT", ExecutionMode)),
        PropertySpec("FULL_DEVICE_NAME", RO, kind),
        PropertySpec("LOG_LEVEL", RW, "LOG_NONE", _choice("LOG_LEVEL", _LOG_LEVELS)),
        PropertySpec("LOW_POWER_DEVICE", RW, ""),
        PropertySpec("MODEL_PRIORITY", RW, Priority.MEDIUM, _enum("MODEL_PRIORITY", Priority)),
        PropertySpec("MULTI_DEVICE_PRIORITIES", RW, ""),
        PropertySpec("OPTIMIZATION_CAPABILITIES", RO),
        PropertySpec("PERFORMANCE_HINT", RW,
                     PerformanceMode.THROUGHPUT if kind == "MULTI" else PerformanceMode.LATENCY,
                     _enum("PERFORMANCE_HINT", PerformanceMode)),
        PropertySpec("PERFORMANCE_HINT_NUM_REQUESTS", RW, 0, _invalid_value(
            "PERFORMANCE_HINT_NUM_REQUESTS", int_validator("PERFORMANCE_HINT_NUM_REQUESTS"),
            "a non-negative integer")),
        PropertySpec("PERF_COUNT", RW, False, boolean("PERF_COUNT")),
        PropertySpec("PERF_CURVE_TABLE", RW, {}, _mapping("PERF_CURVE_TABLE")),
        PropertySpec("SCHEDULE_POLICY", RW, SchedulePolicy.DEVICE_PRIORITY, _enum("SCHEDULE_POLICY", SchedulePolicy)),
        PropertySpec("SUPPORTED_PROPERTIES", RO),
    ]
    return {s.key: s for s in specs if kind == "AUTO" or s.key not in _AUTO_ONLY_KEYS}


def _device_properties(value: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(value, Mapping) or not all(isinstance(v, Mapping) for v in value.values()):
        raise PropertyError("Invalid value for property DEVICE_PROPERTIES: expected a dict of "
                            "{device: {key: value}}, e.g. {'CPU': {'PERFORMANCE_HINT': 'LATENCY'}}")
    return {str(dev): {_key(k): v for k, v in props.items()} for dev, props in value.items()}


def resolve_config(specs: Mapping[str, PropertySpec], *sources: Mapping[str, Any] | None,
                   kind: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(every value, the values the user gave)`` from spec defaults overlaid by ``sources``.

    Known keys are validated and read-only ones refused; unknown keys are kept in both dicts for
    the devices that support them (AUTO and MULTI themselves ignore them, as OpenVINO does).
    """
    values = {k: s.default for k, s in specs.items() if s.mutability == RW}
    user: dict[str, Any] = {}
    for source in sources:
        for key, value in (source or {}).items():
            key = _key(key)
            spec = specs.get(key)
            if key == "DEVICE_PROPERTIES":
                value = _device_properties(value)
            elif spec is not None and spec.mutability != RW:
                raise PropertyError(f"Property {key} of {kind} is read-only and cannot be set.")
            elif spec is not None and spec.validate is not None:
                value = spec.validate(value)
            values[key] = user[key] = value
    return values, user


@functools.lru_cache(maxsize=512)
def hardware(device: str) -> Hardware:
    """``'GPU.1'`` parsed once (the dispatcher takes parsed devices as they are)."""
    return parse_device(device)


def _rw_keys(dispatcher: Any, device: str) -> set[str]:
    """The keys ``device`` accepts in a compile config (from its SUPPORTED_PROPERTIES)."""
    try:
        plugin, device_id, _ = dispatcher.split(hardware(device))
        supported = plugin.get_property("SUPPORTED_PROPERTIES", device_id)
    except Exception as exc:  # noqa: BLE001 - a device that cannot say gets nothing forwarded
        log.debug("%s lists no SUPPORTED_PROPERTIES: %s", device, exc)
        return set()
    if isinstance(supported, Mapping):
        return {_key(k) for k, m in supported.items() if str(m) != RO}
    return {_key(k) for k in supported}


def _overrides(device_properties: Mapping[str, Mapping[str, Any]] | None, device: str) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for name in (hardware(device).name, device):
        result.update((device_properties or {}).get(name, {}))
    return result


def child_config(dispatcher: Any, device: str, user: Mapping[str, Any],
                 hint: PerformanceMode | None) -> dict[str, Any]:
    """What ``device`` is compiled with: the user's keys it supports, ``hint``, then its DEVICE_PROPERTIES."""
    supported = _rw_keys(dispatcher, device)
    config = {k: v for k, v in user.items() if k in supported and k not in _NOT_FORWARDED}
    if hint is not None and "PERFORMANCE_HINT" in supported:
        config["PERFORMANCE_HINT"] = hint
    config.update(_overrides(user.get("DEVICE_PROPERTIES"), device))
    return config


# -- devices and models ----------------------------------------------------------------------

def canonical_name(dispatcher: Any, hw: Hardware) -> str:
    """``FGPU`` -> ``FGPU.0`` when the plugin's first id is '0'; ``CPU`` stays ``CPU``."""
    if hw.id or hw.node:
        return str(hw)
    ids = dispatcher.plugin(hw.name).devices()
    return f"{hw.name}.{ids[0]}" if ids and ids[0] else hw.name


def is_stateful(model: Model) -> bool:
    """True if the model holds ReadValue/Assign (its requests carry state)."""
    return any(n.op_type in _STATEFUL_OPS for n in model.graph.nodes)


def stateful_capable(dispatcher: Any, model: Model, devices: Iterable[str]) -> list[str]:
    """The devices whose ``query_model`` covers every ReadValue/Assign of ``model``."""
    needed = {n.name for n in model.graph.nodes if n.op_type in _STATEFUL_OPS}
    capable = []
    for device in devices:
        try:
            if needed <= set(dispatcher.query(model, hardware(device))):
                capable.append(device)
        except Exception as exc:  # noqa: BLE001 - a device that cannot answer is not capable
            log.debug("query_model on %s failed: %s", device, exc)
    return capable


def query_intersection(dispatcher: Any, model: Model, devices: Iterable[str], label: str) -> dict[str, str]:
    """The nodes every device supports, each labelled ``label`` (OpenVINO's AUTO/MULTI query_model)."""
    common: set[str] | None = None
    for device in devices:
        supported = set(dispatcher.query(model, hardware(device)))
        common = supported if common is None else common & supported
    return {n.name: label for n in model.graph.nodes if n.name in (common or set())}


def compile_error(kind: str, errors: Mapping[str, BaseException]) -> InfermuxError:
    """One error naming every device's failure (``[AUTO] compile model failed, GPU:...; CPU:...``)."""
    detail = "; ".join(f"{device}:{error}" for device, error in errors.items())
    error = InfermuxError(f"[{kind}] compile model failed, {detail}")
    error.__cause__ = next(iter(errors.values()), None)
    return error


def load_kernels() -> None:
    """Import every kernel module in this thread before compiling in several threads at once.

    The op registry imports its modules lazily and marks itself loaded before the imports end,
    so a second thread compiling meanwhile sees a partial registry (reported to the lead; this
    call is harmless once that is fixed)."""
    global _kernels_loaded
    if not _kernels_loaded:
        registered_ops()
        _kernels_loaded = True


_kernels_loaded = False


def _compile_all(dispatcher: Any, model: Model, jobs: list[tuple[str, dict]]):
    """Compile every ``(device, config)`` job at once; ``({device: compiled}, {device: error})``."""
    def one(device: str, config: dict):
        try:
            return dispatcher.compile(model, hardware(device), config), None
        except Exception as exc:  # noqa: BLE001 - reported per device
            return None, exc

    ordered = sorted(jobs, key=lambda job: hardware(job[0]).name == "CPU")  # CPU shares our cores
    load_kernels()
    if len(ordered) == 1:
        outcomes = {ordered[0][0]: one(*ordered[0])}
    else:
        with ThreadPoolExecutor(len(ordered), thread_name_prefix="infermux-compile") as pool:
            futures = {device: pool.submit(one, device, config) for device, config in ordered}
        outcomes = {device: f.result() for device, f in futures.items()}
    compiled = {d: m for d, (m, e) in outcomes.items() if e is None}
    errors = {d: e for d, (m, e) in outcomes.items() if e is not None}
    return compiled, errors


def optimal_requests(model: Any) -> int:
    """A device compiled model's OPTIMAL_NUMBER_OF_INFER_REQUESTS (1 if it cannot say)."""
    try:
        return max(1, int(model.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
    except Exception:  # noqa: BLE001
        return 1


def compile_pools(dispatcher: Any, model: Model, devices: list[tuple[str, int | None]],
                  user: Mapping[str, Any], hint: PerformanceMode | None, kind: str) -> list[DevicePool]:
    """Compile on every ``(device, requests)`` in parallel; a pool per device that compiled."""
    jobs = [(device, child_config(dispatcher, device, user, hint)) for device, _ in devices]
    compiled, errors = _compile_all(dispatcher, model, jobs)
    if not compiled:
        raise compile_error(kind, errors)
    for device, error in errors.items():
        log.warning("%s: %s failed to compile and is left out: %s", kind, device, error)
    return [DevicePool(device, compiled[device], requests or optimal_requests(compiled[device]))
            for device, requests in devices if device in compiled]


def child_properties(model: Any) -> dict[str, Any]:
    """A device compiled model's readable properties (for ``DEVICE_PROPERTIES``)."""
    try:
        keys = list(model.get_property("SUPPORTED_PROPERTIES"))
    except Exception:  # noqa: BLE001 - the protocol's minimum
        keys = ["NETWORK_NAME", "OPTIMAL_NUMBER_OF_INFER_REQUESTS", "EXECUTION_DEVICES", "PERFORMANCE_HINT"]
    result = {}
    for key in keys:
        if key == "SUPPORTED_PROPERTIES":
            continue
        try:
            result[key] = model.get_property(key)
        except Exception as exc:  # noqa: BLE001 - listed but not readable: left out
            log.debug("%s is listed but cannot be read: %s", key, exc)
    return result


# -- the compiled model ----------------------------------------------------------------------

_CUMULATIVE_KEYS = ("NETWORK_NAME", "SUPPORTED_PROPERTIES", "EXECUTION_DEVICES", "PERFORMANCE_HINT",
                    "OPTIMAL_NUMBER_OF_INFER_REQUESTS", "MULTI_DEVICE_PRIORITIES", "DEVICE_PROPERTIES",
                    "MODEL_PRIORITY", "LOADED_FROM_CACHE", "PERF_COUNT", "SCHEDULE_POLICY",
                    "ENABLE_RUNTIME_FALLBACK")


class CumulativeCompiledModel:
    """Several device compiled models behind one (MULTI; AUTO under CUMULATIVE_THROUGHPUT)."""

    def __init__(self, kind: str, pools: list[DevicePool], config: Mapping[str, Any], *,
                 hint: PerformanceMode, network_name: str, priorities: str):
        self.device_name = kind
        first = pools[0].model
        self.input_infos, self.output_infos = list(first.input_infos), list(first.output_infos)
        # a stateful model's variables (its requests carry state, pinned to one device each)
        self.variables = dict(getattr(first, "variables", None) or {})
        self._pools = list(pools)
        self._cfg = dict(config)
        self._hint = PerformanceMode(hint)
        self._network_name = network_name
        self._priorities = priorities
        self._scheduler = RequestScheduler(pools, self._cfg["SCHEDULE_POLICY"], name=kind)
        self._threads = WorkerThreads(sum(p.size for p in pools), f"infermux-{kind.lower()}")
        fallback = self._cfg.get("ENABLE_RUNTIME_FALLBACK", True) and not self.variables
        self._on_failure = self._retry_elsewhere if fallback and len(pools) > 1 else None
        weakref.finalize(self, self._threads.shutdown)

    @property
    def pools(self) -> list[DevicePool]:
        """The device pools in priority order (their ``served`` counts show the load spread)."""
        return self._scheduler.pools

    def infer(self, inputs, *, profile: bool = False, state=None):
        """Run on an idle worker slot of some device (waiting for one); see the module docstring."""
        return run_with_fallback(self._scheduler, inputs, profile=profile, state=state,
                                 on_failure=self._on_failure)

    def _retry_elsewhere(self, pool: DevicePool, error: BaseException) -> bool:
        log.warning("%s: an inference failed on %s (%s); running it on another device",
                    self.device_name, pool.name, error)
        return True

    def submit(self, fn):
        """Run an asynchronous request's job on this model's threads (one per worker slot)."""
        return self._threads.submit(fn)

    def initial_state(self, variable_id: str):
        """A variable's initial value (stateful models run on one device)."""
        return self._pools[0].model.initial_state(variable_id)

    def get_property(self, key: str) -> Any:
        """A compiled-model property; OPTIMAL_NUMBER_OF_INFER_REQUESTS is the sum of the pools."""
        key = _key(key)
        pools = self._scheduler.pools
        values = {
            "NETWORK_NAME": self._network_name,
            "EXECUTION_DEVICES": [p.label for p in pools],
            "PERFORMANCE_HINT": self._hint,
            "MULTI_DEVICE_PRIORITIES": self._priorities,
            "MODEL_PRIORITY": self._cfg.get("MODEL_PRIORITY", Priority.MEDIUM),
            "PERF_COUNT": self._cfg.get("PERF_COUNT", False),
            "SCHEDULE_POLICY": self._scheduler.policy,
            "ENABLE_RUNTIME_FALLBACK": self._on_failure is not None,
        }
        if key in values:
            return values[key]
        if key == "SUPPORTED_PROPERTIES":
            return {k: RO for k in _CUMULATIVE_KEYS}
        if key == "OPTIMAL_NUMBER_OF_INFER_REQUESTS":
            return sum(p.size for p in pools)
        if key == "DEVICE_PROPERTIES":
            return {p.name: child_properties(p.model) for p in pools}
        if key == "LOADED_FROM_CACHE":
            return all(_loaded_from_cache(p.model) for p in pools)
        raise PropertyError(f"Unsupported property {key} of a {self.device_name} compiled model. "
                            f"Supported: {', '.join(_CUMULATIVE_KEYS)}.")

    def set_property(self, properties: Mapping[str, Any]) -> None:
        """Compiled MULTI/AUTO models are immutable."""
        raise PropertyError(COMPILED_MODEL_IMMUTABLE)

    def release(self) -> None:
        """Free the devices' executors and buffers (the model stays usable where they allow)."""
        self._threads.shutdown()
        for pool in self._pools:
            pool.model.release()


def _loaded_from_cache(model: Any) -> bool:
    try:
        return bool(model.get_property("LOADED_FROM_CACHE"))
    except Exception:  # noqa: BLE001
        return False


# -- the plugins -----------------------------------------------------------------------------

class VirtualPluginBase:
    """What AUTO and MULTI share: their keys, defaults and the dispatcher they compile through."""

    name = "VIRTUAL"
    virtual = True

    def __init__(self) -> None:
        self._dispatcher: Any = None
        self._specs = property_specs(self.name)
        self._defaults: dict[str, Any] = {}

    def bind(self, dispatcher: Any) -> None:
        """Called once by the dispatcher: children compile through it."""
        self._dispatcher = dispatcher

    def devices(self) -> list[str]:
        """A virtual device lists no devices of its own."""
        return []

    def get_property(self, key: str, device_id: str = "") -> Any:
        """A plugin-level property (``core.get_property("AUTO", ...)``)."""
        key = _key(key)
        if key == "SUPPORTED_PROPERTIES":
            return {k: s.mutability for k, s in self._specs.items()}
        if key == "OPTIMIZATION_CAPABILITIES":
            return self._capabilities()
        spec = self._specs.get(key)
        if spec is None:
            raise PropertyError(f"Cannot get unsupported property {key} of {self.name}. Supported: "
                                f"{', '.join(self._specs)}.")
        return self._defaults.get(key, spec.default)

    def set_property(self, properties: Mapping[str, Any], device_id: str = "") -> None:
        """Defaults for later compiles (known keys validated; others kept for the devices)."""
        _, user = resolve_config(self._specs, properties, kind=self.name)
        self._defaults.update(user)

    def _config(self, config: Mapping[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any]]:
        return resolve_config(self._specs, self._defaults, config, kind=self.name)

    def _capabilities(self) -> list[str]:
        caps: dict[str, None] = {}
        for device in self._dispatcher.available_devices() if self._dispatcher else []:
            try:
                plugin, device_id, _ = self._dispatcher.split(hardware(device))
                caps.update(dict.fromkeys(plugin.get_property("OPTIMIZATION_CAPABILITIES", device_id)))
            except Exception as exc:  # noqa: BLE001 - a device that cannot say adds nothing
                log.debug("%s has no OPTIMIZATION_CAPABILITIES: %s", device, exc)
        caps.pop("EXPORT_IMPORT", None)
        return list(caps)


class MultiPlugin(VirtualPluginBase):
    """``MULTI:<devices>``: every listed device serves requests at once (see the module docstring)."""

    name = "MULTI"

    def _devices(self, device_id: str) -> list[tuple[str, int | None]]:
        if not device_id:
            raise InvalidDeviceStringError(
                "MULTI needs a device list, e.g. MULTI:GPU,CPU (or the MULTI_DEVICE_PRIORITIES "
                "property): KEY_MULTI_DEVICE_PRIORITIES key is not set for MULTI")
        tree = parse_device(f"MULTI:{device_id}")
        devices: dict[str, int | None] = {}
        for item in tree.items:
            name = canonical_name(self._dispatcher, item.device)
            if name in devices:
                log.debug("MULTI: %s is listed twice; using it once", name)
                continue
            devices[name] = item.requests
        return list(devices.items())

    def query_model(self, model: Model, config: Mapping[str, Any] | None = None,
                    device_id: str = "") -> dict[str, str]:
        """The nodes every listed device supports, labelled ``MULTI``."""
        return query_intersection(self._dispatcher, model, [d for d, _ in self._devices(device_id)], "MULTI")

    def compile_model(self, model: Model, config: Mapping[str, Any] | None = None,
                      device_id: str = "") -> CumulativeCompiledModel:
        """Compile on every listed device in parallel; see the module docstring."""
        devices = self._devices(device_id)
        values, user = self._config(config)
        if user.get("PERFORMANCE_HINT") == PerformanceMode.LATENCY:
            log.warning("MULTI supports THROUGHPUT only: the LATENCY hint is replaced by THROUGHPUT "
                        "(set a device's hint in DEVICE_PROPERTIES, or compile on one device, to keep it)")
        if is_stateful(model):
            devices = _stateful_devices(self._dispatcher, model, devices)
        pools = compile_pools(self._dispatcher, model, devices, user, PerformanceMode.THROUGHPUT, "MULTI")
        requests = dict(devices)
        priorities = ",".join(f"{p.name}({requests[p.name]})" if requests[p.name] else p.name for p in pools)
        return CumulativeCompiledModel("MULTI", pools, values, hint=PerformanceMode.THROUGHPUT,
                                       network_name=model.friendly_name, priorities=priorities)


def _stateful_devices(dispatcher: Any, model: Model,
                      devices: list[tuple[str, int | None]]) -> list[tuple[str, int | None]]:
    """MULTI runs a stateful model on every device that can hold its state, and pins each
    request's sequence of inferences to the device that ran its first one (the state never
    moves between devices)."""
    capable = stateful_capable(dispatcher, model, [d for d, _ in devices])
    if not capable:
        raise InfermuxError(f"MULTI: none of {', '.join(d for d, _ in devices)} supports the "
                            f"stateful ops (ReadValue/Assign) of this model")
    if len(capable) < len(devices):
        log.info("MULTI: the model is stateful; it runs on %s, the devices that run its "
                 "ReadValue/Assign ops", ", ".join(capable))
    return [(d, n) for d, n in devices if d in capable]


def _one_stateful_device(dispatcher: Any, model: Model, devices: list[tuple[str, int | None]],
                         kind: str) -> list[tuple[str, int | None]]:
    """The one device that can hold the model's state, or an error saying what to do."""
    capable = stateful_capable(dispatcher, model, [d for d, _ in devices])
    if len(capable) == 1:
        if len(devices) > 1:
            log.info("%s: the model is stateful; only %s runs its ReadValue/Assign ops, so it runs "
                     "there alone", kind, capable[0])
        return [(d, n) for d, n in devices if d == capable[0]]
    if not capable:
        raise InfermuxError(f"{kind}: none of {', '.join(d for d, _ in devices)} supports the "
                            f"stateful ops (ReadValue/Assign) of this model")
    raise InfermuxError(
        f"{kind} cannot spread a stateful model over several devices ({', '.join(capable)} all "
        f"could run it): a request's state lives on one device. List one device, e.g. "
        f"{kind}:{capable[0]}, or compile on it directly"
        + (" (AUTO cumulative model doesn't support stateful model.)" if kind == "AUTO" else ""))
