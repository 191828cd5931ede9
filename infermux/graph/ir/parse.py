"""The OpenVINO IR file format: untrusted XML and its ``.bin`` into plain layer records.

:func:`parse_xml` refuses what IR never needs (DTDs, entity declarations, encodings other than
UTF-8) and versions other than 10 and 11; :func:`parse_layers` and :func:`parse_edges` give
:class:`Layer` records and checked port-to-port edges; :func:`const_array` reads a ``Const``
layer's value from the weights with bounds checks.  Nothing here builds graph nodes.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np

from infermux.errors import ModelReadError, UnsupportedOpError
from infermux.graph.shape import Dimension

__all__ = ["IR_ELEMENT_TYPES", "Layer", "Port", "const_array", "parse_edges", "parse_ints", "parse_layers",
           "parse_rt_info", "parse_xml", "read_weights", "split_names", "topological_order"]

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
class Port:
    """One <port> of a layer: its id, element type, dims and tensor names."""

    id: str
    precision: str  # an element-type name ('f32'), or '' when absent
    dims: tuple[Dimension, ...] | None
    names: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Layer:
    """One <layer>: its attributes (<data>), ports and rt_info, as read from the XML."""

    id: str
    name: str
    type: str
    version: str
    data: dict[str, str]
    inputs: tuple[Port, ...]
    outputs: tuple[Port, ...]
    rt_info: dict[str, Any]
    extra: dict[str, str]  # attributes of the <layer> element itself (output_names on Result)

    def where(self) -> str:
        return f"IR layer '{self.name}' (type {self.type}, id {self.id})"


def parse_xml(data: bytes, where: str) -> ET.Element:
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


def read_weights(weights: Any, xml_path: Path | None) -> tuple[memoryview | None, str]:
    """The ``.bin`` as bytes (None when there is none) and how to name it in messages."""
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


def split_names(text: str) -> tuple[str, ...]:
    """Port names are comma-separated; a comma inside a name is escaped as '\\,'."""
    parts = re.split(r"(?<!\\),", text)
    return tuple(p.replace("\\,", ",").strip() for p in parts if p.strip())


def _precision(text: str) -> str:
    low = text.lower()
    return _PRECISIONS.get(low, low)


def _port(el: ET.Element) -> Port:
    dims = tuple(Dimension.parse(d.text or "?") for d in el.findall("dim"))
    return Port(el.get("id", ""), _precision(el.get("precision", "")), dims,
                 split_names(el.get("names", "")))


def parse_rt_info(el: ET.Element | None) -> dict[str, Any]:
    """<rt_info> children as {name: value or nested dict}."""
    out: dict[str, Any] = {}
    if el is None:
        return out
    for child in el:
        key = child.get("name") or child.tag
        out[key] = parse_rt_info(child) if len(child) else child.get("value", "")
    return out


def parse_layers(root: ET.Element) -> list[Layer]:
    """The <layer> elements in XML order; layer ids must be unique."""
    layers_el = root.find("layers")
    if layers_el is None:
        raise ModelReadError("the IR has no <layers> element")
    layers = []
    for el in layers_el.findall("layer"):
        data_el = el.find("data")
        in_el, out_el = el.find("input"), el.find("output")
        layers.append(Layer(
            el.get("id", ""), el.get("name", ""), el.get("type", ""), el.get("version", ""),
            dict(data_el.attrib) if data_el is not None else {},
            tuple(_port(p) for p in (in_el.findall("port") if in_el is not None else [])),
            tuple(_port(p) for p in (out_el.findall("port") if out_el is not None else [])),
            parse_rt_info(el.find("rt_info")), dict(el.attrib)))
    ids = [lay.id for lay in layers]
    if len(set(ids)) != len(ids):
        raise ModelReadError("the IR has two layers with the same id")
    return layers


def parse_edges(root: ET.Element, by_id: dict[str, Layer]) -> dict[tuple[str, str], tuple[str, str]]:
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


def topological_order(layers: list[Layer], edges: dict) -> list[Layer]:
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


def parse_ints(text: str) -> list[int]:
    """An IR integer list ('1,2,3', '[1 2 3]' or '') as ints."""
    text = text.strip().strip("[]")
    return [int(t) for t in re.split(r"[,\s]+", text) if t] if text else []


def const_array(layer: Layer, blob: memoryview | None, blob_where: str) -> np.ndarray:
    """A Const layer's value, read from the weights with bounds checks."""
    d = layer.data
    et = d.get("element_type", "")
    if et not in IR_ELEMENT_TYPES:
        raise UnsupportedOpError(f"{layer.where()}: constants of element type '{et}' are not supported; "
                                 f"accepted: {', '.join(sorted(IR_ELEMENT_TYPES))}")
    shape = parse_ints(d.get("shape", ""))
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
