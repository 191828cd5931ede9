"""Read PaddlePaddle inference models (``inference.pdmodel`` + ``.pdiparams``) into a :class:`Model`.

No paddlepaddle is needed: the ``.pdmodel`` is a ``ProgramDesc`` protobuf decoded by
:mod:`.proto`; the ``.pdiparams`` is read by :mod:`.params`.  Each Paddle op becomes ONNX ops:
the translations live in the ``ops_*`` modules, registered in :data:`~.ops.OPS`; the op set is
that of PP-OCR-style inference models.  Inputs are untrusted: sizes are checked against the
files, and an unknown op is an :class:`UnsupportedOpError` naming it.

>>> from infermux.graph.paddle import read_paddle
>>> model = read_paddle("ch_PP-OCRv4_det_infer/inference.pdmodel")   # doctest: +SKIP
>>> model.inputs[0].any_name                                          # doctest: +SKIP
'x'
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from infermux.errors import ModelReadError, UnsupportedOpError
from infermux.graph.builder import GraphBuilder
from infermux.graph.model import Graph, Model, ValueInfo
from infermux.graph.paddle import (  # noqa: F401 - importing a family registers its translations
    ops_elementwise,
    ops_nn,
    ops_shape,
)
from infermux.graph.paddle.ops import OPS, OpContext, first_output_var
from infermux.graph.paddle.params import (
    numpy_dtype,
    params_bytes,
    persistable_names,
    read_params,
    tensor_desc,
)
from infermux.graph.paddle.proto import ATTR_TYPES, VAR_DTYPES, ProtoError, decode
from infermux.graph.shape import Dimension, PartialShape
from infermux.graph.types import Type

__all__ = ["OPSET", "SUPPORTED_OPS", "read_paddle"]

OPSET = 18
_SKIPPED_ATTRS = ("op_callstack", "op_namescope", "op_role", "op_role_var", "op_device")


def read_paddle(model: str | os.PathLike | bytes, params: str | os.PathLike | bytes | None = None) -> Model:
    """Read a Paddle inference model.

    ``model`` is the ``.pdmodel`` path (or a folder holding ``inference.pdmodel``) or its bytes;
    ``params`` defaults to the ``.pdiparams`` beside it.
    """
    path: Path | None = None
    if isinstance(model, (bytes, bytearray, memoryview)):
        data, where = bytes(model), "<bytes>"
    else:
        path = Path(model)
        if path.is_dir():
            path = path / "inference.pdmodel"
        if not path.is_file():
            raise ModelReadError(f"Cannot read model '{path}': no such file")
        data, where = path.read_bytes(), str(path)
    try:
        program = decode(data, "ProgramDesc")
    except ProtoError as exc:
        raise ModelReadError(f"Cannot read Paddle model '{where}': not a ProgramDesc protobuf ({exc})") from None
    blocks = program.get("blocks") or []
    if not blocks or not blocks[0].get("ops"):
        raise ModelReadError(f"Cannot read Paddle model '{where}': the program has no ops")
    if len(blocks) > 1:
        raise UnsupportedOpError(f"Paddle model '{where}' has {len(blocks)} blocks; control flow "
                                 f"(sub-blocks) is not supported, only single-block programs")
    block = blocks[0]
    varz = {v.get("name", ""): v for v in block.get("vars", [])}
    weights = read_params(params_bytes(params, path), persistable_names(varz), where)
    model_out = _build(block, varz, weights, where)
    model_out.source = str(path) if path else None
    return model_out


def _attrs(op: dict) -> dict[str, Any]:
    out = {}
    for a in op.get("attrs", []):
        name = a.get("name", "")
        if name in _SKIPPED_ATTRS:
            continue
        field = ATTR_TYPES.get(a.get("type", -1))
        value = a.get(field) if field else None
        if value is None and field in ("ints", "floats", "strings", "bools", "longs", "float64s"):
            value = []
        if field == "scalar" and isinstance(value, dict):
            value = value.get("r", value.get("i", value.get("b")))
        out[name] = value
    return out


def _args(op: dict, key: str) -> dict[str, list[str]]:
    return {v.get("parameter", ""): [a for a in v.get("arguments", []) if a] for v in op.get(key, [])}


def _var_type(var: dict | None) -> tuple[Type, PartialShape | None]:
    desc = tensor_desc(var or {})
    dtype = VAR_DTYPES.get(desc.get("data_type", -1))
    etype = Type.from_numpy(numpy_dtype(dtype)) if dtype else Type.dynamic
    dims = desc.get("dims")
    shape = None if dims is None else PartialShape([Dimension() if d < 0 else Dimension(d) for d in dims])
    return etype, shape


def _build(block: dict, varz: dict[str, dict], weights: dict[str, np.ndarray], where: str) -> Model:
    b = GraphBuilder(OPSET)
    current: dict[str, str] = {}  # Paddle variable -> the tensor holding its latest value
    for name, arr in weights.items():
        b.set_const(b.fresh(name), arr)
        current[name] = name
        _check_param_shape(name, arr, varz)
    inputs, outputs = [], []
    for op in block["ops"]:
        kind = op.get("type", "")
        ins, outs = _args(op, "inputs"), _args(op, "outputs")
        if kind == "feed":
            name = outs["Out"][0]
            etype, shape = _var_type(varz.get(name))
            inputs.append((_attrs(op).get("col", 0), ValueInfo(b.fresh(name), etype, shape)))
            current[name] = name
        elif kind == "fetch":
            outputs.append((_attrs(op).get("col", 0), ins["X"][0]))
        else:
            _translate(b, op, kind, ins, outs, varz, current)
    graph_outputs = []
    for _, var in sorted(outputs, key=lambda t: t[0]):
        if var not in current:
            raise ModelReadError(f"Paddle model '{where}' fetches '{var}', which no op produces")
        tensor = current[var]
        if tensor in b.initializers or tensor in {i.name for _, i in inputs}:
            tensor = b.op("Identity", tensor, out=b.fresh(var + "/out"))
        etype, shape = _var_type(varz.get(var))
        graph_outputs.append(ValueInfo(tensor, etype, shape))
    graph = Graph("paddle", b.nodes, [vi for _, vi in sorted(inputs, key=lambda t: t[0])],
                  graph_outputs, b.initializers, {})
    model = Model(graph, {"": OPSET}, name=Path(where).parent.name if where != "<bytes>" else "paddle",
                  producer="paddlepaddle")
    from infermux.graph.shape_infer import infer_model_shapes

    infer_model_shapes(model, strict=False)
    return model


def _check_param_shape(name: str, arr: np.ndarray, varz: dict) -> None:
    dims = tensor_desc(varz.get(name, {})).get("dims")
    if dims is not None and all(d >= 0 for d in dims) and list(arr.shape) != list(dims):
        raise ModelReadError(f"Paddle parameter '{name}' has shape {list(arr.shape)} in the .pdiparams "
                             f"but {list(dims)} in the .pdmodel")


def _translate(b: GraphBuilder, op: dict, kind: str, ins, outs, varz, current) -> None:
    fn = OPS.get(kind)
    label = f"Paddle op '{kind}' (output {first_output_var(outs) or '?'})"
    if fn is None:
        raise UnsupportedOpError(f"{label} is not supported by infermux; supported ops: "
                                 f"{', '.join(sorted(SUPPORTED_OPS))}")
    cx = OpContext(b, kind, label, ins, outs, _attrs(op), varz, current)
    b.begin(cx.scope, {})
    try:
        fn(cx)
    except (UnsupportedOpError, ModelReadError):
        raise
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise ModelReadError(f"{label}: cannot translate it ({exc})") from exc
    b.end(cx.first_output)


SUPPORTED_OPS = frozenset(OPS) | {"feed", "fetch"}
