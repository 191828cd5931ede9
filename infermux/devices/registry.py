"""Find plugins: a table of built-in import paths plus the ``infermux.plugins`` entry-point group.

Plugins are imported lazily, on first use, so CuPy loads only when the GPU is opened.  A device
name is ``TYPE`` or ``TYPE.ID`` (case-sensitive); :func:`split_device_name` parses one.
"""

from __future__ import annotations

import importlib
import logging
import re
import threading
from importlib import metadata
from typing import Any

from infermux.errors import DeviceNotFoundError, InvalidDeviceStringError

__all__ = ["PluginRegistry", "split_device_name", "BUILTIN_PLUGINS", "ENTRY_POINT_GROUP"]

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "infermux.plugins"
BUILTIN_PLUGINS: dict[str, str] = {
    "CPU": "infermux.devices.cpu:CPUPlugin",
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
    obj = getattr(importlib.import_module(module), attr)
    return obj() if isinstance(obj, type) else obj


class PluginRegistry:
    """The plugins one :class:`~infermux.Core` knows: built-ins, entry points, registered ones."""

    def __init__(self) -> None:
        self._paths: dict[str, str] = dict(BUILTIN_PLUGINS)
        self._plugins: dict[str, Any] = {}
        self._lock = threading.RLock()
        for ep in _entry_points():
            self._paths.setdefault(ep.name, ep.value)

    def register(self, plugin: Any, name: str | None = None) -> None:
        """Register a plugin object, class, or ``'module:attr'`` import path under ``name``."""
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
        with self._lock:
            if isinstance(plugin, str):
                self._paths[target_name] = plugin
                self._plugins.pop(target_name, None)
            else:
                self._plugins[target_name] = plugin() if isinstance(plugin, type) else plugin

    def unregister(self, name: str) -> None:
        """Forget a plugin (``core.unload_plugin``)."""
        with self._lock:
            self._plugins.pop(name, None)
            self._paths.pop(name, None)

    def names(self) -> list[str]:
        """Names of every known plugin, loaded or not."""
        return sorted(set(self._paths) | set(self._plugins))

    def get(self, name: str) -> Any:
        """The plugin called ``name``, imported on first use."""
        with self._lock:
            if name in self._plugins:
                return self._plugins[name]
            path = self._paths.get(name)
            if path is None:
                raise DeviceNotFoundError(
                    f'Device with "{name}" name is not registered in the infermux runtime. '
                    f"Known devices: {', '.join(self.names())}")
            plugin = _load(path)
            self._plugins[name] = plugin
            return plugin

    def available_devices(self) -> list[str]:
        """Every physical device present now: ``['CPU', 'GPU.0', ...]``."""
        result = []
        for name in self.names():
            try:
                plugin = self.get(name)
                if getattr(plugin, "virtual", False):
                    continue
                ids = plugin.devices()
            except Exception as exc:  # noqa: BLE001 - a broken plugin is not listed
                log.debug("plugin %s lists no devices: %s", name, exc)
                continue
            result.extend(name if not i else f"{name}.{i}" for i in ids)
        return result


def _entry_points():
    try:
        return list(metadata.entry_points(group=ENTRY_POINT_GROUP))
    except Exception:  # noqa: BLE001 - broken metadata must not break the runtime
        return []
