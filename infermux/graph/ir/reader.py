"""Read OpenVINO IR (``.xml`` + ``.bin``, IR v10 and v11) into a :class:`Model` of ONNX ops.

Each IR layer becomes one ONNX op or a short decomposition: the translations live in the
``layers_*`` modules, one small function per layer type, registered in :data:`LAYERS`.
Port-numbered edges become tensor names: a port's ``names`` when it has them, else its layer's
name.  ``Const`` layers become initializers read from the ``.bin`` with bounds checks; layer
``rt_info`` becomes ``Node.rt_info``.  The XML is untrusted (see :mod:`.parse`): a bad offset,
size, edge or attribute is a :class:`ModelReadError` naming the layer.

>>> from infermux.graph.ir import read_ir
>>> model = read_ir("face_detection.xml")            # doctest: +SKIP
>>> model.inputs[0].any_name                         # doctest: +SKIP
'input'
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from infermux.errors import ModelReadError, UnsupportedOpError
from infermux.graph.builder import GraphBuilder
from infermux.graph.ir import (  # noqa: F401 - importing a family registers its translations
    layers_conv,
    layers_elementwise,
    layers_norm,
    layers_reduce,
    layers_resize,
    layers_shape,
)
from infermux.graph.ir.layers import LAYERS, LayerContext
from infermux.graph.ir.parse import (
    Layer,
    Port,
    const_array,
    parse_edges,
    parse_layers,
    parse_rt_info,
    parse_xml,
    read_weights,
    split_names,
    topological_order,
)
from infermux.graph.model import Graph, Model, Node, ValueInfo
from infermux.graph.shape import Dimension, PartialShape
from infermux.graph.types import Type

__all__ = ["OPSET", "SUPPORTED_LAYERS", "read_ir"]

OPSET = 18  # reductions take `axes` as an input and Resize takes `axes`, as IR layers do


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
    root = parse_xml(data, where)
    blob, blob_where = read_weights(weights, path)
    try:
        model = _build(root, blob, blob_where, where)
    except (ModelReadError, UnsupportedOpError):
        raise
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise ModelReadError(f"Cannot read IR '{where}': {exc}") from exc
    model.source = str(path) if path else None
    return model


# -- assembling the graph -----------------------------------------------------------------------

def _tensor_name(layer: Layer, port: Port) -> str:
    if port.names:
        return min(port.names)  # OpenVINO's any_name is the smallest of a port's names
    return layer.name if len(layer.outputs) == 1 else f"{layer.name}.{port.id}"


def _pshape(dims: tuple[Dimension, ...] | None) -> PartialShape | None:
    return None if dims is None else PartialShape(list(dims))


def _etype(name: str) -> Type:
    return Type._BY_NAME.get(name, Type.dynamic) if name else Type.dynamic


def _build(root: ET.Element, blob, blob_where: str, where: str) -> Model:
    layers = parse_layers(root)
    legacy = root.get("version") == "10"
    b, inputs, outputs = _walk(layers, parse_edges(root, {lay.id: lay for lay in layers}), blob, blob_where, legacy)
    if not outputs:
        raise ModelReadError(f"Cannot read IR '{where}': the model has no Result layer")
    input_names = {i.name for i in inputs}
    graph = Graph(root.get("name", "model"), b.nodes, inputs, outputs, b.initializers,
                  {k: v for k, v in b.value_info.items() if k not in input_names})
    if legacy:
        _legacy_v10_types(graph)
    model = Model(graph, {"": OPSET}, name=root.get("name") or "model", producer="openvino-ir",
                  metadata={"ir_version": root.get("version", "")})
    model.get_rt_info().update(parse_rt_info(root.find("rt_info")))
    from infermux.graph.shape_infer import infer_model_shapes

    known = dict(graph.value_info)
    infer_model_shapes(model, strict=False)
    graph.value_info.update(known)  # the IR's own port shapes are at least as precise
    return model


def _walk(layers: list[Layer], edges: dict, blob, blob_where: str, legacy: bool):
    """Translate the layers in dependency order; returns (builder, inputs, outputs) in XML order."""
    by_id = {lay.id: lay for lay in layers}
    b = GraphBuilder(OPSET)
    tensor_of = {(lay.id, p.id): b.fresh(_tensor_name(lay, p)) for lay in layers for p in lay.outputs}
    consumed = set(edges.values())
    position = {lay.id: i for i, lay in enumerate(layers)}
    inputs, outputs, result_names = [], [], set()
    for lay in topological_order(layers, edges):
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
            b.set_const(outs[0], const_array(lay, blob, blob_where))
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


def _parameter(lay: Layer, outs: list[str]) -> ValueInfo:
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


def _source(lay: Layer, edges, by_id) -> tuple[Layer, Port]:
    """The layer and output port feeding a Result."""
    if len(lay.inputs) != 1:
        raise ModelReadError(f"{lay.where()} must have exactly one input")
    src_id, src_port = edges[(lay.id, lay.inputs[0].id)]
    src = by_id[src_id]
    return src, next(p for p in src.outputs if p.id == src_port)


def _result(b: GraphBuilder, lay: Layer, ins: list[str], src: Layer, port: Port, taken: set[str],
            legacy: bool) -> ValueInfo:
    """The graph output a Result layer names (an Identity when it needs a name of its own).

    IR v10 outputs are also called after their producer ('layer', or 'layer.index' when it has
    several outputs); like OpenVINO, the smallest of a tensor's names is the one it goes by.
    """
    name = ins[0]
    names = set(split_names(lay.extra.get("output_names", "")) or lay.inputs[0].names)
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


def _translate(b: GraphBuilder, lay: Layer, ins: list[str], outs: list[str], used: list[bool]) -> None:
    fn = LAYERS.get(lay.type)
    if fn is None:
        reason = _UNSUPPORTED.get(lay.type, "")
        raise UnsupportedOpError(
            f"{lay.where()}, version {lay.version or '?'}: this layer type is not supported by "
            f"infermux{'; ' + reason if reason else ''}. Supported layer types: "
            f"{', '.join(sorted(SUPPORTED_LAYERS))}")
    cx = LayerContext(b, lay, ins, outs, used)
    b.begin(lay.name, lay.rt_info)
    try:
        fn(cx)
    except (UnsupportedOpError, ModelReadError):
        raise
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise ModelReadError(f"{lay.where()}: cannot translate it ({exc})") from exc
    for name, needed in zip(outs, used):
        if needed and not b.produced(name):
            raise ModelReadError(f"{lay.where()}: output '{name}' was not produced (an unused output "
                                 f"port the translation does not provide)")
    b.end(outs[0] if outs else None)


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

SUPPORTED_LAYERS = frozenset(LAYERS) | {"Parameter", "Const", "Result"}
