"""The ``Plugin`` protocol every device implements, the compiled-model protocol it returns, and
the compile steps the array-module plugins (CPU on NumPy, GPU on CuPy, VPU in fp16) share.

A plugin turns a :class:`~infermux.graph.model.Model` into a *device compiled model*: something
that runs one inference synchronously (``infer``) and owns the executor its asynchronous requests
run on (``submit``).  The scheduler's infer requests and the virtual devices (AUTO, MULTI, HETERO,
BATCH) are written against these two protocols only.

A plugin that can cache compiled models also implements :class:`ImportingPlugin`
(``import_model``), its compiled models :class:`ExportableCompiledModel` (``export_model``), and it
lists ``EXPORT_IMPORT`` in ``OPTIMIZATION_CAPABILITIES`` and the keys that change a compiled blob
in ``CACHING_PROPERTIES``.  A third-party plugin is any object with these methods, announced in
the ``infermux.plugins`` entry-point group of its package::

    [project.entry-points."infermux.plugins"]
    MYDEV = "mypackage.plugin:MyDevicePlugin"
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from typing import Any, Protocol, runtime_checkable

import numpy as np

from infermux.graph.model import Graph, Model, ValueInfo
from infermux.graph.types import Type

__all__ = [
    "DeviceCompiledModel",
    "ExportableCompiledModel",
    "ImportingPlugin",
    "Plugin",
    "convert_precision",
    "optimize_model",
]

log = logging.getLogger(__name__)


@runtime_checkable
class DeviceCompiledModel(Protocol):
    """A model compiled for one (possibly virtual) device."""

    device_name: str
    input_infos: list[ValueInfo]
    output_infos: list[ValueInfo]

    variables: dict[str, Any]

    def infer(self, inputs: Sequence[Any], *, profile: bool = False,
              state: Any = None) -> tuple[list[Any], list | None]:
        """Run once in the calling thread: ``(outputs, per-node timings or None)``.

        ``state`` is the request's :class:`~infermux.ops.state.StateFrame` (stateful models)."""

    def submit(self, fn: Callable[[], Any]) -> Future:
        """Run ``fn`` on this model's executor (its streams); returns the future.

        Optionally a device model may also offer ``infer_async(inputs, state, on_done)``: start
        one inference and call ``on_done(outputs, timings, error)`` when it ends, from any
        thread.  Requests then use it instead of parking a thread in ``infer`` (BATCH does, so
        a batch of N requests costs one thread hand-off, not N)."""

    def get_property(self, key: str) -> Any:
        """A compiled-model property (``OPTIMAL_NUMBER_OF_INFER_REQUESTS``, ...)."""

    def set_property(self, properties: Mapping[str, Any]) -> None:
        """Change a mutable compiled-model property."""

    def release(self) -> None:
        """Free executors and buffers."""


@runtime_checkable
class Plugin(Protocol):
    """A device family: ``CPU``, ``GPU``, ``VPU``, or a virtual device."""

    name: str

    def devices(self) -> list[str]:
        """Device ids present now (``['']`` for CPU, ``['0', '1']`` for two GPUs)."""

    def get_property(self, key: str, device_id: str = "") -> Any:
        """A device property or metric."""

    def set_property(self, properties: Mapping[str, Any], device_id: str = "") -> None:
        """Set defaults for later compiles."""

    def query_model(self, model: Model, config: Mapping[str, Any] | None = None,
                    device_id: str = "") -> dict[str, str]:
        """``{node name: device name}`` for the nodes this device can run."""

    def compile_model(self, model: Model, config: Mapping[str, Any] | None = None,
                      device_id: str = "") -> DeviceCompiledModel:
        """Compile ``model`` for this device."""


@runtime_checkable
class ExportableCompiledModel(DeviceCompiledModel, Protocol):
    """A compiled model that can be written to a blob (``CompiledModel.export_model``)."""

    def export_model(self) -> bytes:
        """The compiled model as a blob that the plugin's ``import_model`` reads back."""


@runtime_checkable
class ImportingPlugin(Plugin, Protocol):
    """A plugin that reads back the blobs its compiled models export (model caching)."""

    def import_model(self, data: bytes | bytearray | memoryview,
                     config: Mapping[str, Any] | None = None,
                     device_id: str = "") -> DeviceCompiledModel:
        """A compiled model from ``data``; raises :class:`~infermux.devices.cache.BlobError`
        when the blob is corrupt or not this plugin's."""


# -- compile steps shared by the array-module plugins ----------------------------------------
# optimize_model lives with the rest of the compile pipeline (devices/compile.py)
from infermux.devices.compile import optimize_model  # noqa: E402


# Inputs that keep their float32 type under a lower precision: they are parameters whose exact
# value matters (Resize scales decide output sizes), or ONNX fixes their type to float32.
_KEEP_F32_INPUTS = {"Resize": (1, 2), "Upsample": (1,), "NonMaxSuppression": (3, 4),
                    "Dropout": (1,)}
_F32_CODE, _F16_CODE = 1, 10
_DTYPE_ATTRS = {"Cast": "to", "RandomNormal": "dtype", "RandomUniform": "dtype",
                "RandomNormalLike": "dtype", "RandomUniformLike": "dtype", "EyeLike": "dtype",
                "Bernoulli": "dtype", "Multinomial": "dtype"}


def convert_precision(graph: Graph, dtype=np.float16) -> Graph:
    """A copy of ``graph`` computing in ``dtype`` (float16) instead of float32.

    float32 weights become float16 (once, at compile), ``Cast(to=float)`` and the other ops that
    make float32 tensors make float16 ones, and the recorded types of intermediate tensors follow.
    Graph inputs and outputs keep their declared types: the compiled model casts at the boundary
    (float32 in -> float16, float16 out -> the declared type).  float64 tensors are left alone.
    """
    target = np.dtype(dtype)
    code = _F16_CODE if target == np.float16 else _F32_CODE
    keep = {node.inputs[i] for node in graph.nodes
            for i in _KEEP_F32_INPUTS.get(node.op_type, ()) if i < len(node.inputs) and node.inputs[i]}
    with np.errstate(over="ignore"):  # weights beyond float16's range become inf, as on a device
        inits = {name: (arr.astype(target) if arr.dtype == np.float32 and name not in keep else arr)
                 for name, arr in graph.initializers.items()}
    nodes = [_convert_node(n, target, code) for n in graph.nodes]
    boundary = {v.name for v in graph.inputs} | {v.name for v in graph.outputs}
    value_info = {name: (dataclasses.replace(vi, element_type=Type.from_numpy(target))
                         if vi.element_type == Type.f32 and name not in boundary and name not in keep
                         else vi)
                  for name, vi in graph.value_info.items()}
    return dataclasses.replace(graph, nodes=nodes, initializers=inits, value_info=value_info,
                               inputs=list(graph.inputs), outputs=list(graph.outputs))


def _convert_node(node, target: np.dtype, code: int):
    attrs = {}
    for name, value in node.attrs.items():
        if isinstance(value, Graph):
            value = convert_precision(value, target)
        elif isinstance(value, np.ndarray) and value.dtype == np.float32:
            value = value.astype(target)
        elif name == _DTYPE_ATTRS.get(node.op_type) and value == _F32_CODE:
            value = code
        attrs[name] = value
    return dataclasses.replace(node, attrs=attrs, inputs=list(node.inputs),
                               outputs=list(node.outputs), rt_info=dict(node.rt_info))
