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
import io
import logging
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from infermux._version import __version__
from infermux.devices.cache import ModelCache, compile_cached, supports_caching
from infermux.devices.properties import (
    CORE_KEYS,
    CORE_PROPERTIES,
    RW,
    key_name,
    validate_config,
)
from infermux.devices.registry import PluginRegistry, split_device_name
from infermux.errors import (
    InfermuxError,
    ModelReadError,
    PropertyError,
)
from infermux.graph.model import Model, Output, _select_port
from infermux.scheduler.dispatch import Dispatcher
from infermux.scheduler.requests import InferRequest, InferResults

__all__ = ["CompiledModel", "Core", "Version", "compile_model"]

_DEFAULT_DEVICE = "AUTO"  # as OpenVINO: compile_model(model) picks the device

log = logging.getLogger(__name__)


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

    def __init__(self, config_file: str | None = None, *, cluster: Any = None):
        self._plugins = PluginRegistry()
        self._dispatcher = Dispatcher(self._plugins)
        self._lock = threading.RLock()
        self._core_properties = {k: s.default for k, s in CORE_PROPERTIES.items() if s.mutability == RW}
        self._device_core_properties: dict[str, dict[str, Any]] = {}
        if cluster is not None:  # cluster mode: `KIND@node` devices resolve through Ray (issue 7)
            from infermux.cluster import connect

            self._dispatcher.remote = connect(cluster) if isinstance(cluster, str) else cluster.for_core()

    # -- devices ----------------------------------------------------------------------------
    @property
    def available_devices(self) -> list[str]:
        """Physical devices present now, e.g. ``['CPU', 'GPU.0']`` (never virtual ones); with a
        cluster, every alive node's devices too (``'CPU@node-b'``)."""
        return self._dispatcher.available_devices()

    def get_available_devices(self) -> list[str]:
        """Same as :attr:`available_devices`."""
        return self.available_devices

    def get_property(self, device_name: str, name: Any = None) -> Any:
        """A device property or metric, or a core property.

        >>> core = Core()
        >>> core.get_property("CPU", "DEVICE_TYPE")
        'INTEGRATED'
        >>> core.get_property("CACHE_DIR")           # core keys: no device needed
        ''
        """
        if name is None:
            device_name, name = "", device_name
        key = key_name(name)
        if not device_name:
            if key == "SUPPORTED_PROPERTIES":
                return {k: s.mutability for k, s in CORE_PROPERTIES.items()}
            if key not in CORE_KEYS:
                raise PropertyError(f"{key} is not a core property (those are "
                                    f"{', '.join(sorted(CORE_KEYS))}); name a device: "
                                    f"core.get_property('CPU', '{key}')")
            return self._core_properties[key]
        if key in CORE_KEYS:
            self._dispatcher.property_target(device_name)  # the device must exist
            return self._core_value(device_name, key)
        return self._dispatcher.get_property(device_name, key)

    def _core_value(self, device_name: str, key: str, config: Mapping[str, Any] | None = None) -> Any:
        """A core key for one compile: the config, then the device's scope, then core-wide."""
        if config and key in config:
            return config[key]
        for scope in (device_name, device_name.split(".")[0]):
            if key in self._device_core_properties.get(scope, {}):
                return self._device_core_properties[scope][key]
        return self._core_properties[key]

    def set_property(self, device_name: str | Mapping[str, Any], properties: Mapping[str, Any] | None = None) -> None:
        """Defaults for later compiles.

        ``core.set_property({...})`` sets core keys (``CACHE_DIR``, ...) and gives every other key
        to each device that supports it (``DEVICE_PROPERTIES`` entries go to the named devices);
        ``core.set_property("GPU", {...})`` sets them for every GPU, ``"GPU.1"`` for that one.
        """
        if isinstance(device_name, Mapping):
            config = {key_name(k): v for k, v in device_name.items()}
            core = validate_config(CORE_PROPERTIES, {k: v for k, v in config.items() if k in CORE_KEYS}, "Core")
            nested = config.pop("DEVICE_PROPERTIES", None) or {}
            if not isinstance(nested, Mapping):
                raise PropertyError(f"Wrong value {nested!r} for property key DEVICE_PROPERTIES. "
                                    f"Expected a dict of device name -> dict of properties")
            for device, props in nested.items():
                self.set_property(device, props)
            rest = {k: v for k, v in config.items() if k not in CORE_KEYS}
            if rest:
                self._plugins.set_global(rest)
            self._core_properties.update(core)
            return
        if ":" in device_name:
            raise PropertyError(f"set_property is supported only for a device itself, without "
                                f"a device list: got '{device_name}'")
        config = {key_name(k): v for k, v in (properties or {}).items()}
        plugin, device_id = self._dispatcher.property_target(device_name, "set_property")
        core = validate_config(CORE_PROPERTIES, {k: v for k, v in config.items() if k in CORE_KEYS},
                               "Core")
        plugin.set_property({k: v for k, v in config.items() if k not in CORE_KEYS}, device_id)
        if core:
            self._device_core_properties.setdefault(device_name, {}).update(core)

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
        """Register a device plugin: an object, a class, or a ``'module:attr'`` import path.

        It replaces a built-in of the same name until :meth:`unload_plugin`, e.g. the VPU's
        emulation backend: ``core.register_plugin(VPUPlugin(emulate=True), "VPU")``.
        """
        self._plugins.register(plugin, device_name)
        if config:
            self.set_property(device_name or plugin.name, config)

    def unload_plugin(self, device_name: str) -> None:
        """Drop a loaded plugin and the properties set on it; built-in and installed plugins are
        loaded afresh on next use, registered objects are forgotten."""
        self._plugins.unregister(device_name)

    def import_model(self, model_stream: Any, device_name: str,
                     config: Mapping[str, Any] | None = None) -> CompiledModel:
        """A compiled model from what ``CompiledModel.export_model()`` wrote (``io.BytesIO``,
        bytes, or a binary file object), on the device type that exported it.

        >>> blob = core.compile_model(model, "CPU").export_model()          # doctest: +SKIP
        >>> compiled = core.import_model(blob, "CPU")                        # doctest: +SKIP
        """
        data = _blob_buffer(model_stream)
        config = {key_name(k): v for k, v in (config or {}).items() if key_name(k) not in CORE_KEYS}
        plugin, device_id, cfg = self._dispatcher.split(device_name, config)
        if not hasattr(plugin, "import_model"):
            raise InfermuxError(f"Not Implemented: the {plugin.name} device cannot import models; "
                                f"import on the device the model was exported from")
        device_model = plugin.import_model(data, cfg, device_id)
        return CompiledModel(device_model, _network_name(device_model))

    # -- models -----------------------------------------------------------------------------
    def read_model(self, model: Any, weights: Any = None) -> Model:
        """Read a model: ONNX (path, bytes, ``onnx.ModelProto``), OpenVINO IR (``.xml`` with the
        ``.bin`` beside it, or XML bytes + weights) or Paddle (``.pdmodel`` + ``.pdiparams``, or
        their folder)."""
        if isinstance(model, Model):
            return model
        if isinstance(model, (bytes, bytearray, memoryview)):
            if bytes(model[:256]).lstrip().startswith((b"<?xml", b"<net")):
                from infermux.graph.ir import read_ir

                return read_ir(model, weights)
        elif isinstance(model, (str, os.PathLike)):
            path = Path(model)
            suffix = path.suffix.lower()
            if suffix == ".xml":
                from infermux.graph.ir import read_ir

                return read_ir(path, weights)
            if suffix == ".pdmodel" or (path.is_dir() and (path / "inference.pdmodel").is_file()):
                from infermux.graph.paddle import read_paddle

                return read_paddle(path, weights)
            if suffix not in (".onnx", ""):
                raise ModelReadError(
                    f"Cannot read model '{model}': the '{suffix}' format is not supported; infermux "
                    f"reads ONNX (.onnx), OpenVINO IR (.xml + .bin) and Paddle (.pdmodel + .pdiparams)")
        from infermux.graph.onnx_reader import read_onnx

        return read_onnx(model)

    def compile_model(self, model: Any, device_name: str | None = None,
                      config: Mapping[str, Any] | None = None) -> CompiledModel:
        """Compile a model (or a model path) for a device; no device means the default device.

        With ``CACHE_DIR`` set (core-wide, for the device, or in ``config``) a device that can
        export models compiles through the cache: the second compile of the same model with the
        same caching properties imports the blob (``LOADED_FROM_CACHE`` is True), and compiling
        from a path then skips reading the model.
        """
        device = device_name or _DEFAULT_DEVICE
        config = {key_name(k): v for k, v in (config or {}).items()}
        core = validate_config(CORE_PROPERTIES, {k: v for k, v in config.items() if k in CORE_KEYS}, "Core")
        config = {k: v for k, v in config.items() if k not in CORE_KEYS}
        cache_dir = self._core_value(device, "CACHE_DIR", core) if isinstance(device, str) else ""
        if cache_dir:
            cache = ModelCache(cache_dir, use_mmap=self._core_value(device, "ENABLE_MMAP", core))
            device_model = self._compile_cached(model, device, config, cache)
            if device_model is not None:
                return CompiledModel(device_model, _network_name(device_model))
        if not isinstance(model, Model):
            model = self.read_model(model)
        device_model = self._dispatcher.compile(model, device, config)
        return CompiledModel(device_model, model.friendly_name)

    def _compile_cached(self, model: Any, device: str, config: dict[str, Any], cache: ModelCache):
        """Compile through ``cache``, or None when the device cannot cache (virtual devices and
        plugins without ``EXPORT_IMPORT`` compile normally, as in OpenVINO)."""
        plugin, device_id, cfg = self._dispatcher.split(device, config)
        if getattr(plugin, "virtual", False) or not supports_caching(plugin, device_id):
            log.debug("%s does not cache compiled models; compiling without CACHE_DIR", device)
            return None
        path = model if isinstance(model, (str, os.PathLike)) and Path(model).is_file() else None
        if path is None and not isinstance(model, Model):
            model = self.read_model(model)
        return compile_cached(plugin, device_id, cfg, cache,
                              model=None if path is not None else model, path=path,
                              read_model=self.read_model)

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

    def export_model(self) -> io.BytesIO:
        """The compiled model as a blob for ``core.import_model`` (an ``io.BytesIO``, as OpenVINO).

        The format is documented in :mod:`infermux.devices.cache`: JSON, ONNX and raw arrays, no
        pickle."""
        export = getattr(self._device, "export_model", None)
        if export is None:
            raise InfermuxError(f"Not Implemented: a model compiled for "
                                f"{self._device.device_name} cannot be exported")
        return io.BytesIO(export())

    @property
    def device_model(self):
        """The device-level compiled model (for schedulers and tools)."""
        return self._device

    def __repr__(self) -> str:
        return f"<CompiledModel '{self._name}' on {self._device.device_name}>"


def _network_name(device_model: Any) -> str:
    name = getattr(device_model, "model_name", None)
    if name is None:
        try:
            name = device_model.get_property("NETWORK_NAME")
        except Exception:  # noqa: BLE001 - a device model without names
            name = "model"
    return str(name)


def _blob_buffer(stream: Any) -> bytearray:
    """A writable copy of a blob given as ``io.BytesIO``, bytes-like, or a binary file object."""
    if isinstance(stream, io.BytesIO):
        return bytearray(stream.getbuffer())
    if isinstance(stream, (bytes, bytearray, memoryview)):
        return bytearray(stream)
    if hasattr(stream, "read"):
        return bytearray(stream.read())
    raise TypeError(f"import_model takes io.BytesIO, bytes or a binary file, got {type(stream).__name__}")


def save_model(model: Model, output_model: str | os.PathLike, compress_to_fp16: bool = True) -> None:
    """Write ``model`` as OpenVINO IR (``.xml`` + ``.bin``, fp16 weights by default as
    ``ov.save_model``), or as ONNX when the name ends in ``.onnx``."""
    path = Path(output_model)
    if path.suffix.lower() == ".onnx":
        from infermux.graph.onnx_writer import save_onnx

        save_onnx(model, path)
        return
    from infermux.graph.ir import save_ir

    save_ir(model, path if path.suffix else path.with_suffix(".xml"), compress_to_fp16=compress_to_fp16)


def compile_model(model: Any, device_name: str | None = None, config: Mapping[str, Any] | None = None) -> CompiledModel:
    """``Core().compile_model(...)`` in one call."""
    return Core().compile_model(model, device_name, config)
