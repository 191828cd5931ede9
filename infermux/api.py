"""The public surface, named as OpenVINO's Python API: ``Core``, ``CompiledModel`` and friends.

>>> import numpy as np, infermux as im
>>> core = im.Core()
>>> core.available_devices                                            # doctest: +SKIP
['CPU']
>>> model = core.read_model("model.onnx")                             # doctest: +SKIP
>>> compiled = core.compile_model(model, "CPU", {"PERFORMANCE_HINT": "THROUGHPUT"})  # doctest: +SKIP
>>> out = compiled({"data": np.zeros((1, 3, 224, 224), np.float32)})[0]             # doctest: +SKIP

This module holds no runtime logic: reading is ``graph/``, devices are ``devices/``, requests and
queues are ``scheduler/``.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from infermux._version import __version__
from infermux.devices.registry import PluginRegistry, split_device_name
from infermux.errors import DeviceNotFoundError, ModelReadError, PropertyError
from infermux.graph.model import Model, Output, _select_port
from infermux.scheduler.dispatch import Dispatcher
from infermux.scheduler.requests import InferRequest, InferResults

__all__ = ["Core", "CompiledModel", "Version", "compile_model"]

_DEFAULT_DEVICE = "CPU"  # becomes AUTO once the AUTO plugin exists


@dataclasses.dataclass(frozen=True)
class Version:
    """A plugin's version (``core.get_versions``)."""

    description: str
    build_number: str = __version__
    major: int = int(__version__.split(".")[0])
    minor: int = int(__version__.split(".")[1])


class Core:
    """Entry point: lists devices, reads models, compiles them.

    >>> core = Core()
    >>> "CPU" in core.available_devices
    True
    """

    def __init__(self, config_file: str | None = None, *, cluster: str | None = None):
        self._plugins = PluginRegistry()
        self._dispatcher = Dispatcher(self._plugins)
        self._lock = threading.RLock()
        if cluster is not None:
            raise NotImplementedError("cluster mode arrives with the cluster layer")

    # -- devices ----------------------------------------------------------------------------
    @property
    def available_devices(self) -> list[str]:
        """Physical devices present now, e.g. ``['CPU', 'GPU.0']`` (never virtual ones)."""
        return self._plugins.available_devices()

    def get_available_devices(self) -> list[str]:
        """Same as :attr:`available_devices`."""
        return self.available_devices

    def _plugin_and_id(self, device_name: str):
        if not isinstance(device_name, str) or not device_name:
            raise DeviceNotFoundError(f"Device name must be a non-empty string, got {device_name!r}")
        name, device_id = split_device_name(device_name)
        return self._plugins.get(name), device_id

    def get_property(self, device_name: str, name: str | None = None) -> Any:
        """A device property or metric: ``core.get_property("CPU", "FULL_DEVICE_NAME")``."""
        if name is None:
            raise PropertyError("core-level properties arrive with model caching; name a device")
        plugin, device_id = self._plugin_and_id(device_name)
        return plugin.get_property(name, device_id)

    def set_property(self, device_name: str | Mapping[str, Any], properties: Mapping[str, Any] | None = None) -> None:
        """Defaults for later compiles: ``core.set_property("CPU", {...})``."""
        if isinstance(device_name, Mapping):
            for name in self._plugins.names():
                raise PropertyError("core-wide properties arrive with model caching; "
                                    f"set them per device, e.g. core.set_property('{name}', {{...}})")
            return
        if ":" in device_name:
            raise PropertyError(f"set_property is supported only for a device itself, without "
                                f"a device list: got '{device_name}'")
        plugin, device_id = self._plugin_and_id(device_name)
        plugin.set_property(properties or {}, device_id)

    def get_versions(self, device_name: str) -> dict[str, Version]:
        """{device: Version} for every plugin the device string touches."""
        names = [n.strip("-").split("(")[0] for part in device_name.split(":") for n in part.split(",")]
        result = {}
        for n in names:
            if n:
                base = split_device_name(n)[0]
                self._plugins.get(base)
                result[base] = Version(f"infermux {base} plugin")
        return result

    def register_plugin(self, plugin: Any, device_name: str | None = None, config: Mapping | None = None) -> None:
        """Register a plugin object, class or ``'module:attr'`` path as ``device_name``."""
        self._plugins.register(plugin, device_name)
        if config:
            self.set_property(device_name or plugin.name, config)

    def unload_plugin(self, device_name: str) -> None:
        """Forget a plugin."""
        self._plugins.unregister(device_name)

    # -- models -----------------------------------------------------------------------------
    def read_model(self, model: Any, weights: Any = None) -> Model:
        """Read an ONNX model from a path, bytes or ``onnx.ModelProto``."""
        from infermux.graph.onnx_reader import read_onnx

        if isinstance(model, Model):
            return model
        if isinstance(model, (str, os.PathLike)):
            suffix = Path(model).suffix.lower()
            if suffix not in (".onnx", ""):
                raise ModelReadError(
                    f"Cannot read model '{model}': the '{suffix}' format is not supported yet; "
                    f"infermux reads ONNX (.onnx) files")
        return read_onnx(model)

    def compile_model(self, model: Any, device_name: str | None = None,
                      config: Mapping[str, Any] | None = None) -> CompiledModel:
        """Compile a model (or a model path) for a device; no device means the default device."""
        if not isinstance(model, Model):
            model = self.read_model(model)
        device = device_name or _DEFAULT_DEVICE
        device_model = self._dispatcher.compile(model, device, dict(config or {}))
        return CompiledModel(device_model, model.friendly_name)

    def query_model(self, model: Model, device_name: str, config: Mapping[str, Any] | None = None) -> dict[str, str]:
        """{node name: device} for every node the device supports."""
        return self._dispatcher.query(model, device_name, dict(config or {}))


class CompiledModel:
    """A model compiled for a device; create requests from it or call it directly.

    ``compiled(inputs)`` reuses one hidden request, so it is not meant for several threads;
    use :meth:`create_infer_request` or :class:`~infermux.AsyncInferQueue` there.
    """

    def __init__(self, device_model, name: str = "model"):
        self._device = device_model
        self._name = name
        self._inputs = [Output(v, i, self) for i, v in enumerate(device_model.input_infos)]
        self._outputs = [Output(v, i, self) for i, v in enumerate(device_model.output_infos)]
        self._default_request: InferRequest | None = None

    @property
    def inputs(self) -> list[Output]:
        """The input ports."""
        return list(self._inputs)

    @property
    def outputs(self) -> list[Output]:
        """The output ports."""
        return list(self._outputs)

    def input(self, key: int | str | None = None) -> Output:
        """One input port by index or name (no key: the only input)."""
        return _select_port(self._inputs, key, "input")

    def output(self, key: int | str | None = None) -> Output:
        """One output port by index or name (no key: the only output)."""
        return _select_port(self._outputs, key, "output")

    def create_infer_request(self) -> InferRequest:
        """A new, independent request."""
        return InferRequest(self._device, self._inputs, self._outputs, owner=self)

    def __call__(self, inputs: Any = None, share_inputs: bool = True,
                 share_outputs: bool = False) -> InferResults:
        """Run synchronously on one reused request; results by port, name or index."""
        if self._default_request is None:
            self._default_request = self.create_infer_request()
        return self._default_request.infer(inputs, share_inputs=share_inputs, share_outputs=share_outputs)

    def query_state(self) -> list:
        """The variables of the request ``__call__`` reuses."""
        if self._default_request is None:
            self._default_request = self.create_infer_request()
        return self._default_request.query_state()

    def reset_state(self) -> None:
        """Reset the variables of the request ``__call__`` reuses."""
        if self._default_request is not None:
            self._default_request.reset_state()

    def infer_new_request(self, inputs: Any = None) -> InferResults:
        """Run once on a fresh request."""
        return self.create_infer_request().infer(inputs)

    def get_property(self, name: str) -> Any:
        """A compiled-model property (``OPTIMAL_NUMBER_OF_INFER_REQUESTS``, ...)."""
        return self._device.get_property(name)

    def set_property(self, properties: Mapping[str, Any]) -> None:
        """Change a mutable compiled-model property."""
        self._device.set_property(properties)

    def release_memory(self) -> None:
        """Free executors and caches held by the device model."""
        self._device.release()

    @property
    def device_model(self):
        """The device-level compiled model (for schedulers and tools)."""
        return self._device

    def __repr__(self) -> str:
        return f"<CompiledModel '{self._name}' on {self._device.device_name}>"


def compile_model(model: Any, device_name: str | None = None, config: Mapping[str, Any] | None = None) -> CompiledModel:
    """``Core().compile_model(...)`` in one call."""
    return Core().compile_model(model, device_name, config)
