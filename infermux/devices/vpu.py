"""The VPU plugin: a Myriad-class fp16 accelerator with a restricted op set and a memory limit.

What the device can run (:func:`vpu_support`, the basis of ``query_model``, which is what makes
HETERO put the rest on another device):

* ops: the conv-net core in :data:`VPU_OPS` - convolution and pooling (2-D only), elementwise
  math and comparisons, activations, Concat, Reshape/Transpose/Flatten/Squeeze/Unsqueeze,
  Split/Slice/Gather, Pad, Resize, Softmax, MatMul/Gemm, BatchNorm and the other normalisations,
  mean/sum/max/min reductions, Cast.  No LSTM/GRU/RNN, no If/Loop/Scan, no sequences, no other op.
* types: float tensors run in fp16 (float32 is converted; float64 is refused); int32, int8,
  uint8 and bool are fine; int64 only as the shape-like inputs of shape ops (Reshape's shape,
  Slice's starts, Gather's indices, ...): no int64 tensor math, no int64 outputs.
* attribute limits: convolution and pooling on 4-D tensors (2 spatial dims), MaxPool without the
  indices output, Resize/Upsample in nearest or linear mode, Pad in constant/edge/reflect mode.
* nodes that constant folding removes at compile time run nowhere, so they count as supported.

Numerics: weights are stored in fp16 and every op computes on fp16 tensors; the accumulating
ops (Conv, MatMul, Gemm, pooling averages, Softmax, reductions, normalisations) accumulate in
fp32 and round their result to fp16, as the hardware's MAC arrays do.  Model inputs are rounded to
fp16 on entry and outputs converted back to the model's types on exit.

Memory: a device has :data:`VPU_MEMORY_BYTES` (512 MiB); a model needs its fp16 weights plus the
peak of its live activations, and compiled models on one device share it.  A model that does not
fit fails to compile with a message saying how much it needs.

Backends: no hardware backend ships with infermux, so by default no VPU is listed.  The emulation
backend runs the fp16 plan on the host, for developing HETERO/MULTI placement without the
hardware; it is switched on explicitly, with ``INFERMUX_VPU_EMULATION=1`` (``=N`` for N devices)
or ``core.register_plugin(VPUPlugin(emulate=True), "VPU")``, and its ``FULL_DEVICE_NAME`` says
"emulated".

>>> import infermux as im
>>> from infermux.devices.vpu import VPUPlugin
>>> core = im.Core()
>>> core.register_plugin(VPUPlugin(emulate=True), "VPU")
>>> "VPU" in core.available_devices
True
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from infermux.devices.cache import read_blob, write_blob
from infermux.devices.compile import supported_nodes
from infermux.devices.cpu import CPUCompiledModel
from infermux.devices.plan import Plan
from infermux.devices.plugin import convert_precision, optimize_model
from infermux.devices.properties import (
    RO,
    RW,
    PerformanceMode,
    PropertySpec,
    PropertyTable,
    bool_validator,
    enum_validator,
    int_validator,
    precision_validator,
)
from infermux.errors import DeviceNotFoundError, InfermuxError, UnsupportedOpError
from infermux.graph.model import Graph, Model, Node
from infermux.ops.registry import Kernel, lookup

__all__ = [
    "EMULATION_ENV",
    "VPU_MEMORY_BYTES",
    "VPU_OPS",
    "EmulationBackend",
    "VPUCompiledModel",
    "VPUMemoryError",
    "VPUPlugin",
    "vpu_support",
]

log = logging.getLogger(__name__)

VPU_MEMORY_BYTES = 512 << 20
EMULATION_ENV = "INFERMUX_VPU_EMULATION"
_MIB = float(1 << 20)

_ELEMENTWISE = {"Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum", "Mean", "Abs", "Neg",
                "Sqrt", "Exp", "Log", "Reciprocal", "Floor", "Ceil", "Round", "Sign", "Erf",
                "Equal", "Greater", "Less", "GreaterOrEqual", "LessOrEqual", "Where", "Not",
                "And", "Or", "Xor"}
_ACTIVATIONS = {"Relu", "LeakyRelu", "PRelu", "Sigmoid", "Tanh", "Elu", "Selu", "Clip",
                "HardSigmoid", "HardSwish", "Softplus", "Softsign", "Mish", "Gelu", "Celu",
                "ThresholdedRelu"}
_CONVNET = {"Conv", "ConvTranspose", "MaxPool", "AveragePool", "GlobalAveragePool",
            "GlobalMaxPool", "BatchNormalization", "InstanceNormalization", "LRN",
            "LayerNormalization", "MeanVarianceNormalization", "Softmax", "LogSoftmax", "MatMul",
            "Gemm", "Concat", "Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze", "Split",
            "Slice", "Gather", "Pad", "Resize", "Upsample", "DepthToSpace", "SpaceToDepth", "Tile",
            "Expand", "Identity", "Dropout", "Cast", "CastLike", "ReduceMean", "ReduceSum", "ReduceMax",
            "ReduceMin", "Constant", "ConstantOfShape"}
VPU_OPS = frozenset(_ELEMENTWISE | _ACTIVATIONS | _CONVNET)

# input positions that may be int64: shape-like arguments, not tensor math
_SHAPE_INPUTS = {"Reshape": {1}, "Slice": {1, 2, 3, 4}, "Pad": {1, 3}, "Resize": {3},
                 "Tile": {1}, "Expand": {1}, "Squeeze": {1}, "Unsqueeze": {1}, "Split": {1},
                 "Gather": {1}, "ConstantOfShape": {0}, "ReduceMean": {1}, "ReduceSum": {1},
                 "ReduceMax": {1}, "ReduceMin": {1}}
_DATA_TYPES = {"f32", "f16", "i32", "i8", "u8", "boolean"}

# ops whose fp16 inputs are accumulated in fp32 (the result is rounded back to fp16)
_F32_ACCUMULATE = {"Conv", "ConvTranspose", "MatMul", "Gemm", "AveragePool", "GlobalAveragePool",
                   "Softmax", "LogSoftmax", "ReduceMean", "ReduceSum", "LRN", "BatchNormalization",
                   "InstanceNormalization", "LayerNormalization", "MeanVarianceNormalization"}
_NOT_FOLDABLE = {"RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike",
                 "Bernoulli", "Multinomial", "If", "Loop", "Scan"}


class VPUMemoryError(InfermuxError, MemoryError):
    """The model does not fit in the VPU's memory."""


# -- what the VPU supports -------------------------------------------------------------------
def _rank(graph: Graph, name: str) -> int | None:
    vi = graph.type_of(name) if name else None
    return len(vi.shape) if vi is not None and vi.shape is not None else None


def _attribute_limit(node: Node, graph: Graph) -> str | None:
    op, attrs = node.op_type, node.attrs
    if op in ("Conv", "ConvTranspose"):
        rank = _rank(graph, node.inputs[1]) if len(node.inputs) > 1 else None
        if rank not in (None, 4):
            return f"{op} is 2-D only on the VPU (weights of rank 4), got rank {rank}"
    if op in ("MaxPool", "AveragePool") and len(attrs.get("kernel_shape", [0, 0])) != 2:
        return f"{op} is 2-D only on the VPU, got kernel_shape {attrs.get('kernel_shape')}"
    if op in ("GlobalAveragePool", "GlobalMaxPool") and _rank(graph, node.inputs[0]) not in (None, 4):
        return f"{op} is 2-D only on the VPU (4-D input)"
    if op == "MaxPool" and (len([o for o in node.outputs if o]) > 1 or attrs.get("storage_order", 0)):
        return "MaxPool's indices output and storage_order are not supported on the VPU"
    if op in ("Resize", "Upsample") and attrs.get("mode", "nearest") not in ("nearest", "linear"):
        return f"{op} mode '{attrs.get('mode')}' is not supported on the VPU (nearest, linear)"
    if op == "Pad" and attrs.get("mode", "constant") not in ("constant", "edge", "reflect"):
        return f"Pad mode '{attrs.get('mode')}' is not supported on the VPU (constant, edge, reflect)"
    return None


def _type_limit(node: Node, graph: Graph) -> str | None:
    shape_inputs = _SHAPE_INPUTS.get(node.op_type, set())
    tensors = [(f"input {i}", name, i in shape_inputs) for i, name in enumerate(node.inputs) if name]
    tensors += [(f"output {i}", name, False) for i, name in enumerate(node.outputs) if name]
    for where, name, shape_like in tensors:
        vi = graph.type_of(name)
        if vi is None or vi.element_type.is_dynamic():
            continue
        if vi.kind != "tensor":
            return f"{where} '{name}' is a {vi.kind}; the VPU runs tensors only"
        type_name = vi.element_type.name
        if type_name == "i64" and shape_like:
            continue
        if type_name not in _DATA_TYPES:
            return (f"{where} '{name}' is {type_name}; the VPU computes in f16 and holds "
                    f"{', '.join(sorted(_DATA_TYPES))} (i64 only as shape arguments)")
    return None


def _compile_time_nodes(graph: Graph) -> set[str]:
    """Nodes constant folding removes: every input is a weight or another such node's output."""
    known = set(graph.initializers)
    folded = set()
    for node in graph.nodes:
        if node.op_type in _NOT_FOLDABLE or node.domain or any(True for _ in node.subgraphs()):
            continue
        if node.op_type in ("Shape", "Size"):
            vi = graph.type_of(node.inputs[0])
            static = vi is not None and vi.shape is not None and not vi.shape.is_dynamic
        else:
            static = all((not i) or i in known for i in node.inputs)
        if static:
            folded.add(node.name)
            known.update(o for o in node.outputs if o)
    return folded


def vpu_support(model: Model) -> dict[str, str | None]:
    """``{node name: None if the VPU runs it, else the reason it does not}``."""
    graph = model.graph
    has_kernel = supported_nodes(model)
    folded = _compile_time_nodes(graph)
    result: dict[str, str | None] = {}
    for node in graph.nodes:
        if node.name in folded and has_kernel.get(node.name):
            result[node.name] = None
        elif node.domain or node.op_type not in VPU_OPS:
            name = f"{node.domain}::{node.op_type}" if node.domain else node.op_type
            result[node.name] = f"{name} is not in the VPU's op set"
        elif not has_kernel.get(node.name):
            result[node.name] = f"{node.op_type} at this opset has no kernel"
        else:
            result[node.name] = _attribute_limit(node, graph) or _type_limit(node, graph)
    return result


# -- the emulation backend -------------------------------------------------------------------
def _accumulate_in_f32(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` run on fp16 inputs upcast to fp32, its fp32 results rounded to fp16."""
    def run(xp, *args, **attrs):
        args = [a.astype(np.float32) if isinstance(a, np.ndarray) and a.dtype == np.float16 else a
                for a in args]
        out = fn(xp, *args, **attrs)
        if isinstance(out, (tuple, list)):
            return type(out)(_round_f16(o) for o in out)
        return _round_f16(out)

    return run


def _round_f16(value: Any) -> Any:
    if isinstance(value, np.ndarray) and value.dtype == np.float32:
        with np.errstate(over="ignore"):  # beyond fp16's range is inf, as on the device
            return value.astype(np.float16)
    return value


def _kernel_for(node: Node, opset: int) -> Kernel:
    k = lookup(node.op_type, opset, node.domain, node_name=node.name, fast=True)
    if node.op_type in _F32_ACCUMULATE and not node.domain:
        return dataclasses.replace(k, fn=_accumulate_in_f32(k.fn))
    return k


def _upcast_accumulator_weights(graph: Graph) -> Graph:
    """Weights read only by fp32-accumulating ops, kept upcast on the host: their values are the
    fp16 ones (exact in fp32), so the result is the same, without converting them each run."""
    readers: dict[str, set[str]] = {}
    for node in graph.nodes:
        for name in node.inputs:
            if name in graph.initializers:
                readers.setdefault(name, set()).add(node.op_type)
    inits = {name: (arr.astype(np.float32) if arr.dtype == np.float16
                    and readers.get(name, {"?"}) <= _F32_ACCUMULATE else arr)
             for name, arr in graph.initializers.items()}
    return dataclasses.replace(graph, initializers=inits)


class EmulationBackend:
    """Runs the VPU's fp16 plans on the host CPU (``num_devices`` emulated devices)."""

    def __init__(self, num_devices: int = 1, memory_bytes: int = VPU_MEMORY_BYTES):
        self.num_devices = max(1, int(num_devices))
        self.memory_bytes = int(memory_bytes)

    def device_ids(self) -> list[str]:
        """``['0']``, or ``['0', '1', ...]``."""
        return [str(i) for i in range(self.num_devices)]

    def full_device_name(self, device_id: str) -> str:
        """Says plainly that this is not hardware."""
        return f"Myriad-class VPU {device_id} (emulated on the host CPU, fp16)"

    def total_memory(self, device_id: str) -> int:
        """The device memory the emulation enforces."""
        return self.memory_bytes

    def make_plan(self, graph: Graph, opsets: dict[str, int]) -> Plan:
        """The host plan of an fp16 graph, accumulating in fp32 where the hardware does."""
        return Plan(_upcast_accumulator_weights(graph), opsets, np, kernel_for=_kernel_for, fuse=True)


def _hardware_backend() -> Any:
    """The hook where a driver binding would be detected; no hardware backend ships with infermux."""
    return None


def _emulated_devices_from_env() -> int:
    text = os.environ.get(EMULATION_ENV, "").strip().lower()
    if text in ("", "0", "no", "false", "off"):
        return 0
    if text in ("yes", "true", "on"):
        return 1
    try:
        return max(0, int(text))
    except ValueError:
        log.warning("%s=%r is not a device count; VPU emulation stays off", EMULATION_ENV, text)
        return 0


# -- the plugin ------------------------------------------------------------------------------
class VPUPlugin:
    """The ``VPU`` device: ``VPU`` alone, or ``VPU.0``, ``VPU.1`` ... with several.

    ``emulate``: True to run on the host (``num_devices`` of them), False never, None (default)
    as ``INFERMUX_VPU_EMULATION`` says.  ``backend``: a hardware backend object (same methods as
    :class:`EmulationBackend`)."""

    name = "VPU"

    def __init__(self, *, emulate: bool | None = None, num_devices: int = 1,
                 memory_bytes: int = VPU_MEMORY_BYTES, backend: Any = None):
        self._emulate, self._num_devices, self._memory_bytes = emulate, num_devices, memory_bytes
        self._backend = backend
        self._reserved: dict[str, int] = {}
        self._lock = threading.Lock()
        self.properties = PropertyTable(self.name, self._specs())

    def _specs(self) -> list[PropertySpec]:
        return [
            PropertySpec("AVAILABLE_DEVICES", RO, compute=lambda _id: self.devices()),
            PropertySpec("FULL_DEVICE_NAME", RO,
                         compute=lambda i: self.backend().full_device_name(self._id(i))),
            PropertySpec("DEVICE_TYPE", RO, "DISCRETE"),
            PropertySpec("DEVICE_ARCHITECTURE", RO, "myriadx"),
            PropertySpec("OPTIMIZATION_CAPABILITIES", RO, ["FP16", "EXPORT_IMPORT"]),
            PropertySpec("RANGE_FOR_STREAMS", RO, (1, 2)),
            PropertySpec("RANGE_FOR_ASYNC_INFER_REQUESTS", RO, (1, 4, 1)),
            PropertySpec("CACHING_PROPERTIES", RO, ["INFERENCE_PRECISION_HINT", "DEVICE_ARCHITECTURE"]),
            PropertySpec("DEVICE_TOTAL_MEM_SIZE", RO,
                         compute=lambda i: self.backend().total_memory(self._id(i))),
            PropertySpec("DEVICE_AVAILABLE_MEM_SIZE", RO, compute=self._available_memory),
            PropertySpec("PERFORMANCE_HINT", RW, PerformanceMode.LATENCY,
                         enum_validator(PerformanceMode, "PERFORMANCE_HINT")),
            PropertySpec("PERFORMANCE_HINT_NUM_REQUESTS", RW, 0,
                         int_validator("PERFORMANCE_HINT_NUM_REQUESTS")),
            PropertySpec("NUM_STREAMS", RW, 1, int_validator("NUM_STREAMS", 1, ("AUTO",))),
            PropertySpec("INFERENCE_PRECISION_HINT", RW, "f16",
                         precision_validator("INFERENCE_PRECISION_HINT", ("f16",), "VPU")),
            PropertySpec("PERF_COUNT", RW, False, bool_validator("PERF_COUNT")),
        ]

    # -- devices ----------------------------------------------------------------------------
    def backend(self) -> Any:
        """The hardware backend, else the emulation backend when switched on; raises if neither."""
        if self._backend is None:
            self._backend = _hardware_backend()
        if self._backend is not None:
            return self._backend
        count = self._num_devices if self._emulate else (
            0 if self._emulate is False else _emulated_devices_from_env())
        if count:
            return EmulationBackend(count, self._memory_bytes)
        raise DeviceNotFoundError(
            "VPU: no VPU is present: no hardware backend is installed and emulation is off. "
            f"To develop without the hardware set {EMULATION_ENV}=1, or "
            "core.register_plugin(VPUPlugin(emulate=True), 'VPU')")

    def devices(self) -> list[str]:
        """The device ids; empty without a backend (so no VPU is listed)."""
        try:
            return self.backend().device_ids()
        except DeviceNotFoundError:
            return []

    def _id(self, device_id: str) -> str:
        ids = self.backend().device_ids()
        device_id = device_id or ids[0]
        if device_id not in ids:
            raise DeviceNotFoundError(
                f"VPU plugin has no device '{device_id}'; available: "
                f"{', '.join(f'VPU.{i}' for i in ids)}")
        return device_id

    def _available_memory(self, device_id: str) -> int:
        device_id = self._id(device_id)
        with self._lock:
            return self.backend().total_memory(device_id) - self._reserved.get(device_id, 0)

    # -- properties -------------------------------------------------------------------------
    def get_property(self, key: str, device_id: str = "") -> Any:
        """A device property or metric."""
        if device_id:
            self._id(device_id)
        return self.properties.get(key, device_id)

    def set_property(self, properties: Mapping[str, Any], device_id: str = "") -> None:
        """Defaults for later compiles (validated)."""
        if device_id:
            device_id = self._id(device_id)
        self.properties.set(properties, device_id)

    # -- models -----------------------------------------------------------------------------
    def query_model(self, model: Model, config: Mapping[str, Any] | None = None,
                    device_id: str = "") -> dict[str, str]:
        """{node name: 'VPU'} for the nodes the VPU runs (see the module docstring)."""
        self._id(device_id)
        return {name: self.name for name, why in vpu_support(model).items() if why is None}

    def compile_model(self, model: Model, config: Mapping[str, Any] | None = None,
                      device_id: str = "") -> VPUCompiledModel:
        """Compile for the VPU: refuse unsupported nodes, convert to fp16, check the memory."""
        cfg, explicit = self.properties.resolve(config, device_id)
        device_id = self._id(device_id)
        bad = {n: why for n, why in vpu_support(model).items() if why is not None}
        if bad:
            listing = "; ".join(f"'{n}': {why}" for n, why in list(bad.items())[:8])
            raise UnsupportedOpError(
                f"VPU cannot run {len(bad)} node(s) of '{model.friendly_name}': {listing}. "
                f"Use HETERO:VPU,CPU to run them on the CPU")
        return self._compiled(optimize_model(model), cfg, explicit, device_id, cached=False)

    def import_model(self, data: bytes | bytearray | memoryview, config: Mapping[str, Any] | None = None,
                     device_id: str = "") -> VPUCompiledModel:
        """A compiled model from a blob that a VPU ``export_model`` wrote."""
        cfg, explicit = self.properties.resolve(config, device_id)
        device_id = self._id(device_id)
        blob = read_blob(data, plugin=self.name)
        return self._compiled(blob.model, cfg, explicit, device_id, cached=True)

    def _compiled(self, optimized: Model, cfg, explicit, device_id: str, *, cached: bool) -> VPUCompiledModel:
        compiled = VPUCompiledModel(optimized, cfg, explicit, backend=self.backend(),
                                    loaded_from_cache=cached, device_name=f"{self.name}.{device_id}")
        self._reserve(device_id, compiled.memory_bytes, optimized.friendly_name)
        compiled._finalizer = weakref.finalize(compiled, self._free, device_id, compiled.memory_bytes)
        return compiled

    def _reserve(self, device_id: str, need: int, model_name: str) -> None:
        total = self.backend().total_memory(device_id)
        with self._lock:
            used = self._reserved.get(device_id, 0)
            if used + need > total:
                raise VPUMemoryError(
                    f"VPU.{device_id}: '{model_name}' needs {need / _MIB:.1f} MiB of device memory "
                    f"(fp16 weights and peak activations) but {(total - used) / _MIB:.1f} of "
                    f"{total / _MIB:.0f} MiB are free. Release other models compiled on it, use "
                    f"a smaller batch, or HETERO:VPU,CPU to place part of the model on the CPU")
            self._reserved[device_id] = used + need

    def _free(self, device_id: str, nbytes: int) -> None:
        with self._lock:
            self._reserved[device_id] = max(0, self._reserved.get(device_id, 0) - nbytes)


class VPUCompiledModel(CPUCompiledModel):
    """A model compiled for the VPU: an fp16 plan on the backend, fp32 <-> fp16 at the boundary."""

    device_type = "VPU"
    compiled_keys = ("SUPPORTED_PROPERTIES", "NETWORK_NAME", "OPTIMAL_NUMBER_OF_INFER_REQUESTS",
                     "EXECUTION_DEVICES", "PERFORMANCE_HINT", "PERFORMANCE_HINT_NUM_REQUESTS",
                     "NUM_STREAMS", "INFERENCE_PRECISION_HINT", "PERF_COUNT", "LOADED_FROM_CACHE")

    def __init__(self, optimized: Model, cfg: dict[str, Any], explicit: set[str] = frozenset(), *,
                 backend: Any, loaded_from_cache: bool = False, device_name: str | None = None):
        self._backend = backend
        self._finalizer = None
        super().__init__(optimized, cfg, explicit, loaded_from_cache=loaded_from_cache,
                         device_name=device_name)
        self._output_dtypes = [_declared_dtype(v) for v in self.output_infos]

    def _streams(self, cfg: dict[str, Any], explicit: set[str]) -> tuple[int, int]:
        hint = cfg["PERFORMANCE_HINT"]
        if "NUM_STREAMS" in explicit and cfg["NUM_STREAMS"] != "AUTO":
            streams = int(cfg["NUM_STREAMS"])
        else:
            streams = 1 if hint == PerformanceMode.LATENCY and cfg["NUM_STREAMS"] != "AUTO" else 2
        if cfg["PERFORMANCE_HINT_NUM_REQUESTS"]:
            streams = min(streams, int(cfg["PERFORMANCE_HINT_NUM_REQUESTS"]))
        return max(1, min(2, streams)), 1

    def _make_plan(self, optimized: Model) -> Plan:
        graph = convert_precision(optimized.graph, np.float16)
        plan = self._backend.make_plan(graph, optimized.opsets)
        weights = sum(a.nbytes for a in graph.initializers.values() if a.dtype != object)
        self.weight_bytes = int(weights)
        self.activation_bytes = _peak_activation_bytes(plan, graph)
        self.memory_bytes = self.weight_bytes + self.activation_bytes
        return plan

    def infer(self, inputs: Sequence[Any], *, profile: bool = False, state=None):
        """Round float inputs to fp16, run, give outputs back in the model's types."""
        with np.errstate(over="ignore"):
            inputs = [_round_f16(x.astype(np.float32, copy=False)) if isinstance(x, np.ndarray)
                      and x.dtype.kind == "f" and x.dtype != np.float16 else x for x in inputs]
        outputs, timings = super().infer(inputs, profile=profile, state=state)
        outputs = [o.astype(d) if d is not None and isinstance(o, np.ndarray) and o.dtype != d else o
                   for o, d in zip(outputs, self._output_dtypes)]
        return outputs, timings

    def export_model(self) -> bytearray:
        """The blob: the optimised graph, with tensor shapes (import re-checks the memory)."""
        return write_blob(self._optimized, self.device_type,
                          {"INFERENCE_PRECISION_HINT": "f16", "DEVICE_ARCHITECTURE": "myriadx"})

    def release(self) -> None:
        """Stop the threads and give the device memory back."""
        super().release()
        if self._finalizer is not None:
            self._finalizer()


def _declared_dtype(info) -> np.dtype | None:
    try:
        dtype = info.element_type.to_dtype()
    except Exception:  # noqa: BLE001 - dynamic or unusual types are passed through
        return None
    return dtype if dtype.kind == "f" else None


def _peak_activation_bytes(plan: Plan, graph: Graph) -> int:
    """The most bytes of inputs and intermediate tensors alive at once, in fp16 for float ones
    (static shapes; a dynamic dim counts as 1, an unknown tensor as 0)."""
    def nbytes(slot: int) -> int:
        vi = graph.type_of(plan.slot_names.get(slot, "")) if slot else None
        if vi is None or vi.shape is None or vi.element_type.is_dynamic():
            return 0
        try:
            dtype = vi.element_type.to_dtype()
        except Exception:  # noqa: BLE001
            return 0
        itemsize = 2 if dtype == np.float32 else dtype.itemsize  # float tensors are fp16 on the device
        count = 1
        for d in vi.shape:
            count *= d.get_length() if d.is_static else 1
        return count * itemsize

    weights = set(graph.initializers)
    live = sum(nbytes(s) for s in plan.input_slots)
    peak = live
    for step in plan.steps:
        live += sum(nbytes(s) for s in step.outs if s and plan.slot_names.get(s) not in weights)
        peak = max(peak, live)
        live -= sum(nbytes(s) for s in step.frees if plan.slot_names.get(s) not in weights)
    return int(peak)
