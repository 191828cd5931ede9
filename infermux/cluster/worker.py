"""Cluster devices behind the scheduler's two protocols: ``Plugin`` and ``DeviceCompiledModel``.

The Core of a cluster (``Core(cluster=...)``) gives its dispatcher a :class:`ClusterResolver`;
the dispatcher hands it every ``KIND[.ID]@node`` device string and gets back a
:class:`RemoteDevicePlugin`, whose ``compile_model`` returns a :class:`RemoteCompiledModel`: a
worker in DESIGN.md's sense.  MULTI, AUTO, HETERO and BATCH use these exactly as they use local
devices, with no cluster code of their own.

A remote compiled model keeps the model's ONNX bytes and its compile config, so it can be
compiled again when its device comes back or moves:

* **Ray restarted the actor** (it crashed or was killed; ``max_restarts``): the requests that
  were running there run again on the new incarnation, after the model is compiled there again;
  nobody sees an error.
* **The device is gone** (its node left, or the restarts are used up): the requests that were
  running there fail at once with :class:`~infermux.cluster.actors.DeviceLostError`, so MULTI and
  AUTO re-run them on their other devices (runtime fallback).  Later requests *relocate* the
  model: it is compiled on another alive device of the same kind (``CPU@b`` for a lost ``CPU@c``)
  and served there -- how a HETERO stage survives its node (``relocate=False`` turns this off);
  when no such device exists every request fails with an error naming the device and the reason.

Stateful models (ReadValue/Assign) stay on local devices: ``query_model`` leaves their state
nodes out (HETERO keeps them local) and ``compile_model`` refuses them with a message saying so.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import ray

from infermux.cluster.actors import (
    DeviceHandle,
    DeviceLostError,
    PluginSpec,
    device_handle,
    plain,
    rebuild_error,
)
from infermux.cluster.channel import ChannelLost
from infermux.cluster.discovery import DEFAULT_KINDS, ClusterDevice, discover
from infermux.devices.properties import RO, key_name
from infermux.errors import DeviceNotFoundError, InfermuxError, PropertyError
from infermux.graph.model import Model
from infermux.scheduler.device_string import Hardware

__all__ = ["ClusterResolver", "RemoteCompiledModel", "RemoteDevicePlugin", "model_payload"]

log = logging.getLogger(__name__)

_STATEFUL_OPS = ("ReadValue", "Assign")
_PUT_MIN_BYTES = 1 << 20  # models this big go to the object store once, not with every call
_RELOCATION_RETRY_S = 1.0


# -- models as ONNX bytes --------------------------------------------------------------------

_payloads: dict[int, tuple[tuple, Any]] = {}
_payloads_lock = threading.Lock()


def _signature(model: Model) -> tuple:
    """What a compile depends on, cheaply: ports, nodes and weight arrays (by identity), so a
    model changed after a compile (reshaped, re-annotated) is serialised again."""
    graph = model.graph
    ports = tuple((v.name, str(v.shape), str(v.element_type)) for v in (*graph.inputs, *graph.outputs))
    nodes = tuple((n.name, n.op_type, tuple(n.inputs), tuple(n.outputs), len(n.attrs)) for n in graph.nodes)
    return ports, nodes, tuple((k, id(v)) for k, v in graph.initializers.items())


def model_payload(model: Model) -> Any:
    """``model`` as ONNX bytes (an object-store ref when large), made once per model version."""
    key, signature = id(model), _signature(model)
    with _payloads_lock:
        cached = _payloads.get(key)
    if cached is not None and cached[0] == signature:
        return cached[1]
    from infermux.graph.onnx_writer import to_onnx

    data = to_onnx(model).SerializeToString()
    payload = ray.put(data) if len(data) >= _PUT_MIN_BYTES else data
    with _payloads_lock:
        if key not in _payloads:
            weakref.finalize(model, _forget_payload, key)
        _payloads[key] = (signature, payload)
    return payload


def _forget_payload(key: int) -> None:
    with _payloads_lock:
        _payloads.pop(key, None)


def _spec(value: Any) -> PluginSpec:
    """A plugin given to ``connect(plugins=...)``: ``"module:attr"`` or ``("module:attr", kwargs)``."""
    if isinstance(value, str):
        return (value, {})
    if isinstance(value, (tuple, list)) and len(value) == 2 and isinstance(value[0], str):
        return (value[0], dict(plain(value[1])))
    raise TypeError(f"a cluster plugin is 'module:attr' or ('module:attr', {{kwargs}}), got {value!r}: "
                    f"plugin objects cannot be sent to other nodes")


# -- the resolver ----------------------------------------------------------------------------

class ClusterResolver:
    """What a Core's dispatcher asks about ``@node`` devices (see :func:`infermux.cluster.connect`).

    ``plugins`` maps a device kind (a node resource of that name) to the plugin the device actors
    host, as ``"module:attr"`` or ``("module:attr", {kwargs})``; kinds not named use the built-in
    plugins (CPU, GPU, VPU).  ``resource_share`` is the part of one resource unit each device
    actor holds; ``relocate`` lets a model whose device is gone move to another device of the
    same kind; ``transport`` is ``"auto"`` (ipc + shared memory on one host, tcp across hosts),
    ``"tcp"`` or ``"ray"`` (tensors as Ray actor-call arguments).
    """

    def __init__(self, *, plugins: Mapping[str, Any] | None = None, relocate: bool = True,
                 resource_share: float = 1.0, transport: str = "auto",
                 placement_timeout_s: float = 60.0, restart_timeout_s: float = 30.0):
        if transport not in ("auto", "tcp", "ray"):
            raise ValueError(f"transport must be 'auto', 'tcp' or 'ray', got {transport!r}")
        if not 0 < resource_share <= 1:
            raise ValueError(f"resource_share must be in (0, 1], got {resource_share}")
        self.specs: dict[str, PluginSpec] = {k: _spec(v) for k, v in (plugins or {}).items()}
        self.kinds = tuple(dict.fromkeys([*DEFAULT_KINDS, *self.specs]))
        self.relocate = relocate
        self.transport = transport
        self._handle_options = {"share": resource_share, "placement_timeout_s": placement_timeout_s,
                                "restart_timeout_s": restart_timeout_s}
        self._plugins: dict[tuple[str, str], RemoteDevicePlugin] = {}
        self._lock = threading.Lock()

    # -- devices ----------------------------------------------------------------------------
    def devices(self) -> list[ClusterDevice]:
        """Every device of every alive node, now."""
        return discover(self.kinds)

    def available_devices(self) -> list[str]:
        """Their names: ``['CPU@head', 'CPU@node-b', 'VPU@node-b', ...]``."""
        return [d.name for d in self.devices()]

    def find(self, hw: Hardware, devices: Sequence[ClusterDevice] | None = None) -> ClusterDevice:
        """The cluster device ``hw`` names (``KIND.0@n`` also names a node's only ``KIND@n``)."""
        devices = self.devices() if devices is None else devices
        same = [d for d in devices if d.kind == hw.name and d.node == hw.node]
        for device in same:
            if device.id == hw.id or (not hw.id and same[0] is device) or (hw.id == "0" and device.id == ""):
                return device
        known = ", ".join(d.name for d in devices) or "none (no node is alive?)"
        raise DeviceNotFoundError(f"the cluster has no device {hw}: its devices are {known}")

    def plugin(self, hw: Hardware) -> RemoteDevicePlugin:
        """The plugin standing for ``hw.name`` devices of node ``hw.node``."""
        key = (hw.name, hw.node)
        with self._lock:
            plugin = self._plugins.get(key)
            if plugin is None:
                self.find(hw)  # a device that does not exist fails here, with the list
                plugin = self._plugins[key] = RemoteDevicePlugin(self, hw.name, hw.node)
            return plugin

    def for_core(self) -> ClusterResolver:
        """A resolver for one more Core: the same cluster and device actors, its own device
        properties (``core.set_property("CPU@b", ...)`` changes only that Core's compiles)."""
        twin = copy.copy(self)
        twin._plugins, twin._lock = {}, threading.Lock()
        return twin

    def handle(self, device: ClusterDevice) -> DeviceHandle:
        """The process-wide handle of ``device``'s actor."""
        return device_handle(device, self.specs.get(device.kind), **self._handle_options)

    def replacements(self, lost: ClusterDevice) -> list[ClusterDevice]:
        """Alive devices of ``lost``'s kind on other nodes, for a model that must move."""
        return [d for d in self.devices() if d.kind == lost.kind and d.node_id != lost.node_id]


# -- the plugin ------------------------------------------------------------------------------

class RemoteDevicePlugin:
    """The ``Plugin`` protocol for the ``kind`` devices of one node, answered by their actors.

    Properties set here (``core.set_property("CPU@b", {...})``) stay on this side and go with
    each compile, so Cores sharing a device actor do not change each other's defaults."""

    virtual = False

    def __init__(self, resolver: ClusterResolver, kind: str, node: str):
        self.name = kind
        self.node = node
        self._resolver = resolver
        self._defaults: dict[str, Any] = {}
        self._cache: dict[tuple[str, str], Any] = {}

    def _device(self, device_id: str = "") -> ClusterDevice:
        return self._resolver.find(Hardware(self.name, device_id or "", self.node))

    def _handle(self, device_id: str = "") -> DeviceHandle:
        return self._resolver.handle(self._device(device_id))

    def devices(self) -> list[str]:
        """The ids of this kind on the node (``['']`` for one device)."""
        return [d.id for d in self._resolver.devices() if d.kind == self.name and d.node == self.node]

    def get_property(self, key: str, device_id: str = "") -> Any:
        """A device property, asked of the device's actor (read-only ones are cached)."""
        key = key_name(key)
        if key in self._defaults:
            return self._defaults[key]
        cached = self._cache.get((device_id, key))
        if cached is not None:
            return cached
        value = self._handle(device_id).call("get_property", key)
        if key in ("SUPPORTED_PROPERTIES", "FULL_DEVICE_NAME", "DEVICE_TYPE", "OPTIMIZATION_CAPABILITIES",
                   "DEVICE_ARCHITECTURE", "RANGE_FOR_STREAMS", "RANGE_FOR_ASYNC_INFER_REQUESTS",
                   "DEVICE_TOTAL_MEM_SIZE", "CACHING_PROPERTIES"):
            self._cache[(device_id, key)] = value
        return value

    def set_property(self, properties: Mapping[str, Any], device_id: str = "") -> None:
        """Defaults for later compiles on this node's devices; keys the device cannot write fail."""
        supported = self.get_property("SUPPORTED_PROPERTIES", device_id)
        writable = {key_name(k) for k, mode in dict(supported).items() if str(mode) != RO} \
            if isinstance(supported, Mapping) else {key_name(k) for k in supported}
        for key, value in properties.items():
            key = key_name(key)
            if key not in writable:
                raise PropertyError(f"{self.name}@{self.node} does not support setting {key}: its "
                                    f"writable keys are {', '.join(sorted(writable))}")
            self._defaults[key] = plain(value)

    def _config(self, config: Mapping[str, Any] | None) -> dict[str, Any]:
        merged = dict(self._defaults)
        merged.update({key_name(k): v for k, v in (config or {}).items()})
        return plain(merged)

    def query_model(self, model: Model, config: Mapping[str, Any] | None = None,
                    device_id: str = "") -> dict[str, str]:
        """``{node: 'KIND@node'}`` for the nodes the device supports (state nodes stay local)."""
        device = self._device(device_id)
        answer = self._resolver.handle(device).call("query_model", model_payload(model), self._config(config))
        stateful = {n.name for n in model.graph.nodes if n.op_type in _STATEFUL_OPS}
        return {node: device.name for node in answer if node not in stateful}

    def compile_model(self, model: Model, config: Mapping[str, Any] | None = None,
                      device_id: str = "") -> RemoteCompiledModel:
        """Compile on the device's actor (see :class:`RemoteCompiledModel`)."""
        if any(n.op_type in _STATEFUL_OPS for n in model.graph.nodes):
            raise InfermuxError(
                f"{self.name}@{self.node}: stateful models (ReadValue/Assign) run on local devices "
                f"only -- a request's state would have to cross the network with every inference. "
                f"Compile it on a local device, or HETERO with a local device for the state nodes")
        return RemoteCompiledModel(self._resolver, self._device(device_id), model, self._config(config))


# -- the worker ------------------------------------------------------------------------------

class RemoteCompiledModel:
    """A model compiled on a cluster device: the ``DeviceCompiledModel`` protocol over its actor.

    ``infer`` runs in the calling thread: it sends the inputs over the data plane and waits for
    the outputs (no thread hand-off); see the module docstring for what happens when the device
    restarts or goes away."""

    def __init__(self, resolver: ClusterResolver, device: ClusterDevice, model: Model,
                 config: dict[str, Any]):
        from infermux.scheduler.pools import WorkerThreads

        self.device_name = device.name
        self.model_name = model.friendly_name
        # copies: the model may be reshaped later, this compiled model keeps its shapes
        self.input_infos = copy.deepcopy(list(model.graph.inputs))
        self.output_infos = copy.deepcopy(list(model.graph.outputs))
        self.variables: dict[str, Any] = {}
        self._resolver = resolver
        self._device = device
        self._payload = model_payload(model)
        self._config = config
        self._lock = threading.RLock()
        self._handle: DeviceHandle = resolver.handle(device)
        self._model_id = 0
        self._generation = 0
        self._properties: dict[str, Any] = {}
        self._relocation_failed: tuple[float, str] | None = None
        self._released = False
        self._compile_on(self._handle)
        self._threads = WorkerThreads(self._optimal(), f"infermux-{device.kind.lower()}@{device.node}")
        self._finalizer = weakref.finalize(self, _release_remote, self._handle, self._model_id,
                                           self._threads)

    # -- compiling and moving ---------------------------------------------------------------
    def _compile_on(self, handle: DeviceHandle) -> None:
        """Compile (again) on ``handle``'s current incarnation."""
        generation = handle.ensure()
        info = handle.call("compile", self._payload, self._config)
        self._handle, self._model_id, self._generation = handle, int(info["handle"]), generation
        self._properties = dict(info.get("properties") or {})
        if hasattr(self, "_finalizer"):
            self._finalizer.detach()
            self._finalizer = weakref.finalize(self, _release_remote, handle, self._model_id, self._threads)

    def _target(self) -> tuple[DeviceHandle, int, int]:
        """``(handle, model id, generation)`` to send a request to: waits through a restart and
        compiles again after one; moves the model when its device is gone."""
        with self._lock:
            if self._released:
                raise InfermuxError(f"the model compiled on {self.device_name} was released")
            handle = self._handle
            try:
                generation = handle.ensure()
            except DeviceLostError:
                self._relocate(handle)
                return self._handle, self._model_id, self._generation
            if generation != self._generation:
                log.info("%s: compiling %s again on the restarted actor", self.device_name, self.model_name)
                self._compile_on(handle)
            return handle, self._model_id, self._generation

    def _relocate(self, lost: DeviceHandle) -> None:
        """Under the lock: compile on another device of the same kind, or raise saying why not."""
        reason = lost.lost_message()
        if not self._resolver.relocate:
            raise DeviceLostError(reason)
        if self._relocation_failed and time.monotonic() - self._relocation_failed[0] < _RELOCATION_RETRY_S:
            raise DeviceLostError(self._relocation_failed[1])
        tried = []
        for device in self._resolver.replacements(self._device):
            try:
                self._compile_on(self._resolver.handle(device))
            except Exception as exc:  # noqa: BLE001 - try the next one
                tried.append(f"{device.name}: {exc}")
                continue
            log.warning("%s: %s; %s now runs on %s", self.device_name, lost.dead_reason or "lost",
                        self.model_name, device.name)
            self._device = device
            self._relocation_failed = None
            return
        message = (f"{reason}; no other {self._device.kind} device in the cluster could take "
                   f"{self.model_name}" + (f" ({'; '.join(tried)})" if tried else " (there is none)"))
        self._relocation_failed = (time.monotonic(), message)
        raise DeviceLostError(message)

    # -- running ----------------------------------------------------------------------------
    def infer(self, inputs: Sequence[Any], *, profile: bool = False, state: Any = None):
        """Run once on the device; ``(outputs, timings or None)`` (see the class docstring)."""
        for _ in range(4):
            handle, model_id, generation = self._target()
            try:
                if self._resolver.transport == "ray":
                    header, outputs = self._infer_by_ray(handle, model_id, inputs, profile)
                else:
                    header, outputs = handle.channel(self._resolver.transport).request(
                        {"op": "infer", "model": model_id, "profile": bool(profile)}, inputs)
            except (ChannelLost, ray.exceptions.RayActorError, ray.exceptions.ActorUnschedulableError):
                if handle.state == "restarting" or (handle.state == "alive" and handle.generation != generation):
                    continue  # the same device is coming back: run it there again
                raise DeviceLostError(f"{handle.name} was lost while it ran an inference of "
                                      f"{self.model_name}: {handle.dead_reason or 'it stopped'}") from None
            if header.get("op") == "error":
                if header.get("type") == "UnknownModelHandle":
                    with self._lock:
                        self._generation = -1  # compile again on the next try
                    continue
                raise rebuild_error(header, handle.name)
            timings = header.get("timings")
            return outputs, [tuple(t) for t in timings] if timings is not None else None
        raise DeviceLostError(f"{self.device_name} kept restarting while running {self.model_name}")

    def _infer_by_ray(self, handle: DeviceHandle, model_id: int, inputs: Sequence[Any], profile: bool):
        ref = handle.actor.infer.remote(model_id, list(inputs), profile)
        while True:
            ready, _ = ray.wait([ref], timeout=0.05)
            if ready:
                break
            if not handle.alive():
                raise ChannelLost("the actor stopped answering")
        answer = ray.get(ref)
        if "error" in answer:
            return answer["error"], []
        return {"op": "ok", "timings": answer["ok"]["timings"]}, list(answer["ok"]["outputs"])

    def infer_async(self, inputs: Sequence[Any], state: Any,
                    on_done: Callable[[list | None, list | None, BaseException | None], Any]) -> None:
        """Start one inference and return; ``on_done(outputs, timings, error)`` is called from the
        data plane's I/O thread when it ends (no thread waits for it).  A request that meets a
        lost or restarting device finishes through :meth:`infer` on this model's threads."""
        if self._resolver.transport == "ray":
            self._threads.submit(lambda: self._complete(inputs, on_done))
            return
        handle, model_id, _ = self._target()

        def done(header, outputs, error):
            if error is None and header.get("op") == "ok":
                timings = header.get("timings")
                on_done(outputs, [tuple(t) for t in timings] if timings is not None else None, None)
            elif error is None and header.get("type") != "UnknownModelHandle":
                on_done(None, None, rebuild_error(header, handle.name))
            elif error is not None and handle.state == "dead":  # as infer: others may re-run it
                on_done(None, None, DeviceLostError(
                    f"{handle.name} was lost while it ran an inference of {self.model_name}: "
                    f"{handle.dead_reason or 'it stopped'}"))
            else:  # the device restarted: the synchronous path waits for it and runs it again
                self._threads.submit(lambda: self._complete(inputs, on_done))

        handle.channel(self._resolver.transport).request_async(
            {"op": "infer", "model": model_id, "profile": False}, inputs, done)

    def _complete(self, inputs: Sequence[Any], on_done: Callable) -> None:
        try:
            outputs, timings = self.infer(inputs)
        except Exception as exc:  # noqa: BLE001 - delivered to the request
            on_done(None, None, exc)
            return
        on_done(outputs, timings, None)

    def submit(self, fn: Callable[[], Any]):
        """Run ``fn`` (an asynchronous request's job) on this model's threads."""
        return self._threads.submit(fn)

    def initial_state(self, variable_id: str):
        """Remote models are stateless (stateful models are refused at compile)."""
        return

    # -- properties -------------------------------------------------------------------------
    def _optimal(self) -> int:
        try:
            return max(1, int(self.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
        except Exception:  # noqa: BLE001
            return 1

    def get_property(self, key: str) -> Any:
        """A compiled-model property (``EXECUTION_DEVICES`` is the device it runs on now)."""
        key = key_name(key)
        if key == "EXECUTION_DEVICES":
            return [self._device.name]
        if key in self._properties:
            return self._properties[key]
        handle, model_id, _ = self._target()
        return handle.call("model_property", model_id, key)

    def set_property(self, properties: Mapping[str, Any]) -> None:
        """Set mutable properties of the compiled model on its device."""
        handle, model_id, _ = self._target()
        handle.call("set_model_property", model_id, plain(dict(properties)))
        for key in properties:
            self._properties.pop(key_name(key), None)

    def release(self) -> None:
        """Free the model on its device and stop this model's threads."""
        with self._lock:
            self._released = True
        self._finalizer()

    def __repr__(self) -> str:
        return f"<RemoteCompiledModel '{self.model_name}' on {self._device.name}>"


def _release_remote(handle: DeviceHandle, model_id: int, threads: Any) -> None:
    threads.shutdown()
    if handle.alive() and handle.actor is not None and ray.is_initialized():
        try:
            handle.actor.release.remote(model_id)  # fire and forget: never block a finalizer
        except Exception as exc:  # noqa: BLE001 - Ray shut down first
            log.debug("release of model %d on %s skipped: %s", model_id, handle.name, exc)
