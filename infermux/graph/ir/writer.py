"""Write a :class:`Model` as OpenVINO IR v11 (``.xml`` + ``.bin``), readable by OpenVINO and infermux.

Each ONNX node becomes one IR layer or a few: the translations live in the ``writer_ops_*``
modules, registered in :data:`~infermux.graph.ir.writer_ops.NODES`; weights become ``Const``
layers whose bytes go to the ``.bin``.  With ``compress_to_fp16`` (on by default, as in
``openvino.save_model``) float32 weights are stored as f16 and decompressed by a ``Convert``
marked ``decompression``.  An op without a translation raises :class:`UnsupportedOpError`
naming the node.

>>> from infermux.graph.ir import save_ir
>>> save_ir(model, "model.xml")      # writes model.xml and model.bin   # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import math
import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np

from infermux.errors import UnsupportedOpError
from infermux.graph.ir import (  # noqa: F401 - importing a family registers its translations
    writer_ops_elementwise,
    writer_ops_nn,
    writer_ops_reduce,
    writer_ops_shape,
)
from infermux.graph.ir.writer_ops import NODES
from infermux.graph.model import Model, Node, ValueInfo
from infermux.graph.types import Type

__all__ = ["SUPPORTED_ONNX_OPS", "Writer", "save_ir", "to_ir"]

_PRECISION = {"f64": "FP64", "f32": "FP32", "f16": "FP16", "bf16": "BF16", "boolean": "BOOL"}
# ops whose float32 weight inputs may be stored as f16 (never shape or index computations)
_COMPRESSIBLE_USERS = frozenset({"Conv", "ConvTranspose", "MatMul", "Gemm", "Add", "Sub", "Mul", "Div",
                                 "BatchNormalization", "PRelu", "InstanceNormalization",
                                 "LayerNormalization"})
_F16_MAX = 65504.0
_BOOLEAN_OUT = frozenset({"Equal", "NotEqual", "Less", "Greater", "LessEqual", "GreaterEqual", "LogicalAnd",
                          "LogicalOr", "LogicalXor", "LogicalNot", "IsNaN", "IsInf"})


def _out_types(type_: str, data: dict[str, Any], in_types: list[str], n_out: int) -> list[str]:
    """Element types of a layer's outputs (IR ports must state them)."""
    first = in_types[0] if in_types else ""
    if type_ in ("Parameter", "Const"):
        return [data["element_type"]]
    if type_ in _BOOLEAN_OUT:
        return ["boolean"] * n_out
    if type_ in ("ShapeOf", "NonZero", "Range"):
        return [data.get("output_type", "i64")]
    if type_ == "Convert":
        return [data["destination_type"]]
    if type_ in ("ConvertLike", "Select"):
        return [in_types[1]]
    if type_ == "OneHot":
        return [in_types[2]]
    if type_ in ("TopK", "MaxPool"):
        return [first, data.get("index_element_type", "i32")][:n_out]
    return [first] * n_out


def save_ir(model: Model, path: str | os.PathLike, *, compress_to_fp16: bool = True) -> None:
    """Write ``model`` to ``path`` (``.xml``) and the ``.bin`` beside it."""
    xml_bytes, bin_bytes = to_ir(model, compress_to_fp16=compress_to_fp16)
    path = Path(path)
    path.write_bytes(xml_bytes)
    path.with_suffix(".bin").write_bytes(bin_bytes)


def to_ir(model: Model, *, compress_to_fp16: bool = True) -> tuple[bytes, bytes]:
    """The model as IR v11: ``(xml bytes, weights bytes)``."""
    from infermux.graph.shape_infer import infer_model_shapes

    typed = infer_model_shapes(model.clone(), strict=False)
    w = Writer(typed, compress_to_fp16)
    return w.run()


@dataclasses.dataclass
class _LayerOut:
    id: int
    name: str
    type: str
    version: str
    data: dict[str, str]
    inputs: list[str]  # tensor names
    outputs: list[str]
    rt_info: dict[str, str]


_SAME_SHAPE = frozenset({"Convert", "ReLU", "Sigmoid", "Tanh", "Exp", "Log", "Sqrt", "Abs", "Negative",
                         "Floor", "Ceiling", "Erf", "Clamp", "Elu", "PReLU", "SoftPlus", "HSwish", "MVN",
                         "SoftMax", "LogSoftmax", "Round", "Gelu", "Mish", "HardSigmoid", "Selu",
                         "LogicalNot", "ConvertLike"})
_BROADCAST = frozenset({"Add", "Subtract", "Multiply", "Divide", "Maximum", "Minimum", "Power", "Equal",
                        "Less", "Greater", "LessEqual", "GreaterEqual", "LogicalAnd", "LogicalOr",
                        "LogicalXor", "Mod", "FloorMod"})


def _out_shape(type_: str, in_shapes: list, in_values: list) -> list[int] | None:
    """The output shape of the simple helper layers the writer adds (None: let OpenVINO infer it).

    IR ports must not omit dims of non-scalars, or a reader takes them for scalars.
    """
    if not in_shapes or in_shapes[0] is None:
        return None
    x = list(in_shapes[0])
    if type_ in _SAME_SHAPE:
        return x
    if type_ in _BROADCAST and in_shapes[1] is not None:
        try:
            return list(np.broadcast_shapes(tuple(max(d, 0) for d in x),
                                            tuple(max(d, 0) for d in in_shapes[1])))
        except ValueError:
            return None
    target = in_values[1] if len(in_values) > 1 else None
    if type_ == "Reshape" and target is not None and -1 not in x:
        dims = [x[i] if v == 0 else int(v) for i, v in enumerate(target.reshape(-1))]
        if dims.count(-1) == 1:
            dims[dims.index(-1)] = math.prod(x) // max(1, math.prod(d for d in dims if d != -1))
        return dims
    if type_ in ("Squeeze", "Unsqueeze") and target is not None:
        axes = [int(a) for a in target.reshape(-1)]
        if type_ == "Squeeze":
            axes = [a % len(x) for a in axes]
            return [d for i, d in enumerate(x) if i not in axes]
        rank = len(x) + len(axes)
        axes = sorted(a % rank for a in axes)
        rest = iter(x)
        return [1 if i in axes else next(rest) for i in range(rank)]
    return None


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple, np.ndarray)):
        return ", ".join(_fmt(v) for v in np.asarray(value).reshape(-1).tolist())
    if isinstance(value, float):
        return repr(float(np.float32(value))) if math.isfinite(value) else str(value)
    return str(value)


class Writer:
    """Translates the graph node by node into IR layers."""

    def __init__(self, model: Model, compress: bool):
        self.model, self.graph, self.compress = model, model.graph, compress
        self.layers: list[_LayerOut] = []
        self.blob = bytearray()
        self.producer: dict[str, tuple[int, int]] = {}  # tensor -> (layer id, output index)
        self.types: dict[str, str] = {}  # tensor -> element type name
        self.shapes: dict[str, list[int] | None] = {}  # helper tensors -> shape, if known
        self.const_values: dict[str, np.ndarray] = {}
        self.aliases: dict[str, str] = {}
        self.names: dict[str, set[str]] = {}  # tensor -> extra names for its port
        self.layer_names: set[str] = set()
        self.counter = 0
        self.consumers = self.graph.consumers()
        self.node: Node | None = None

    # -- helpers translators use ------------------------------------------------------------
    def ref(self, tensor: str) -> str:
        """The tensor written for ``tensor`` (Identity-like ops alias their input)."""
        while tensor in self.aliases:
            tensor = self.aliases[tensor]
        if tensor not in self.producer:
            if tensor in self.graph.initializers:
                self.const_layer(tensor, self.graph.initializers[tensor])
            else:
                raise UnsupportedOpError(f"tensor '{tensor}' is read before it is written")
        return tensor

    def value(self, tensor: str) -> np.ndarray | None:
        while tensor in self.aliases:
            tensor = self.aliases[tensor]
        if tensor in self.const_values:
            return self.const_values[tensor]
        return self.graph.initializers.get(tensor) if tensor else None

    def info(self, tensor: str) -> ValueInfo | None:
        while tensor in self.aliases:
            tensor = self.aliases[tensor]
        return self.graph.type_of(tensor)

    def rank(self, tensor: str) -> int:
        vi = self.info(tensor)
        if vi is None or vi.shape is None:
            raise self.unsupported(f"the rank of '{tensor}' must be known")
        return len(vi.shape)

    def dims(self, tensor: str) -> list[int] | None:
        while tensor in self.aliases:
            tensor = self.aliases[tensor]
        if self.shapes.get(tensor) is not None:
            return self.shapes[tensor]
        vi = self.info(tensor)
        if vi is None or vi.shape is None:
            return None
        return [d.get_length() if d.is_static else -1 for d in vi.shape]

    def etype(self, tensor: str) -> str:
        while tensor in self.aliases:
            tensor = self.aliases[tensor]
        if tensor in self.types:
            return self.types[tensor]
        vi = self.info(tensor)
        return vi.element_type.name if vi is not None and not vi.element_type.is_dynamic() else ""

    def unsupported(self, what: str) -> UnsupportedOpError:
        n = self.node
        where = f"node '{n.name}' ({n.op_type})" if n else "the model"
        return UnsupportedOpError(f"cannot write {where} as OpenVINO IR: {what}")

    def const(self, value: Any, dtype: Any = None) -> str:
        name = self.fresh("Constant")
        self.const_layer(name, np.asarray(value, dtype=dtype))
        return name

    def ints(self, values, dtype=np.int64) -> str:
        return self.const(np.asarray(list(values), dtype=dtype).reshape(-1))

    def layer(self, type_: str, version: str, inputs: list[str], data: dict[str, Any] | None = None,
              outputs: list[str] | str | None = None, n_out: int = 1) -> Any:
        """Add a layer; returns its output tensor name (or the list of them)."""
        ins = [self.ref(t) for t in inputs]
        outs = [outputs] if isinstance(outputs, str) else list(outputs or [])
        if not outs:
            outs = [self.fresh(f"{type_}") for _ in range(n_out)]
        lid = len(self.layers)
        base = self.node.name if (self.node is not None and outs and self.node.outputs
                                  and outs[0] in self.node.outputs) else f"{type_}_{lid}"
        name = self._layer_name(base or f"{type_}_{lid}")
        rt = {k: v for k, v in (self.node.rt_info.items() if self.node is not None else [])
              if isinstance(v, str)}
        self.layers.append(_LayerOut(lid, name, type_, version,
                                     {k: _fmt(v) for k, v in (data or {}).items() if v is not None},
                                     ins, outs, rt))
        types = _out_types(type_, self.layers[-1].data, [self.types[t] for t in ins], len(outs))
        shape = _out_shape(type_, [self.dims(t) for t in ins], [self.value(t) for t in ins])
        for i, t in enumerate(outs):
            self.producer[t] = (lid, i)
            self.types[t] = types[i]
            if len(outs) == 1 and self.info(t) is None:
                self.shapes[t] = shape
        return outs if (isinstance(outputs, list) or n_out > 1) else outs[0]

    def alias(self, out: str, src: str) -> None:
        """``out`` names the same tensor as ``src`` (an extra name on its port)."""
        self.aliases[out] = src
        self.names.setdefault(self.ref(src), set()).add(out)

    # -- the run ------------------------------------------------------------------------------
    def run(self) -> tuple[bytes, bytes]:
        for vi in self.graph.inputs:
            self._parameter(vi)
        for node in self.graph.nodes:
            self.node = node
            fn = NODES.get(node.op_type) if node.domain in ("", "ai.onnx") else None
            if fn is None:
                raise self.unsupported(f"op type '{node.op_type}' has no IR translation; supported: "
                                       f"{', '.join(sorted(SUPPORTED_ONNX_OPS))}")
            fn(self, node)
        self.node = None
        for vi in self.graph.outputs:
            src = self.ref(vi.name)  # may add a Const layer first
            self.layers.append(_LayerOut(len(self.layers), self._layer_name(f"{vi.name}/sink_port_0"),
                                         "Result", "opset1", {}, [src], [], {}))
        return self._xml(), bytes(self.blob)

    def fresh(self, hint: str) -> str:
        """A new helper tensor name (it gets no port name in the XML)."""
        self.counter += 1
        return f"{hint}__ir{self.counter}"

    def _layer_name(self, base: str) -> str:
        name, i = base, 0
        while name in self.layer_names:
            i += 1
            name = f"{base}_{i}"
        self.layer_names.add(name)
        return name

    def _parameter(self, vi: ValueInfo) -> None:
        if vi.element_type.is_dynamic():
            raise UnsupportedOpError(f"cannot write input '{vi.name}' as OpenVINO IR: its element type is unknown")
        shape = "..." if vi.shape is None else ",".join(
            str(d.get_length()) if d.is_static else "?" for d in vi.shape)
        saved, self.node = self.node, None
        self.layer("Parameter", "opset1", [], {"shape": shape, "element_type": vi.element_type.name},
                   outputs=vi.name)
        self.layers[-1].name = self._rename(self.layers[-1].name, vi.name)
        self.node = saved

    def _rename(self, old: str, new: str) -> str:
        self.layer_names.discard(old)
        return self._layer_name(new)

    def const_layer(self, name: str, arr: np.ndarray) -> None:
        """Write ``arr`` as a Const layer producing ``name`` (f16 + Convert when compressible)."""
        arr = np.asarray(arr)
        if arr.dtype == object or arr.dtype.kind == "U":
            raise UnsupportedOpError(f"cannot write constant '{name}' as OpenVINO IR: string tensors "
                                     f"are not supported")
        users = self.consumers.get(name, [])
        squeeze = (self.compress and arr.dtype == np.float32 and arr.size > 1 and users
                   and all(u.op_type in _COMPRESSIBLE_USERS for u in users)
                   and np.all(np.abs(arr) <= _F16_MAX))
        stored = arr.astype(np.float16) if squeeze else arr.copy(order="C")  # keeps 0-d shapes
        et = Type.from_numpy(stored.dtype).name
        offset = len(self.blob)
        raw = stored.tobytes()
        self.blob += raw
        saved, self.node = self.node, None
        target = self.fresh(name) if squeeze else name
        self.const_values[name] = arr
        self.layer("Const", "opset1", [], {"element_type": et, "shape": list(stored.shape),
                                           "offset": offset, "size": len(raw)}, outputs=target)
        self.shapes[target] = list(stored.shape)
        self.layers[-1].name = self._rename(self.layers[-1].name, name + ("_compressed" if squeeze else ""))
        if squeeze:
            self.layer("Convert", "opset1", [target], {"destination_type": "f32"}, outputs=name)
            self.layers[-1].rt_info = {"decompression": ""}
            self.layers[-1].name = self._rename(self.layers[-1].name, name)
        self.node = saved

    # -- serialisation --------------------------------------------------------------------------
    def _port_el(self, parent: ET.Element, pid: int, tensor: str, with_names: bool) -> None:
        port = ET.SubElement(parent, "port", id=str(pid))
        et = self.types[tensor]
        port.set("precision", _PRECISION.get(et, et.upper()))
        if with_names:
            names = {tensor} | self.names.get(tensor, set())
            names = {n for n in names if "__ir" not in n}
            if names:
                port.set("names", ",".join(n.replace(",", "\\,") for n in sorted(names)))
        dims = self.dims(tensor)
        for d in dims or []:
            ET.SubElement(port, "dim").text = str(d)

    def _xml(self) -> bytes:
        net = ET.Element("net", name=self.model.friendly_name or "model", version="11")
        layers_el = ET.SubElement(net, "layers")
        edges = []
        for lay in self.layers:
            el = ET.SubElement(layers_el, "layer", id=str(lay.id), name=lay.name, type=lay.type,
                               version=lay.version)
            if lay.data:
                ET.SubElement(el, "data", lay.data)
            if lay.rt_info:
                rt = ET.SubElement(el, "rt_info")
                for k, v in lay.rt_info.items():
                    ET.SubElement(rt, "attribute", name=k, version="0", value=v)
            if lay.inputs:
                ins = ET.SubElement(el, "input")
                for i, t in enumerate(lay.inputs):
                    self._port_el(ins, i, t, False)
                    src_layer, src_index = self.producer[t]
                    src_port = len(self.layers[src_layer].inputs) + src_index
                    edges.append((src_layer, src_port, lay.id, i))
            if lay.outputs:
                outs = ET.SubElement(el, "output")
                for i, t in enumerate(lay.outputs):
                    self._port_el(outs, len(lay.inputs) + i, t, True)
        edges_el = ET.SubElement(net, "edges")
        for a, ap, b, bp in edges:
            ET.SubElement(edges_el, "edge", {"from-layer": str(a), "from-port": str(ap),
                                             "to-layer": str(b), "to-port": str(bp)})
        rt = ET.SubElement(net, "rt_info")
        ET.SubElement(rt, "info", name="infermux", value="ir_writer")
        ET.indent(net, space="\t")
        return ET.tostring(net, encoding="utf-8", xml_declaration=True)


SUPPORTED_ONNX_OPS = frozenset(NODES)
