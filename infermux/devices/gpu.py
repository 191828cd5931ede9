"""The GPU plugin: the same kernels with ``xp = cupy``, one ``GPU.N`` per CUDA device.

It is real only where CuPy imports and a CUDA device exists; elsewhere it lists no device (so
``GPU`` is not in ``available_devices``) and compiling for it raises
:class:`~infermux.errors.DeviceNotFoundError`.  CuPy is imported on first use, never at import.

* Compile runs the shared passes on the host, then builds the plan with ``xp = cupy``, which
  uploads every weight to the device once.  With ``INFERENCE_PRECISION_HINT=f16`` the graph is
  converted first (:func:`~infermux.devices.plugin.convert_precision`): float32 weights become
  float16 and the ops compute in float16.
* An inference copies its inputs to the device (cast to float16 there in f16 mode), runs the
  plan, and copies the outputs back in the model's declared types: host<->device copies happen
  at the model boundary only.  Variables of stateful models cross it too, once per inference.
* Each thread that runs inferences gets its own non-blocking CUDA stream, so requests running
  at the same time (``NUM_STREAMS`` of them under THROUGHPUT) overlap on the device.
* Memory comes from CuPy's default memory pool; ``release_memory()`` hands cached blocks back.
* Properties come from the device: ``FULL_DEVICE_NAME``, ``DEVICE_ARCHITECTURE`` (``sm_90``),
  ``DEVICE_TOTAL_MEM_SIZE`` and ``DEVICE_AVAILABLE_MEM_SIZE`` (free memory now).

Unlike OpenVINO's GPU plugin the default precision is f32, so results match the CPU's; ask for
f16 explicitly.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from infermux.devices.cache import read_blob, write_blob
from infermux.devices.compile import kernel_chooser, supported_nodes
from infermux.devices.plan import Plan
from infermux.devices.plugin import convert_precision, optimize_model
from infermux.devices.properties import (
    RO,
    RW,
    ExecutionMode,
    PerformanceMode,
    PropertySpec,
    PropertyTable,
    bool_validator,
    enum_validator,
    int_validator,
    precision_validator,
)
from infermux.errors import DeviceNotFoundError, PropertyError
from infermux.graph.model import Model
from infermux.ops.state import StateFrame

__all__ = ["GPUCompiledModel", "GPUPlugin", "boundary_dtypes", "cuda_device_count"]

log = logging.getLogger(__name__)

_COMPILED_KEYS = ("SUPPORTED_PROPERTIES", "NETWORK_NAME", "OPTIMAL_NUMBER_OF_INFER_REQUESTS",
                  "EXECUTION_DEVICES", "PERFORMANCE_HINT", "PERFORMANCE_HINT_NUM_REQUESTS",
                  "NUM_STREAMS", "INFERENCE_PRECISION_HINT", "EXECUTION_MODE_HINT", "PERF_COUNT",
                  "LOADED_FROM_CACHE")
_MAX_STREAMS = 4


def _import_cupy() -> Any:
    try:
        import cupy
    except Exception as exc:  # noqa: BLE001 - ImportError, or a broken CUDA install
        log.debug("CuPy is not usable: %s", exc)
        return None
    return cupy


def cuda_device_count(cp: Any = None) -> int:
    """CUDA devices CuPy can see; 0 without CuPy or without a driver."""
    cp = cp if cp is not None else _import_cupy()
    if cp is None:
        return 0
    try:
        return int(cp.cuda.runtime.getDeviceCount())
    except Exception as exc:  # noqa: BLE001 - CUDARuntimeError: no driver, no device
        log.debug("no CUDA device: %s", exc)
        return 0


def boundary_dtypes(infos, precision: str) -> list[np.dtype | None]:
    """Per model input or output: the dtype a float tensor has inside the plan (float16 in f16
    mode for float32 tensors), or None when it crosses the boundary unchanged."""
    result = []
    for info in infos:
        try:
            dtype = info.element_type.to_dtype()
        except Exception:  # noqa: BLE001 - dynamic types pass unchanged
            dtype = None
        result.append(np.dtype(np.float16) if precision == "f16" and dtype == np.float32 else None)
    return result


def _declared_dtypes(infos) -> list[np.dtype | None]:
    result = []
    for info in infos:
        try:
            dtype = info.element_type.to_dtype()
        except Exception:  # noqa: BLE001
            dtype = None
        result.append(dtype if dtype is not None and dtype.kind == "f" else None)
    return result


def optimal_batch_size(multiprocessors: int) -> int:
    """A batch that fills the device: a power of two near one image per 8 multiprocessors
    (an H100's 132 give 16), at least 1 and at most 64."""
    target = max(1, multiprocessors // 8)
    return int(min(64, 1 << (target.bit_length() - 1)))


class GPUPlugin:
    """The ``GPU`` device family: ``GPU.0``, ``GPU.1``... (``GPU`` means ``GPU.0``).

    ``cupy`` may be given a module with CuPy's API (tests use a NumPy-backed stand-in); by default
    the real CuPy is imported on first use."""

    name = "GPU"

    def __init__(self, *, cupy: Any = None):
        self._cp = cupy
        self._cp_checked = cupy is not None
        self.properties = PropertyTable(self.name, self._specs())

    # -- devices ----------------------------------------------------------------------------
    def cupy(self) -> Any:
        """The CuPy module, or None where it cannot be imported."""
        if not self._cp_checked:
            self._cp = _import_cupy()
            self._cp_checked = True
        return self._cp

    def devices(self) -> list[str]:
        """``['0', '1', ...]``, one per CUDA device; empty without CuPy or a device."""
        return [str(i) for i in range(cuda_device_count(self.cupy()))]

    def _index(self, device_id: str) -> int:
        ids = self.devices()
        if not ids:
            why = "CuPy is not installed" if self.cupy() is None else "CUDA reports no device"
            raise DeviceNotFoundError(f"GPU: no CUDA GPU is available ({why}). Install "
                                      f"cupy-cuda12x on a machine with an NVIDIA GPU, or use CPU")
        device_id = device_id or ids[0]
        if device_id not in ids:
            raise DeviceNotFoundError(f"GPU plugin has no device '{device_id}'; available: "
                                      f"{', '.join(f'GPU.{i}' for i in ids)}")
        return int(device_id)

    @functools.cache  # noqa: B019 - one plugin per Core, a few devices
    def _device_info(self, index: int) -> dict[str, Any]:
        props = self.cupy().cuda.runtime.getDeviceProperties(index)
        name = props.get("name", b"CUDA GPU")
        return {"name": name.decode() if isinstance(name, bytes) else str(name),
                "arch": f"sm_{props.get('major', 0)}{props.get('minor', 0)}",
                "total": int(props.get("totalGlobalMem", 0)),
                "sms": int(props.get("multiProcessorCount", 1)),
                "integrated": bool(props.get("integrated", 0))}

    def _info(self, device_id: str) -> dict[str, Any]:
        return self._device_info(self._index(device_id))

    def _free_memory(self, device_id: str) -> int:
        index = self._index(device_id)
        cp = self.cupy()
        with cp.cuda.Device(index):
            return int(cp.cuda.runtime.memGetInfo()[0])

    def _specs(self) -> list[PropertySpec]:
        info = self._info
        return [
            PropertySpec("AVAILABLE_DEVICES", RO, compute=lambda _id: self.devices()),
            PropertySpec("FULL_DEVICE_NAME", RO, compute=lambda i: f"{info(i)['name']} (CUDA, CuPy)"),
            PropertySpec("DEVICE_TYPE", RO,
                         compute=lambda i: "INTEGRATED" if info(i)["integrated"] else "DISCRETE"),
            PropertySpec("DEVICE_ARCHITECTURE", RO, compute=lambda i: info(i)["arch"]),
            PropertySpec("OPTIMIZATION_CAPABILITIES", RO, ["FP32", "FP16", "EXPORT_IMPORT"]),
            PropertySpec("RANGE_FOR_STREAMS", RO, (1, _MAX_STREAMS)),
            PropertySpec("RANGE_FOR_ASYNC_INFER_REQUESTS", RO, (1, 2 * _MAX_STREAMS, 1)),
            PropertySpec("OPTIMAL_BATCH_SIZE", RO, compute=lambda i: optimal_batch_size(info(i)["sms"])),
            PropertySpec("DEVICE_TOTAL_MEM_SIZE", RO, compute=lambda i: info(i)["total"]),
            PropertySpec("DEVICE_AVAILABLE_MEM_SIZE", RO, compute=self._free_memory),
            PropertySpec("CACHING_PROPERTIES", RO, ["INFERENCE_PRECISION_HINT", "DEVICE_ARCHITECTURE"]),
            PropertySpec("PERFORMANCE_HINT", RW, PerformanceMode.LATENCY,
                         enum_validator(PerformanceMode, "PERFORMANCE_HINT")),
            PropertySpec("PERFORMANCE_HINT_NUM_REQUESTS", RW, 0,
                         int_validator("PERFORMANCE_HINT_NUM_REQUESTS")),
            PropertySpec("NUM_STREAMS", RW, 1, int_validator("NUM_STREAMS", 1, ("AUTO",))),
            PropertySpec("INFERENCE_PRECISION_HINT", RW, "f32",
                         precision_validator("INFERENCE_PRECISION_HINT", ("f32", "f16"), "GPU")),
            PropertySpec("EXECUTION_MODE_HINT", RW, ExecutionMode.PERFORMANCE,
                         enum_validator(ExecutionMode, "EXECUTION_MODE_HINT")),
            PropertySpec("PERF_COUNT", RW, False, bool_validator("PERF_COUNT")),
        ]

    # -- properties -------------------------------------------------------------------------
    def get_property(self, key: str, device_id: str = "") -> Any:
        """A device property or metric (metrics need a device)."""
        if device_id:
            self._index(device_id)
        return self.properties.get(key, device_id)

    def set_property(self, properties: Mapping[str, Any], device_id: str = "") -> None:
        """Defaults for later compiles: ``GPU`` sets them for every GPU, ``GPU.1`` for one."""
        if device_id:
            self._index(device_id)
        self.properties.set(properties, device_id)

    # -- models -----------------------------------------------------------------------------
    def query_model(self, model: Model, config: Mapping[str, Any] | None = None,
                    device_id: str = "") -> dict[str, str]:
        """{node name: 'GPU'}: the nodes with a kernel, except those touching string tensors."""
        self._index(device_id)
        graph = model.graph

        def has_strings(node) -> bool:
            for name in [*node.inputs, *node.outputs]:
                vi = graph.type_of(name) if name else None
                if vi is not None and vi.element_type.name == "string":
                    return True
            return False

        nodes = {n.name: n for n in graph.nodes}
        return {name: self.name for name, ok in supported_nodes(model).items()
                if ok and not has_strings(nodes[name])}

    def compile_model(self, model: Model, config: Mapping[str, Any] | None = None,
                      device_id: str = "") -> GPUCompiledModel:
        """Compile for one GPU (the config is validated first, device or not)."""
        cfg, explicit = self.properties.resolve(config, device_id)
        index = self._index(device_id)
        return GPUCompiledModel(optimize_model(model), cfg, explicit, index, self.cupy(),
                                arch=self._device_info(index)["arch"])

    def import_model(self, data: bytes | bytearray | memoryview, config: Mapping[str, Any] | None = None,
                     device_id: str = "") -> GPUCompiledModel:
        """A compiled model from a blob that a GPU ``export_model`` wrote."""
        cfg, explicit = self.properties.resolve(config, device_id)
        index = self._index(device_id)
        blob = read_blob(data, plugin=self.name)
        return GPUCompiledModel(blob.model, cfg, explicit, index, self.cupy(),
                                arch=self._device_info(index)["arch"], loaded_from_cache=True)


def _precision(cfg: Mapping[str, Any], explicit: set[str]) -> str:
    if cfg.get("EXECUTION_MODE_HINT") == ExecutionMode.ACCURACY and \
            "INFERENCE_PRECISION_HINT" not in explicit:
        return "f32"
    return cfg["INFERENCE_PRECISION_HINT"]


def _num_streams(cfg: Mapping[str, Any], explicit: set[str]) -> int:
    if "NUM_STREAMS" in explicit and cfg["NUM_STREAMS"] != "AUTO":
        streams = int(cfg["NUM_STREAMS"])
    elif cfg["PERFORMANCE_HINT"] != PerformanceMode.LATENCY or cfg["NUM_STREAMS"] == "AUTO":
        streams = 2
    else:
        streams = 1
    if cfg["PERFORMANCE_HINT_NUM_REQUESTS"] and "NUM_STREAMS" not in explicit:
        streams = min(streams, int(cfg["PERFORMANCE_HINT_NUM_REQUESTS"]))
    return max(1, min(_MAX_STREAMS, streams))


class GPUCompiledModel:
    """A model compiled for one CUDA device: a CuPy plan, per-thread streams, boundary copies."""

    device_type = "GPU"

    def __init__(self, optimized: Model, cfg: dict[str, Any], explicit: set[str], index: int,
                 cupy: Any, *, arch: str = "", loaded_from_cache: bool = False):
        self._cp = cupy
        self.index = index
        self.device_name = f"GPU.{index}"
        self.model_name = optimized.friendly_name
        self.input_infos = list(optimized.graph.inputs)
        self.output_infos = list(optimized.graph.outputs)
        self.loaded_from_cache = loaded_from_cache
        self._optimized, self._cfg, self._arch = optimized, dict(cfg), arch
        self.precision = _precision(cfg, set(explicit))
        self._cfg["INFERENCE_PRECISION_HINT"] = self.precision
        self.num_streams = _num_streams(cfg, set(explicit))
        self._input_dtypes = boundary_dtypes(self.input_infos, self.precision)
        self._output_dtypes = _declared_dtypes(self.output_infos)
        graph = optimized.graph
        if self.precision == "f16":
            graph = convert_precision(graph, np.float16)
        with cupy.cuda.Device(index) as device:
            self.plan = Plan(graph, optimized.opsets, cupy, kernel_for=kernel_chooser(False), fuse=True)
            device.synchronize()  # the weights are on the device before any stream reads them
        self._local = threading.local()
        self._executor: ThreadPoolExecutor | None = None
        self._executor_lock = threading.Lock()

    # -- running ----------------------------------------------------------------------------
    def _stream(self) -> Any:
        stream = getattr(self._local, "stream", None)
        if stream is None:
            stream = self._cp.cuda.Stream(non_blocking=True)
            self._local.stream = stream
        return stream

    def _upload(self, value: Any, dtype: np.dtype | None) -> Any:
        if value is None:
            return None
        if isinstance(value, list):
            return [self._upload(v, dtype) for v in value]
        array = self._cp.asarray(value)
        return array.astype(dtype) if dtype is not None and array.dtype != dtype else array

    def _download(self, value: Any, dtype: np.dtype | None, stream: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, list):
            return [self._download(v, dtype, stream) for v in value]
        if isinstance(value, self._cp.ndarray):
            if dtype is not None and value.dtype != dtype:
                value = value.astype(dtype)
            return self._cp.asnumpy(value, stream=stream)
        array = np.asarray(value)
        return array.astype(dtype) if dtype is not None and array.dtype != dtype else array

    def infer(self, inputs: Sequence[Any], *, profile: bool = False, state=None):
        """Run once: inputs to the device, the plan on this thread's stream, outputs back."""
        with self._cp.cuda.Device(self.index):
            stream = self._stream()
            with stream:
                feeds = [self._upload(x, d) for x, d in zip(inputs, self._input_dtypes)]
                frame = None
                if state is not None:
                    frame = StateFrame({k: self._upload(v, None) for k, v in state.values.items()})
                if profile or self._cfg["PERF_COUNT"]:
                    outputs, timings = self.plan.run_profiled(feeds, sync=stream.synchronize, state=frame)
                else:
                    outputs, timings = self.plan.run(feeds, state=frame), None
                host = [self._download(o, d, stream) for o, d in zip(outputs, self._output_dtypes)]
                if state is not None:
                    state.values.update({k: self._download(v, None, stream) for k, v in frame.values.items()})
                stream.synchronize()
        return host, timings

    @property
    def variables(self) -> dict:
        """{variable id: its ReadValue/Assign node} (empty for stateless models)."""
        return self.plan.variables

    def initial_state(self, variable_id: str):
        """A variable's initial value on the host, or None when computed during inference."""
        with self._cp.cuda.Device(self.index):
            value = self.plan.initial_value(variable_id)
            return None if value is None else self._download(value, None, None)

    def submit(self, fn: Callable[[], Any]) -> Future:
        """Run ``fn`` on one of the model's stream threads (each has its own CUDA stream)."""
        if self._executor is None:
            with self._executor_lock:
                if self._executor is None:
                    self._executor = ThreadPoolExecutor(self.num_streams,
                                                        thread_name_prefix=f"infermux-gpu{self.index}")
        return self._executor.submit(fn)

    # -- properties and export --------------------------------------------------------------
    def get_property(self, key: str) -> Any:
        """A compiled-model property."""
        key = str(getattr(key, "value", key))
        table = {"SUPPORTED_PROPERTIES": {k: RO for k in _COMPILED_KEYS},
                 "NETWORK_NAME": self.model_name, "EXECUTION_DEVICES": [self.device_name],
                 "OPTIMAL_NUMBER_OF_INFER_REQUESTS": self.num_streams,
                 "NUM_STREAMS": self.num_streams, "LOADED_FROM_CACHE": self.loaded_from_cache}
        if key in table:
            return table[key]
        if key in self._cfg and key in _COMPILED_KEYS:
            value = self._cfg[key]
            return str(value) if hasattr(value, "value") else value
        raise PropertyError(f"Unsupported property {key} of a GPU compiled model. Supported: "
                            f"{', '.join(_COMPILED_KEYS)}.")

    def set_property(self, properties: Mapping[str, Any]) -> None:
        """Compiled models are immutable."""
        raise PropertyError("It's not possible to set property of an already compiled model. "
                            "Set property to Core::compile_model during compilation")

    def export_model(self) -> bytearray:
        """The compiled model as a blob (the optimised graph; weights in the model's precision)."""
        return write_blob(self._optimized, self.device_type,
                          {"INFERENCE_PRECISION_HINT": self.precision, "DEVICE_ARCHITECTURE": self._arch},
                          value_info=False)

    def release(self) -> None:
        """Stop the stream threads and return CuPy's cached, unused blocks to the driver."""
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None
        try:
            self._cp.get_default_memory_pool().free_all_blocks()
        except Exception as exc:  # noqa: BLE001 - best effort
            log.debug("could not free the CuPy memory pool: %s", exc)
