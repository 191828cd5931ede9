"""Resolve device strings to plugins, for the Core and for the virtual devices.

The Core hands every ``compile_model``/``query_model`` to a :class:`Dispatcher`.  A hardware name
goes to its plugin with its id; a virtual device (AUTO, MULTI, HETERO, BATCH) goes to the virtual
plugin with the rest of the string as its priority list (``"MULTI:GPU,CPU"`` and
``("MULTI", {"MULTI_DEVICE_PRIORITIES": "GPU,CPU"})`` are the same call).  Virtual plugins compile
their children back through the dispatcher (``bind(dispatcher)`` is called once when they are first
used), so everything composes without the scheduler importing the public API.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from infermux.errors import DeviceNotFoundError, InvalidDeviceStringError
from infermux.graph.model import Model
from infermux.scheduler.device_string import (
    VIRTUAL_KINDS, Batch, Device, Hardware, Virtual, format_device, parse_device)

__all__ = ["Dispatcher", "VIRTUAL_PLUGINS"]

VIRTUAL_PLUGINS: dict[str, str] = {
    "AUTO": "infermux.scheduler.auto:AutoPlugin",
    "MULTI": "infermux.scheduler.multi:MultiPlugin",
    "HETERO": "infermux.scheduler.hetero:HeteroPlugin",
    "BATCH": "infermux.scheduler.batch:BatchPlugin",
}


_BATCH_ONLY_KEYS = ("ALLOW_AUTO_BATCHING", "AUTO_BATCH_TIMEOUT")


class Dispatcher:
    """Device strings -> plugins.  ``registry`` is a :class:`~infermux.devices.registry.PluginRegistry`.

    ``remote`` (None on one machine) resolves cluster devices, ``KIND[.ID]@node``: an object with
    ``plugin(hardware) -> plugin`` and ``available_devices() -> [names]``, set by a Core created
    with ``cluster=...`` (:class:`infermux.cluster.worker.ClusterResolver`; the scheduler never
    imports the cluster layer).
    """

    remote: Any = None

    def __init__(self, registry: Any):
        self.registry = registry
        self._bound: set[int] = set()
        self._lock = threading.Lock()

    def plugin(self, name: str) -> Any:
        """The plugin called ``name`` (virtual ones bound to this dispatcher)."""
        if name in VIRTUAL_KINDS and name not in self.registry.names():
            self.registry.register(VIRTUAL_PLUGINS[name], name)
        plugin = self.registry.get(name)
        if hasattr(plugin, "bind") and id(plugin) not in self._bound:
            with self._lock:
                if id(plugin) not in self._bound:
                    plugin.bind(self)
                    self._bound.add(id(plugin))
        return plugin

    def available_devices(self) -> list[str]:
        """Physical devices present now (with a cluster: every node's devices too)."""
        local = self.registry.available_devices()
        return local + self.remote.available_devices() if self.remote is not None else local

    def parse(self, device: str | Device, config: Mapping[str, Any] | None = None) -> Device:
        """Parse ``device``, folding in a ``MULTI_DEVICE_PRIORITIES`` from ``config``."""
        priorities = (config or {}).get("MULTI_DEVICE_PRIORITIES")
        if isinstance(device, str) and device in VIRTUAL_KINDS and priorities:
            return parse_device(f"{device}:{priorities}")  # ("MULTI", {PRIORITIES: "CPU"}) == "MULTI:CPU"
        tree = parse_device(device) if isinstance(device, str) else device
        if priorities and isinstance(tree, (Virtual, Batch)):
            kind = tree.kind if isinstance(tree, Virtual) else "BATCH"
            from_config = parse_device(f"{kind}:{priorities}")
            has_list = (isinstance(tree, Virtual) and tree.items) or isinstance(tree, Batch)
            if has_list and from_config != tree:
                raise InvalidDeviceStringError(
                    f"Device priority / ID mismatch: {format_device(tree).split(':', 1)[1]} (from "
                    f"{format_device(tree)}) vs {priorities} (from config)")
            tree = from_config
        return tree

    def split(self, device: str | Device, config: Mapping[str, Any] | None = None):
        """``(plugin, device_id, config without MULTI_DEVICE_PRIORITIES)`` for a device."""
        tree = self.parse(device, config)
        cfg = {k: v for k, v in (config or {}).items() if k != "MULTI_DEVICE_PRIORITIES"}
        if isinstance(tree, Hardware):
            if tree.node:
                if self.remote is None:
                    raise DeviceNotFoundError(
                        f"device '{tree}' lives on cluster node '{tree.node}'; create the Core with "
                        f"cluster=... to use cluster devices")
                return self.remote.plugin(tree), tree.id, cfg
            return self.plugin(tree.name), tree.id, cfg
        if isinstance(tree, Batch):
            return self.plugin("BATCH"), format_device(tree).split(":", 1)[1], cfg
        return self.plugin(tree.kind), tree.priorities, cfg

    allow_auto_batching = True  # the Core-wide ALLOW_AUTO_BATCHING default

    def compile(self, model: Model, device: str | Device, config: Mapping[str, Any] | None = None):
        """Compile ``model`` on ``device`` -> a device compiled model.

        A hardware device reporting ``OPTIMAL_BATCH_SIZE`` under the THROUGHPUT hint is wrapped
        in BATCH (implicit batching, as OpenVINO) unless ``ALLOW_AUTO_BATCHING`` is False.
        """
        from infermux.scheduler.batch import maybe_auto_batch

        cfg = dict(config or {})
        if isinstance(device, str):
            device = maybe_auto_batch(self, model, device, cfg)
        if isinstance(self.parse(device, cfg), Hardware):
            for key in _BATCH_ONLY_KEYS:  # meant for an implicit BATCH; hardware rejects them
                cfg.pop(key, None)
        plugin, device_id, cfg = self.split(device, cfg)
        return plugin.compile_model(model, cfg, device_id)

    def query(self, model: Model, device: str | Device, config: Mapping[str, Any] | None = None) -> dict[str, str]:
        """{node name: device} for the nodes ``device`` supports."""
        plugin, device_id, cfg = self.split(device, config)
        return plugin.query_model(model, cfg, device_id)

    def property_target(self, device: str, action: str = "get_property") -> tuple[Any, str]:
        """``(plugin, device id)`` whose properties ``device`` names: a hardware device, or a
        virtual device itself without a list (``"HETERO"``), as OpenVINO allows."""
        if device in VIRTUAL_KINDS:
            return self.plugin(device), ""
        plugin, device_id, _ = self.split(device)
        if getattr(plugin, "virtual", False):
            raise InvalidDeviceStringError(
                f"You can only {action} of the {plugin.name} itself (without devices), got '{device}'")
        return plugin, device_id

    def get_property(self, device: str, key: str) -> Any:
        """A device property; virtual devices only without a list (as OpenVINO)."""
        plugin, device_id = self.property_target(device)
        return plugin.get_property(key, device_id)
