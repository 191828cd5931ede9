"""HETERO, the virtual device that splits one model over several devices: ``HETERO:GPU,CPU``.

``compile_model(model, "HETERO:GPU,CPU")`` decides a device per node, cuts the model into
sub-models (``infermux.graph.partition``), compiles each on its device through the dispatcher
and returns a compiled model that runs them in order, handing the boundary tensors on.

**Placement** (``HETERO_PARTITION_MODE`` and ``MODEL_DISTRIBUTION_POLICY``):

- manual: if any node has ``rt_info["affinity"]``, every node must, and that is the placement;
- ``greedy`` (the default, OpenVINO's): each device in list order claims the nodes its
  ``query_model`` supports that are still unclaimed, the last device being the fallback; with
  ``MODEL_DISTRIBUTION_POLICY=PIPELINE_PARALLEL`` the split follows device memory instead
  (``DEVICE_TOTAL_MEM_SIZE``; OpenVINO's 1.2x rule: the whole model to the first device holding
  1.2x the weights, else a proportional split in topological order);
- ``balanced`` (beyond OpenVINO): the model is compiled once on each listed device and every
  node timed there (``profile=True``, best of a few runs on synthetic inputs; the inference
  time not seen inside any node is spread evenly over the nodes); then contiguous cuts of the
  topological order are chosen to minimise the slowest stage, and among near-optimal splits the
  bytes crossing between stages.  Device ``k`` of the list runs segment ``k`` (possibly none).

**Requests and the pipeline.**  The worker protocol stays ``submit(fn)`` + ``infer(...)``:

- ``infer(inputs)`` may be called from any thread.  It runs the stages one after the other in
  the calling thread (``child.infer``), each behind that stage's *gate*: at most the stage's
  ``OPTIMAL_NUMBER_OF_INFER_REQUESTS`` inferences are in a stage at once, admitted in arrival
  order.  No thread hand-off per stage, so a lone synchronous call costs what the sub-models
  cost (a hand-off to each stage's executor and back measured +4% on a quiet machine and far
  more on a busy one, where every wake-up waits for a core);
- ``submit(fn)`` runs ``fn`` (an infer request's job, which calls ``infer``) on a small pool of
  *driver* threads.  While request A holds stage 2's gate, request B can hold stage 1's: with
  several requests in flight the stages overlap (pipeline parallelism), and each stage still
  runs no more at once than its device is sized for;
- memory stays bounded: at most ``2 x sum(stage optimal requests)`` inferences are inside the
  pipeline at once (a semaphore at the entrance of ``infer``), so at most that many sets of
  boundary tensors exist; the driver pool's queue holds at most one job per infer request.
  Gates are taken one at a time and released before the next, and a synchronous ``infer`` --
  even from a callback running on a driver thread -- never waits for a driver thread, so
  nothing can deadlock.

``OPTIMAL_NUMBER_OF_INFER_REQUESTS`` is the child's value for one stage and the **sum** over the
stages otherwise (OpenVINO reports the max, which leaves stages of a pipeline idle).

**Properties.**  Compile config: ``MULTI_DEVICE_PRIORITIES``, ``MODEL_DISTRIBUTION_POLICY``
(``PIPELINE_PARALLEL``; ``TENSOR_PARALLEL`` is refused as OpenVINO does),
``HETERO_PARTITION_MODE``, ``DEVICE_PROPERTIES`` (``{device: config}``, the device's base name
or its full string, forwarded as is).  Other top-level keys are forwarded only to children that
list them as writable in ``SUPPORTED_PROPERTIES``; core keys (``CACHE_DIR``, ...) never are
(OpenVINO issue #22338), and unknown keys are silently ignored, as OpenVINO's HETERO does.
Compiled model: ``HETERO_NUMBER_OF_SUBMODELS``, ``EXECUTION_DEVICES``, ``MULTI_DEVICE_PRIORITIES``,
``OPTIMAL_NUMBER_OF_INFER_REQUESTS``, ``NETWORK_NAME``, ``DEVICE_PROPERTIES``,
``MODEL_DISTRIBUTION_POLICY``, ``HETERO_PARTITION_MODE``.

**State.**  A variable's ``ReadValue`` and ``Assign`` (and the nodes between them) are kept in one
partition, and the request's state frame goes only to the stages holding variables.

**Debugging.**  ``INFERMUX_HETERO_DUMP=dir`` writes ``hetero_affinity_<model>.dot`` (nodes coloured
by device) and ``hetero_subgraphs_<model>.dot`` (the partitions and boundary tensors).

>>> core.compile_model(model, "HETERO:GPU,CPU", {"HETERO_PARTITION_MODE": "balanced"})  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from infermux.devices.properties import CORE_KEYS, RO, RW, key_name
from infermux.errors import InvalidDeviceStringError, PropertyError
from infermux.graph.model import Model
from infermux.graph.partition import (
    CONSTANT, MODEL_INPUT, PARTITION_MODES, PartitionPlan, affinity_dot, balanced_affinity,
    greedy_affinity, manual_affinity, memory_affinity, partition, plan_dot)
from infermux.ops.state import StateFrame
from infermux.scheduler.device_string import Hardware, parse_device

__all__ = ["HeteroPlugin", "HeteroCompiledModel", "HeteroSettings", "profile_node_costs", "DUMP_ENV"]

log = logging.getLogger(__name__)

DUMP_ENV = "INFERMUX_HETERO_DUMP"
_OWN_KEYS = ("MULTI_DEVICE_PRIORITIES", "MODEL_DISTRIBUTION_POLICY", "HETERO_PARTITION_MODE",
             "DEVICE_PROPERTIES")
_CORE_KEYS = CORE_KEYS | {"CACHE_PATH", "CACHE_MODE", "CACHE_ENCRYPTION_CALLBACKS"}  # never forwarded
_PLUGIN_KEYS = {"SUPPORTED_PROPERTIES": RO, "FULL_DEVICE_NAME": RO, "OPTIMIZATION_CAPABILITIES": RO,
                "MULTI_DEVICE_PRIORITIES": RW, "MODEL_DISTRIBUTION_POLICY": RW,
                "HETERO_PARTITION_MODE": RW, "DEVICE_PROPERTIES": RW}
_COMPILED_KEYS = ("SUPPORTED_PROPERTIES", "NETWORK_NAME", "OPTIMAL_NUMBER_OF_INFER_REQUESTS",
                  "EXECUTION_DEVICES", "HETERO_NUMBER_OF_SUBMODELS", "DEVICE_PROPERTIES",
                  "MULTI_DEVICE_PRIORITIES", "MODEL_DISTRIBUTION_POLICY", "HETERO_PARTITION_MODE")
_PROFILE_RUNS = 3


def _policy(value: Any) -> frozenset[str]:
    """``MODEL_DISTRIBUTION_POLICY`` as a set of names; only PIPELINE_PARALLEL is accepted."""
    items = value if isinstance(value, (set, frozenset, list, tuple)) else [value]
    names = set()
    for item in items:
        name = str(getattr(item, "name", None) or getattr(item, "value", item)).split(".")[-1]
        if name in ("", "None"):
            continue
        if name == "TENSOR_PARALLEL":
            raise PropertyError("HETERO plugin only support {ov::hint::ModelDistributionPolicy::"
                                "PIPELINE_PARALLEL}: TENSOR_PARALLEL is not available, use PIPELINE_PARALLEL")
        if name != "PIPELINE_PARALLEL":
            raise PropertyError(f"Wrong value {item} for property key MODEL_DISTRIBUTION_POLICY. "
                                f"Expected PIPELINE_PARALLEL (or an empty set)")
        names.add(name)
    return frozenset(names)


def _mode(value: Any) -> str:
    mode = str(getattr(value, "value", value)).lower()
    if mode not in PARTITION_MODES:
        raise PropertyError(f"Wrong value {value} for property key HETERO_PARTITION_MODE. "
                            f"Expected one of: {', '.join(PARTITION_MODES)}")
    return mode


def _device_properties(value: Any) -> dict[str, dict[str, Any]]:
    if not value:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(v, Mapping) for v in value.values()):
        raise PropertyError("DEVICE_PROPERTIES must map device names to configs, e.g. "
                            "{'CPU': {'PERFORMANCE_HINT': 'LATENCY'}}")
    return {str(d): {key_name(k): v for k, v in cfg.items()} for d, cfg in value.items()}


@dataclasses.dataclass(frozen=True)
class HeteroSettings:
    """One compile's settings, parsed once."""

    devices: tuple[str, ...]
    pipeline_parallel: bool
    mode: str
    device_properties: Mapping[str, Mapping[str, Any]]
    forwarded: Mapping[str, Any]
    num_requests: int

    @property
    def priorities(self) -> str:
        """The device list as ``MULTI_DEVICE_PRIORITIES`` spells it."""
        return ",".join(self.devices)


class HeteroPlugin:
    """The ``HETERO`` virtual plugin (see the module docstring)."""

    name = "HETERO"
    virtual = True

    def __init__(self) -> None:
        self._dispatcher: Any = None
        self._defaults: dict[str, Any] = {}

    def bind(self, dispatcher: Any) -> None:
        """Called once by the dispatcher: children compile and query through it."""
        self._dispatcher = dispatcher

    def devices(self) -> list[str]:
        """A virtual device is never enumerated."""
        return []

    # -- properties -----------------------------------------------------------------------------
    def get_property(self, key: str, device_id: str = "") -> Any:
        """HETERO's own keys (defaults for later compiles)."""
        key = key_name(key)
        values = {"SUPPORTED_PROPERTIES": dict(_PLUGIN_KEYS), "FULL_DEVICE_NAME": "HETERO",
                  "OPTIMIZATION_CAPABILITIES": [], "MULTI_DEVICE_PRIORITIES": "",
                  "MODEL_DISTRIBUTION_POLICY": set(), "HETERO_PARTITION_MODE": "greedy",
                  "DEVICE_PROPERTIES": {}}
        values.update(self._defaults)
        if key not in values:
            raise PropertyError(f"Unsupported property {key} by HETERO plugin. Supported: "
                                f"{', '.join(_PLUGIN_KEYS)}")
        value = values[key]
        return set(value) if isinstance(value, frozenset) else value

    def set_property(self, properties: Mapping[str, Any], device_id: str = "") -> None:
        """Defaults for later compiles; unknown keys are ignored (as OpenVINO's HETERO)."""
        for key, value in (properties or {}).items():
            key = key_name(key)
            if key == "MULTI_DEVICE_PRIORITIES":
                parse_device(f"HETERO:{value}")
                self._defaults[key] = str(value)
            elif key == "MODEL_DISTRIBUTION_POLICY":
                self._defaults[key] = _policy(value)
            elif key == "HETERO_PARTITION_MODE":
                self._defaults[key] = _mode(value)
            elif key == "DEVICE_PROPERTIES":
                self._defaults[key] = _device_properties(value)

    # -- query and compile ----------------------------------------------------------------------
    def query_model(self, model: Model, config: Mapping[str, Any] | None = None,
                    device_id: str = "") -> dict[str, str]:
        """The merged affinity map ``{node: device}``, decided as ``compile_model`` would."""
        return self._affinity(model, self._settings(config, device_id))

    def compile_model(self, model: Model, config: Mapping[str, Any] | None = None,
                      device_id: str = "") -> HeteroCompiledModel:
        """Partition ``model`` and compile each sub-model on its device."""
        settings = self._settings(config, device_id)
        affinity = self._affinity(model, settings)
        plan = partition(model, affinity)
        _dump(model, affinity, plan)
        children: list[Any] = []
        try:
            for stage in plan.stages:
                children.append(self._dispatcher.compile(stage.model, stage.device,
                                                         self._child_config(stage.device, settings)))
        except BaseException:
            for child in children:
                child.release()
            raise
        log.info("HETERO %s: %d sub-model(s) on %s", model.friendly_name, len(plan.stages),
                 ", ".join(plan.devices) or "-")
        return HeteroCompiledModel(model, plan, children, settings)

    def _settings(self, config: Mapping[str, Any] | None, device_id: str) -> HeteroSettings:
        cfg = dict(self._defaults)
        cfg.update({key_name(k): v for k, v in (config or {}).items()})
        priorities = device_id or cfg.get("MULTI_DEVICE_PRIORITIES") or ""
        if not priorities:
            raise InvalidDeviceStringError(
                "HETERO needs a device list: compile on 'HETERO:GPU,CPU', or set "
                "MULTI_DEVICE_PRIORITIES (e.g. core.set_property('HETERO', "
                "{'MULTI_DEVICE_PRIORITIES': 'GPU,CPU'}))")
        tree = parse_device(f"HETERO:{priorities}")
        devices = tuple(dict.fromkeys(str(item.device) for item in tree.items))
        forwarded = {k: v for k, v in cfg.items() if k not in _OWN_KEYS and k not in _CORE_KEYS}
        return HeteroSettings(
            devices=devices,
            pipeline_parallel="PIPELINE_PARALLEL" in _policy(cfg.get("MODEL_DISTRIBUTION_POLICY", ())),
            mode=_mode(cfg.get("HETERO_PARTITION_MODE", "greedy")),
            device_properties=_device_properties(cfg.get("DEVICE_PROPERTIES")),
            forwarded=forwarded, num_requests=int(cfg.get("PERFORMANCE_HINT_NUM_REQUESTS") or 0))

    def _child_config(self, device: str, settings: HeteroSettings) -> dict[str, Any]:
        """Top-level keys the child accepts, then its DEVICE_PROPERTIES entries: the base name
        (``GPU``, ``AUTO``, ``BATCH``), then the full string (``GPU.1``, ``BATCH:GPU(8)``)."""
        writable = self._writable_keys(device) if settings.forwarded else set()
        cfg = {k: v for k, v in settings.forwarded.items() if k in writable}
        tree = parse_device(device)
        base = tree.name if isinstance(tree, Hardware) else getattr(tree, "kind", "BATCH")
        cfg.update(settings.device_properties.get(base, {}))
        cfg.update(settings.device_properties.get(device, {}))
        return cfg

    def _writable_keys(self, device: str) -> set[str]:
        try:
            plugin, device_id, _ = self._dispatcher.split(device)
            table = plugin.get_property("SUPPORTED_PROPERTIES",
                                        "" if getattr(plugin, "virtual", False) else device_id)
        except Exception as exc:  # noqa: BLE001 - a child without the table gets no top-level keys
            log.debug("HETERO: no SUPPORTED_PROPERTIES from %s (%s)", device, exc)
            return set()
        return {key_name(k) for k, mode in dict(table).items() if str(mode) in (RW, "WO")}

    def _memory(self, device: str) -> int | None:
        try:
            value = self._dispatcher.get_property(device, "DEVICE_TOTAL_MEM_SIZE")
        except Exception:  # noqa: BLE001 - no memory information: unlimited
            return None
        return int(value) if value is not None else None

    def _affinity(self, model: Model, settings: HeteroSettings) -> dict[str, str]:
        manual = manual_affinity(model)
        if manual is not None:
            return manual
        configs = {d: self._child_config(d, settings) for d in settings.devices}
        supported = [(d, self._dispatcher.query(model, d, configs[d])) for d in settings.devices]
        if settings.mode == "balanced":
            costs = profile_node_costs(self._dispatcher, model, settings.devices, configs)
            memory = [self._memory(d) for d in settings.devices]
            return balanced_affinity(model, settings.devices, costs, supported=supported, memory=memory)
        if settings.pipeline_parallel:
            return memory_affinity(model, [(d, self._memory(d)) for d in settings.devices], supported)
        return greedy_affinity(model, supported)


class HeteroCompiledModel:
    """Sub-models compiled on their devices, run as a pipeline (see the module docstring)."""

    def __init__(self, model: Model, plan: PartitionPlan, children: Sequence[Any], settings: HeteroSettings):
        self.device_name = "HETERO"
        self.model_name = model.friendly_name
        self.input_infos = list(model.graph.inputs)
        self.output_infos = list(model.graph.outputs)
        self.plan = plan
        self._children = list(children)
        self._settings = settings
        self.variables = {v: node for c in self._children for v, node in (c.variables or {}).items()}
        self._holder = {v: c for c in self._children for v in (c.variables or {})}
        self._stateful = [bool(c.variables) for c in self._children]
        self._optimal = self._optimal_requests()
        self._in_flight = 2 * max(1, sum(self._child_optimal(c) for c in self._children))
        self._admission = threading.BoundedSemaphore(self._in_flight)
        self._gates = [_Gate(self._child_optimal(c)) for c in self._children]
        self._drivers: ThreadPoolExecutor | None = None
        self._drivers_lock = threading.Lock()
        self._free_after = _last_uses(plan)

    # -- running ----------------------------------------------------------------------------------
    def infer(self, inputs: Sequence[Any], *, profile: bool = False, state: Any = None):
        """Run every stage in order behind its gate; ``(outputs, timings or None)``."""
        with self._admission:
            values: dict[tuple[int, int], Any] = {}
            timings: list | None = None
            for s, (stage, child) in enumerate(zip(self.plan.stages, self._children)):
                feeds = [inputs[f.index] if f.stage == MODEL_INPUT else values[(f.stage, f.index)]
                         for f in stage.feeds]
                with self._gates[s]:
                    outputs, stage_timings = child.infer(feeds, profile=profile,
                                                         state=state if self._stateful[s] else None)
                values.update(((s, i), v) for i, v in enumerate(outputs))
                if stage_timings is not None:
                    timings = (timings or []) + list(stage_timings)
                for key in self._free_after[s]:
                    values.pop(key, None)
            result = [inputs[o.index] if o.stage == MODEL_INPUT else
                      self.plan.constants[o.index] if o.stage == CONSTANT else values[(o.stage, o.index)]
                      for o in self.plan.outputs]
        return result, timings

    def submit(self, fn: Callable[[], Any]) -> Future:
        """Run ``fn`` (a request's job) on a driver thread; its ``infer`` pipelines across stages."""
        if self._drivers is None:
            with self._drivers_lock:
                if self._drivers is None:
                    self._drivers = ThreadPoolExecutor(self._in_flight, thread_name_prefix="infermux-hetero")
        return self._drivers.submit(fn)

    def initial_state(self, variable_id: str):
        """The variable's initial value, from the stage that holds it."""
        holder = self._holder.get(variable_id)
        return holder.initial_state(variable_id) if holder is not None else None

    # -- properties -------------------------------------------------------------------------------
    @staticmethod
    def _child_optimal(child: Any) -> int:
        try:
            return max(1, int(child.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
        except Exception:  # noqa: BLE001
            return 1

    def _optimal_requests(self) -> int:
        counts = [self._child_optimal(c) for c in self._children] or [1]
        optimal = counts[0] if len(counts) == 1 else sum(counts)
        cap = self._settings.num_requests
        return min(optimal, cap) if cap else optimal

    def _execution_devices(self) -> list[str]:
        devices: list[str] = []
        for stage, child in zip(self.plan.stages, self._children):
            try:
                found = list(child.get_property("EXECUTION_DEVICES"))
            except Exception:  # noqa: BLE001
                found = [stage.device]
            devices += [d for d in found if d not in devices]
        return devices

    def _device_properties(self) -> dict[str, dict[str, Any]]:
        result: dict[str, dict[str, Any]] = {}
        for stage, child in zip(self.plan.stages, self._children):
            if stage.device in result:
                continue
            props = {}
            for key in ("NETWORK_NAME", "OPTIMAL_NUMBER_OF_INFER_REQUESTS", "EXECUTION_DEVICES",
                        "PERFORMANCE_HINT"):
                try:
                    props[key] = child.get_property(key)
                except Exception:  # noqa: BLE001 - a child need not have every key
                    pass
            result[stage.device] = props
        return result

    def get_property(self, key: str) -> Any:
        """A compiled-model property (see the module docstring)."""
        key = key_name(key)
        getters = {
            "SUPPORTED_PROPERTIES": lambda: {k: RO for k in _COMPILED_KEYS},
            "NETWORK_NAME": lambda: self.model_name,
            "OPTIMAL_NUMBER_OF_INFER_REQUESTS": lambda: self._optimal,
            "EXECUTION_DEVICES": self._execution_devices,
            "HETERO_NUMBER_OF_SUBMODELS": lambda: len(self.plan.stages),
            "DEVICE_PROPERTIES": self._device_properties,
            "MULTI_DEVICE_PRIORITIES": lambda: self._settings.priorities,
            "MODEL_DISTRIBUTION_POLICY": lambda: {"PIPELINE_PARALLEL"} if self._settings.pipeline_parallel else set(),
            "HETERO_PARTITION_MODE": lambda: self._settings.mode,
        }
        if key not in getters:
            raise PropertyError(f"Unsupported property {key} of a HETERO compiled model. Supported: "
                                f"{', '.join(_COMPILED_KEYS)}.")
        return getters[key]()

    def set_property(self, properties: Mapping[str, Any]) -> None:
        """Compiled HETERO models are immutable."""
        raise PropertyError("It's not possible to set property of an already compiled model. "
                            "Set property to Core::compile_model during compilation")

    def release(self) -> None:
        """Stop the driver threads and release every stage."""
        if self._drivers is not None:
            self._drivers.shutdown(wait=False)
            self._drivers = None
        for child in self._children:
            child.release()

    def __repr__(self) -> str:
        return f"<HeteroCompiledModel '{self.model_name}' stages={list(self.plan.devices)}>"


class _Gate:
    """At most ``limit`` holders at once, admitted in arrival order (a FIFO semaphore)."""

    def __init__(self, limit: int):
        self._free = limit
        self._queue: deque[object] = deque()
        self._changed = threading.Condition()

    def __enter__(self) -> None:
        ticket = object()
        with self._changed:
            self._queue.append(ticket)
            self._changed.wait_for(lambda: self._free > 0 and self._queue[0] is ticket)
            self._queue.popleft()
            self._free -= 1
            self._changed.notify_all()  # the next in line may fit too

    def __exit__(self, *exc) -> None:
        with self._changed:
            self._free += 1
            self._changed.notify_all()


def _last_uses(plan: PartitionPlan) -> list[list[tuple[int, int]]]:
    """Per stage, the stage outputs no later stage (and no model output) reads."""
    last: dict[tuple[int, int], int] = {}
    for s, stage in enumerate(plan.stages):
        for f in stage.feeds:
            if f.stage >= 0:
                last[(f.stage, f.index)] = s
    keep = {(o.stage, o.index) for o in plan.outputs}
    free: list[list[tuple[int, int]]] = [[] for _ in plan.stages]
    for key, s in last.items():
        if key not in keep:
            free[s].append(key)
    return free


# -- balanced mode: measured node costs --------------------------------------------------------------

def profile_node_costs(dispatcher: Any, model: Model, devices: Sequence[str],
                       configs: Mapping[str, Mapping[str, Any]], *, runs: int = _PROFILE_RUNS
                       ) -> dict[str, dict[str, float]]:
    """``{device: {node: seconds}}``: the whole model compiled and timed on each device.

    A device that cannot compile the whole model borrows the first measured device's costs (the
    partitioner still keeps unsupported nodes off it).  Without static input shapes, or when no
    device compiles the model, every node costs the same (1 ms).
    """
    feeds = _synthetic_inputs(model)
    measured: dict[str, dict[str, float]] = {}
    for device in devices if feeds is not None else ():
        try:
            compiled = dispatcher.compile(model, device, dict(configs.get(device, {})))
        except Exception as exc:  # noqa: BLE001 - e.g. the device lacks some op
            log.info("HETERO balanced: cannot time the model on %s (%s)", device, exc)
            continue
        try:
            measured[device] = _time_nodes(compiled, feeds, runs, [n.name for n in model.graph.nodes])
        finally:
            compiled.release()
    if not measured:
        log.info("HETERO balanced: no measured costs for %s; every node counts the same", model.friendly_name)
        uniform = {n.name: 1e-3 for n in model.graph.nodes}
        return {d: uniform for d in devices}
    reference = next(iter(measured.values()))
    return {d: measured.get(d, reference) for d in devices}


def _synthetic_inputs(model: Model) -> list[np.ndarray] | None:
    rng = np.random.default_rng(0)
    feeds = []
    for info in model.graph.inputs:
        if info.kind != "tensor" or info.shape is None or info.shape.is_dynamic or info.element_type.is_dynamic():
            return None
        shape = tuple(int(d.get_length()) for d in info.shape)
        dtype = info.element_type.to_dtype()
        if dtype.kind == "f":
            feeds.append(rng.standard_normal(shape).astype(dtype))
        else:
            feeds.append(np.zeros(shape, dtype=dtype))
    return feeds


def _time_nodes(compiled: Any, feeds: list[np.ndarray], runs: int, names: list[str]) -> dict[str, float]:
    state = StateFrame() if compiled.variables else None
    compiled.infer(feeds, state=state)  # warm-up
    per_node: dict[str, list[float]] = {}
    totals = []
    for _ in range(runs):
        t0 = time.perf_counter()
        _, timings = compiled.infer(feeds, profile=True, state=state)
        totals.append(time.perf_counter() - t0)
        for node, _op, seconds in timings or ():
            per_node.setdefault(node, []).append(seconds)
    wall = min(totals)  # the machine's other work only ever adds time: the minimum is the estimate
    costs = {n: min(v) for n, v in per_node.items()}
    if not costs:
        return {n: wall / max(1, len(names)) for n in names}
    # time spent outside the nodes (launches, syncs, a device's own latency) is spread evenly
    overhead = max(0.0, wall - sum(costs.values())) / len(costs)
    return {n: c + overhead for n, c in costs.items()}


def _dump(model: Model, affinity: Mapping[str, str], plan: PartitionPlan) -> None:
    folder = os.environ.get(DUMP_ENV)
    if not folder:
        return
    os.makedirs(folder, exist_ok=True)
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", model.friendly_name) or "model"
    for kind, text in (("affinity", affinity_dot(model, affinity)),
                       ("subgraphs", plan_dot(plan, model.friendly_name))):
        path = os.path.join(folder, f"hetero_{kind}_{stem}.dot")
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        log.info("HETERO: wrote %s", path)
