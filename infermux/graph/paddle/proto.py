"""A small protobuf wire-format decoder for Paddle's ``framework.proto`` (no paddlepaddle needed).

An ``inference.pdmodel`` is a serialized ``ProgramDesc``; each tensor in ``inference.pdiparams``
starts with a serialized ``VarType.TensorDesc``.  Only the fields a reader needs are declared
below, by field number, as in Paddle's ``paddle/fluid/framework/framework.proto``; unknown fields
are skipped.  Input is untrusted: every length is checked against the buffer and a malformed
message raises :class:`ProtoError` (the caller turns it into a ``ModelReadError``).
"""

from __future__ import annotations

import struct
from typing import Any

__all__ = ["ATTR_TYPES", "SCHEMAS", "VAR_DTYPES", "ProtoError", "decode"]


class ProtoError(ValueError):
    """The bytes are not a well-formed message of the expected type."""


# Field kinds: "varint" (bool/enum), "int64" (int32/int64: negative values are ten-byte two's
# complement varints), "float", "double", "string", "bytes", or the name of a nested message.
# repeated=True collects a list (packed or not).
# {message: {field number: (name, kind, repeated)}}
SCHEMAS: dict[str, dict[int, tuple[str, str, bool]]] = {
    "ProgramDesc": {1: ("blocks", "BlockDesc", True), 4: ("version", "Version", False)},
    "Version": {1: ("version", "int64", False)},
    "BlockDesc": {1: ("idx", "int64", False), 2: ("parent_idx", "int64", False),
                  3: ("vars", "VarDesc", True), 4: ("ops", "OpDesc", True)},
    "VarDesc": {1: ("name", "string", False), 2: ("type", "VarType", False),
                3: ("persistable", "varint", False), 4: ("need_check_feed", "varint", False)},
    "VarType": {1: ("type", "varint", False), 2: ("selected_rows", "TensorDesc", False),
                3: ("lod_tensor", "LoDTensorDesc", False),
                4: ("tensor_array", "LoDTensorDesc", False)},
    "LoDTensorDesc": {1: ("tensor", "TensorDesc", False), 2: ("lod_level", "int64", False)},
    "TensorDesc": {1: ("data_type", "varint", False), 2: ("dims", "int64", True)},
    "OpDesc": {3: ("type", "string", False), 1: ("inputs", "OpVar", True),
               2: ("outputs", "OpVar", True), 4: ("attrs", "Attr", True)},
    "OpVar": {1: ("parameter", "string", False), 2: ("arguments", "string", True)},
    "Attr": {1: ("name", "string", False), 2: ("type", "varint", False), 3: ("i", "int64", False),
             4: ("f", "float", False), 5: ("s", "string", False), 6: ("ints", "int64", True),
             7: ("floats", "float", True), 8: ("strings", "string", True), 10: ("b", "varint", False),
             11: ("bools", "varint", True), 12: ("block_idx", "int64", False),
             13: ("l", "int64", False), 14: ("blocks_idx", "int64", True),
             15: ("longs", "int64", True), 16: ("float64s", "double", True),
             17: ("var_name", "string", False), 18: ("vars_name", "string", True),
             19: ("float64", "double", False), 20: ("scalar", "Scalar", False),
             21: ("scalars", "Scalar", True)},
    "Scalar": {1: ("type", "varint", False), 2: ("b", "varint", False), 3: ("i", "int64", False),
               4: ("r", "double", False)},
}

# VarType.Type codes of plain tensors -> NumPy dtype names.
VAR_DTYPES = {0: "bool", 1: "int16", 2: "int32", 3: "int64", 4: "float16", 5: "float32",
              6: "float64", 20: "uint8", 21: "int8", 22: "bfloat16"}

# AttrType code -> the Attr field holding the value.
ATTR_TYPES = {0: "i", 1: "f", 2: "s", 3: "ints", 4: "floats", 5: "strings", 6: "b", 7: "bools",
              8: "block_idx", 9: "l", 10: "blocks_idx", 11: "longs", 12: "float64s",
              13: "var_name", 14: "vars_name", 15: "float64", 16: "scalar", 17: "scalars"}

_MAX_DEPTH = 32


def decode(data: bytes | memoryview, message: str, _depth: int = 0) -> dict[str, Any]:
    """Decode ``data`` as ``message`` into a dict (missing fields absent, repeated ones lists)."""
    if _depth > _MAX_DEPTH:
        raise ProtoError(f"messages nested deeper than {_MAX_DEPTH} levels")
    schema = SCHEMAS[message]
    view = memoryview(data)
    out: dict[str, Any] = {}
    pos, end = 0, len(view)
    while pos < end:
        key, pos = _varint(view, pos)
        number, wire = key >> 3, key & 7
        raw, pos = _field(view, pos, wire)
        spec = schema.get(number)
        if spec is None:
            continue
        name, kind, repeated = spec
        values = _values(raw, wire, kind, _depth)
        if repeated:
            out.setdefault(name, []).extend(values)
        elif values:
            out[name] = values[-1]
    return out


def _varint(view: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(view):
            raise ProtoError("truncated varint")
        byte = view[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise ProtoError("varint longer than 10 bytes")


def _field(view: memoryview, pos: int, wire: int) -> tuple[Any, int]:
    """The raw value of one field: an int (varint) or a memoryview (fixed, length-delimited)."""
    if wire == 0:
        return _varint(view, pos)
    size = {1: 8, 5: 4}.get(wire)
    if wire == 2:
        size, pos = _varint(view, pos)
    if size is None:
        raise ProtoError(f"unsupported wire type {wire} (groups are not used by framework.proto)")
    if pos + size > len(view):
        raise ProtoError(f"a field of {size} bytes runs past the end of its message")
    return view[pos:pos + size], pos + size


def _signed(value: int) -> int:
    value &= (1 << 64) - 1
    return value - (1 << 64) if value >> 63 else value


def _values(raw: Any, wire: int, kind: str, depth: int) -> list[Any]:
    """The decoded values of one field occurrence (a packed repeated field gives several)."""
    if kind in SCHEMAS:
        if wire != 2:
            raise ProtoError(f"field of message type {kind} has wire type {wire}")
        return [decode(raw, kind, depth + 1)]
    if kind in ("string", "bytes"):
        if wire != 2:
            raise ProtoError(f"{kind} field has wire type {wire}")
        return [bytes(raw).decode("utf-8", "replace") if kind == "string" else bytes(raw)]
    if kind in ("float", "double"):
        fmt, size = ("<f", 4) if kind == "float" else ("<d", 8)
        buf = raw
        if wire != 2 and len(raw) != size:
            raise ProtoError(f"{kind} field has wire type {wire}")
        if len(buf) % size:
            raise ProtoError(f"packed {kind} field of {len(buf)} bytes")
        return [v[0] for v in struct.iter_unpack(fmt, buf)]
    # integer kinds: one varint, or a packed run of them
    if wire == 0:
        ints = [raw]
    elif wire == 2:
        ints, pos = [], 0
        while pos < len(raw):
            v, pos = _varint(raw, pos)
            ints.append(v)
    else:
        raise ProtoError(f"integer field has wire type {wire}")
    return [_signed(v) for v in ints] if kind == "int64" else ints
