"""Read ONNX models (a path, bytes, or ``onnx.ModelProto``) into a :class:`Model`.

Model files are untrusted: external data must live inside the model's folder (a location with
``..``, an absolute path, or a symlink leading out is refused), offsets and lengths are checked
against the file, and a malformed protobuf is a :class:`ModelReadError` naming the file.
Model-local functions are inlined; shapes and types are inferred once with ONNX's own inference.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from infermux.errors import ModelReadError
from infermux.graph.model import Graph, Model, Node, ValueInfo
from infermux.graph.shape import Dimension, PartialShape
from infermux.graph.types import Type

__all__ = ["read_onnx", "graph_from_proto", "value_info_from_proto", "tensor_from_proto"]


def read_onnx(source: str | os.PathLike | bytes | onnx.ModelProto, *, infer_shapes: bool = True) -> Model:
    """Read an ONNX model from a path, serialized bytes or a ``ModelProto``."""
    path: Path | None = None
    if isinstance(source, onnx.ModelProto):
        proto = source
    elif isinstance(source, (bytes, bytearray, memoryview)):
        proto = _parse(bytes(source), "<bytes>")
    else:
        path = Path(source)
        if not path.is_file():
            raise ModelReadError(f"Cannot read model '{path}': no such file")
        proto = _parse(path.read_bytes(), str(path))
    if _has_external_data(proto):
        if path is None:
            raise ModelReadError(
                "the model refers to external data files but was given as bytes/ModelProto; "
                "read it from its path so the data can be found beside it")
        _load_external_data(proto, path.parent.resolve())
    if proto.functions:
        try:
            from onnx import inliner

            proto = inliner.inline_local_functions(proto)
        except Exception as exc:  # noqa: BLE001 - reported as a read error
            raise ModelReadError(f"Cannot inline the model-local functions of {path or 'the model'}: {exc}")
    if not proto.graph.node and not proto.graph.output:
        raise ModelReadError(f"Cannot read model '{path or '<bytes>'}': the graph is empty")
    opsets = {(o.domain if o.domain != "ai.onnx" else ""): o.version for o in proto.opset_import}
    try:
        graph = graph_from_proto(proto.graph)
    except ModelReadError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise ModelReadError(f"Cannot read model '{path or '<bytes>'}': {exc}") from exc
    model = Model(graph, opsets, name=proto.graph.name or (path.stem if path else "model"),
                  ir_version=proto.ir_version, producer=proto.producer_name,
                  metadata={p.key: p.value for p in proto.metadata_props},
                  source=str(path) if path else None)
    if infer_shapes:
        from infermux.graph.shape_infer import infer_model_shapes

        infer_model_shapes(model, strict=False)
    return model


def _parse(data: bytes, where: str) -> onnx.ModelProto:
    proto = onnx.ModelProto()
    try:
        proto.ParseFromString(data)
    except Exception as exc:  # noqa: BLE001 - protobuf raises DecodeError and others
        raise ModelReadError(f"Cannot read model '{where}': not a valid ONNX protobuf ({exc})") from None
    if not proto.HasField("graph"):
        raise ModelReadError(f"Cannot read model '{where}': not an ONNX model (no graph)")
    return proto


def _tensors(graph: onnx.GraphProto):
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("g"):
                yield from _tensors(attr.g)
            for g in attr.graphs:
                yield from _tensors(g)


def _has_external_data(proto: onnx.ModelProto) -> bool:
    return any(t.data_location == onnx.TensorProto.EXTERNAL for t in _tensors(proto.graph))


def _load_external_data(proto: onnx.ModelProto, base: Path) -> None:
    for tensor in _tensors(proto.graph):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        info = {e.key: e.value for e in tensor.external_data}
        location = info.get("location", "")
        target = _confined(base, location, tensor.name)
        offset = int(info.get("offset", 0) or 0)
        size = os.path.getsize(target)
        length = int(info["length"]) if info.get("length") else size - offset
        if offset < 0 or length < 0 or offset + length > size:
            raise ModelReadError(
                f"external data of tensor '{tensor.name}' asks for bytes {offset}..{offset + length} "
                f"of '{location}', which has {size} bytes")
        need = _expected_bytes(tensor)
        if need is not None and need != length:
            raise ModelReadError(
                f"external data of tensor '{tensor.name}' in '{location}' has {length} bytes "
                f"(the file has {size} bytes from offset {offset}), but its shape "
                f"{list(tensor.dims)} needs {need}")
        with open(target, "rb") as f:
            f.seek(offset)
            tensor.raw_data = f.read(length)
        tensor.data_location = onnx.TensorProto.DEFAULT
        del tensor.external_data[:]


def _expected_bytes(tensor: onnx.TensorProto) -> int | None:
    from infermux.ops._dtypes import ONNX_TO_NUMPY

    dtype = ONNX_TO_NUMPY.get(tensor.data_type)
    if dtype is None or dtype.kind in "OU" or tensor.data_type in (21, 22, 23, 25, 26):
        return None
    return int(np.prod(tensor.dims, dtype=np.int64)) * dtype.itemsize


def _confined(base: Path, location: str, tensor_name: str) -> Path:
    rel = Path(location)
    if not location or rel.is_absolute() or ".." in rel.parts or location.startswith(("/", "\\")):
        raise ModelReadError(
            f"external data location '{location}' of tensor '{tensor_name}' is refused: it must be "
            f"a relative path inside the model's folder, without '..'")
    target = (base / rel).resolve()
    if base != target and base not in target.parents:
        raise ModelReadError(
            f"external data location '{location}' of tensor '{tensor_name}' leads outside the "
            f"model's folder '{base}' (a symlink?); refused")
    if not target.is_file():
        raise ModelReadError(f"external data file '{location}' of tensor '{tensor_name}' was not found "
                             f"in '{base}'")
    return target


def tensor_from_proto(tensor: onnx.TensorProto) -> np.ndarray:
    """A TensorProto as a NumPy array (strings as an object array of str)."""
    arr = numpy_helper.to_array(tensor)
    if arr.dtype.kind in "SO":
        arr = np.array([v.decode("utf-8") if isinstance(v, bytes) else v for v in arr.ravel()],
                       dtype=object).reshape(arr.shape)
    return arr


def _attribute(attr: onnx.AttributeProto) -> Any:
    if attr.ref_attr_name:
        raise ModelReadError(f"attribute '{attr.name}' refers to a function attribute outside a function")
    value = helper.get_attribute_value(attr)
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, onnx.TensorProto):
        return tensor_from_proto(value)
    if isinstance(value, onnx.SparseTensorProto):
        return _dense(value)
    if isinstance(value, onnx.GraphProto):
        return graph_from_proto(value)
    if isinstance(value, list) and value:
        first = value[0]
        if isinstance(first, bytes):
            return [v.decode("utf-8") for v in value]
        if isinstance(first, onnx.TensorProto):
            return [tensor_from_proto(v) for v in value]
        if isinstance(first, onnx.GraphProto):
            return [graph_from_proto(v) for v in value]
        if isinstance(first, onnx.TypeProto):
            return list(value)
    return value


def _dense(sparse: onnx.SparseTensorProto) -> np.ndarray:
    values = tensor_from_proto(sparse.values)
    indices = tensor_from_proto(sparse.indices)
    dims = tuple(sparse.dims)
    out = np.zeros(int(np.prod(dims)), dtype=values.dtype)
    if indices.ndim == 2:
        indices = np.ravel_multi_index(indices.T, dims)
    out[indices.ravel()] = values.ravel()
    return out.reshape(dims)


def value_info_from_proto(vi: onnx.ValueInfoProto) -> ValueInfo:
    """A ValueInfoProto (tensor, sequence or optional of tensor) as a :class:`ValueInfo`."""
    t = vi.type
    kind = "tensor"
    while True:
        if t.HasField("sequence_type"):
            kind, t = "sequence", t.sequence_type.elem_type
        elif t.HasField("optional_type"):
            kind, t = ("optional" if kind == "tensor" else kind), t.optional_type.elem_type
        else:
            break
    if not t.HasField("tensor_type"):
        return ValueInfo(vi.name, Type.dynamic, None, kind=kind if kind != "tensor" else "other")
    tt = t.tensor_type
    try:
        etype = Type.from_onnx(tt.elem_type) if tt.elem_type else Type.dynamic
    except TypeError:
        etype = Type.dynamic
    shape = None
    if tt.HasField("shape"):
        dims = []
        for d in tt.shape.dim:
            if d.HasField("dim_value") and d.dim_value >= 0:
                dims.append(Dimension(d.dim_value))
            else:
                dims.append(Dimension(symbol=d.dim_param or None))
        shape = PartialShape(dims)
    return ValueInfo(vi.name, etype, shape, kind=kind)


def graph_from_proto(g: onnx.GraphProto) -> Graph:
    """A GraphProto (and its subgraphs) as a :class:`Graph`."""
    initializers = {t.name: tensor_from_proto(t) for t in g.initializer}
    for sp in g.sparse_initializer:
        initializers[sp.values.name] = _dense(sp)
    inputs = [value_info_from_proto(v) for v in g.input if v.name not in initializers]
    outputs = [value_info_from_proto(v) for v in g.output]
    value_info = {v.name: value_info_from_proto(v) for v in g.value_info}
    nodes = []
    used_names: set[str] = set()
    for i, n in enumerate(g.node):
        name = n.name or f"{n.op_type}_{i}"
        if name in used_names:
            name = f"{name}_{i}"
        used_names.add(name)
        nodes.append(Node(name, n.op_type, list(n.input), list(n.output),
                          {a.name: _attribute(a) for a in n.attribute}, n.domain or ""))
    return Graph(g.name, nodes, inputs, outputs, initializers, value_info)
