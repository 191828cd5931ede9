"""Write a :class:`Model` as OpenVINO IR v11 (``.xml`` + ``.bin``), readable by OpenVINO and infermux.

Each ONNX node becomes one IR layer or a few (``_NODES`` maps op types to small translators);
weights become ``Const`` layers whose bytes go to the ``.bin``.  With ``compress_to_fp16`` (on by
default, as in ``openvino.save_model``) float32 weights are stored as f16 and decompressed by a
``Convert`` marked ``decompression``.  An op without a translation raises
:class:`UnsupportedOpError` naming the node.

>>> from infermux.graph.ir_writer import save_ir
>>> save_ir(model, "model.xml")                      # doctest: +SKIP  (writes model.xml, model.bin)
"""

from __future__ import annotations

import dataclasses
import math
import os
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from infermux.errors import UnsupportedOpError
from infermux.graph.model import Model, Node, ValueInfo
from infermux.graph.types import Type

__all__ = ["SUPPORTED_ONNX_OPS", "save_ir", "to_ir"]

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
    w = _Writer(typed, compress_to_fp16)
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


class _Writer:
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
                self._const_layer(tensor, self.graph.initializers[tensor])
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
        name = self._fresh("Constant")
        self._const_layer(name, np.asarray(value, dtype=dtype))
        return name

    def ints(self, values, dtype=np.int64) -> str:
        return self.const(np.asarray(list(values), dtype=dtype).reshape(-1))

    def layer(self, type_: str, version: str, inputs: list[str], data: dict[str, Any] | None = None,
              outputs: list[str] | str | None = None, n_out: int = 1) -> Any:
        """Add a layer; returns its output tensor name (or the list of them)."""
        ins = [self.ref(t) for t in inputs]
        outs = [outputs] if isinstance(outputs, str) else list(outputs or [])
        if not outs:
            outs = [self._fresh(f"{type_}") for _ in range(n_out)]
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
            fn = _NODES.get(node.op_type) if node.domain in ("", "ai.onnx") else None
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

    def _fresh(self, hint: str) -> str:
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

    def _const_layer(self, name: str, arr: np.ndarray) -> None:
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
        target = self._fresh(name) if squeeze else name
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


# -- node translations ------------------------------------------------------------------------

_NODES: dict[str, Callable[[_Writer, Node], None]] = {}


def _node(*types: str):
    def register(fn):
        for t in types:
            _NODES[t] = fn
        return fn
    return register


_UNARY = {"Relu": ("ReLU", "opset1"), "Sigmoid": ("Sigmoid", "opset1"), "Tanh": ("Tanh", "opset1"),
          "Exp": ("Exp", "opset1"), "Log": ("Log", "opset1"), "Sqrt": ("Sqrt", "opset1"),
          "Abs": ("Abs", "opset1"), "Neg": ("Negative", "opset1"), "Floor": ("Floor", "opset1"),
          "Ceil": ("Ceiling", "opset1"), "Sin": ("Sin", "opset1"), "Cos": ("Cos", "opset1"),
          "Tan": ("Tan", "opset1"), "Asin": ("Asin", "opset1"), "Acos": ("Acos", "opset1"),
          "Atan": ("Atan", "opset1"), "Sinh": ("Sinh", "opset1"), "Cosh": ("Cosh", "opset1"),
          "Asinh": ("Asinh", "opset4"), "Acosh": ("Acosh", "opset4"), "Atanh": ("Atanh", "opset4"),
          "Erf": ("Erf", "opset1"), "Sign": ("Sign", "opset1"), "Softplus": ("SoftPlus", "opset4"),
          "Softsign": ("SoftSign", "opset9"), "HardSwish": ("HSwish", "opset4"), "Mish": ("Mish", "opset4"),
          "Not": ("LogicalNot", "opset1"), "IsNaN": ("IsNaN", "opset10")}

_BINARY = {"Add": "Add", "Sub": "Subtract", "Mul": "Multiply", "Pow": "Power", "Equal": "Equal",
           "Less": "Less", "Greater": "Greater", "LessOrEqual": "LessEqual",
           "GreaterOrEqual": "GreaterEqual", "And": "LogicalAnd", "Or": "LogicalOr", "Xor": "LogicalXor"}


@_node(*_UNARY)
def _unary(w: _Writer, n: Node) -> None:
    type_, version = _UNARY[n.op_type]
    w.layer(type_, version, [n.inputs[0]], outputs=n.outputs[0])


@_node(*_BINARY)
def _binary(w: _Writer, n: Node) -> None:
    w.layer(_BINARY[n.op_type], "opset1", n.inputs[:2], {"auto_broadcast": "numpy"}, outputs=n.outputs[0])


@_node("Div")
def _div(w: _Writer, n: Node) -> None:
    w.layer("Divide", "opset1", n.inputs[:2], {"auto_broadcast": "numpy", "m_pythondiv": False},
            outputs=n.outputs[0])  # ONNX integer division truncates


@_node("Mod")
def _mod(w: _Writer, n: Node) -> None:
    kind = "Mod" if n.attrs.get("fmod", 0) else "FloorMod"
    w.layer(kind, "opset1", n.inputs[:2], {"auto_broadcast": "numpy"}, outputs=n.outputs[0])


@_node("Max", "Min", "Sum", "Mean")
def _variadic(w: _Writer, n: Node) -> None:
    kind = {"Max": "Maximum", "Min": "Minimum", "Sum": "Add", "Mean": "Add"}[n.op_type]
    acc = n.inputs[0]
    for other in n.inputs[1:]:
        acc = w.layer(kind, "opset1", [acc, other], {"auto_broadcast": "numpy"})
    if n.op_type == "Mean" and len(n.inputs) > 1:
        scale = w.const(np.array(len(n.inputs), dtype=_np_type(w, n.inputs[0])))
        acc = w.layer("Divide", "opset1", [acc, scale], {"auto_broadcast": "numpy"})
    w.alias(n.outputs[0], acc)


def _np_type(w: _Writer, tensor: str):
    et = w.etype(tensor)
    return Type._BY_NAME[et].to_dtype() if et else np.float32


@_node("Identity", "Dropout")
def _identity(w: _Writer, n: Node) -> None:
    if len(n.outputs) > 1 and n.outputs[1] and n.outputs[1] in w.consumers:
        raise w.unsupported("the Dropout mask output is not supported")
    w.alias(n.outputs[0], n.inputs[0])


@_node("Reciprocal")
def _reciprocal(w: _Writer, n: Node) -> None:
    one = w.const(np.array(1, dtype=_np_type(w, n.inputs[0])))
    w.layer("Divide", "opset1", [one, n.inputs[0]], {"auto_broadcast": "numpy"}, outputs=n.outputs[0])


@_node("Round")
def _round(w: _Writer, n: Node) -> None:
    w.layer("Round", "opset5", [n.inputs[0]], {"mode": "half_to_even"}, outputs=n.outputs[0])


@_node("Clip")
def _clip(w: _Writer, n: Node) -> None:
    """Clamp when both bounds are constants, else Maximum/Minimum with the tensor bounds."""
    bounds: list[Any] = []
    for i, key, default in ((1, "min", -3.4028234663852886e38), (2, "max", 3.4028234663852886e38)):
        if len(n.inputs) > i and n.inputs[i]:
            value = _scalar(w, n.inputs[i])
            bounds.append(n.inputs[i] if value is None else value)
        else:
            bounds.append(float(n.attrs.get(key, default)))
    lo, hi = bounds
    if not isinstance(lo, str) and not isinstance(hi, str):
        w.layer("Clamp", "opset1", [n.inputs[0]], {"min": lo, "max": hi}, outputs=n.outputs[0])
        return
    dt = _np_type(w, n.inputs[0])
    y = w.layer("Maximum", "opset1", [n.inputs[0], lo if isinstance(lo, str) else w.const(np.array(lo, dt))],
                {"auto_broadcast": "numpy"})
    w.layer("Minimum", "opset1", [y, hi if isinstance(hi, str) else w.const(np.array(hi, dt))],
            {"auto_broadcast": "numpy"}, outputs=n.outputs[0])


def _scalar(w: _Writer, tensor: str) -> float | None:
    v = w.value(tensor)
    return None if v is None else float(np.asarray(v).reshape(-1)[0])


@_node("Elu")
def _elu(w: _Writer, n: Node) -> None:
    w.layer("Elu", "opset1", [n.inputs[0]], {"alpha": float(n.attrs.get("alpha", 1.0))}, outputs=n.outputs[0])


@_node("LeakyRelu")
def _leaky_relu(w: _Writer, n: Node) -> None:
    slope = w.const(np.array([n.attrs.get("alpha", 0.01)], dtype=_np_type(w, n.inputs[0])))
    w.layer("PReLU", "opset1", [n.inputs[0], slope], outputs=n.outputs[0])


@_node("PRelu")
def _prelu(w: _Writer, n: Node) -> None:
    """ONNX broadcasts the slope numpy-style; give it the data's rank so OpenVINO does too."""
    slope, rank = n.inputs[1], w.rank(n.inputs[0])
    srank = w.rank(slope)
    if srank < rank and not (srank == 1 and (w.dims(slope) or [0])[0] == 1):
        slope = w.layer("Unsqueeze", "opset1", [slope, w.ints(range(rank - srank))])
    w.layer("PReLU", "opset1", [n.inputs[0], slope], outputs=n.outputs[0])


@_node("Selu", "HardSigmoid")
def _selu(w: _Writer, n: Node) -> None:
    dt = _np_type(w, n.inputs[0])
    if n.op_type == "Selu":
        a = w.const(np.array(n.attrs.get("alpha", 1.67326319217681884765625), dt))
        g = w.const(np.array(n.attrs.get("gamma", 1.05070102214813232421875), dt))
        w.layer("Selu", "opset1", [n.inputs[0], a, g], outputs=n.outputs[0])
    else:
        a = w.const(np.array(n.attrs.get("alpha", 0.2), dt))
        b = w.const(np.array(n.attrs.get("beta", 0.5), dt))
        w.layer("HardSigmoid", "opset1", [n.inputs[0], a, b], outputs=n.outputs[0])


@_node("Gelu")
def _gelu(w: _Writer, n: Node) -> None:
    mode = "TANH" if n.attrs.get("approximate", "none") == "tanh" else "ERF"
    w.layer("Gelu", "opset7", [n.inputs[0]], {"approximation_mode": mode}, outputs=n.outputs[0])


@_node("Softmax", "LogSoftmax")
def _softmax(w: _Writer, n: Node) -> None:
    axis = n.attrs.get("axis", -1 if w.model.opset() >= 13 else 1)
    if w.model.opset() < 13 and axis not in (-1, w.rank(n.inputs[0]) - 1):
        raise w.unsupported("opset<13 Softmax over several axes (flattened) is not supported")
    kind, version = ("SoftMax", "opset8") if n.op_type == "Softmax" else ("LogSoftmax", "opset5")
    w.layer(kind, version, [n.inputs[0]], {"axis": axis}, outputs=n.outputs[0])


@_node("Cast")
def _cast(w: _Writer, n: Node) -> None:
    et = Type.from_onnx(n.attrs["to"]).name
    w.layer("Convert", "opset1", [n.inputs[0]], {"destination_type": et}, outputs=n.outputs[0])


@_node("CastLike")
def _cast_like(w: _Writer, n: Node) -> None:
    w.layer("ConvertLike", "opset1", n.inputs[:2], outputs=n.outputs[0])


@_node("Constant")
def _constant(w: _Writer, n: Node) -> None:
    a = n.attrs
    for key, dt in (("value_float", np.float32), ("value_int", np.int64)):
        if key in a:
            value = np.array(a[key], dt)
            break
    else:
        for key, dt in (("value_floats", np.float32), ("value_ints", np.int64)):
            if key in a:
                value = np.array(a[key], dt)
                break
        else:
            if "value" not in a:
                raise w.unsupported("only value/value_float(s)/value_int(s) constants are supported")
            value = np.asarray(a["value"])
    w._const_layer(n.outputs[0], value)


@_node("ConstantOfShape")
def _constant_of_shape(w: _Writer, n: Node) -> None:
    value = np.asarray(n.attrs.get("value", np.zeros(1, np.float32))).reshape(-1)[:1].reshape(())
    w.layer("Broadcast", "opset3", [w.const(value), n.inputs[0]], {"mode": "numpy"}, outputs=n.outputs[0])


# -- convolution, pooling, normalisation -------------------------------------------------------

def _conv_attrs(w: _Writer, n: Node, spatial: int) -> dict[str, Any]:
    a = n.attrs
    auto = a.get("auto_pad", "NOTSET")
    pads = list(a.get("pads", [0] * 2 * spatial))
    out = {"strides": list(a.get("strides", [1] * spatial)), "dilations": list(a.get("dilations", [1] * spatial)),
           "pads_begin": pads[:spatial], "pads_end": pads[spatial:]}
    modes = {"NOTSET": "explicit", "SAME_UPPER": "same_upper", "SAME_LOWER": "same_lower", "VALID": "valid"}
    if auto not in modes:
        raise w.unsupported(f"auto_pad={auto}")
    out["auto_pad"] = modes[auto]
    return out


def _with_bias(w: _Writer, n: Node, y: str, rank: int) -> None:
    if len(n.inputs) > 2 and n.inputs[2]:
        bias = w.layer("Reshape", "opset1", [n.inputs[2], w.ints([1, -1] + [1] * (rank - 2))],
                       {"special_zero": False})
        y = w.layer("Add", "opset1", [y, bias], {"auto_broadcast": "numpy"})
    w.alias(n.outputs[0], y)


def _group_weights(w: _Writer, weights: str, group: int) -> str:
    """ONNX weights [A, B, k...] split into OpenVINO's [G, A/G, B, k...] (Conv and ConvTranspose)."""
    dims = w.dims(weights)
    if dims is None or any(d < 0 for d in dims):
        raise w.unsupported("grouped convolution weights need a static shape")
    shape = [group, dims[0] // group] + dims[1:]
    return w.layer("Reshape", "opset1", [weights, w.ints(shape)], {"special_zero": False})


@_node("Conv")
def _conv(w: _Writer, n: Node) -> None:
    rank = w.rank(n.inputs[1])
    attrs = _conv_attrs(w, n, rank - 2)
    group = int(n.attrs.get("group", 1))
    if group == 1:
        y = w.layer("Convolution", "opset1", n.inputs[:2], attrs)
    else:
        y = w.layer("GroupConvolution", "opset1", [n.inputs[0], _group_weights(w, n.inputs[1], group)],
                    attrs)
    _with_bias(w, n, y, rank)


@_node("ConvTranspose")
def _conv_transpose(w: _Writer, n: Node) -> None:
    rank = w.rank(n.inputs[1])
    spatial = rank - 2
    attrs = _conv_attrs(w, n, spatial)
    if n.attrs.get("output_padding"):
        attrs["output_padding"] = list(n.attrs["output_padding"])
    if "output_shape" in n.attrs or attrs["auto_pad"] in ("same_upper", "same_lower"):
        attrs.update(_explicit_deconv_pads(w, n, attrs, spatial))
    group = int(n.attrs.get("group", 1))
    if group == 1:
        y = w.layer("ConvolutionBackpropData", "opset1", n.inputs[:2], attrs)
    else:
        y = w.layer("GroupConvolutionBackpropData", "opset1",
                    [n.inputs[0], _group_weights(w, n.inputs[1], group)], attrs)
    _with_bias(w, n, y, rank)


def _explicit_deconv_pads(w: _Writer, n: Node, attrs: dict, spatial: int) -> dict:
    """ONNX's output_shape / SAME_* padding for ConvTranspose, as explicit pads."""
    xd, wd = w.dims(n.inputs[0]), w.dims(n.inputs[1])
    if xd is None or wd is None or any(d < 0 for d in xd[2:] + wd[2:]):
        raise w.unsupported("output_shape or SAME padding needs static input and weight shapes")
    strides, dil = attrs["strides"], attrs["dilations"]
    out_pad = attrs.get("output_padding", [0] * spatial)
    begin, end = [], []
    for i in range(spatial):
        full = strides[i] * (xd[2 + i] - 1) + out_pad[i] + (wd[2 + i] - 1) * dil[i] + 1
        want = n.attrs["output_shape"][-spatial:][i] if "output_shape" in n.attrs else xd[2 + i] * strides[i]
        total = full - want
        upper = n.attrs.get("auto_pad", "NOTSET") == "SAME_UPPER"
        first = total // 2 if upper else total - total // 2
        begin.append(first)
        end.append(total - first)
    return {"pads_begin": begin, "pads_end": end, "auto_pad": "explicit"}


def _pool_attrs(w: _Writer, n: Node) -> dict[str, Any]:
    spatial = len(n.attrs["kernel_shape"])
    attrs = _conv_attrs(w, n, spatial)
    attrs.pop("dilations")
    attrs["kernel"] = list(n.attrs["kernel_shape"])
    attrs["rounding_type"] = "ceil" if n.attrs.get("ceil_mode", 0) else "floor"
    return attrs


@_node("MaxPool")
def _max_pool(w: _Writer, n: Node) -> None:
    if n.attrs.get("storage_order", 0):
        raise w.unsupported("storage_order=1 is not supported")
    attrs = _pool_attrs(w, n)
    attrs["dilations"] = list(n.attrs.get("dilations", [1] * len(attrs["kernel"])))
    attrs.update(index_element_type="i64", axis=0)
    outs = [n.outputs[0], n.outputs[1] if len(n.outputs) > 1 and n.outputs[1] else w._fresh("indices")]
    w.layer("MaxPool", "opset8", [n.inputs[0]], attrs, outputs=outs)


@_node("AveragePool")
def _avg_pool(w: _Writer, n: Node) -> None:
    if any(d != 1 for d in n.attrs.get("dilations", [])):
        raise w.unsupported("dilated AveragePool is not supported")
    attrs = _pool_attrs(w, n)
    attrs["exclude-pad"] = not n.attrs.get("count_include_pad", 0)
    w.layer("AvgPool", "opset1", [n.inputs[0]], attrs, outputs=n.outputs[0])


@_node("GlobalAveragePool", "GlobalMaxPool")
def _global_pool(w: _Writer, n: Node) -> None:
    kind = "ReduceMean" if n.op_type == "GlobalAveragePool" else "ReduceMax"
    axes = w.ints(range(2, w.rank(n.inputs[0])))
    w.layer(kind, "opset1", [n.inputs[0], axes], {"keep_dims": True}, outputs=n.outputs[0])


@_node("BatchNormalization")
def _batch_norm(w: _Writer, n: Node) -> None:
    if len([o for o in n.outputs if o]) > 1:
        raise w.unsupported("training-mode BatchNormalization is not supported")
    w.layer("BatchNormInference", "opset5", n.inputs[:5], {"epsilon": float(n.attrs.get("epsilon", 1e-5))},
            outputs=n.outputs[0])


def _mvn(w: _Writer, x: str, axes: list[int], eps: float) -> str:
    return w.layer("MVN", "opset6", [x, w.ints(axes)],
                   {"eps": eps, "normalize_variance": True, "eps_mode": "inside_sqrt"})


@_node("InstanceNormalization")
def _instance_norm(w: _Writer, n: Node) -> None:
    rank = w.rank(n.inputs[0])
    y = _mvn(w, n.inputs[0], list(range(2, rank)), float(n.attrs.get("epsilon", 1e-5)))
    shape = w.ints([-1] + [1] * (rank - 2))
    scale = w.layer("Reshape", "opset1", [n.inputs[1], shape], {"special_zero": False})
    bias = w.layer("Reshape", "opset1", [n.inputs[2], shape], {"special_zero": False})
    y = w.layer("Multiply", "opset1", [y, scale], {"auto_broadcast": "numpy"})
    w.layer("Add", "opset1", [y, bias], {"auto_broadcast": "numpy"}, outputs=n.outputs[0])


@_node("LayerNormalization")
def _layer_norm(w: _Writer, n: Node) -> None:
    if len([o for o in n.outputs if o]) > 1 and any(o in w.consumers for o in n.outputs[1:] if o):
        raise w.unsupported("the Mean/InvStdDev outputs are not supported")
    rank = w.rank(n.inputs[0])
    axis = n.attrs.get("axis", -1) % rank
    y = _mvn(w, n.inputs[0], list(range(axis, rank)), float(n.attrs.get("epsilon", 1e-5)))
    y = w.layer("Multiply", "opset1", [y, n.inputs[1]], {"auto_broadcast": "numpy"})
    if len(n.inputs) > 2 and n.inputs[2]:
        y = w.layer("Add", "opset1", [y, n.inputs[2]], {"auto_broadcast": "numpy"})
    w.alias(n.outputs[0], y)


@_node("LRN")
def _lrn(w: _Writer, n: Node) -> None:
    a = n.attrs
    w.layer("LRN", "opset1", [n.inputs[0], w.ints([1])],
            {"alpha": float(a.get("alpha", 1e-4)), "beta": float(a.get("beta", 0.75)),
             "bias": float(a.get("bias", 1.0)), "size": int(a["size"])}, outputs=n.outputs[0])


@_node("LpNormalization")
def _lp_norm(w: _Writer, n: Node) -> None:
    if n.attrs.get("p", 2) != 2:
        raise w.unsupported("only p=2 is supported")
    w.layer("NormalizeL2", "opset1", [n.inputs[0], w.ints([n.attrs.get("axis", -1)])],
            {"eps": 0.0, "eps_mode": "add"}, outputs=n.outputs[0])


# -- linear algebra -------------------------------------------------------------------------------

@_node("MatMul")
def _matmul(w: _Writer, n: Node) -> None:
    w.layer("MatMul", "opset1", n.inputs[:2], {"transpose_a": False, "transpose_b": False}, outputs=n.outputs[0])


@_node("Gemm")
def _gemm(w: _Writer, n: Node) -> None:
    a = n.attrs
    y = w.layer("MatMul", "opset1", n.inputs[:2],
                {"transpose_a": bool(a.get("transA", 0)), "transpose_b": bool(a.get("transB", 0))})
    dt = _np_type(w, n.inputs[0])
    if a.get("alpha", 1.0) != 1.0:
        y = w.layer("Multiply", "opset1", [y, w.const(np.array(a["alpha"], dt))], {"auto_broadcast": "numpy"})
    if len(n.inputs) > 2 and n.inputs[2]:
        c = n.inputs[2]
        if a.get("beta", 1.0) != 1.0:
            c = w.layer("Multiply", "opset1", [c, w.const(np.array(a["beta"], dt))], {"auto_broadcast": "numpy"})
        y = w.layer("Add", "opset1", [y, c], {"auto_broadcast": "numpy"})
    w.alias(n.outputs[0], y)


@_node("Einsum")
def _einsum(w: _Writer, n: Node) -> None:
    w.layer("Einsum", "opset7", list(n.inputs), {"equation": n.attrs["equation"]}, outputs=n.outputs[0])


# -- reductions and index ops --------------------------------------------------------------------

_REDUCE = {"ReduceMean": "ReduceMean", "ReduceSum": "ReduceSum", "ReduceMax": "ReduceMax",
           "ReduceMin": "ReduceMin", "ReduceProd": "ReduceProd", "ReduceL1": "ReduceL1",
           "ReduceL2": "ReduceL2", "ReduceSumSquare": "ReduceSum", "ReduceLogSum": "ReduceSum",
           "ReduceLogSumExp": "ReduceSum"}


def _reduce_axes(w: _Writer, n: Node) -> str | None:
    """The axes as a tensor; None when the op is a no-op (empty axes, noop_with_empty_axes)."""
    axes_attr_until = 13 if n.op_type == "ReduceSum" else 18
    if w.model.opset() < axes_attr_until:
        axes = n.attrs.get("axes")
        return w.ints(axes) if axes else w.ints(range(w.rank(n.inputs[0])))
    if len(n.inputs) > 1 and n.inputs[1]:
        value = w.value(n.inputs[1])
        if value is None or value.size:
            return n.inputs[1]
    if n.attrs.get("noop_with_empty_axes", 0):
        return None
    return w.ints(range(w.rank(n.inputs[0])))


@_node(*_REDUCE)
def _reduce(w: _Writer, n: Node) -> None:
    x, axes = n.inputs[0], _reduce_axes(w, n)
    if axes is None:
        w.alias(n.outputs[0], x)
        return
    if n.op_type == "ReduceSumSquare":
        x = w.layer("Multiply", "opset1", [x, x], {"auto_broadcast": "numpy"})
    elif n.op_type == "ReduceLogSumExp":
        x = w.layer("Exp", "opset1", [x])
    kind, version = _REDUCE[n.op_type], ("opset4" if n.op_type in ("ReduceL1", "ReduceL2") else "opset1")
    y = w.layer(kind, version, [x, axes], {"keep_dims": bool(n.attrs.get("keepdims", 1))})
    if n.op_type in ("ReduceLogSum", "ReduceLogSumExp"):
        y = w.layer("Log", "opset1", [y])
    w.alias(n.outputs[0], y)


@_node("ArgMax", "ArgMin")
def _argmax(w: _Writer, n: Node) -> None:
    if n.attrs.get("select_last_index", 0):
        raise w.unsupported("select_last_index=1 is not supported")
    axis = n.attrs.get("axis", 0)
    mode = "max" if n.op_type == "ArgMax" else "min"
    _, idx = w.layer("TopK", "opset11", [n.inputs[0], w.const(np.int64(1))],
                     {"axis": axis, "mode": mode, "sort": "value", "index_element_type": "i64",
                      "stable": True}, n_out=2)  # stable: the first of equal values, as ONNX
    if n.attrs.get("keepdims", 1):
        w.alias(n.outputs[0], idx)
    else:
        w.layer("Squeeze", "opset1", [idx, w.ints([axis])], outputs=n.outputs[0])


@_node("TopK")
def _topk(w: _Writer, n: Node) -> None:
    k = w.layer("Squeeze", "opset1", [n.inputs[1], w.ints([0])])
    sort = bool(n.attrs.get("sorted", 1))
    attrs = {"axis": n.attrs.get("axis", -1), "mode": "max" if n.attrs.get("largest", 1) else "min",
             "sort": "value" if sort else "none", "index_element_type": "i64", "stable": sort}
    w.layer("TopK", "opset11", [n.inputs[0], k], attrs, outputs=list(n.outputs[:2]))


@_node("CumSum")
def _cumsum(w: _Writer, n: Node) -> None:
    w.layer("CumSum", "opset3", n.inputs[:2], {"exclusive": bool(n.attrs.get("exclusive", 0)),
                                              "reverse": bool(n.attrs.get("reverse", 0))}, outputs=n.outputs[0])


@_node("NonZero")
def _nonzero(w: _Writer, n: Node) -> None:
    w.layer("NonZero", "opset3", [n.inputs[0]], {"output_type": "i64"}, outputs=n.outputs[0])


@_node("OneHot")
def _one_hot(w: _Writer, n: Node) -> None:
    values = n.inputs[2]
    zero, one = w.const(np.int64(0)), w.const(np.int64(1))
    off = w.layer("Gather", "opset8", [values, zero, w.const(np.int64(0))], {"batch_dims": 0})
    on = w.layer("Gather", "opset8", [values, one, w.const(np.int64(0))], {"batch_dims": 0})
    depth = w.layer("Reshape", "opset1", [n.inputs[1], w.ints([], np.int64)], {"special_zero": False})
    w.layer("OneHot", "opset1", [n.inputs[0], depth, on, off], {"axis": n.attrs.get("axis", -1)},
            outputs=n.outputs[0])


@_node("Range")
def _range(w: _Writer, n: Node) -> None:
    et = w.etype(n.inputs[0]) or "f32"
    w.layer("Range", "opset4", n.inputs[:3], {"output_type": et}, outputs=n.outputs[0])


@_node("Where")
def _where(w: _Writer, n: Node) -> None:
    w.layer("Select", "opset1", n.inputs[:3], {"auto_broadcast": "numpy"}, outputs=n.outputs[0])


# -- shapes and data movement --------------------------------------------------------------------

@_node("Shape")
def _shape(w: _Writer, n: Node) -> None:
    s = w.layer("ShapeOf", "opset3", [n.inputs[0]], {"output_type": "i64"})
    start, end = n.attrs.get("start", 0), n.attrs.get("end")
    if start or end is not None:
        stop = w.ints([end if end is not None else np.iinfo(np.int64).max])
        s = w.layer("Slice", "opset8", [s, w.ints([start]), stop, w.ints([1])])
    w.alias(n.outputs[0], s)


@_node("Size")
def _size(w: _Writer, n: Node) -> None:
    s = w.layer("ShapeOf", "opset3", [n.inputs[0]], {"output_type": "i64"})
    w.layer("ReduceProd", "opset1", [s, w.ints([0])], {"keep_dims": False}, outputs=n.outputs[0])


@_node("Reshape")
def _reshape(w: _Writer, n: Node) -> None:
    w.layer("Reshape", "opset1", n.inputs[:2], {"special_zero": not n.attrs.get("allowzero", 0)},
            outputs=n.outputs[0])


@_node("Flatten")
def _flatten(w: _Writer, n: Node) -> None:
    axis = n.attrs.get("axis", 1)
    dims = w.dims(n.inputs[0])
    if axis < 0:
        axis += w.rank(n.inputs[0])
    if axis == 0:
        shape = w.ints([1, -1])
    elif axis == 1:
        shape = w.ints([0, -1])
    elif dims is not None and all(d >= 0 for d in dims[:axis]):
        shape = w.ints([math.prod(dims[:axis]), -1])
    else:
        raise w.unsupported(f"Flatten at axis {axis} needs static leading dimensions")
    w.layer("Reshape", "opset1", [n.inputs[0], shape], {"special_zero": True}, outputs=n.outputs[0])


@_node("Transpose")
def _transpose(w: _Writer, n: Node) -> None:
    perm = n.attrs.get("perm")
    if perm is None:
        perm = list(reversed(range(w.rank(n.inputs[0]))))
    w.layer("Transpose", "opset1", [n.inputs[0], w.ints(perm)], outputs=n.outputs[0])


def _axes_input(w: _Writer, n: Node) -> str | None:
    if "axes" in n.attrs:
        return w.ints(n.attrs["axes"])
    return n.inputs[1] if len(n.inputs) > 1 and n.inputs[1] else None


@_node("Squeeze", "Unsqueeze")
def _squeeze(w: _Writer, n: Node) -> None:
    axes = _axes_input(w, n)
    inputs = [n.inputs[0]] + ([axes] if axes else [])
    if n.op_type == "Unsqueeze" and axes is None:
        raise w.unsupported("Unsqueeze needs axes")
    w.layer(n.op_type, "opset1", inputs, outputs=n.outputs[0])


@_node("Concat")
def _concat(w: _Writer, n: Node) -> None:
    w.layer("Concat", "opset1", list(n.inputs), {"axis": n.attrs["axis"]}, outputs=n.outputs[0])


@_node("Split")
def _split(w: _Writer, n: Node) -> None:
    axis = n.attrs.get("axis", 0)
    split = n.attrs.get("split")
    if split is None and len(n.inputs) > 1 and n.inputs[1]:
        split = n.inputs[1]
    axis_t = w.const(np.int64(axis))
    if split is None:
        w.layer("Split", "opset1", [n.inputs[0], axis_t], {"num_splits": len(n.outputs)}, outputs=list(n.outputs))
        return
    lengths = w.ints(split) if isinstance(split, list) else split
    w.layer("VariadicSplit", "opset1", [n.inputs[0], axis_t, lengths], outputs=list(n.outputs))


@_node("Slice")
def _slice(w: _Writer, n: Node) -> None:
    if w.model.opset() < 10:
        starts, ends = w.ints(n.attrs["starts"]), w.ints(n.attrs["ends"])
        axes = w.ints(n.attrs["axes"]) if "axes" in n.attrs else None
        steps = None
    else:
        starts, ends = n.inputs[1], n.inputs[2]
        axes = n.inputs[3] if len(n.inputs) > 3 and n.inputs[3] else None
        steps = n.inputs[4] if len(n.inputs) > 4 and n.inputs[4] else None
    if steps is None:
        steps = w.layer("Broadcast", "opset3", [w.const(np.int64(1)), w.layer("ShapeOf", "opset3", [starts], {"output_type": "i64"})],
                        {"mode": "numpy"})
    w.layer("Slice", "opset8", [n.inputs[0], starts, ends, steps] + ([axes] if axes else []),
            outputs=n.outputs[0])


@_node("Gather")
def _gather(w: _Writer, n: Node) -> None:
    w.layer("Gather", "opset8", [n.inputs[0], n.inputs[1], w.const(np.int64(n.attrs.get("axis", 0)))],
            {"batch_dims": 0}, outputs=n.outputs[0])


@_node("GatherElements")
def _gather_elements(w: _Writer, n: Node) -> None:
    w.layer("GatherElements", "opset6", n.inputs[:2], {"axis": n.attrs.get("axis", 0)}, outputs=n.outputs[0])


@_node("GatherND")
def _gather_nd(w: _Writer, n: Node) -> None:
    w.layer("GatherND", "opset8", n.inputs[:2], {"batch_dims": n.attrs.get("batch_dims", 0)},
            outputs=n.outputs[0])


_SCATTER = {"none": "none", "add": "sum", "mul": "prod", "max": "max", "min": "min"}


@_node("ScatterND")
def _scatter_nd(w: _Writer, n: Node) -> None:
    red = _SCATTER[n.attrs.get("reduction", "none")]
    if red == "none":
        w.layer("ScatterNDUpdate", "opset4", n.inputs[:3], outputs=n.outputs[0])
    else:
        w.layer("ScatterNDUpdate", "opset15", n.inputs[:3], {"reduction": red}, outputs=n.outputs[0])


@_node("ScatterElements")
def _scatter_elements(w: _Writer, n: Node) -> None:
    axis = w.const(np.int64(n.attrs.get("axis", 0)))
    w.layer("ScatterElementsUpdate", "opset12", list(n.inputs[:3]) + [axis],
            {"reduction": _SCATTER[n.attrs.get("reduction", "none")], "use_init_val": True},
            outputs=n.outputs[0])


@_node("Expand")
def _expand(w: _Writer, n: Node) -> None:
    w.layer("Broadcast", "opset3", n.inputs[:2], {"mode": "bidirectional"}, outputs=n.outputs[0])


@_node("Tile")
def _tile(w: _Writer, n: Node) -> None:
    w.layer("Tile", "opset1", n.inputs[:2], outputs=n.outputs[0])


@_node("Pad")
def _pad(w: _Writer, n: Node) -> None:
    mode = n.attrs.get("mode", "constant")
    if mode not in ("constant", "reflect", "edge"):
        raise w.unsupported(f"mode='{mode}' is not supported; accepted: constant, reflect, edge")
    if w.model.opset() < 11:
        pads, value = np.asarray(n.attrs.get("pads", n.attrs.get("paddings")), np.int64), n.attrs.get("value", 0.0)
        value_t = w.const(np.array(value, _np_type(w, n.inputs[0])))
    else:
        pads = w.value(n.inputs[1])
        value_t = n.inputs[2] if len(n.inputs) > 2 and n.inputs[2] else None
        if pads is None:
            raise w.unsupported("pads must be a constant")
        pads = pads.astype(np.int64).reshape(-1)
        if len(n.inputs) > 3 and n.inputs[3]:
            pads = _full_pads(w, n, pads)
    half = len(pads) // 2
    inputs = [n.inputs[0], w.ints(pads[:half]), w.ints(pads[half:])]
    if value_t is not None and mode == "constant":
        inputs.append(value_t)
    w.layer("Pad", "opset12", inputs, {"pad_mode": mode}, outputs=n.outputs[0])


def _full_pads(w: _Writer, n: Node, pads: np.ndarray) -> np.ndarray:
    axes = w.value(n.inputs[3])
    if axes is None:
        raise w.unsupported("axes must be a constant")
    rank = w.rank(n.inputs[0])
    full = np.zeros(2 * rank, np.int64)
    k = len(axes)
    for i, a in enumerate(np.asarray(axes).reshape(-1) % rank):
        full[a], full[rank + a] = pads[i], pads[k + i]
    return full


@_node("DepthToSpace", "SpaceToDepth")
def _depth_to_space(w: _Writer, n: Node) -> None:
    mode = "depth_first" if n.attrs.get("mode", "DCR") == "CRD" else "blocks_first"
    w.layer(n.op_type, "opset1", [n.inputs[0]], {"mode": mode, "block_size": n.attrs["blocksize"]},
            outputs=n.outputs[0])


@_node("ReverseSequence")
def _reverse_sequence(w: _Writer, n: Node) -> None:
    w.layer("ReverseSequence", "opset1", n.inputs[:2], {"batch_axis": n.attrs.get("batch_axis", 1),
                                                        "seq_axis": n.attrs.get("time_axis", 0)},
            outputs=n.outputs[0])


@_node("GridSample")
def _grid_sample(w: _Writer, n: Node) -> None:
    mode = {"linear": "bilinear", "cubic": "bicubic"}.get(n.attrs.get("mode", "bilinear"),
                                                          n.attrs.get("mode", "bilinear"))
    w.layer("GridSample", "opset9", n.inputs[:2],
            {"align_corners": bool(n.attrs.get("align_corners", 0)), "mode": mode,
             "padding_mode": n.attrs.get("padding_mode", "zeros")}, outputs=n.outputs[0])


_RESIZE_MODES = {"nearest": "nearest", "linear": "linear_onnx", "cubic": "cubic"}


@_node("Resize")
def _resize(w: _Writer, n: Node) -> None:
    a = n.attrs
    coords = a.get("coordinate_transformation_mode", "half_pixel")
    if coords in ("tf_crop_and_resize", "half_pixel_symmetric") or a.get("exclude_outside", 0) \
            or a.get("keep_aspect_ratio_policy", "stretch") != "stretch":
        raise w.unsupported(f"coordinate_transformation_mode='{coords}', exclude_outside and "
                            f"keep_aspect_ratio_policy other than stretch are not supported")
    if w.model.opset() < 11:
        raise w.unsupported("Resize before opset 11 is not supported")
    scales = n.inputs[2] if len(n.inputs) > 2 and n.inputs[2] else None
    sizes = n.inputs[3] if len(n.inputs) > 3 and n.inputs[3] else None
    axes = a.get("axes")
    if axes is None:
        axes = list(range(w.rank(n.inputs[0])))
    by_sizes = sizes is not None
    target = sizes if by_sizes else scales
    value = w.value(target)
    if not by_sizes and value is not None:  # OpenVINO resizes only what changes
        keep = [i for i, s in enumerate(value.reshape(-1)) if s != 1.0] or [len(axes) - 1]
        target = w.const(value.reshape(-1)[keep].astype(np.float32))
        axes = [axes[i] for i in keep]
    attrs = {"mode": _RESIZE_MODES[a.get("mode", "nearest")],
             "shape_calculation_mode": "sizes" if by_sizes else "scales",
             "coordinate_transformation_mode": coords,
             "nearest_mode": a.get("nearest_mode", "round_prefer_floor"),
             "antialias": bool(a.get("antialias", 0)), "cube_coeff": float(a.get("cubic_coeff_a", -0.75)),
             "pads_begin": [0] * w.rank(n.inputs[0]), "pads_end": [0] * w.rank(n.inputs[0])}
    w.layer("Interpolate", "opset11", [n.inputs[0], target, w.ints(axes)], attrs, outputs=n.outputs[0])


SUPPORTED_ONNX_OPS = frozenset(_NODES)
