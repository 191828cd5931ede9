"""Find plugins: a table of built-in import paths plus the ``infermux.plugins`` entry-point group.

Plugins are imported lazily, on first use, so CuPy loads only when the GPU is opened.  A device
name is ``TYPE`` or ``TYPE.ID`` (case-sensitive: ``cpu`` is not ``CPU``); :func:`split_device_name`
parses one.  A third-party package adds a device by declaring an entry point::

    [project.entry-points."infermux.plugins"]
    MYDEV = "mypackage.plugin:MyDevicePlugin"      # a class (instantiated once) or an object

Built-in names win over entry points of the same name; ``core.register_plugin`` wins over both.
``available_devices`` lists a plugin with one device by its bare name (``GPU``) and one with
several by id (``GPU.0``, ``GPU.1``), as OpenVINO does; ``GPU`` always means ``GPU.0``.
"""

from __future__ import annotations

import importlib
import logging
import re
import threading
from importlib import metadata
from typing import Any

from infermux.devices.properties import RO, key_name
from infermux.errors import DeviceNotFoundError, InvalidDeviceStringError, PropertyError

__all__ = [
    "BUILTIN_PLUGINS",
    "ENTRY_POINT_GROUP",
    "PluginRegistry",
    "split_device_name",
    "supported_rw_keys",
]

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "infermux.plugins"
BUILTIN_PLUGINS: dict[str, str] = {
    "CPU": "infermux.devices.cpu:CPUPlugin",
    "GPU": "infermux.devices.gpu:GPUPlugin",
    "VPU": "infermux.devices.vpu:VPUPlugin",
}
_NAME = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(?:\.([A-Za-z0-9_]+))?$")


def split_device_name(device: str) -> tuple[str, str]:
    """``'GPU.1'`` -> ``('GPU', '1')``; ``'CPU'`` -> ``('CPU', '')``."""
    m = _NAME.match(device or "")
    if not m:
        raise InvalidDeviceStringError(
            f"'{device}' is not a device name: expected TYPE or TYPE.ID, e.g. CPU or GPU.1")
    return m.group(1), m.group(2) or ""


def _load(path: str) -> Any:
    module, _, attr = path.partition(":")
    obj = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj() if isinstance(obj, type) else obj


def supported_rw_keys(plugin: Any, device_id: str = "") -> set[str]:
    """The keys ``plugin`` accepts in ``set_property`` (from its ``SUPPORTED_PROPERTIES``)."""
    try:
        supported = plugin.get_property("SUPPORTED_PROPERTIES", device_id)
    except Exception:  # noqa: BLE001 - a plugin that cannot say takes nothing core-wide
        return set()
    if isinstance(supported, dict):
        return {key_name(k) for k, m in supported.items() if str(m) != RO}
    return {key_name(k) for k in supported}


class PluginRegistry:
    """The plugins one :class:`~infermux.Core` knows: built-ins, entry points, registered ones."""

    def __init__(self) -> None:
        self._paths: dict[str, str] = dict(BUILTIN_PLUGINS)
        self._plugins: dict[str, Any] = {}
        self._registered: dict[str, Any] = {}  # objects given to register(), shadowing paths
        self._global: dict[str, Any] = {}  # core-wide plugin properties, for plugins loaded later
        self._lock = threading.RLock()
        for ep in _entry_points():
            self._paths.setdefault(ep.name, ep.value)

    def register(self, plugin: Any, name: str | None = None) -> None:
        """Register a plugin object, class, or ``'module:attr'`` import path under ``name``.

        A registered name replaces a built-in or entry-point plugin of the same name (e.g.
        ``register(VPUPlugin(emulate=True), "VPU")``) until :meth:`unregister`."""
        if isinstance(plugin, str):
            if name is None:
                raise ValueError("a plugin given as an import path needs a device name")
            target_name = name
        else:
            target_name = name or getattr(plugin, "name", None)
        if not target_name:
            raise ValueError("the plugin has no 'name'; pass one")
        if "." in target_name:
            raise InvalidDeviceStringError("Device name must not contain dot '.' symbol")
        if not _NAME.match(target_name):
            raise InvalidDeviceStringError(
                f"'{target_name}' cannot name a device: use letters, digits and '_', e.g. MYDEV")
        with self._lock:
            self._plugins.pop(target_name, None)
            if isinstance(plugin, str):
                self._paths[target_name] = plugin
                self._registered.pop(target_name, None)
            else:
                obj = plugin() if isinstance(plugin, type) else plugin
                self._registered[target_name] = obj
                self._apply_global(target_name, obj)

    def unregister(self, name: str) -> None:
        """``core.unload_plugin``: drop the loaded plugin (and the properties set on it).

        A built-in or entry-point device is loaded afresh on its next use; an object given to
        :meth:`register` is forgotten, uncovering the built-in of the same name if any."""
        with self._lock:
            if name not in self._paths and name not in self._registered:
                raise DeviceNotFoundError(
                    f'Device with "{name}" name is not registered in the infermux runtime')
            self._plugins.pop(name, None)
            self._registered.pop(name, None)

    def names(self) -> list[str]:
        """Names of every known plugin, loaded or not."""
        return sorted(set(self._paths) | set(self._registered))

    def loaded(self) -> dict[str, Any]:
        """The plugins imported so far, by name."""
        with self._lock:
            return {**self._plugins, **self._registered}

    def get(self, name: str) -> Any:
        """The plugin called ``name``, imported on first use."""
        with self._lock:
            if name in self._registered:
                return self._registered[name]
            if name in self._plugins:
                return self._plugins[name]
            path = self._paths.get(name)
            if path is None:
                raise DeviceNotFoundError(
                    f'Device with "{name}" name is not registered in the infermux runtime. '
                    f"Known devices: {', '.join(self.names())}")
            plugin = _load(path)
            self._plugins[name] = plugin
            self._apply_global(name, plugin)
            return plugin

    def set_global(self, properties: dict[str, Any]) -> None:
        """``core.set_property({...})`` for plugin keys: each plugin that lists a key as RW in its
        ``SUPPORTED_PROPERTIES`` gets it, now and when loaded later.  A key no plugin takes raises."""
        with self._lock:
            taken: set[str] = set()
            for name in self.names():
                try:
                    plugin = self.get(name)
                except Exception as exc:  # noqa: BLE001 - a broken plugin takes nothing
                    log.debug("plugin %s not loaded for core-wide properties: %s", name, exc)
                    continue
                subset = {k: v for k, v in properties.items() if k in supported_rw_keys(plugin)}
                if subset:
                    plugin.set_property(subset)
                    taken |= set(subset)
            unknown = sorted(set(properties) - taken)
            if unknown:
                raise PropertyError(
                    f"Unsupported property {', '.join(unknown)}: neither the Core nor any device "
                    f"({', '.join(self.names())}) supports it")
            self._global.update(properties)

    def _apply_global(self, name: str, plugin: Any) -> None:
        subset = {k: v for k, v in self._global.items() if k in supported_rw_keys(plugin)}
        if subset:
            try:
                plugin.set_property(subset)
            except Exception as exc:  # noqa: BLE001 - the plugin keeps its own defaults
                log.warning("device %s rejected the core-wide properties %s: %s", name, subset, exc)

    def available_devices(self) -> list[str]:
        """Every physical device present now: ``['CPU', 'GPU.0', 'GPU.1', ...]``."""
        result = []
        for name in self.names():
            try:
                plugin = self.get(name)
            except Exception as exc:  # noqa: BLE001 - a plugin that cannot load is not listed
                log.warning("device plugin %s (%s) cannot be loaded and is not listed: %s",
                            name, self._paths.get(name), exc)
                continue
            if getattr(plugin, "virtual", False):
                continue
            try:
                ids = list(plugin.devices())
            except Exception as exc:  # noqa: BLE001 - a broken plugin is not listed
                log.debug("plugin %s lists no devices: %s", name, exc)
                continue
            if len(ids) == 1:
                result.append(name)
            else:
                result.extend(f"{name}.{i}" for i in ids)
        return result


def _entry_points():
    try:
        return list(metadata.entry_points(group=ENTRY_POINT_GROUP))
    except Exception:  # noqa: BLE001 - broken metadata must not break the runtime
        return []
