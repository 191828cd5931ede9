"""Device actors: one Ray actor per cluster device, hosting that device's plugin.

The actor (:class:`DeviceActor`) is placed on its node by a hard node affinity and holds the
device's resource (``num_cpus``/``num_gpus``/a custom resource such as ``VPU``; a share of one
unit, 1.0 by default).  It receives models as ONNX bytes (``to_onnx(model).SerializeToString()``
on the driver, parsed once per content hash here) -- never a pickle of infermux objects -- and
compiles them with its plugin.  Inferences reach it over the data plane
(:mod:`infermux.cluster.channel`); compiles, queries and properties are Ray actor calls whose
results are plain values, and failures come back as ``{"type", "message"}`` and are raised again
on the driver as the matching :mod:`infermux.errors` class.

On the driver, a :class:`DeviceHandle` per device (shared by every Core of the process) creates
the actor lazily, connects a :class:`~infermux.cluster.channel.ChannelClient`, and watches a
*lifeline*: an actor call that never returns, so its failure is the moment Ray knows the actor
died.  Actors are created with ``max_restarts`` (Ray restarts a crashed or killed actor in place):
the handle then waits for the new incarnation (``restarting``), reconnects and bumps its
``generation`` so that compiled models compile themselves again there; when the node is gone or
the restarts are used up the handle is ``dead`` and says why.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import importlib
import itertools
import json
import logging
import os
import socket
import threading
import time
import types
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

import ray

from infermux.cluster.channel import ChannelClient, ChannelServer, error_header
from infermux.cluster.discovery import ClusterDevice
from infermux.errors import InfermuxError

__all__ = ["DeviceActor", "DeviceHandle", "DeviceLostError", "PluginSpec", "device_handle",
           "load_plugin", "plain", "rebuild_error"]

log = logging.getLogger(__name__)

PluginSpec = tuple[str, dict[str, Any]] | None  # ("module:attr", constructor kwargs), None = built-in
MAX_RESTARTS = 3
_PARSED_CACHE = 8


class DeviceLostError(InfermuxError):
    """A cluster device went away (its actor died or its node left) and could not be replaced."""


# -- plain values across the wire ------------------------------------------------------------

def plain(value: Any) -> Any:
    """``value`` with enums as their values, recursively: what crosses Ray is builtins only."""
    if isinstance(value, enum.Enum):
        return plain(value.value)
    if isinstance(value, Mapping):
        return {plain(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [plain(v) for v in value]
        return items if isinstance(value, list) else tuple(items) if isinstance(value, tuple) else set(items)
    if isinstance(value, (types.FunctionType, types.MethodType)):
        raise TypeError(f"{value!r} cannot be sent to a cluster device: only plain values can")
    return value


def rebuild_error(info: Mapping[str, Any], device: str) -> Exception:
    """The exception a device actor reported, as the matching infermux (or builtin) class."""
    import builtins

    from infermux import errors

    name, message = str(info.get("type", "")), str(info.get("message", ""))
    cls = getattr(errors, name, None)
    if not (isinstance(cls, type) and issubclass(cls, InfermuxError)):
        if name == DeviceLostError.__name__:
            cls = DeviceLostError
        else:
            builtin = getattr(builtins, name, None)
            cls = builtin if isinstance(builtin, type) and issubclass(builtin, Exception) else InfermuxError
    text = message if device in message else f"{message} [on {device}]"
    try:
        return cls(text)
    except Exception:  # noqa: BLE001 - an exception class with another signature
        return InfermuxError(f"{name}: {text}")


def _guarded(method: Callable) -> Callable:
    """Actor methods answer ``{"ok": value}`` or ``{"error": {type, message}}`` (no pickled errors)."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return {"ok": plain(method(self, *args, **kwargs))}
        except Exception as exc:  # noqa: BLE001 - reported to the driver as plain data
            return {"error": error_header(exc)}
    return wrapper


def load_plugin(kind: str, spec: PluginSpec = None) -> Any:
    """The plugin for ``kind``: built-in/entry-point (``spec`` None) or ``("module:attr", kwargs)``."""
    if spec is None:
        from infermux.devices.registry import PluginRegistry

        return PluginRegistry().get(kind)
    path, kwargs = spec
    module, _, attr = path.partition(":")
    obj = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj(**dict(kwargs or {})) if isinstance(obj, type) else obj


# -- the actor -------------------------------------------------------------------------------

class DeviceActor:
    """One device's plugin in a Ray actor (see the module docstring)."""

    def __init__(self, kind: str, device_id: str, spec: PluginSpec = None, channel_threads: int = 8):
        self.kind = kind
        self.plugin = load_plugin(kind, spec)
        ids = list(self.plugin.devices())
        # Ray isolates GPUs (CUDA_VISIBLE_DEVICES): the plugin then sees one device, id '0'
        self.local_id = device_id if device_id in ids else (ids[0] if ids else device_id)
        self.devices = ids
        self.models: dict[int, Any] = {}
        self._handles = itertools.count(1)
        self._parsed: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()
        self._served = 0
        self._running = 0
        self._max_running = 0
        self._server = ChannelServer(self._serve, host=ray.util.get_node_ip_address(),
                                     threads=channel_threads)

    def hello(self) -> dict[str, Any]:
        """Who answers: the channel endpoint, process, host, node and the plugin's devices."""
        return {"endpoint": self._server.endpoint, "pid": os.getpid(), "hostname": socket.gethostname(),
                "node_id": ray.get_runtime_context().get_node_id(), "devices": self.devices,
                "local_id": self.local_id}

    @ray.method(concurrency_group="lifeline")
    def lifeline(self) -> None:
        """Never returns: its failure tells a driver that this actor died."""
        threading.Event().wait()

    def _model(self, data: bytes) -> Any:
        from infermux.graph.onnx_reader import read_onnx

        key = hashlib.sha256(data).hexdigest()
        with self._lock:
            model = self._parsed.get(key)
            if model is not None:
                self._parsed.move_to_end(key)
                return model
        model = read_onnx(bytes(data))
        with self._lock:
            self._parsed[key] = model
            while len(self._parsed) > _PARSED_CACHE:
                self._parsed.popitem(last=False)
        return model

    @_guarded
    def get_property(self, key: str) -> Any:
        """A device property of the hosted device."""
        return self.plugin.get_property(key, self.local_id)

    @_guarded
    def query_model(self, data: bytes, config: dict[str, Any]) -> dict[str, str]:
        """``{node: device}`` for the nodes the hosted device supports."""
        return self.plugin.query_model(self._model(data), config, self.local_id)

    @_guarded
    def compile(self, data: bytes, config: dict[str, Any]) -> dict[str, Any]:
        """Compile an ONNX model; its handle, port names and readable properties."""
        compiled = self.plugin.compile_model(self._model(data), config, self.local_id)
        with self._lock:
            handle = next(self._handles)
            self.models[handle] = compiled
        return {"handle": handle, "inputs": [v.name for v in compiled.input_infos],
                "outputs": [v.name for v in compiled.output_infos],
                "stateful": bool(getattr(compiled, "variables", None)),
                "properties": _readable_properties(compiled)}

    def _compiled(self, handle: int) -> Any:
        compiled = self.models.get(int(handle))
        if compiled is None:
            raise UnknownModelHandle(f"model handle {handle} is not compiled on this actor "
                                     f"(it restarted); compile it again")
        return compiled

    @_guarded
    def model_property(self, handle: int, key: str) -> Any:
        """A compiled model's property."""
        return self._compiled(handle).get_property(key)

    @_guarded
    def set_model_property(self, handle: int, properties: dict[str, Any]) -> None:
        """Set a compiled model's mutable properties."""
        self._compiled(handle).set_property(properties)

    @_guarded
    def release(self, handle: int) -> None:
        """Forget a compiled model."""
        with self._lock:
            compiled = self.models.pop(int(handle), None)
        if compiled is not None:
            compiled.release()

    @_guarded
    def infer(self, handle: int, arrays: list, profile: bool = False) -> dict[str, Any]:
        """One inference through Ray itself (the ``transport="ray"`` data plane)."""
        outputs, timings = self._compiled(handle).infer(arrays, profile=profile)
        with self._lock:
            self._served += 1
        return {"outputs": list(outputs), "timings": timings}

    def _serve(self, header: dict, arrays: list) -> tuple[dict, list]:
        """The channel's handler: ``{"op": "infer", "model": handle, "profile": bool}``."""
        if header.get("op") != "infer":
            raise ValueError(f"unknown channel op {header.get('op')!r}")
        compiled = self._compiled(header["model"])
        with self._lock:
            self._running += 1
            self._max_running = max(self._max_running, self._running)
        try:
            outputs, timings = compiled.infer(arrays, profile=bool(header.get("profile")))
        finally:
            with self._lock:
                self._running -= 1
                self._served += 1
        for out in outputs:
            if out is not None and not hasattr(out, "dtype"):
                raise InfermuxError(f"output of type {type(out).__name__} cannot leave a cluster "
                                    f"device: only tensors can")
        return {"op": "ok", "timings": timings}, list(outputs)

    @_guarded
    def stats(self, reset: bool = False) -> dict[str, Any]:
        """Models held, inferences served, and the most that ran at once (``reset``: start over)."""
        with self._lock:
            stats = {"models": len(self.models), "served": self._served, "running": self._running,
                     "max_running": self._max_running, "pid": os.getpid()}
            if reset:
                self._max_running = self._running
        return stats


class UnknownModelHandle(InfermuxError):
    """A request named a compiled model the actor does not hold (it restarted meanwhile)."""


def _readable_properties(compiled: Any) -> dict[str, Any]:
    try:
        keys = list(compiled.get_property("SUPPORTED_PROPERTIES"))
    except Exception:  # noqa: BLE001
        keys = ["NETWORK_NAME", "OPTIMAL_NUMBER_OF_INFER_REQUESTS", "EXECUTION_DEVICES"]
    result = {}
    for key in [*keys, "SUPPORTED_PROPERTIES"]:
        try:
            result[str(plain(key))] = plain(compiled.get_property(key))
        except Exception as exc:  # noqa: BLE001 - listed but not readable
            log.debug("compiled-model property %s is not readable: %s", key, exc)
    return result


@functools.cache
def _remote_class() -> Any:
    return ray.remote(concurrency_groups={"lifeline": 64})(DeviceActor)


def actor_options(device: ClusterDevice, share: float) -> dict[str, Any]:
    """Resources and placement of the actor for ``device``: ``share`` of one unit of its kind,
    pinned to its node (hard node affinity: it never runs elsewhere, it dies with the node)."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    options: dict[str, Any] = {"num_cpus": 0, "max_restarts": MAX_RESTARTS, "max_task_retries": 0,
                               "max_concurrency": 8,
                               "scheduling_strategy": NodeAffinitySchedulingStrategy(device.node_id, soft=False)}
    if device.kind == "CPU":
        options["num_cpus"] = share
    elif device.kind == "GPU":
        options["num_gpus"] = share
    else:
        options["resources"] = {device.kind: share}
    return options


# -- the driver's side -----------------------------------------------------------------------

class DeviceHandle:
    """The driver's link to one device actor: creates it lazily, watches it, reconnects after a
    Ray restart (``generation`` + 1), and knows when it is gone for good (``dead``)."""

    def __init__(self, device: ClusterDevice, spec: PluginSpec = None, *, share: float = 1.0,
                 placement_timeout_s: float = 60.0, restart_timeout_s: float = 30.0):
        self.device = device
        self.spec = spec
        self.share = share
        self.placement_timeout_s = placement_timeout_s
        self.restart_timeout_s = restart_timeout_s
        self.actor: Any = None
        self.client: ChannelClient | None = None  # ipc + shared memory on this host, else tcp
        self._tcp_client: ChannelClient | None = None
        self.info: dict[str, Any] = {}
        self.generation = 0
        self.state = "new"  # new -> alive <-> restarting -> dead
        self.dead_reason = ""
        self._changed = threading.Condition(threading.RLock())

    @property
    def name(self) -> str:
        """The device string, ``KIND[.ID]@node``."""
        return self.device.name

    def alive(self) -> bool:
        """True while the actor answers (the channel's liveness check)."""
        return self.state == "alive"

    # -- lifecycle --------------------------------------------------------------------------
    def ensure(self) -> int:
        """The current generation once the actor is up; waits through a restart (bounded);
        raises :class:`DeviceLostError` when it is gone."""
        with self._changed:
            if self.state == "new":
                self._start()
            deadline = time.monotonic() + self.restart_timeout_s
            while self.state == "restarting":
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._changed.wait(left)
            if self.state != "alive":
                raise DeviceLostError(self.lost_message())
            return self.generation

    def lost_message(self) -> str:
        """Why the device is not available, saying what to do."""
        return (f"cluster device {self.name} is lost: {self.dead_reason or 'it is restarting'}. "
                f"Use another device, or add a node with its resources back to the cluster")

    def _start(self) -> None:
        cls = _remote_class()
        self.actor = cls.options(**actor_options(self.device, self.share)).remote(
            self.device.kind, self.device.id, self.spec)
        try:
            info = ray.get(self.actor.hello.remote(), timeout=self.placement_timeout_s)
        except ray.exceptions.GetTimeoutError:
            ray.kill(self.actor, no_restart=True)
            self.state, self.dead_reason = "dead", "its actor could not be placed"
            raise DeviceLostError(
                f"the actor for {self.name} was not placed within {self.placement_timeout_s:.0f} s: "
                f"node '{self.device.node}' has no free {self.device.kind} resource (held by other "
                f"actors or drivers?). Free it, or connect with a smaller resource_share") from None
        except (ray.exceptions.RayActorError, ray.exceptions.ActorUnschedulableError) as exc:
            self.state, self.dead_reason = "dead", f"its actor failed to start ({exc})"
            raise DeviceLostError(self.lost_message()) from None
        self._connected(info)

    def channel(self, transport: str = "auto") -> ChannelClient:
        """The data-plane client of the current incarnation (``"tcp"``: over tcp even on one host)."""
        client = self.client
        if transport != "tcp" or client is None or not client.same_host:
            return client
        with self._changed:
            if self._tcp_client is None or self._tcp_client.endpoint is not client.endpoint:
                self._tcp_client = ChannelClient(client.endpoint, alive=self.alive, transport="tcp")
            return self._tcp_client

    def _close_clients(self) -> None:
        for client in (self.client, self._tcp_client):
            if client is not None:
                client.close()

    def _connected(self, info: dict[str, Any]) -> None:
        """Under the lock: a new incarnation answered ``hello``."""
        self._close_clients()
        self.info = info
        self.client = ChannelClient(info["endpoint"], alive=self.alive)
        self.generation += 1
        self.state = "alive"
        _watcher().watch(self.actor.lifeline.remote(), self, self.generation)
        log.debug("%s: actor pid %s on %s (generation %d, %s)", self.name, info["pid"],
                  info["hostname"], self.generation, "same host" if self.client.same_host else "remote")
        self._changed.notify_all()

    def lifeline_failed(self, error: BaseException | None, generation: int) -> None:
        """Called by the watcher when the actor's lifeline call ended (it died)."""
        with self._changed:
            if generation != self.generation or self.state != "alive" or not ray.is_initialized():
                return  # an old incarnation's lifeline, or this driver is shutting Ray down
            self._close_clients()
            if isinstance(error, ray.exceptions.ActorUnavailableError):
                self.state = "restarting"
                log.warning("%s: its actor stopped (%s); waiting for Ray to restart it",
                            self.name, type(error).__name__)
                threading.Thread(target=self._await_restart, daemon=True,
                                 name=f"infermux-restart-{self.name}").start()
            else:
                self.state = "dead"
                self.dead_reason = _death_reason(error, self.device)
                log.warning("%s: %s", self.name, self.dead_reason)
            self._changed.notify_all()

    def _await_restart(self) -> None:
        deadline = time.monotonic() + self.restart_timeout_s
        reason = f"Ray did not restart its actor within {self.restart_timeout_s:.0f} s"
        while time.monotonic() < deadline and ray.is_initialized():
            try:
                info = ray.get(self.actor.hello.remote(), timeout=min(5.0, max(0.1, deadline - time.monotonic())))
            except (ray.exceptions.ActorUnavailableError, ray.exceptions.GetTimeoutError):
                time.sleep(0.2)
                continue
            except Exception as exc:  # noqa: BLE001 - died for good (node gone, restarts used up)
                reason = _death_reason(exc, self.device)
                break
            with self._changed:
                if self.state == "restarting":
                    self._connected(info)
                    log.warning("%s: its actor is back (pid %s)", self.name, info["pid"])
                return
        with self._changed:
            if self.state == "restarting":
                self.state, self.dead_reason = "dead", reason
                self._changed.notify_all()

    def forget(self) -> None:
        """Mark dead without waiting (the node is known to be gone)."""
        with self._changed:
            if self.state in ("alive", "restarting"):
                self._close_clients()
                self.state, self.dead_reason = "dead", f"node '{self.device.node}' left the cluster"
                self._changed.notify_all()

    # -- control calls ----------------------------------------------------------------------
    def call(self, method: str, *args: Any, timeout_s: float = 120.0) -> Any:
        """``actor.<method>(*args)``: its value, or its error raised as infermux's class."""
        self.ensure()
        try:
            answer = ray.get(getattr(self.actor, method).remote(*args), timeout=timeout_s)
        except ray.exceptions.GetTimeoutError:
            raise InfermuxError(f"{self.name} did not answer {method} within {timeout_s:.0f} s") from None
        except (ray.exceptions.RayActorError, ray.exceptions.ActorUnschedulableError) as exc:
            raise DeviceLostError(f"cluster device {self.name} was lost during {method}: "
                                  f"{_death_reason(exc, self.device)}") from None
        if "error" in answer:
            raise rebuild_error(answer["error"], self.name)
        return answer["ok"]


def _death_reason(error: BaseException | None, device: ClusterDevice) -> str:
    if isinstance(error, ray.exceptions.ActorUnschedulableError):
        return f"node '{device.node}' left the cluster"
    if isinstance(error, ray.exceptions.ActorDiedError):
        text = str(error)
        if "node" in text.lower() and ("died" in text.lower() or "dead" in text.lower()):
            return f"node '{device.node}' left the cluster"
        return "its actor died and Ray will not restart it (killed, or out of restarts)"
    return f"its actor failed ({type(error).__name__ if error else 'unknown'})"


class _Watcher:
    """Calls ``handle.lifeline_failed`` when a lifeline call ends.

    No thread of ours waits: Ray itself runs the callback (``ObjectRef.future()``) when the call
    fails, so nothing of ours is inside a Ray call when the driver shuts Ray down (a thread
    blocked in ``ray.wait`` then would make Ray end the process)."""

    def watch(self, ref: Any, handle: DeviceHandle, generation: int) -> None:
        future = ref.future()
        future.add_done_callback(lambda f: self._ended(f, handle, generation))

    @staticmethod
    def _ended(future: Any, handle: DeviceHandle, generation: int) -> None:
        if future.cancelled() or not ray.is_initialized():
            return
        error = future.exception()
        # a restart must not be waited for in Ray's callback thread
        threading.Thread(target=handle.lifeline_failed, args=(error, generation), daemon=True,
                         name=f"infermux-lost-{handle.name}").start()


@functools.cache
def _watcher() -> _Watcher:
    return _Watcher()


_handles: dict[tuple, DeviceHandle] = {}
_handles_lock = threading.Lock()
_handles_job: list[str] = [""]


def device_handle(device: ClusterDevice, spec: PluginSpec = None, **options: Any) -> DeviceHandle:
    """The process-wide handle of ``device`` (one actor per device per driver, shared by every
    Core of this process); a dead handle is replaced by a fresh one."""
    job = ray.get_runtime_context().get_job_id()
    key = (device.node_id, device.kind, device.id, json.dumps(spec, sort_keys=True), options.get("share", 1.0))
    with _handles_lock:
        if _handles_job[0] != job:  # a new connection: earlier handles belong to a closed one
            _handles.clear()
            _handles_job[0] = job
        handle = _handles.get(key)
        if handle is None or handle.state == "dead":
            handle = _handles[key] = DeviceHandle(device, spec, **options)
        return handle
