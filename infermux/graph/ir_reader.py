"""Read OpenVINO IR (``.xml`` + ``.bin``, IR v10 and v11) into a :class:`Model` of ONNX ops.

Each IR layer becomes one ONNX op or a short decomposition (``_LAYERS`` maps layer types to
translators, one small function each — that table is why this module is long).  Port-numbered
edges become tensor names: a port's ``names`` when it has them, else its layer's name.  ``Const``
layers become initializers read from the ``.bin`` with bounds checks; layer ``rt_info`` becomes
``Node.rt_info``.  The XML is untrusted: DTDs and entity declarations are refused, and a bad
offset, size, edge or attribute is a :class:`ModelReadError` naming the layer.

>>> from infermux.graph.ir_reader import read_ir
>>> model = read_ir("face_detection.xml")            # doctest: +SKIP
>>> model.inputs[0].any_name                         # doctest: +SKIP
'input'
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from infermux.errors import ModelReadError, UnsupportedOpError
from infermux.graph.model import Graph, Model, Node, ValueInfo
from infermux.graph.shape import Dimension, PartialShape
from infermux.graph.types import Type

__all__ = ["IR_ELEMENT_TYPES", "SUPPORTED_LAYERS", "GraphBuilder", "read_ir"]

OPSET = 18  # reductions take `axes` as an input and Resize takes `axes`, as IR layers do
INT64_MAX = np.iinfo(np.int64).max
INT64_MIN = np.iinfo(np.int64).min
_SMALL = 4096  # elements: results of constant-only helper ops up to this size are folded


# -- the graph builder (shared with the Paddle front end) ---------------------------------------

# Cheap ops whose results are folded at read time when every input is a constant.
_FOLDABLE = frozenset({
    "Cast", "Reshape", "Concat", "Unsqueeze", "Squeeze", "Gather", "Add", "Sub", "Mul", "Div", "Neg",
    "Slice", "Identity", "Range", "Where", "Equal", "Not", "Less", "Greater", "ReduceProd",
    "ReduceSum", "Max", "Min", "Mod", "Floor", "Ceil", "Transpose", "Expand", "Abs", "Shape", "Size",
    "ConstantOfShape"})


class GraphBuilder:
    """Collects ONNX-style nodes and weights while a front end translates a model.

    ``op`` adds a node (or folds it to a constant when every input is a small constant);
    ``scope`` names the nodes of one source layer and gives them its ``rt_info``.
    """

    def __init__(self, opset: int = OPSET):
        self.opset = opset
        self.nodes: list[Node] = []
        self.initializers: dict[str, np.ndarray] = {}
        self.value_info: dict[str, ValueInfo] = {}
        self._tensor_names: set[str] = set()
        self._node_names: set[str] = set()
        self._producers: dict[str, Node] = {}
        self._scope, self._scope_rt, self._scope_nodes = "", {}, []

    def fresh(self, hint: str) -> str:
        """A tensor name not used yet (``hint``, or ``hint_1``, ``hint_2``...)."""
        name, i = hint or "t", 0
        while name in self._tensor_names:
            i += 1
            name = f"{hint}_{i}"
        self._tensor_names.add(name)
        return name

    def const(self, value: Any, hint: str = "const", dtype: Any = None) -> str:
        """Add a weight; returns its tensor name."""
        name = self.fresh(hint)
        self.initializers[name] = np.asarray(value, dtype=dtype)
        return name

    def set_const(self, name: str, value: np.ndarray) -> None:
        """Store a weight under a name already reserved with :meth:`fresh`."""
        self.initializers[name] = value

    def value(self, name: str) -> np.ndarray | None:
        """The constant value of a tensor, if it is a weight (folded results are weights too)."""
        return self.initializers.get(name) if name else None

    def op(self, op_type: str, *inputs: str | None, out: str | list[str] | None = None,
           n_out: int = 1, fold: bool = True, **attrs: Any) -> Any:
        """Add ``op_type`` reading ``inputs`` (None: a missing optional input).

        Returns the output name, or a list of names when ``n_out > 1`` or ``out`` is a list.
        ``fold=False`` keeps the node even when its inputs are constants.
        """
        names = [out] if isinstance(out, str) else list(out) if out else []
        if not names:
            names = [self.fresh(f"{self._scope or op_type}/{op_type}") for _ in range(n_out)]
        else:
            for n in names:
                self._tensor_names.add(n)
        ins = [i or "" for i in inputs]
        while ins and not ins[-1]:
            ins.pop()
        attrs = {k: v for k, v in attrs.items() if v is not None}
        if not (fold and len(names) == 1 and self._fold(op_type, ins, names[0], attrs)):
            base = f"{self._scope}/{op_type}" if self._scope else op_type
            node = Node(self._node_name(base), op_type, ins, names, attrs, rt_info=dict(self._scope_rt))
            self.nodes.append(node)
            self._scope_nodes.append(node)
            for n in names:
                self._producers[n] = node
        return names if (isinstance(out, list) or n_out > 1) else names[0]

    def _fold(self, op_type: str, ins: list[str], out: str, attrs: dict) -> bool:
        if op_type not in _FOLDABLE or not ins:
            return False
        args = [self.value(i) if i else None for i in ins]
        if any(a is None for a, i in zip(args, ins) if i):
            return False
        if any(a is not None and a.size > _SMALL for a in args):
            return False
        from infermux.ops.registry import lookup

        try:
            result = lookup(op_type, self.opset).fn(np, *args, **attrs)
        except Exception:  # noqa: BLE001 - leave it to run time, where the error names the node
            return False
        result = np.asarray(result[0] if isinstance(result, (tuple, list)) else result)
        if result.size > _SMALL:
            return False
        self.initializers[out] = result
        return True

    def _node_name(self, base: str) -> str:
        name, i = base, 0
        while name in self._node_names:
            i += 1
            name = f"{base}_{i}"
        self._node_names.add(name)
        return name

    def begin(self, scope: str, rt_info: dict[str, Any] | None = None) -> None:
        """Start the nodes of one source layer/op: they are named after ``scope``."""
        self._scope, self._scope_rt, self._scope_nodes = scope, dict(rt_info or {}), []

    def end(self, main_output: str | None) -> None:
        """Give the node writing ``main_output`` the scope's own name, if that name is free."""
        node = self._producers.get(main_output) if main_output else None
        if node is not None and node in self._scope_nodes and self._scope not in self._node_names:
            self._node_names.discard(node.name)
            node.name = self._scope
            self._node_names.add(node.name)
        self._scope, self._scope_rt, self._scope_nodes = "", {}, []


# -- reading the XML and the weights ------------------------------------------------------------

# IR element-type names -> (NumPy dtype, bits per element)
IR_ELEMENT_TYPES: dict[str, tuple[Any, int]] = {
    "f64": (np.float64, 64), "f32": (np.float32, 32), "f16": (np.float16, 16),
    "i64": (np.int64, 64), "i32": (np.int32, 32), "i16": (np.int16, 16), "i8": (np.int8, 8),
    "u64": (np.uint64, 64), "u32": (np.uint32, 32), "u16": (np.uint16, 16), "u8": (np.uint8, 8),
    "boolean": (np.bool_, 8), "i4": (np.int8, 4), "u4": (np.uint8, 4), "u1": (np.uint8, 1),
}
try:  # bf16 when ml_dtypes is there (it ships with onnx)
    import ml_dtypes

    IR_ELEMENT_TYPES["bf16"] = (ml_dtypes.bfloat16, 16)
except ImportError:  # pragma: no cover
    pass

_PRECISIONS = {"fp64": "f64", "fp32": "f32", "fp16": "f16", "bf16": "bf16", "bool": "boolean",
               "boolean": "boolean"}


@dataclasses.dataclass(frozen=True)
class _Port:
    id: str
    precision: str  # an element-type name ('f32'), or '' when absent
    dims: tuple[Dimension, ...] | None
    names: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class _Layer:
    id: str
    name: str
    type: str
    version: str
    data: dict[str, str]
    inputs: tuple[_Port, ...]
    outputs: tuple[_Port, ...]
    rt_info: dict[str, Any]
    extra: dict[str, str]  # attributes of the <layer> element itself (output_names on Result)

    def where(self) -> str:
        return f"IR layer '{self.name}' (type {self.type}, id {self.id})"


def read_ir(xml: str | os.PathLike | bytes, weights: Any = None) -> Model:
    """Read an OpenVINO IR v10/v11 model.

    ``xml`` is the ``.xml`` path (the ``.bin`` beside it is used unless ``weights`` is given) or
    the XML bytes; ``weights`` is a path, bytes, a uint8 array or a ``Tensor`` holding the ``.bin``.
    """
    path: Path | None = None
    if isinstance(xml, (bytes, bytearray, memoryview)):
        data, where = bytes(xml), "<bytes>"
    else:
        path = Path(xml)
        if not path.is_file():
            raise ModelReadError(f"Cannot read model '{path}': no such file")
        data, where = path.read_bytes(), str(path)
    root = _parse_xml(data, where)
    blob, blob_where = _weights(weights, path)
    try:
        model = _build(root, blob, blob_where, where)
    except (ModelReadError, UnsupportedOpError):
        raise
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise ModelReadError(f"Cannot read IR '{where}': {exc}") from exc
    model.source = str(path) if path else None
    return model


def _parse_xml(data: bytes, where: str) -> ET.Element:
    """Parse untrusted XML: UTF-8 only, no DTD, no entity declarations."""
    if b"\x00" in data:
        raise ModelReadError(f"Cannot read IR '{where}': the XML must be UTF-8 text (found NUL bytes)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ModelReadError(f"Cannot read IR '{where}': the XML is not valid UTF-8 ({exc})") from None
    upper = text.upper()
    if "<!DOCTYPE" in upper or "<!ENTITY" in upper:
        raise ModelReadError(f"Cannot read IR '{where}': DTDs and entity declarations are refused "
                             f"(IR files never need them)")
    decl = re.match(r"\s*<\?xml[^>]*encoding\s*=\s*[\"']([^\"']+)", text)
    if decl and decl.group(1).lower() not in ("utf-8", "utf8", "us-ascii", "ascii"):
        raise ModelReadError(f"Cannot read IR '{where}': encoding '{decl.group(1)}' is refused; "
                             f"IR XML is UTF-8")
    parser = ET.XMLParser(encoding="utf-8")
    try:
        parser.feed(data)
        root = parser.close()
    except ET.ParseError as exc:
        raise ModelReadError(f"Cannot read IR '{where}': malformed XML ({exc})") from None
    if root.tag != "net":
        raise ModelReadError(f"Cannot read IR '{where}': the root element is <{root.tag}>, not <net>")
    version = root.get("version", "")
    if version not in ("10", "11"):
        raise ModelReadError(f"Cannot read IR '{where}': IR version '{version}' is not supported; "
                             f"infermux reads IR v10 and v11 (re-save the model with a recent OpenVINO)")
    return root


def _weights(weights: Any, xml_path: Path | None) -> tuple[memoryview | None, str]:
    if weights is None:
        if xml_path is None:
            return None, "<no weights>"
        weights = xml_path.with_suffix(".bin")
        if not weights.is_file():
            return None, f"'{weights}' (missing)"
    if isinstance(weights, (str, os.PathLike)):
        p = Path(weights)
        if not p.is_file():
            raise ModelReadError(f"Cannot read IR weights '{p}': no such file")
        return memoryview(p.read_bytes()), f"'{p}'"
    if hasattr(weights, "data") and not isinstance(weights, (bytes, bytearray, memoryview, np.ndarray)):
        weights = weights.data
    if isinstance(weights, np.ndarray):
        return memoryview(np.ascontiguousarray(weights).reshape(-1).view(np.uint8)), "<weights array>"
    if isinstance(weights, (bytes, bytearray, memoryview)):
        return memoryview(weights).cast("B"), "<weights bytes>"
    raise ModelReadError(f"IR weights must be a path, bytes or a uint8 array, not {type(weights).__name__}")


def _split_names(text: str) -> tuple[str, ...]:
    """Port names are comma-separated; a comma inside a name is escaped as '\\,'."""
    parts = re.split(r"(?<!\\),", text)
    return tuple(p.replace("\\,", ",").strip() for p in parts if p.strip())


def _precision(text: str) -> str:
    low = text.lower()
    return _PRECISIONS.get(low, low)


def _port(el: ET.Element) -> _Port:
    dims = tuple(Dimension.parse(d.text or "?") for d in el.findall("dim"))
    return _Port(el.get("id", ""), _precision(el.get("precision", "")), dims,
                 _split_names(el.get("names", "")))


def _rt_info(el: ET.Element | None) -> dict[str, Any]:
    """<rt_info> children as {name: value or nested dict}."""
    out: dict[str, Any] = {}
    if el is None:
        return out
    for child in el:
        key = child.get("name") or child.tag
        out[key] = _rt_info(child) if len(child) else child.get("value", "")
    return out


def _layers(root: ET.Element) -> list[_Layer]:
    layers_el = root.find("layers")
    if layers_el is None:
        raise ModelReadError("the IR has no <layers> element")
    layers = []
    for el in layers_el.findall("layer"):
        data_el = el.find("data")
        in_el, out_el = el.find("input"), el.find("output")
        layers.append(_Layer(
            el.get("id", ""), el.get("name", ""), el.get("type", ""), el.get("version", ""),
            dict(data_el.attrib) if data_el is not None else {},
            tuple(_port(p) for p in (in_el.findall("port") if in_el is not None else [])),
            tuple(_port(p) for p in (out_el.findall("port") if out_el is not None else [])),
            _rt_info(el.find("rt_info")), dict(el.attrib)))
    ids = [lay.id for lay in layers]
    if len(set(ids)) != len(ids):
        raise ModelReadError("the IR has two layers with the same id")
    return layers


def _edges(root: ET.Element, by_id: dict[str, _Layer]) -> dict[tuple[str, str], tuple[str, str]]:
    """{(to layer, to port): (from layer, from port)}, checked against the layers' ports."""
    edges: dict[tuple[str, str], tuple[str, str]] = {}
    edges_el = root.find("edges")
    for el in (edges_el.findall("edge") if edges_el is not None else []):
        src = (el.get("from-layer", ""), el.get("from-port", ""))
        dst = (el.get("to-layer", ""), el.get("to-port", ""))
        for (lid, pid), kind in ((src, "outputs"), (dst, "inputs")):
            layer = by_id.get(lid)
            if layer is None:
                raise ModelReadError(f"an IR edge refers to layer id '{lid}', which does not exist")
            if pid not in {p.id for p in getattr(layer, kind)}:
                raise ModelReadError(f"an IR edge refers to port {pid} of {layer.where()}, which has no "
                                     f"such {kind[:-1]} port")
        if dst in edges:
            raise ModelReadError(f"input port {dst[1]} of {by_id[dst[0]].where()} has two incoming edges")
        edges[dst] = src
    return edges


def _topological(layers: list[_Layer], edges: dict) -> list[_Layer]:
    """Layers in dependency order, XML order among independent ones."""
    import heapq

    index = {lay.id: i for i, lay in enumerate(layers)}
    succ: dict[str, list[str]] = {lay.id: [] for lay in layers}
    indeg = {lay.id: 0 for lay in layers}
    for (dst, _), (src, _) in edges.items():
        succ[src].append(dst)
        indeg[dst] += 1
    ready = [index[lid] for lid, d in indeg.items() if d == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        lay = layers[heapq.heappop(ready)]
        order.append(lay)
        for nxt in succ[lay.id]:
            indeg[nxt] -= 1
            if indeg[nxt] == 0:
                heapq.heappush(ready, index[nxt])
    if len(order) != len(layers):
        stuck = [lay.name for lay in layers if indeg[lay.id] > 0][:5]
        raise ModelReadError(f"the IR graph has a cycle (through layers {stuck})")
    return order


def _ints(text: str) -> list[int]:
    text = text.strip().strip("[]")
    return [int(t) for t in re.split(r"[,\s]+", text) if t] if text else []


def _const_array(layer: _Layer, blob: memoryview | None, blob_where: str) -> np.ndarray:
    """A Const layer's value, read from the weights with bounds checks."""
    d = layer.data
    et = d.get("element_type", "")
    if et not in IR_ELEMENT_TYPES:
        raise UnsupportedOpError(f"{layer.where()}: constants of element type '{et}' are not supported; "
                                 f"accepted: {', '.join(sorted(IR_ELEMENT_TYPES))}")
    shape = _ints(d.get("shape", ""))
    if any(s < 0 for s in shape):
        raise ModelReadError(f"{layer.where()}: constant shape {shape} has a negative dimension")
    try:
        offset, size = int(d["offset"]), int(d["size"])
    except (KeyError, ValueError):
        raise ModelReadError(f"{layer.where()}: a Const needs integer 'offset' and 'size' attributes") from None
    dtype, bits = IR_ELEMENT_TYPES[et]
    count = math.prod(shape)
    need = (count * bits + 7) // 8
    if blob is None:
        raise ModelReadError(f"{layer.where()} needs weights, but no weights file was found ({blob_where}); "
                             f"put the .bin next to the .xml or pass weights=")
    if offset < 0 or size < 0 or offset + size > len(blob):
        raise ModelReadError(f"{layer.where()}: bytes {offset}..{offset + size} are outside the weights "
                             f"{blob_where}, which have {len(blob)} bytes")
    if size < need:
        raise ModelReadError(f"{layer.where()}: shape {shape} of {et} needs {need} bytes but the layer "
                             f"has size={size}")
    raw = np.frombuffer(blob, np.uint8, need, offset)
    if bits == 4:
        lo, hi = raw & 0x0F, raw >> 4
        vals = np.stack([lo, hi], axis=-1).reshape(-1)[:count]
        if et == "i4":
            vals = np.where(vals > 7, vals.astype(np.int16) - 16, vals)
        return vals.astype(dtype).reshape(shape)
    if bits == 1:
        return np.unpackbits(raw)[:count].astype(dtype).reshape(shape)
    return np.frombuffer(blob, dtype, count, offset).copy().reshape(shape)


# -- assembling the graph -----------------------------------------------------------------------

def _tensor_name(layer: _Layer, port: _Port) -> str:
    if port.names:
        return min(port.names)  # OpenVINO's any_name is the smallest of a port's names
    return layer.name if len(layer.outputs) == 1 else f"{layer.name}.{port.id}"


def _pshape(dims: tuple[Dimension, ...] | None) -> PartialShape | None:
    return None if dims is None else PartialShape(list(dims))


def _etype(name: str) -> Type:
    return Type._BY_NAME.get(name, Type.dynamic) if name else Type.dynamic


def _build(root: ET.Element, blob, blob_where: str, where: str) -> Model:
    layers = _layers(root)
    legacy = root.get("version") == "10"
    b, inputs, outputs = _walk(layers, _edges(root, {lay.id: lay for lay in layers}), blob, blob_where, legacy)
    if not outputs:
        raise ModelReadError(f"Cannot read IR '{where}': the model has no Result layer")
    input_names = {i.name for i in inputs}
    graph = Graph(root.get("name", "model"), b.nodes, inputs, outputs, b.initializers,
                  {k: v for k, v in b.value_info.items() if k not in input_names})
    if legacy:
        _legacy_v10_types(graph)
    model = Model(graph, {"": OPSET}, name=root.get("name") or "model", producer="openvino-ir",
                  metadata={"ir_version": root.get("version", "")})
    model.get_rt_info().update(_rt_info(root.find("rt_info")))
    from infermux.graph.shape_infer import infer_model_shapes

    known = dict(graph.value_info)
    infer_model_shapes(model, strict=False)
    graph.value_info.update(known)  # the IR's own port shapes are at least as precise
    return model


def _walk(layers: list[_Layer], edges: dict, blob, blob_where: str, legacy: bool):
    """Translate the layers in dependency order; returns (builder, inputs, outputs) in XML order."""
    by_id = {lay.id: lay for lay in layers}
    b = GraphBuilder(OPSET)
    tensor_of = {(lay.id, p.id): b.fresh(_tensor_name(lay, p)) for lay in layers for p in lay.outputs}
    consumed = set(edges.values())
    position = {lay.id: i for i, lay in enumerate(layers)}
    inputs, outputs, result_names = [], [], set()
    for lay in _topological(layers, edges):
        ins = []
        for port in lay.inputs:
            if (lay.id, port.id) not in edges:
                raise ModelReadError(f"input port {port.id} of {lay.where()} is not connected")
            ins.append(tensor_of[edges[(lay.id, port.id)]])
        outs = [tensor_of[(lay.id, p.id)] for p in lay.outputs]
        if lay.type == "Parameter":
            inputs.append((position[lay.id], _parameter(lay, outs)))
        elif lay.type == "Const":
            if len(outs) != 1:
                raise ModelReadError(f"{lay.where()} must have one output port")
            b.set_const(outs[0], _const_array(lay, blob, blob_where))
        elif lay.type == "Result":
            src_layer, src_port = _source(lay, edges, by_id)
            outputs.append((position[lay.id], _result(b, lay, ins, src_layer, src_port, result_names, legacy)))
        else:
            _translate(b, lay, ins, outs, [(lay.id, p.id) in consumed for p in lay.outputs])
        for port, name in zip(lay.outputs, outs):
            if port.precision and port.dims is not None and name not in b.initializers:
                b.value_info[name] = ValueInfo(name, _etype(port.precision), _pshape(port.dims))
    in_order = [vi for _, vi in sorted(inputs, key=lambda t: t[0])]
    return b, in_order, [vi for _, vi in sorted(outputs, key=lambda t: t[0])]


def _parameter(lay: _Layer, outs: list[str]) -> ValueInfo:
    et = lay.data.get("element_type", "")
    if et not in Type._BY_NAME:
        raise ModelReadError(f"{lay.where()}: element_type '{et}' is not a known element type")
    text = lay.data.get("shape")
    if text is None:
        shape = _pshape(lay.outputs[0].dims) if lay.outputs else None
    elif text.strip() in ("...", "[...]"):
        shape = None
    else:
        items = [t for t in re.split(r"[,\s]+", text.strip().strip("[]")) if t]
        shape = PartialShape([Dimension.parse(t) for t in items])
    return ValueInfo(outs[0], Type._BY_NAME[et], shape)


def _source(lay: _Layer, edges, by_id) -> tuple[_Layer, _Port]:
    """The layer and output port feeding a Result."""
    if len(lay.inputs) != 1:
        raise ModelReadError(f"{lay.where()} must have exactly one input")
    src_id, src_port = edges[(lay.id, lay.inputs[0].id)]
    src = by_id[src_id]
    return src, next(p for p in src.outputs if p.id == src_port)


def _result(b: GraphBuilder, lay: _Layer, ins: list[str], src: _Layer, port: _Port, taken: set[str],
            legacy: bool) -> ValueInfo:
    """The graph output a Result layer names (an Identity when it needs a name of its own).

    IR v10 outputs are also called after their producer ('layer', or 'layer.index' when it has
    several outputs); like OpenVINO, the smallest of a tensor's names is the one it goes by.
    """
    name = ins[0]
    names = set(_split_names(lay.extra.get("output_names", "")) or lay.inputs[0].names)
    if legacy:
        index = src.outputs.index(port)
        names |= set(port.names) | {src.name if len(src.outputs) == 1 else f"{src.name}.{index}"}
    wanted = min(names) if names else ""
    if (wanted and wanted != name) or name in taken or name in b.initializers:
        b.begin(lay.name, lay.rt_info)
        name = b.op("Identity", name, out=b.fresh(wanted or lay.name))
        b.end(name)
    taken.add(name)
    etype = _etype(lay.inputs[0].precision or port.precision)
    dims = lay.inputs[0].dims if lay.inputs[0].dims is not None else port.dims
    return ValueInfo(name, etype, _pshape(dims))


def _legacy_output_type(t: Type) -> Type:
    if t.is_dynamic() or t is Type.f32:
        return t
    return Type.i32 if t.name in ("i64", "u64", "i32", "u32") else Type.f32


def _legacy_v10_types(graph: Graph) -> None:
    """IR v10 keeps Inference Engine's conventions, as OpenVINO does when it reads one:
    f16 inputs are fed as f32, and outputs come out as i32 (integers) or f32 (everything else)."""
    front, back = [], []
    for vi in graph.inputs:
        if vi.element_type is Type.f16:
            inner = vi.name + "/f16"
            _rename_tensor(graph, vi.name, inner, inputs_only=True)
            front.append(Node(f"{vi.name}/legacy_convert", "Cast", [vi.name], [inner], {"to": Type.f16.onnx_code}))
            vi.element_type = Type.f32
    produced = {o for n in graph.nodes for o in n.outputs}
    for vi in graph.outputs:
        legacy = _legacy_output_type(vi.element_type)
        if legacy is vi.element_type or vi.name not in produced:
            continue
        inner = vi.name + "/legacy"
        _rename_tensor(graph, vi.name, inner, inputs_only=False)
        back.append(Node(f"{vi.name}/legacy_convert", "Cast", [inner], [vi.name], {"to": legacy.onnx_code}))
        vi.element_type = legacy
    graph.nodes[:0] = front
    graph.nodes.extend(back)


def _rename_tensor(graph: Graph, old: str, new: str, *, inputs_only: bool) -> None:
    for n in graph.nodes:
        n.inputs = [new if i == old else i for i in n.inputs]
        if not inputs_only:
            n.outputs = [new if o == old else o for o in n.outputs]
    if old in graph.value_info:
        vi = graph.value_info.pop(old)
        graph.value_info[new] = ValueInfo(new, vi.element_type, vi.shape)


def _translate(b: GraphBuilder, lay: _Layer, ins: list[str], outs: list[str], used: list[bool]) -> None:
    fn = _LAYERS.get(lay.type)
    if fn is None:
        reason = _UNSUPPORTED.get(lay.type, "")
        raise UnsupportedOpError(
            f"{lay.where()}, version {lay.version or '?'}: this layer type is not supported by "
            f"infermux{'; ' + reason if reason else ''}. Supported layer types: "
            f"{', '.join(sorted(SUPPORTED_LAYERS))}")
    cx = _Cx(b, lay, ins, outs, used)
    b.begin(lay.name, lay.rt_info)
    try:
        fn(cx)
    except (UnsupportedOpError, ModelReadError):
        raise
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise ModelReadError(f"{lay.where()}: cannot translate it ({exc})") from exc
    for name, needed in zip(outs, used):
        if needed and name not in b.initializers and name not in b._producers:
            raise ModelReadError(f"{lay.where()}: output '{name}' was not produced (an unused output "
                                 f"port the translation does not provide)")
    b.end(outs[0] if outs else None)


class _Cx:
    """What a layer translation sees: the builder, the layer, input and output tensor names."""

    def __init__(self, b: GraphBuilder, layer: _Layer, ins: list[str], outs: list[str], used: list[bool]):
        self.b, self.layer, self.ins, self.outs, self.used = b, layer, ins, outs, used
        m = re.fullmatch(r"opset(\d+)", layer.version or "opset1")
        self.version = int(m.group(1)) if m else 0

    # attributes
    def attr(self, name: str, default: str | None = None) -> str:
        value = self.layer.data.get(name, default)
        if value is None:
            raise ModelReadError(f"{self.layer.where()}: the required attribute '{name}' is missing")
        return value

    def ints(self, name: str, default: list[int] | None = None) -> list[int]:
        text = self.layer.data.get(name)
        if text is None:
            if default is None:
                raise ModelReadError(f"{self.layer.where()}: the required attribute '{name}' is missing")
            return list(default)
        try:
            return _ints(text)
        except ValueError:
            raise ModelReadError(f"{self.layer.where()}: attribute {name}='{text}' is not a list of "
                                 f"integers") from None

    def int_(self, name: str, default: int | None = None) -> int:
        text = self.attr(name, None if default is None else str(default))
        try:
            return int(text)
        except ValueError:
            raise ModelReadError(f"{self.layer.where()}: attribute {name}='{text}' is not an integer") from None

    def float_(self, name: str, default: float | None = None) -> float:
        text = self.attr(name, None if default is None else repr(default))
        try:
            return float(text)
        except ValueError:
            raise ModelReadError(f"{self.layer.where()}: attribute {name}='{text}' is not a number") from None

    def bool_(self, name: str, default: bool = False) -> bool:
        text = self.layer.data.get(name)
        if text is None:
            return default
        low = text.strip().lower()
        if low in ("true", "1"):
            return True
        if low in ("false", "0"):
            return False
        raise ModelReadError(f"{self.layer.where()}: attribute {name}='{text}' is not true/false")

    def choice(self, name: str, accepted: dict[str, Any], default: str | None = None) -> Any:
        text = self.attr(name, default).lower()
        if text not in accepted:
            raise UnsupportedOpError(f"{self.layer.where()}: {name}='{text}' is not supported; "
                                     f"accepted: {', '.join(accepted)}")
        return accepted[text]

    def unsupported(self, what: str) -> UnsupportedOpError:
        return UnsupportedOpError(f"{self.layer.where()}: {what}")

    # inputs
    def n_in(self) -> int:
        return len(self.ins)

    def input(self, i: int) -> str | None:
        return self.ins[i] if i < len(self.ins) else None

    def const(self, i: int, what: str = "") -> np.ndarray:
        """Input ``i`` as a constant; the layer is unsupported if it is computed at run time."""
        value = self.b.value(self.ins[i]) if i < len(self.ins) else None
        if value is None:
            raise self.unsupported(f"input {i}{' (' + what + ')' if what else ''} must be a constant "
                                   f"for infermux to translate this layer")
        return value

    def in_dims(self, i: int) -> list[int] | None:
        """Input ``i``'s shape from the IR (-1 for a dynamic dimension), or None if unknown."""
        dims = self.layer.inputs[i].dims if i < len(self.layer.inputs) else None
        value = self.b.value(self.ins[i]) if i < len(self.ins) else None
        if value is not None:
            return list(value.shape)
        return None if dims is None else [d.get_length() if d.is_static else -1 for d in dims]

    def rank(self, i: int) -> int:
        dims = self.in_dims(i)
        if dims is None:
            raise self.unsupported(f"the rank of input {i} must be known")
        return len(dims)

    def in_type(self, i: int) -> str:
        value = self.b.value(self.ins[i])
        if value is not None:
            return Type.from_numpy(value.dtype).name
        return self.layer.inputs[i].precision

    def out_type(self, i: int = 0) -> str:
        return self.layer.outputs[i].precision

    def i64(self, i: int) -> str:
        """Input ``i`` as an int64 tensor (ONNX wants int64 shapes, axes and pads)."""
        if self.in_type(i) == "i64":
            return self.ins[i]
        return self.b.op("Cast", self.ins[i], to=7)

    def vec(self, i: int) -> str:
        """Input ``i`` as a 1-D int64 tensor (IR allows scalars where ONNX wants vectors)."""
        return self.b.op("Reshape", self.i64(i), self.b.const([-1], "minus1", np.int64))


# -- layer translations -------------------------------------------------------------------------

_LAYERS: dict[str, Callable[[_Cx], None]] = {}


def _layer(*types: str):
    def register(fn):
        for t in types:
            _LAYERS[t] = fn
        return fn
    return register


_UNARY = {
    "Relu": "Relu", "ReLU": "Relu", "Sigmoid": "Sigmoid", "Tanh": "Tanh", "Exp": "Exp", "Log": "Log",
    "Sqrt": "Sqrt", "Abs": "Abs", "Negative": "Neg", "Floor": "Floor", "Ceiling": "Ceil", "Ceil": "Ceil",
    "Sin": "Sin", "Cos": "Cos", "Tan": "Tan", "Asin": "Asin", "Acos": "Acos", "Atan": "Atan",
    "Sinh": "Sinh", "Cosh": "Cosh", "Asinh": "Asinh", "Acosh": "Acosh", "Atanh": "Atanh",
    "Erf": "Erf", "Sign": "Sign", "SoftPlus": "Softplus", "SoftSign": "Softsign",
    "HSwish": "HardSwish", "Mish": "Mish", "LogicalNot": "Not", "Identity": "Identity",
}

_BINARY = {
    "Add": "Add", "Subtract": "Sub", "Multiply": "Mul", "Maximum": "Max", "Minimum": "Min",
    "Power": "Pow", "Equal": "Equal", "Less": "Less", "Greater": "Greater",
    "LessEqual": "LessOrEqual", "GreaterEqual": "GreaterOrEqual", "LogicalAnd": "And",
    "LogicalOr": "Or", "LogicalXor": "Xor",
}


@_layer(*_UNARY)
def _unary(cx: _Cx) -> None:
    cx.b.op(_UNARY[cx.layer.type], cx.ins[0], out=cx.outs[0])


def _binary_inputs(cx: _Cx) -> tuple[str, str]:
    """The two inputs, with Paddle-style ('pdpd') broadcasting turned into numpy broadcasting."""
    mode = cx.attr("auto_broadcast", "numpy").lower()
    a, b = cx.ins[0], cx.ins[1]
    if mode in ("numpy", "none"):
        return a, b
    if mode != "pdpd":
        raise cx.unsupported(f"auto_broadcast='{mode}' is not supported; accepted: numpy, none, pdpd")
    axis = cx.int_("axis", -1)
    if axis == -1:
        return a, b
    ra, rb = cx.rank(0), cx.rank(1)
    trailing = ra - (axis % ra) - rb
    if trailing > 0:
        b = cx.b.op("Unsqueeze", b, cx.b.const(list(range(rb, rb + trailing)), "axes", np.int64))
    return a, b


@_layer(*_BINARY)
def _binary(cx: _Cx) -> None:
    a, b = _binary_inputs(cx)
    cx.b.op(_BINARY[cx.layer.type], a, b, out=cx.outs[0])


@_layer("NotEqual")
def _not_equal(cx: _Cx) -> None:
    a, b = _binary_inputs(cx)
    cx.b.op("Not", cx.b.op("Equal", a, b), out=cx.outs[0])


@_layer("SquaredDifference")
def _squared_difference(cx: _Cx) -> None:
    a, b = _binary_inputs(cx)
    d = cx.b.op("Sub", a, b)
    cx.b.op("Mul", d, d, out=cx.outs[0])


def _is_int(type_name: str) -> bool:
    return bool(type_name) and type_name[0] in "iu"


@_layer("Divide")
def _divide(cx: _Cx) -> None:
    a, b = _binary_inputs(cx)
    if _is_int(cx.out_type()) and cx.bool_("m_pythondiv", True):
        # Python's floor division: a - a mod b is an exact multiple of b.
        a = cx.b.op("Sub", a, cx.b.op("Mod", a, b, fmod=0))
    cx.b.op("Div", a, b, out=cx.outs[0])


@_layer("Mod")
def _mod(cx: _Cx) -> None:
    a, b = _binary_inputs(cx)
    cx.b.op("Mod", a, b, fmod=1, out=cx.outs[0])  # truncated: the sign of the dividend


@_layer("FloorMod")
def _floor_mod(cx: _Cx) -> None:
    a, b = _binary_inputs(cx)
    if _is_int(cx.out_type()):
        cx.b.op("Mod", a, b, fmod=0, out=cx.outs[0])
        return
    q = cx.b.op("Floor", cx.b.op("Div", a, b))
    cx.b.op("Sub", a, cx.b.op("Mul", q, b), out=cx.outs[0])


def _scalar_like(cx: _Cx, value: float, i: int = 0) -> str:
    dtype = IR_ELEMENT_TYPES.get(cx.in_type(i), (np.float32, 32))[0]
    return cx.b.const(np.array(value, dtype=dtype), "scalar")


@_layer("Clamp")
def _clamp(cx: _Cx) -> None:
    lo, hi = cx.float_("min"), cx.float_("max")
    if _is_int(cx.in_type(0)):
        lo, hi = math.ceil(lo), math.floor(hi)
    cx.b.op("Clip", cx.ins[0], _scalar_like(cx, lo), _scalar_like(cx, hi), out=cx.outs[0])


@_layer("Elu")
def _elu(cx: _Cx) -> None:
    cx.b.op("Elu", cx.ins[0], alpha=cx.float_("alpha"), out=cx.outs[0])


@_layer("HSigmoid")
def _hsigmoid(cx: _Cx) -> None:
    cx.b.op("HardSigmoid", cx.ins[0], alpha=1.0 / 6.0, beta=0.5, out=cx.outs[0])


@_layer("HardSigmoid")
def _hard_sigmoid(cx: _Cx) -> None:
    alpha, beta = float(cx.const(1, "alpha").reshape(-1)[0]), float(cx.const(2, "beta").reshape(-1)[0])
    cx.b.op("HardSigmoid", cx.ins[0], alpha=alpha, beta=beta, out=cx.outs[0])


@_layer("Selu")
def _selu(cx: _Cx) -> None:
    alpha, lam = float(cx.const(1, "alpha").reshape(-1)[0]), float(cx.const(2, "lambda").reshape(-1)[0])
    cx.b.op("Selu", cx.ins[0], alpha=alpha, gamma=lam, out=cx.outs[0])


@_layer("Swish")
def _swish(cx: _Cx) -> None:
    x = cx.ins[0]
    z = cx.b.op("Mul", x, cx.ins[1]) if cx.input(1) else x
    cx.b.op("Mul", x, cx.b.op("Sigmoid", z), out=cx.outs[0])


@_layer("Gelu")
def _gelu(cx: _Cx) -> None:
    """Gelu decomposed (ONNX has Gelu only from opset 20): erf or tanh approximation."""
    mode = cx.choice("approximation_mode", {"erf": "erf", "tanh": "tanh"}, "erf")
    x, b = cx.ins[0], cx.b
    half = b.op("Mul", x, _scalar_like(cx, 0.5))
    if mode == "erf":
        inner = b.op("Erf", b.op("Mul", x, _scalar_like(cx, 1 / math.sqrt(2))))
    else:
        cube = b.op("Mul", b.op("Mul", x, x), x)
        poly = b.op("Add", x, b.op("Mul", cube, _scalar_like(cx, 0.044715)))
        inner = b.op("Tanh", b.op("Mul", poly, _scalar_like(cx, math.sqrt(2 / math.pi))))
    b.op("Mul", half, b.op("Add", inner, _scalar_like(cx, 1.0)), out=cx.outs[0])


@_layer("PReLU")
def _prelu(cx: _Cx) -> None:
    """PReLU's 1-D slope with one value per channel applies along axis 1 (not numpy's last axis)."""
    x, slope = cx.ins[0], cx.ins[1]
    dims, sdims = cx.in_dims(0), cx.in_dims(1)
    if dims is not None and sdims is not None and len(sdims) == 1 and len(dims) > 2 and sdims[0] != 1:
        slope = cx.b.op("Reshape", slope, cx.b.const([-1] + [1] * (len(dims) - 2), "shape", np.int64))
    cx.b.op("PRelu", x, slope, out=cx.outs[0])


@_layer("Round")
def _round(cx: _Cx) -> None:
    mode = cx.choice("mode", {"half_to_even": "even", "half_away_from_zero": "away"}, "half_to_even")
    x, b = cx.ins[0], cx.b
    if mode == "even":
        b.op("Round", x, out=cx.outs[0])
        return
    rounded = b.op("Floor", b.op("Add", b.op("Abs", x), _scalar_like(cx, 0.5)))
    b.op("Mul", b.op("Sign", x), rounded, out=cx.outs[0])


@_layer("Convert")
def _convert(cx: _Cx) -> None:
    et = cx.attr("destination_type").lower()
    if et not in Type._BY_NAME or Type._BY_NAME[et].is_dynamic() or et in ("u4", "i4", "string"):
        raise cx.unsupported(f"destination_type='{et}' is not supported")
    # weights stored compressed (f16 -> f32 "decompression") stay compressed until compile time
    cx.b.op("Cast", cx.ins[0], to=Type._BY_NAME[et].onnx_code, out=cx.outs[0],
            fold="decompression" not in cx.layer.rt_info)


@_layer("ConvertLike")
def _convert_like(cx: _Cx) -> None:
    cx.b.op("CastLike", cx.ins[0], cx.ins[1], out=cx.outs[0])


# -- convolution and pooling -----------------------------------------------------------------

_AUTO_PAD = {"explicit": "NOTSET", "notset": "NOTSET", "same_upper": "SAME_UPPER",
             "same_lower": "SAME_LOWER", "valid": "VALID"}


def _window_attrs(cx: _Cx, spatial: int | None = None) -> dict[str, Any]:
    auto_pad = cx.choice("auto_pad", _AUTO_PAD, "explicit")
    attrs: dict[str, Any] = {"strides": cx.ints("strides")}
    if auto_pad == "NOTSET":
        attrs["pads"] = cx.ints("pads_begin") + cx.ints("pads_end")
    else:
        attrs["auto_pad"] = auto_pad
    return attrs


def _grouped_weights(cx: _Cx, i: int) -> tuple[str, int]:
    """IR group weights [G, O, I, k...] as ONNX's [G*O, I, k...] and the group count."""
    dims = cx.in_dims(i)
    if dims is None or any(d < 0 for d in dims):
        raise cx.unsupported("group convolution weights need a static shape")
    shape = [dims[0] * dims[1]] + dims[2:]
    return cx.b.op("Reshape", cx.ins[i], cx.b.const(shape, "shape", np.int64)), dims[0]


@_layer("Convolution", "GroupConvolution")
def _convolution(cx: _Cx) -> None:
    w, group = cx.ins[1], 1
    if cx.layer.type == "GroupConvolution":
        w, group = _grouped_weights(cx, 1)
    cx.b.op("Conv", cx.ins[0], w, dilations=cx.ints("dilations"), group=group,
            out=cx.outs[0], **_window_attrs(cx))


@_layer("ConvolutionBackpropData", "GroupConvolutionBackpropData")
def _deconvolution(cx: _Cx) -> None:
    w, group = cx.ins[1], 1
    if cx.layer.type == "GroupConvolutionBackpropData":
        w, group = _grouped_weights(cx, 1)
    attrs = _window_attrs(cx)
    attrs.update(dilations=cx.ints("dilations"), group=group,
                 output_padding=cx.ints("output_padding", []) or None)
    if cx.input(2):
        attrs = _deconv_output_shape(cx, attrs, [int(v) for v in cx.const(2, "output_shape")])
    elif "auto_pad" in attrs:  # OpenVINO pads nothing for same_*/valid without an output_shape
        attrs["pads"] = [0] * (2 * len(attrs["strides"]))
        del attrs["auto_pad"]
    cx.b.op("ConvTranspose", cx.ins[0], w, out=cx.outs[0], **attrs)


def _deconv_output_shape(cx: _Cx, attrs: dict, out_spatial: list[int]) -> dict:
    """With an output_shape input, the pads are computed so that the output has that size."""
    xdims, wdims = cx.in_dims(0), cx.in_dims(1)
    if xdims is None or wdims is None or any(d < 0 for d in xdims[2:] + wdims):
        raise cx.unsupported("an output_shape input needs static input and weight shapes")
    ksize = wdims[-len(out_spatial):]
    strides, dil = attrs["strides"], attrs["dilations"]
    out_pad = attrs.get("output_padding") or [0] * len(out_spatial)
    lower = attrs.get("auto_pad") == "SAME_LOWER"
    begin, end = [], []
    for i, want in enumerate(out_spatial):
        full = strides[i] * (xdims[2 + i] - 1) + (ksize[i] - 1) * dil[i] + 1 + out_pad[i]
        total = max(full - want, 0)
        first = total - total // 2 if lower else total // 2
        begin.append(first)
        end.append(total - first)
    attrs = {k: v for k, v in attrs.items() if k != "auto_pad"}
    attrs["pads"] = begin + end
    return attrs


_ROUNDING = {"floor": 0, "ceil": 1, "ceil_torch": 1}


@_layer("MaxPool")
def _max_pool(cx: _Cx) -> None:
    attrs = _window_attrs(cx)
    attrs.update(kernel_shape=cx.ints("kernel"), ceil_mode=cx.choice("rounding_type", _ROUNDING, "floor"))
    if cx.version >= 8:
        attrs["dilations"] = cx.ints("dilations", [])
    if len(cx.outs) == 1 or not cx.used[1]:
        cx.b.op("MaxPool", cx.ins[0], out=cx.outs[0], **attrs)
        return
    if cx.int_("axis", 0) != 0:
        raise cx.unsupported("MaxPool indices flattened from an axis other than 0 are not supported")
    idx_type = cx.attr("index_element_type", "i64").lower()
    _, indices = cx.b.op("MaxPool", cx.ins[0], out=[cx.outs[0], cx.b.fresh(cx.outs[1] + "/i64")], **attrs)
    cx.b.op("Cast", indices, to=Type._BY_NAME[idx_type].onnx_code, out=cx.outs[1])


@_layer("AvgPool")
def _avg_pool(cx: _Cx) -> None:
    attrs = _window_attrs(cx)
    cx.b.op("AveragePool", cx.ins[0], kernel_shape=cx.ints("kernel"),
            ceil_mode=cx.choice("rounding_type", _ROUNDING, "floor"),
            count_include_pad=0 if cx.bool_("exclude-pad", False) else 1, out=cx.outs[0], **attrs)


@_layer("AdaptiveAvgPool", "AdaptiveMaxPool")
def _adaptive_pool(cx: _Cx) -> None:
    size = [int(v) for v in cx.const(1, "output_shape").reshape(-1)]
    if any(s != 1 for s in size) or len(cx.outs) > 1:
        raise cx.unsupported(f"adaptive pooling to {size} is supported only for an output of all 1s "
                             f"(global pooling) without indices")
    op = "GlobalAveragePool" if cx.layer.type == "AdaptiveAvgPool" else "GlobalMaxPool"
    cx.b.op(op, cx.ins[0], out=cx.outs[0])


# -- linear algebra and normalisation ---------------------------------------------------------

def _transposed_last2(cx: _Cx, i: int) -> str:
    dims = cx.in_dims(i)
    if dims is not None and len(dims) < 2:
        return cx.ins[i]
    if dims is None:
        return cx.b.op("Einsum", cx.ins[i], equation="...ij->...ji")
    perm = list(range(len(dims)))
    perm[-2], perm[-1] = perm[-1], perm[-2]
    return cx.b.op("Transpose", cx.ins[i], perm=perm)


@_layer("MatMul")
def _matmul(cx: _Cx) -> None:
    a = _transposed_last2(cx, 0) if cx.bool_("transpose_a") else cx.ins[0]
    b = _transposed_last2(cx, 1) if cx.bool_("transpose_b") else cx.ins[1]
    cx.b.op("MatMul", a, b, out=cx.outs[0])


@_layer("BatchNormInference")
def _batch_norm(cx: _Cx) -> None:
    # opset1 takes (gamma, beta, data, mean, variance); opset5 takes data first.
    order = [2, 0, 1, 3, 4] if cx.version < 5 else [0, 1, 2, 3, 4]
    cx.b.op("BatchNormalization", *[cx.ins[i] for i in order], epsilon=cx.float_("epsilon"),
            out=cx.outs[0])


@_layer("Einsum")
def _einsum(cx: _Cx) -> None:
    cx.b.op("Einsum", *cx.ins, equation=cx.attr("equation"), out=cx.outs[0])


@_layer("Softmax", "SoftMax", "LogSoftmax")
def _softmax(cx: _Cx) -> None:
    op = "LogSoftmax" if cx.layer.type == "LogSoftmax" else "Softmax"
    cx.b.op(op, cx.ins[0], axis=cx.int_("axis", 1), out=cx.outs[0])


@_layer("NormalizeL2")
def _normalize_l2(cx: _Cx) -> None:
    eps = cx.float_("eps")
    combine = cx.choice("eps_mode", {"add": "Add", "max": "Max"}, "add")
    b, x = cx.b, cx.ins[0]
    sq = b.op("ReduceSumSquare", x, cx.vec(1), keepdims=1, noop_with_empty_axes=1)
    norm = b.op("Sqrt", b.op(combine, sq, _scalar_like(cx, eps)))
    b.op("Div", x, norm, out=cx.outs[0])


def _mvn(cx: _Cx, axes: str, normalize: bool, eps: float, inside: bool) -> None:
    b, x = cx.b, cx.ins[0]
    centred = b.op("Sub", x, b.op("ReduceMean", x, axes, keepdims=1))
    if not normalize:
        b.op("Identity", centred, out=cx.outs[0])
        return
    var = b.op("ReduceMean", b.op("Mul", centred, centred), axes, keepdims=1)
    if inside:
        std = b.op("Sqrt", b.op("Add", var, _scalar_like(cx, eps)))
    else:
        std = b.op("Add", b.op("Sqrt", var), _scalar_like(cx, eps))
    b.op("Div", centred, std, out=cx.outs[0])


@_layer("MVN")
def _mvn_layer(cx: _Cx) -> None:
    normalize, eps = cx.bool_("normalize_variance", True), cx.float_("eps")
    if cx.version >= 6:
        inside = cx.choice("eps_mode", {"inside_sqrt": True, "outside_sqrt": False})
        _mvn(cx, cx.vec(1), normalize, eps, inside)
        return
    if "reduction_axes" in cx.layer.data:
        axes = cx.ints("reduction_axes")
    else:
        start = 1 if cx.bool_("across_channels", False) else 2
        axes = list(range(start, cx.rank(0)))
    _mvn(cx, cx.b.const(axes, "axes", np.int64), normalize, eps, inside=True)


@_layer("LRN")
def _lrn(cx: _Cx) -> None:
    axes = [int(v) for v in cx.const(1, "axes").reshape(-1)]
    if axes != [1]:
        raise cx.unsupported(f"LRN over axes {axes} is not supported; only across channels ([1])")
    cx.b.op("LRN", cx.ins[0], alpha=cx.float_("alpha"), beta=cx.float_("beta"),
            bias=cx.float_("bias"), size=cx.int_("size"), out=cx.outs[0])


@_layer("FakeQuantize")
def _fake_quantize(cx: _Cx) -> None:
    """Decomposed per OpenVINO's formula: clamp to the input range, round to levels-1 steps."""
    levels = cx.int_("levels")
    b = cx.b
    x, il, ih, ol, oh = cx.ins[:5]
    steps = _scalar_like(cx, float(levels - 1))
    scaled = b.op("Div", b.op("Mul", b.op("Sub", x, il), steps), b.op("Sub", ih, il))
    q = b.op("Add", b.op("Mul", b.op("Div", b.op("Round", scaled), steps), b.op("Sub", oh, ol)), ol)
    high = b.op("Where", b.op("Greater", x, b.op("Max", il, ih)), oh, q)
    b.op("Where", b.op("LessOrEqual", x, b.op("Min", il, ih)), ol, high, out=cx.outs[0])


# -- reductions and index ops ------------------------------------------------------------------

_REDUCE = {"ReduceMean": "ReduceMean", "ReduceSum": "ReduceSum", "ReduceMax": "ReduceMax",
           "ReduceMin": "ReduceMin", "ReduceProd": "ReduceProd", "ReduceL1": "ReduceL1",
           "ReduceL2": "ReduceL2"}


@_layer(*_REDUCE)
def _reduce(cx: _Cx) -> None:
    cx.b.op(_REDUCE[cx.layer.type], cx.ins[0], cx.vec(1), keepdims=int(cx.bool_("keep_dims")),
            noop_with_empty_axes=1, out=cx.outs[0])


@_layer("ReduceLogicalAnd", "ReduceLogicalOr")
def _reduce_logical(cx: _Cx) -> None:
    op = "ReduceMin" if cx.layer.type == "ReduceLogicalAnd" else "ReduceMax"
    as_int = cx.b.op("Cast", cx.ins[0], to=6)
    r = cx.b.op(op, as_int, cx.vec(1), keepdims=int(cx.bool_("keep_dims")), noop_with_empty_axes=1)
    cx.b.op("Cast", r, to=9, out=cx.outs[0])


@_layer("TopK")
def _topk(cx: _Cx) -> None:
    mode = cx.choice("mode", {"max": 1, "min": 0})
    sort = cx.choice("sort", {"value": "value", "index": "index", "none": "value"}, "none")
    axis = cx.int_("axis")
    k = cx.vec(1)
    b = cx.b
    idx_type = cx.attr("index_element_type", "i32").lower()
    values, indices = b.op("TopK", cx.ins[0], k, axis=axis, largest=mode, sorted=1, n_out=2)
    if sort == "index":  # reorder both outputs by ascending index
        _, order = b.op("TopK", indices, k, axis=axis, largest=0, sorted=1, n_out=2)
        values = b.op("GatherElements", values, order, axis=axis)
        indices = b.op("GatherElements", indices, order, axis=axis)
    b.op("Identity", values, out=cx.outs[0])
    if len(cx.outs) > 1 and cx.used[1]:
        b.op("Cast", indices, to=Type._BY_NAME[idx_type].onnx_code, out=cx.outs[1])


@_layer("CumSum")
def _cumsum(cx: _Cx) -> None:
    axis = cx.i64(1) if cx.input(1) else cx.b.const(0, "axis", np.int64)
    cx.b.op("CumSum", cx.ins[0], axis, exclusive=int(cx.bool_("exclusive")),
            reverse=int(cx.bool_("reverse")), out=cx.outs[0])


@_layer("NonZero")
def _nonzero(cx: _Cx) -> None:
    out_type = cx.attr("output_type", "i64").lower()
    nz = cx.b.op("NonZero", cx.ins[0])
    cx.b.op("Cast", nz, to=Type._BY_NAME[out_type].onnx_code, out=cx.outs[0])


@_layer("OneHot")
def _one_hot(cx: _Cx) -> None:
    b = cx.b
    values = b.op("Concat", b.op("Reshape", cx.ins[3], b.const([-1], "shape", np.int64)),
                  b.op("Reshape", cx.ins[2], b.const([-1], "shape", np.int64)), axis=0)
    b.op("OneHot", cx.ins[0], cx.vec(1), values, axis=cx.int_("axis"), out=cx.outs[0])


@_layer("Range")
def _range(cx: _Cx) -> None:
    ins = list(cx.ins[:3])
    if cx.version >= 4:
        out_type = Type._BY_NAME[cx.attr("output_type").lower()]
        ins = [i if cx.in_type(k) == out_type.name else cx.b.op("Cast", i, to=out_type.onnx_code)
               for k, i in enumerate(ins)]
    scalars = [cx.b.op("Reshape", i, cx.b.const([], "scalar_shape", np.int64)) for i in ins]
    cx.b.op("Range", *scalars, out=cx.outs[0])


@_layer("Select")
def _select(cx: _Cx) -> None:
    cx.b.op("Where", *cx.ins[:3], out=cx.outs[0])


# -- shape and data movement ----------------------------------------------------------------

@_layer("ShapeOf")
def _shape_of(cx: _Cx) -> None:
    out_type = cx.attr("output_type", "i64").lower()
    if out_type == "i64":
        cx.b.op("Shape", cx.ins[0], out=cx.outs[0])
    else:
        cx.b.op("Cast", cx.b.op("Shape", cx.ins[0]), to=Type._BY_NAME[out_type].onnx_code, out=cx.outs[0])


@_layer("Reshape")
def _reshape(cx: _Cx) -> None:
    shape = cx.i64(1)
    special_zero = cx.bool_("special_zero")
    value = cx.b.value(shape)
    allowzero = 0 if special_zero or (value is not None and 0 not in value) else 1
    cx.b.op("Reshape", cx.ins[0], shape, allowzero=allowzero, out=cx.outs[0])


@_layer("Squeeze", "Unsqueeze")
def _squeeze(cx: _Cx) -> None:
    axes = cx.vec(1) if cx.input(1) else None
    cx.b.op(cx.layer.type, cx.ins[0], axes, out=cx.outs[0])


@_layer("Transpose")
def _transpose(cx: _Cx) -> None:
    perm = [int(v) for v in cx.const(1, "order").reshape(-1)]
    cx.b.op("Transpose", cx.ins[0], perm=perm or None, out=cx.outs[0])


@_layer("Concat")
def _concat(cx: _Cx) -> None:
    cx.b.op("Concat", *cx.ins, axis=cx.int_("axis"), out=cx.outs[0])


@_layer("Split")
def _split(cx: _Cx) -> None:
    axis = int(cx.const(1, "axis").reshape(-1)[0])
    n = cx.int_("num_splits")
    if n == 1:
        cx.b.op("Identity", cx.ins[0], out=cx.outs[0])
        return
    cx.b.op("Split", cx.ins[0], axis=axis, num_outputs=n, out=list(cx.outs))


@_layer("VariadicSplit")
def _variadic_split(cx: _Cx) -> None:
    axis = int(cx.const(1, "axis").reshape(-1)[0])
    lengths = [int(v) for v in cx.const(2, "split_lengths").reshape(-1)]
    b = cx.b
    if -1 in lengths:
        k = lengths.index(-1)
        dims = cx.in_dims(0)
        if dims is not None and dims[axis] >= 0:
            lengths[k] = dims[axis] - (sum(lengths) + 1)
            split = b.const(lengths, "split", np.int64)
        else:
            total = b.op("Gather", b.op("Shape", cx.ins[0]), b.const([axis], "axis", np.int64), axis=0)
            rest = b.op("Sub", total, b.const([sum(lengths) + 1], "known", np.int64))
            parts = [b.const(lengths[:k], "split", np.int64), rest, b.const(lengths[k + 1:], "split", np.int64)]
            split = b.op("Concat", *parts, axis=0)
    else:
        split = b.const(lengths, "split", np.int64)
    if len(cx.outs) == 1:
        b.op("Identity", cx.ins[0], out=cx.outs[0])
        return
    b.op("Split", cx.ins[0], split, axis=axis, out=list(cx.outs))


@_layer("Gather")
def _gather(cx: _Cx) -> None:
    axis = int(cx.const(2, "axis").reshape(-1)[0])
    batch_dims = cx.int_("batch_dims", 0) if cx.version >= 7 else 0
    if batch_dims != 0:
        raise cx.unsupported(f"batch_dims={batch_dims} is not supported; only 0")
    cx.b.op("Gather", cx.ins[0], cx.ins[1], axis=axis, out=cx.outs[0])


@_layer("GatherND")
def _gather_nd(cx: _Cx) -> None:
    batch_dims = cx.int_("batch_dims", 0)
    if batch_dims and cx.version < 8:
        raise cx.unsupported("GatherND-5 with batch_dims > 0 flattens the batch dimensions; "
                             "only GatherND-8 semantics are supported")
    cx.b.op("GatherND", cx.ins[0], cx.i64(1), batch_dims=batch_dims, out=cx.outs[0])


@_layer("GatherElements")
def _gather_elements(cx: _Cx) -> None:
    cx.b.op("GatherElements", cx.ins[0], cx.ins[1], axis=cx.int_("axis"), out=cx.outs[0])


_SCATTER_REDUCTION = {"none": "none", "sum": "add", "prod": "mul", "max": "max", "min": "min"}


@_layer("ScatterNDUpdate")
def _scatter_nd(cx: _Cx) -> None:
    red = cx.choice("reduction", _SCATTER_REDUCTION, "none")
    cx.b.op("ScatterND", cx.ins[0], cx.i64(1), cx.ins[2], reduction=red, out=cx.outs[0])


@_layer("ScatterElementsUpdate")
def _scatter_elements(cx: _Cx) -> None:
    red = cx.choice("reduction", _SCATTER_REDUCTION, "none")
    if red != "none" and not cx.bool_("use_init_val", True):
        raise cx.unsupported("use_init_val=false is not supported")
    axis = int(cx.const(3, "axis").reshape(-1)[0])
    cx.b.op("ScatterElements", cx.ins[0], cx.i64(1), cx.ins[2], axis=axis, reduction=red,
            out=cx.outs[0])


@_layer("Broadcast")
def _broadcast(cx: _Cx) -> None:
    # OpenVINO spells explicit broadcasting 'none' as well (AutoBroadcastType::EXPLICIT == NONE)
    mode = cx.choice("mode", {"numpy": "numpy", "bidirectional": "numpy", "explicit": "explicit",
                              "none": "explicit", "pdpd": "pdpd"}, "numpy")
    x, b = cx.ins[0], cx.b
    if mode == "pdpd":
        raise cx.unsupported("mode='pdpd' is not supported; accepted: numpy, bidirectional, explicit")
    if mode == "explicit":
        mapping = [int(v) for v in cx.const(2, "axes_mapping").reshape(-1)]
        target_dims = cx.in_dims(1)
        if target_dims is None or target_dims[0] < 0:
            raise cx.unsupported("explicit broadcast needs a target shape of known length")
        missing = [a for a in range(target_dims[0]) if a not in mapping]
        if missing:
            x = b.op("Unsqueeze", x, b.const(missing, "axes", np.int64))
    b.op("Expand", x, cx.i64(1), out=cx.outs[0])


@_layer("Tile")
def _tile(cx: _Cx) -> None:
    x, b = cx.ins[0], cx.b
    rank, rdims = cx.rank(0), cx.in_dims(1)
    if rdims is None or rdims[0] < 0:
        raise cx.unsupported("the number of repeats must be known")
    n = rdims[0]
    repeats = cx.vec(1)
    if n < rank:
        repeats = b.op("Concat", b.const([1] * (rank - n), "ones", np.int64), repeats, axis=0)
    elif n > rank:
        x = b.op("Unsqueeze", x, b.const(list(range(n - rank)), "axes", np.int64))
    b.op("Tile", x, repeats, out=cx.outs[0])


@_layer("Pad")
def _pad(cx: _Cx) -> None:
    mode = cx.choice("pad_mode", {"constant": "constant", "edge": "edge", "reflect": "reflect"})
    pads = cx.b.op("Concat", cx.vec(1), cx.vec(2), axis=0)
    value = cx.ins[3] if mode == "constant" and cx.input(3) else None
    cx.b.op("Pad", cx.ins[0], pads, value, mode=mode, out=cx.outs[0])


@_layer("StridedSlice")
def _strided_slice(cx: _Cx) -> None:
    _StridedSlice(cx).emit()


class _StridedSlice:
    """StridedSlice as Slice + Squeeze (shrink_axis_mask) + Unsqueeze (new_axis_mask).

    OpenVINO masks: begin_mask/end_mask 1 = ignore begin/end (take the whole range); an ellipsis
    stands for every input axis the other entries do not name.
    """

    def __init__(self, cx: _Cx):
        self.cx = cx
        n = cx.in_dims(1)
        if n is None or len(n) != 1 or n[0] < 0:
            raise cx.unsupported("the begin input must be 1-D with a known length")
        self.n = n[0]
        masks = {}
        for name in ("begin_mask", "end_mask", "new_axis_mask", "shrink_axis_mask", "ellipsis_mask"):
            m = cx.ints(name, [])
            masks[name] = (m + [0] * self.n)[:self.n]
        self.m = masks
        if cx.input(3):
            self.strides = [int(v) for v in cx.const(3, "strides").reshape(-1)]
        else:
            self.strides = [1] * self.n

    def emit(self) -> None:
        cx, b, m = self.cx, self.cx.b, self.m
        ellipsis = [i for i in range(self.n) if m["ellipsis_mask"][i]]
        consumed = sum(1 for i in range(self.n) if not m["new_axis_mask"][i] and not m["ellipsis_mask"][i])
        rank = cx.rank(0) if ellipsis else consumed
        entries, new_axes, shrink, axis, out_pos = [], [], [], 0, 0  # entries: (spec idx, input axis)
        for i in range(self.n):
            if m["ellipsis_mask"][i] and i == ellipsis[0]:
                span = rank - consumed
                axis, out_pos = axis + span, out_pos + span
            elif m["ellipsis_mask"][i] or m["new_axis_mask"][i]:
                if m["new_axis_mask"][i]:
                    new_axes.append(out_pos)
                    out_pos += 1
            else:
                entries.append((i, axis))
                if m["shrink_axis_mask"][i]:
                    shrink.append(axis)
                else:
                    out_pos += 1
                axis += 1
        y = cx.ins[0]
        if entries:
            y = b.op("Slice", y, *self._bounds(entries))
        if shrink:
            y = b.op("Squeeze", y, b.const(shrink, "axes", np.int64))
        if new_axes:
            y = b.op("Unsqueeze", y, b.const(new_axes, "axes", np.int64))
        b.op("Identity", y, out=cx.outs[0])

    def _bounds(self, entries: list[tuple[int, int]]) -> list[str]:
        cx, b, m = self.cx, self.cx.b, self.m
        idx = b.const([i for i, _ in entries], "idx", np.int64)
        begin = b.op("Gather", cx.vec(1), idx, axis=0)
        end = b.op("Gather", cx.vec(2), idx, axis=0)
        steps = [self.strides[i] if not m["shrink_axis_mask"][i] else 1 for i, _ in entries]
        for i, _ in entries:
            if self.strides[i] == 0:
                raise cx.unsupported("a stride of 0 is invalid")
        begin_default = [0 if s > 0 else INT64_MAX for s in steps]
        end_default = [INT64_MAX if s > 0 else INT64_MIN for s in steps]
        use_begin_default = [bool(m["begin_mask"][i]) and not m["shrink_axis_mask"][i] for i, _ in entries]
        use_end_default = [bool(m["end_mask"][i]) and not m["shrink_axis_mask"][i] for i, _ in entries]
        begin = b.op("Where", b.const(use_begin_default, "mask", np.bool_),
                     b.const(begin_default, "default", np.int64), begin)
        # a shrunk axis keeps the single element at begin (begin = -1 runs to the end)
        shrink = [bool(m["shrink_axis_mask"][i]) for i, _ in entries]
        if any(shrink):
            one_past = b.op("Add", begin, b.const(1, "one", np.int64))
            one_past = b.op("Where", b.op("Equal", one_past, b.const(0, "zero", np.int64)),
                            b.const(INT64_MAX, "max", np.int64), one_past)
            end = b.op("Where", b.const(shrink, "mask", np.bool_), one_past, end)
        end = b.op("Where", b.const(use_end_default, "mask", np.bool_),
                   b.const(end_default, "default", np.int64), end)
        axes = b.const([a for _, a in entries], "axes", np.int64)
        return [begin, end, axes, b.const(steps, "steps", np.int64)]


@_layer("Slice")
def _slice(cx: _Cx) -> None:
    axes = cx.vec(4) if cx.input(4) else None
    cx.b.op("Slice", cx.ins[0], cx.vec(1), cx.vec(2), axes, cx.vec(3), out=cx.outs[0])


@_layer("Reverse")
def _reverse(cx: _Cx) -> None:
    axes_in = cx.const(1, "axes").reshape(-1)
    if cx.attr("mode", "index").lower() == "mask":
        axes = [i for i, flag in enumerate(axes_in) if flag]
    else:
        axes = [int(v) for v in axes_in]
    if not axes:
        cx.b.op("Identity", cx.ins[0], out=cx.outs[0])
        return
    n = len(axes)
    b = cx.b
    cx.b.op("Slice", cx.ins[0], b.const([-1] * n, "starts", np.int64), b.const([INT64_MIN] * n, "ends", np.int64),
            b.const(axes, "axes", np.int64), b.const([-1] * n, "steps", np.int64), out=cx.outs[0])


@_layer("ReverseSequence")
def _reverse_sequence(cx: _Cx) -> None:
    cx.b.op("ReverseSequence", cx.ins[0], cx.i64(1), batch_axis=cx.int_("batch_axis", 0),
            time_axis=cx.int_("seq_axis", 1), out=cx.outs[0])


@_layer("DepthToSpace", "SpaceToDepth")
def _depth_to_space(cx: _Cx) -> None:
    mode = cx.choice("mode", {"blocks_first": "DCR", "depth_first": "CRD"})
    block = cx.int_("block_size")
    if cx.layer.type == "DepthToSpace":
        cx.b.op("DepthToSpace", cx.ins[0], blocksize=block, mode=mode, out=cx.outs[0])
        return
    if mode != "DCR":
        raise cx.unsupported("SpaceToDepth with mode='depth_first' is not supported; only blocks_first")
    cx.b.op("SpaceToDepth", cx.ins[0], blocksize=block, out=cx.outs[0])


@_layer("ShuffleChannels")
def _shuffle_channels(cx: _Cx) -> None:
    dims = cx.in_dims(0)
    axis, group = cx.int_("axis", 1), cx.int_("group", 1)
    if dims is None:
        raise cx.unsupported("the input rank must be known")
    axis %= len(dims)
    if dims[axis] < 0:
        raise cx.unsupported("the shuffled dimension must be static")
    b = cx.b
    split = b.op("Reshape", cx.ins[0], b.const([0] * axis + [group, dims[axis] // group, -1], "shape", np.int64))
    perm = list(range(axis + 3))
    perm[axis], perm[axis + 1] = perm[axis + 1], perm[axis]
    y = b.op("Transpose", split, perm=perm)
    b.op("Reshape", y, b.op("Shape", cx.ins[0]), out=cx.outs[0])


_RESIZE_MODES = {"nearest": "nearest", "linear": "linear", "linear_onnx": "linear", "cubic": "cubic"}
_COORDS = {m: m for m in ("half_pixel", "pytorch_half_pixel", "asymmetric", "tf_half_pixel_for_nn",
                          "align_corners")}
_NEAREST = {m: m for m in ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")}


@_layer("Interpolate")
def _interpolate(cx: _Cx) -> None:
    if cx.version < 4:
        _interpolate_v1(cx)
        return
    mode = cx.choice("mode", _RESIZE_MODES)
    by_sizes = cx.choice("shape_calculation_mode", {"sizes": True, "scales": False})
    axes_in = 3 if cx.version < 11 else 2
    target_in = (1 if by_sizes else 2) if cx.version < 11 else 1
    x = _interpolate_pads(cx)
    axes = [int(v) for v in cx.const(axes_in, "axes").reshape(-1)] if cx.input(axes_in) else None
    sizes = scales = None
    if by_sizes:
        sizes = cx.vec(target_in)
    else:
        scales = cx.b.op("Cast", cx.ins[target_in], to=1)
    _resize(cx, x, mode, cx.choice("coordinate_transformation_mode", _COORDS, "half_pixel"),
            cx.choice("nearest_mode", _NEAREST, "round_prefer_floor"), axes, scales, sizes)


def _interpolate_pads(cx: _Cx) -> str:
    begin, end = cx.ints("pads_begin", []), cx.ints("pads_end", [])
    if not any(begin) and not any(end):
        return cx.ins[0]
    rank = cx.rank(0)
    pads = (begin + [0] * rank)[:rank] + (end + [0] * rank)[:rank]
    return cx.b.op("Pad", cx.ins[0], cx.b.const(pads, "pads", np.int64), mode="constant")


def _resize(cx: _Cx, x: str, mode: str, coords: str, nearest: str, axes, scales, sizes) -> None:
    cx.b.op("Resize", x, None, scales, sizes, mode=mode, coordinate_transformation_mode=coords,
            nearest_mode=nearest, cubic_coeff_a=cx.float_("cube_coeff", -0.75), axes=axes,
            antialias=int(cx.bool_("antialias")), out=cx.outs[0])


def _interpolate_v1(cx: _Cx) -> None:
    """Interpolate-1, as OpenVINO converts it to Interpolate-4 (sizes, 'simple' nearest rounding)."""
    mode = cx.choice("mode", {"nearest": "nearest", "linear": "linear", "cubic": "cubic",
                              "linear_onnx": "linear"})
    axes = cx.ints("axes")
    x = _interpolate_pads(cx)
    rank = cx.rank(0)
    padded = any(cx.ints("pads_begin", [])) or any(cx.ints("pads_end", []))
    if cx.bool_("align_corners"):
        coords = "align_corners"
    elif mode == "linear" and not padded and not (rank == 4 and sorted(axes) == [2, 3]):
        coords = "half_pixel"
    else:
        coords = "asymmetric"
    nearest = "floor"  # 'simple' rounds down when upsampling
    dims, sizes = cx.in_dims(0), cx.b.value(cx.ins[1])
    if dims is not None and sizes is not None and any(
            0 <= dims[a] and s < dims[a] for a, s in zip(axes, sizes.reshape(-1))):
        nearest = "ceil"  # ... and up when downsampling
    _resize(cx, x, mode, coords, nearest, axes, None, cx.vec(1))


@_layer("GridSample")
def _grid_sample(cx: _Cx) -> None:
    cx.b.op("GridSample", cx.ins[0], cx.ins[1], align_corners=int(cx.bool_("align_corners")),
            mode=cx.choice("mode", {"bilinear": "bilinear", "bicubic": "bicubic", "nearest": "nearest"},
                           "bilinear"),
            padding_mode=cx.choice("padding_mode", {"zeros": "zeros", "border": "border",
                                                    "reflection": "reflection"}, "zeros"),
            out=cx.outs[0])


_UNSUPPORTED = {
    "DetectionOutput": "SSD post-processing has no ONNX counterpart; cut the model before it "
                       "and decode boxes in Python",
    "PriorBox": "fold it to a constant with OpenVINO before export",
    "PriorBoxClustered": "fold it to a constant with OpenVINO before export",
    "Proposal": "no ONNX counterpart", "RegionYolo": "no ONNX counterpart",
    "NonMaxSuppression": "its OpenVINO output layout differs from ONNX's; not translated yet",
    "TensorIterator": "IR subgraph bodies are not read", "Loop": "IR subgraph bodies are not read",
    "If": "IR subgraph bodies are not read",
    "ReadValue": "stateful IR models are not read", "Assign": "stateful IR models are not read",
    "LSTMSequence": "gate order differs from ONNX; not translated yet",
    "GRUSequence": "gate order differs from ONNX; not translated yet",
    "RNNSequence": "not translated yet", "LSTMCell": "not translated yet", "GRUCell": "not translated yet",
    "DeformableConvolution": "no ONNX counterpart at opset 18",
    "GroupNormalization": "not translated yet", "ScaledDotProductAttention": "not translated yet",
    "ScatterUpdate": "no ONNX counterpart", "Roll": "not translated yet", "Unique": "not translated yet",
}

SUPPORTED_LAYERS = frozenset(_LAYERS) | {"Parameter", "Const", "Result"}
