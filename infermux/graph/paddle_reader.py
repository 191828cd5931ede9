"""Read PaddlePaddle inference models (``inference.pdmodel`` + ``.pdiparams``) into a :class:`Model`.

No paddlepaddle is needed: the ``.pdmodel`` is a ``ProgramDesc`` protobuf decoded by
``_paddle_proto``; the ``.pdiparams`` holds the persistable variables, sorted by name, each as
``uint32 version, uint64 lod levels (+ their data), uint32 version, int32 desc size, TensorDesc,
raw data``.  Each Paddle op becomes ONNX ops (``_OPS`` maps op types to small translators); the
op set is that of PP-OCR-style inference models.  Inputs are untrusted: sizes are checked against
the files, and an unknown op is an :class:`UnsupportedOpError` naming it.

>>> from infermux.graph.paddle_reader import read_paddle
>>> model = read_paddle("ch_PP-OCRv4_det_infer/inference.pdmodel")   # doctest: +SKIP
>>> model.inputs[0].any_name                                          # doctest: +SKIP
'x'
"""

from __future__ import annotations

import math
import os
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from infermux.errors import ModelReadError, UnsupportedOpError
from infermux.graph._paddle_proto import ATTR_TYPES, VAR_DTYPES, ProtoError, decode
from infermux.graph.ir_reader import INT64_MAX, GraphBuilder
from infermux.graph.model import Graph, Model, ValueInfo
from infermux.graph.shape import Dimension, PartialShape
from infermux.graph.types import Type

__all__ = ["SUPPORTED_OPS", "read_paddle"]

OPSET = 18
_FEED, _FETCH = 9, 10  # VarType codes of the feed/fetch lists
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
    weights = _read_params(_params_bytes(params, path), _persistable(varz), where)
    model_out = _build(block, varz, weights, where)
    model_out.source = str(path) if path else None
    return model_out


def _params_bytes(params: Any, model_path: Path | None) -> bytes | None:
    if params is None:
        if model_path is None:
            return None
        params = model_path.with_suffix(".pdiparams")
        if not params.is_file():
            return None
    if isinstance(params, (str, os.PathLike)):
        p = Path(params)
        if not p.is_file():
            raise ModelReadError(f"Cannot read Paddle parameters '{p}': no such file")
        return p.read_bytes()
    return bytes(params)


def _persistable(varz: dict[str, dict]) -> list[str]:
    """The names stored in .pdiparams: persistable variables except feed/fetch, sorted."""
    return sorted(name for name, v in varz.items()
                  if v.get("persistable") and v.get("type", {}).get("type") not in (_FEED, _FETCH))


def _tensor_desc(var: dict) -> dict:
    t = var.get("type", {})
    return (t.get("lod_tensor") or {}).get("tensor") or t.get("selected_rows") or {}


def _read_params(blob: bytes | None, names: list[str], where: str) -> dict[str, np.ndarray]:
    """Parse the combined parameter stream, checking every length against the buffer."""
    if not names:
        return {}
    if blob is None:
        raise ModelReadError(f"Paddle model '{where}' has {len(names)} parameters but no .pdiparams "
                             f"file was found beside it; pass params=")
    view, pos, out = memoryview(blob), 0, {}

    def take(n: int, what: str, name: str) -> memoryview:
        nonlocal pos
        if n < 0 or pos + n > len(view):
            raise ModelReadError(f"Paddle parameters: the {what} of '{name}' runs past the end of the "
                                 f"file ({pos} + {n} > {len(view)} bytes)")
        pos += n
        return view[pos - n:pos]

    for name in names:
        (version,) = struct.unpack("<I", take(4, "version", name))
        (lod_levels,) = struct.unpack("<Q", take(8, "LoD header", name))
        if version != 0 or lod_levels > 16:
            raise ModelReadError(f"Paddle parameters: tensor '{name}' has version {version} / "
                                 f"{lod_levels} LoD levels; expected version 0 (is the file a .pdiparams?)")
        for _ in range(lod_levels):
            (size,) = struct.unpack("<Q", take(8, "LoD size", name))
            take(size, "LoD data", name)
        struct.unpack("<I", take(4, "tensor version", name))
        (desc_size,) = struct.unpack("<i", take(4, "TensorDesc size", name))
        try:
            desc = decode(take(desc_size, "TensorDesc", name), "TensorDesc")
        except ProtoError as exc:
            raise ModelReadError(f"Paddle parameters: the TensorDesc of '{name}' is malformed ({exc})") from None
        code = desc.get("data_type", -1)
        if code not in VAR_DTYPES:
            raise ModelReadError(f"Paddle parameters: '{name}' has data type {code}; supported: "
                                 f"{sorted(VAR_DTYPES)}")
        dims = [int(d) for d in desc.get("dims", [])]
        if any(d < 0 for d in dims):
            raise ModelReadError(f"Paddle parameters: '{name}' has a negative dimension {dims}")
        dtype = np.dtype(_numpy_dtype(VAR_DTYPES[code]))
        raw = take(math.prod(dims) * dtype.itemsize, "data", name)
        out[name] = np.frombuffer(raw, dtype).reshape(dims).copy()
    if pos != len(view):
        raise ModelReadError(f"Paddle parameters: {len(view) - pos} bytes are left after the "
                             f"{len(names)} persistable variables of the program; the .pdiparams "
                             f"does not belong to this .pdmodel")
    return out


def _numpy_dtype(name: str):
    if name == "bfloat16":
        import ml_dtypes

        return ml_dtypes.bfloat16
    return name


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
    desc = _tensor_desc(var or {})
    dtype = VAR_DTYPES.get(desc.get("data_type", -1))
    etype = Type.from_numpy(_numpy_dtype(dtype)) if dtype else Type.dynamic
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
    dims = _tensor_desc(varz.get(name, {})).get("dims")
    if dims is not None and all(d >= 0 for d in dims) and list(arr.shape) != list(dims):
        raise ModelReadError(f"Paddle parameter '{name}' has shape {list(arr.shape)} in the .pdiparams "
                             f"but {list(dims)} in the .pdmodel")


def _translate(b: GraphBuilder, op: dict, kind: str, ins, outs, varz, current) -> None:
    fn = _OPS.get(kind)
    label = f"Paddle op '{kind}' (output {_first_output(outs) or '?'})"
    if fn is None:
        raise UnsupportedOpError(f"{label} is not supported by infermux; supported ops: "
                                 f"{', '.join(sorted(SUPPORTED_OPS))}")
    cx = _Cx(b, kind, label, ins, outs, _attrs(op), varz, current)
    b.begin(cx.scope, {})
    try:
        fn(cx)
    except (UnsupportedOpError, ModelReadError):
        raise
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise ModelReadError(f"{label}: cannot translate it ({exc})") from exc
    b.end(cx.first_output)


def _first_output(outs: dict[str, list[str]]) -> str | None:
    return next((name for names in outs.values() for name in names), None)


class _Cx:
    """What an op translation sees: named inputs/outputs, decoded attributes, variable types."""

    def __init__(self, b, kind, label, ins, outs, attrs, varz, current):
        self.b, self.kind, self.label = b, kind, label
        self._ins, self._outs, self.attrs, self._varz, self._current = ins, outs, attrs, varz, current
        self.scope = _first_output(outs) or kind
        self.first_output: str | None = None

    def unsupported(self, what: str) -> UnsupportedOpError:
        return UnsupportedOpError(f"{self.label}: {what}")

    def attr(self, name: str, default: Any = None) -> Any:
        value = self.attrs.get(name)
        return default if value is None else value

    def has(self, param: str) -> bool:
        return bool(self._ins.get(param))

    def x(self, param: str = "X") -> str:
        """The tensor holding input ``param``'s (first) variable."""
        names = self._ins.get(param) or []
        if not names:
            raise ModelReadError(f"{self.label}: input '{param}' is missing")
        return self._resolve(names[0])

    def xs(self, param: str) -> list[str]:
        return [self._resolve(n) for n in self._ins.get(param) or []]

    def _resolve(self, var: str) -> str:
        if var not in self._current:
            raise ModelReadError(f"{self.label} reads variable '{var}', which nothing produced before it")
        return self._current[var]

    def var(self, param: str, io: str = "in") -> str:
        names = (self._ins if io == "in" else self._outs).get(param) or []
        if not names:
            raise ModelReadError(f"{self.label}: {'input' if io == 'in' else 'output'} '{param}' is missing")
        return names[0]

    def dims(self, param: str = "X", io: str = "in") -> list[int] | None:
        """The variable's dims from the program (-1 unknown), or the constant's real shape."""
        name = self.var(param, io)
        value = self.b.value(self._current.get(name, "")) if io == "in" else None
        if value is not None:
            return list(value.shape)
        dims = _tensor_desc(self._varz.get(name, {})).get("dims")
        return None if dims is None else [int(d) for d in dims]

    def rank(self, param: str = "X") -> int:
        dims = self.dims(param)
        if dims is None:
            raise self.unsupported(f"the rank of input '{param}' must be known")
        return len(dims)

    def dtype(self, param: str = "X", io: str = "in") -> np.dtype:
        name = self.var(param, io)
        code = _tensor_desc(self._varz.get(name, {})).get("data_type", 5)
        return np.dtype(_numpy_dtype(VAR_DTYPES.get(code, "float32")))

    def out(self, param: str = "Out") -> str:
        """A fresh tensor for output ``param``; later reads of the variable see it."""
        var = self.var(param, "out")
        tensor = self.b.fresh(var)
        self._current[var] = tensor
        if self.first_output is None:
            self.first_output = tensor
        return tensor

    def scalar(self, value: float, param: str = "X") -> str:
        return self.b.const(np.array(value, dtype=self.dtype(param)), "scalar")

    def ints(self, values, hint: str = "ints") -> str:
        return self.b.const(np.asarray(values, dtype=np.int64).reshape(-1), hint)

    def i64(self, tensor: str) -> str:
        return self.b.op("Cast", tensor, to=7)


# -- op translations ----------------------------------------------------------------------------

_OPS: dict[str, Callable[[_Cx], None]] = {}


def _op(*kinds: str):
    def register(fn):
        for k in kinds:
            _OPS[k] = fn
        return fn
    return register


_UNARY = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh", "exp": "Exp", "log": "Log",
          "sqrt": "Sqrt", "abs": "Abs", "floor": "Floor", "ceil": "Ceil", "erf": "Erf", "sin": "Sin",
          "cos": "Cos", "softsign": "Softsign", "assign": "Identity", "round": "Round",
          "reciprocal": "Reciprocal", "logical_not": "Not", "sign": "Sign", "mish": "Mish"}


@_op(*_UNARY)
def _unary(cx: _Cx) -> None:
    cx.b.op(_UNARY[cx.kind], cx.x(), out=cx.out())


_ELEMENTWISE = {"elementwise_add": "Add", "elementwise_sub": "Sub", "elementwise_mul": "Mul",
                "elementwise_div": "Div", "elementwise_pow": "Pow", "elementwise_max": "Max",
                "elementwise_min": "Min", "equal": "Equal", "greater_than": "Greater",
                "less_than": "Less", "greater_equal": "GreaterOrEqual", "less_equal": "LessOrEqual",
                "logical_and": "And", "logical_or": "Or", "logical_xor": "Xor"}


def _aligned_y(cx: _Cx) -> str:
    """Y broadcast the Paddle way: aligned to X from ``axis`` (numpy's way when axis = -1)."""
    y = cx.x("Y")
    axis = cx.attr("axis", -1)
    if axis == -1:
        return y
    rx, ry = cx.rank("X"), cx.rank("Y")
    if ry >= rx:
        return y
    trailing = rx - (axis % rx) - ry
    if trailing > 0:
        y = cx.b.op("Unsqueeze", y, cx.ints(range(ry, ry + trailing), "axes"))
    return y


@_op(*_ELEMENTWISE)
def _elementwise(cx: _Cx) -> None:
    cx.b.op(_ELEMENTWISE[cx.kind], cx.x(), _aligned_y(cx), out=cx.out())


@_op("not_equal")
def _not_equal(cx: _Cx) -> None:
    cx.b.op("Not", cx.b.op("Equal", cx.x(), _aligned_y(cx)), out=cx.out())


@_op("elementwise_floordiv")
def _floordiv(cx: _Cx) -> None:
    x, y = cx.x(), _aligned_y(cx)
    if cx.dtype().kind == "f":
        cx.b.op("Floor", cx.b.op("Div", x, y), out=cx.out())
    else:
        cx.b.op("Div", cx.b.op("Sub", x, cx.b.op("Mod", x, y, fmod=0)), y, out=cx.out())


@_op("elementwise_mod")
def _mod(cx: _Cx) -> None:
    x, y = cx.x(), _aligned_y(cx)
    if cx.dtype().kind == "f":  # Python's modulo: the sign of the divisor
        q = cx.b.op("Floor", cx.b.op("Div", x, y))
        cx.b.op("Sub", x, cx.b.op("Mul", q, y), out=cx.out())
    else:
        cx.b.op("Mod", x, y, fmod=0, out=cx.out())


@_op("relu6")
def _relu6(cx: _Cx) -> None:
    cx.b.op("Clip", cx.x(), cx.scalar(0.0), cx.scalar(cx.attr("threshold", 6.0)), out=cx.out())


@_op("leaky_relu")
def _leaky_relu(cx: _Cx) -> None:
    cx.b.op("LeakyRelu", cx.x(), alpha=float(cx.attr("alpha", 0.02)), out=cx.out())


@_op("hard_sigmoid")
def _hard_sigmoid(cx: _Cx) -> None:
    cx.b.op("HardSigmoid", cx.x(), alpha=float(cx.attr("slope", 0.2)), beta=float(cx.attr("offset", 0.5)),
            out=cx.out())


@_op("hard_swish")
def _hard_swish(cx: _Cx) -> None:
    """x * min(max(x + offset, 0), threshold) / scale; ONNX HardSwish is the 6/6/3 default."""
    threshold, scale, offset = (float(cx.attr(k, d)) for k, d in
                                (("threshold", 6.0), ("scale", 6.0), ("offset", 3.0)))
    x, b = cx.x(), cx.b
    if (threshold, scale, offset) == (6.0, 6.0, 3.0):
        b.op("HardSwish", x, out=cx.out())
        return
    gate = b.op("Clip", b.op("Add", x, cx.scalar(offset)), cx.scalar(0.0), cx.scalar(threshold))
    b.op("Div", b.op("Mul", x, gate), cx.scalar(scale), out=cx.out())


@_op("swish", "silu")
def _swish(cx: _Cx) -> None:
    x, beta = cx.x(), float(cx.attr("beta", 1.0))
    z = x if beta == 1.0 else cx.b.op("Mul", x, cx.scalar(beta))
    cx.b.op("Mul", x, cx.b.op("Sigmoid", z), out=cx.out())


@_op("gelu")
def _gelu(cx: _Cx) -> None:
    x, b = cx.x(), cx.b
    half = b.op("Mul", x, cx.scalar(0.5))
    if cx.attr("approximate", False):
        cube = b.op("Mul", b.op("Mul", x, x), x)
        poly = b.op("Add", x, b.op("Mul", cube, cx.scalar(0.044715)))
        inner = b.op("Tanh", b.op("Mul", poly, cx.scalar(math.sqrt(2 / math.pi))))
    else:
        inner = b.op("Erf", b.op("Mul", x, cx.scalar(1 / math.sqrt(2))))
    b.op("Mul", half, b.op("Add", inner, cx.scalar(1.0)), out=cx.out())


@_op("softplus")
def _softplus(cx: _Cx) -> None:
    beta, threshold = float(cx.attr("beta", 1.0)), float(cx.attr("threshold", 20.0))
    if beta != 1.0:
        raise cx.unsupported(f"beta={beta} is not supported; only 1")
    del threshold  # Paddle switches to x above it; softplus(x) == x there in float32 anyway
    cx.b.op("Softplus", cx.x(), out=cx.out())


@_op("scale")
def _scale(cx: _Cx) -> None:
    x, b = cx.x(), cx.b
    scale = cx.x("ScaleTensor") if cx.has("ScaleTensor") else cx.scalar(float(cx.attr("scale", 1.0)))
    bias = cx.scalar(float(cx.attr("bias", 0.0)))
    if cx.attr("bias_after_scale", True):
        b.op("Add", b.op("Mul", x, scale), bias, out=cx.out())
    else:
        b.op("Mul", b.op("Add", x, bias), scale, out=cx.out())


@_op("pow")
def _pow(cx: _Cx) -> None:
    factor = cx.x("FactorTensor") if cx.has("FactorTensor") else cx.scalar(float(cx.attr("factor", 1.0)))
    cx.b.op("Pow", cx.x(), factor, out=cx.out())


@_op("clip")
def _clip(cx: _Cx) -> None:
    lo = cx.x("Min") if cx.has("Min") else cx.scalar(float(cx.attr("min", -3.4e38)))
    hi = cx.x("Max") if cx.has("Max") else cx.scalar(float(cx.attr("max", 3.4e38)))
    cx.b.op("Clip", cx.x(), lo, hi, out=cx.out())


@_op("cast")
def _cast(cx: _Cx) -> None:
    code = cx.attr("out_dtype", 5)
    if code not in VAR_DTYPES:
        raise cx.unsupported(f"out_dtype {code} is not supported")
    onnx = Type.from_numpy(_numpy_dtype(VAR_DTYPES[code])).onnx_code
    cx.b.op("Cast", cx.x(), to=onnx, out=cx.out())


@_op("dropout")
def _dropout(cx: _Cx) -> None:
    if cx.attr("dropout_implementation", "downgrade_in_infer") == "upscale_in_train":
        cx.b.op("Identity", cx.x(), out=cx.out())
    else:
        cx.b.op("Mul", cx.x(), cx.scalar(1.0 - float(cx.attr("dropout_prob", 0.5))), out=cx.out())


# -- convolution, pooling, normalisation ------------------------------------------------------

def _pads(cx: _Cx, spatial: int) -> dict[str, Any]:
    """Paddle paddings ([h, w] or [top, bottom, left, right]) and padding_algorithm as ONNX attrs."""
    algo = str(cx.attr("padding_algorithm", "EXPLICIT")).upper()
    if algo == "SAME":
        return {"auto_pad": "SAME_UPPER"}
    p = list(cx.attr("paddings", [0] * spatial))
    if algo == "VALID":
        p = [0] * spatial
    if len(p) == spatial:
        return {"pads": p + p}
    if len(p) == 2 * spatial:
        return {"pads": p[0::2] + p[1::2]}
    raise cx.unsupported(f"paddings {p} do not fit {spatial} spatial dimensions")


def _nchw(cx: _Cx, key: str = "data_format") -> None:
    fmt = str(cx.attr(key, "NCHW"))
    if fmt not in ("NCHW", "AnyLayout", "NCDHW", "NCL"):
        raise cx.unsupported(f"{key}='{fmt}' is not supported; only channels-first layouts")


@_op("conv2d", "depthwise_conv2d", "conv3d")
def _conv(cx: _Cx) -> None:
    _nchw(cx)
    spatial = 3 if cx.kind == "conv3d" else 2
    y = cx.b.op("Conv", cx.x("Input"), cx.x("Filter"), strides=list(cx.attr("strides", [1] * spatial)),
                dilations=list(cx.attr("dilations", [1] * spatial)), group=int(cx.attr("groups", 1)),
                **_pads(cx, spatial))
    if cx.has("Bias"):
        y = cx.b.op("Add", y, cx.b.op("Reshape", cx.x("Bias"), cx.ints([-1] + [1] * spatial)))
    cx.b.op("Identity", y, out=cx.out("Output"))


@_op("conv2d_transpose", "depthwise_conv2d_transpose")
def _conv_transpose(cx: _Cx) -> None:
    _nchw(cx)
    attrs = _pads(cx, 2)
    attrs.update(strides=list(cx.attr("strides", [1, 1])), dilations=list(cx.attr("dilations", [1, 1])),
                 group=int(cx.attr("groups", 1)))
    if cx.attr("output_padding"):
        attrs["output_padding"] = list(cx.attr("output_padding"))
    if cx.attr("output_size"):
        attrs["output_shape"] = list(cx.attr("output_size"))
        attrs.pop("pads", None)
    y = cx.b.op("ConvTranspose", cx.x("Input"), cx.x("Filter"), **attrs)
    if cx.has("Bias"):
        y = cx.b.op("Add", y, cx.b.op("Reshape", cx.x("Bias"), cx.ints([-1, 1, 1])))
    cx.b.op("Identity", y, out=cx.out("Output"))


@_op("batch_norm")
def _batch_norm(cx: _Cx) -> None:
    _nchw(cx, "data_layout")
    cx.b.op("BatchNormalization", cx.x(), cx.x("Scale"), cx.x("Bias"), cx.x("Mean"), cx.x("Variance"),
            epsilon=float(cx.attr("epsilon", 1e-5)), out=cx.out("Y"))


@_op("layer_norm")
def _layer_norm(cx: _Cx) -> None:
    axis = int(cx.attr("begin_norm_axis", 1))
    rank = cx.rank()
    dims = cx.dims()
    norm_shape = dims[axis:]
    x, b = cx.x(), cx.b
    scale = cx.x("Scale") if cx.has("Scale") else None
    bias = cx.x("Bias") if cx.has("Bias") else None
    if len(norm_shape) > 1:  # Paddle stores scale/bias flattened
        if any(d < 0 for d in norm_shape):
            raise cx.unsupported("layer_norm over several dynamic dimensions is not supported")
        scale = scale and b.op("Reshape", scale, cx.ints(norm_shape))
        bias = bias and b.op("Reshape", bias, cx.ints(norm_shape))
    if scale is None:
        ones_shape = norm_shape if all(d >= 0 for d in norm_shape) else None
        if ones_shape is None:
            raise cx.unsupported("layer_norm without Scale needs static normalised dimensions")
        scale = b.const(np.ones(ones_shape, cx.dtype()), "ones")
    b.op("LayerNormalization", x, scale, bias, axis=axis - rank if axis >= 0 else axis,
         epsilon=float(cx.attr("epsilon", 1e-5)), out=cx.out("Y"))


@_op("pool2d")
def _pool2d(cx: _Cx) -> None:
    _nchw(cx)
    kind = cx.attr("pooling_type", "max")
    ksize = list(cx.attr("ksize", [1, 1]))
    if kind not in ("max", "avg"):
        raise cx.unsupported(f"pooling_type='{kind}' is not supported; accepted: max, avg")
    global_op = "GlobalMaxPool" if kind == "max" else "GlobalAveragePool"
    if cx.attr("global_pooling", False) or (cx.attr("adaptive", False) and ksize == [1, 1]):
        cx.b.op(global_op, cx.x(), out=cx.out())
        return
    strides = list(cx.attr("strides", [1, 1]))
    attrs = _pads(cx, 2)
    if cx.attr("adaptive", False):
        dims = cx.dims()
        if dims is None or any(d < 0 or d % k for d, k in zip(dims[2:], ksize)):
            raise cx.unsupported(f"adaptive pooling to {ksize} needs static input sizes divisible by it")
        strides = [d // k for d, k in zip(dims[2:], ksize)]
        ksize, attrs = strides, {"pads": [0, 0, 0, 0]}
    ceil = bool(cx.attr("ceil_mode", False))
    attrs.update(kernel_shape=ksize, strides=strides, ceil_mode=int(ceil))
    if kind == "avg" and ceil and not cx.attr("exclusive", True) and "pads" in attrs:
        _avg_pool_ceil_inclusive(cx, ksize, strides, attrs["pads"])
        return
    if kind == "avg":
        attrs["count_include_pad"] = 0 if cx.attr("exclusive", True) else 1
        cx.b.op("AveragePool", cx.x(), out=cx.out(), **attrs)
    else:
        cx.b.op("MaxPool", cx.x(), out=cx.out(), **attrs)


def _avg_pool_ceil_inclusive(cx: _Cx, ksize: list[int], strides: list[int], pads: list[int]) -> None:
    """Paddle divides every window by kh*kw, even the ceil-mode ones hanging past the padding.

    Zero-padding s-1 more at the end makes floor mode produce exactly the ceil-mode windows.
    """
    begin = [0, 0] + pads[:2]
    end = [0, 0] + [p + s - 1 for p, s in zip(pads[2:], strides)]
    padded = cx.b.op("Pad", cx.x(), cx.ints(begin + end, "pads"), mode="constant")
    cx.b.op("AveragePool", padded, kernel_shape=ksize, strides=strides, count_include_pad=1, out=cx.out())


@_op("matmul_v2", "matmul")
def _matmul(cx: _Cx) -> None:
    keys = ("trans_x", "trans_y") if cx.kind == "matmul_v2" else ("transpose_X", "transpose_Y")
    x, y = cx.x(), cx.x("Y")
    if cx.attr(keys[0], False):
        x = _swap_last2(cx, x, cx.rank("X"))
    if cx.attr(keys[1], False):
        y = _swap_last2(cx, y, cx.rank("Y"))
    alpha = float(cx.attr("alpha", 1.0))
    if alpha == 1.0:
        cx.b.op("MatMul", x, y, out=cx.out())
    else:
        cx.b.op("Mul", cx.b.op("MatMul", x, y), cx.scalar(alpha), out=cx.out())


def _swap_last2(cx: _Cx, t: str, rank: int) -> str:
    if rank < 2:
        return t
    perm = list(range(rank))
    perm[-2], perm[-1] = perm[-1], perm[-2]
    return cx.b.op("Transpose", t, perm=perm)


@_op("mul")
def _mul(cx: _Cx) -> None:
    """X flattened to 2-D at x_num_col_dims, times Y flattened at y_num_col_dims."""
    xn, yn = int(cx.attr("x_num_col_dims", 1)), int(cx.attr("y_num_col_dims", 1))
    xd, yd = cx.dims(), cx.dims("Y")
    if xd is None or yd is None or any(d < 0 for d in yd):
        raise cx.unsupported("mul needs known ranks and a static Y")
    b = cx.b
    x2 = b.op("Flatten", cx.x(), axis=xn)
    y2 = b.op("Reshape", cx.x("Y"), cx.ints([math.prod(yd[:yn]), math.prod(yd[yn:])]))
    prod = b.op("MatMul", x2, y2)
    lead = b.op("Slice", b.op("Shape", cx.x()), cx.ints([0]), cx.ints([xn]))
    shape = b.op("Concat", lead, cx.ints(yd[yn:]), axis=0)
    b.op("Reshape", prod, shape, out=cx.out())


@_op("softmax", "log_softmax")
def _softmax(cx: _Cx) -> None:
    op = "Softmax" if cx.kind == "softmax" else "LogSoftmax"
    cx.b.op(op, cx.x(), axis=int(cx.attr("axis", -1)), out=cx.out())


@_op("p_norm")
def _p_norm(cx: _Cx) -> None:
    porder = float(cx.attr("porder", 2.0))
    if porder not in (1.0, 2.0):
        raise cx.unsupported(f"porder={porder} is not supported; accepted: 1, 2")
    op = "ReduceL2" if porder == 2.0 else "ReduceL1"
    cx.b.op(op, cx.x(), cx.ints([int(cx.attr("axis", -1))]), keepdims=int(bool(cx.attr("keepdim", False))),
            out=cx.out())


_REDUCE = {"reduce_mean": "ReduceMean", "reduce_sum": "ReduceSum", "reduce_max": "ReduceMax",
           "reduce_min": "ReduceMin", "reduce_prod": "ReduceProd"}


@_op(*_REDUCE)
def _reduce(cx: _Cx) -> None:
    axes = None if cx.attr("reduce_all", False) else cx.ints(list(cx.attr("dim", [])), "axes")
    cx.b.op(_REDUCE[cx.kind], cx.x(), axes, keepdims=int(bool(cx.attr("keep_dim", False))), out=cx.out())


@_op("mean")
def _mean(cx: _Cx) -> None:
    cx.b.op("ReduceMean", cx.x(), keepdims=0, out=cx.out())


@_op("sum")
def _sum(cx: _Cx) -> None:
    cx.b.op("Sum", *cx.xs("X"), out=cx.out())


@_op("arg_max", "arg_min")
def _arg_max(cx: _Cx) -> None:
    x, b = cx.x(), cx.b
    if cx.attr("flatten", False):
        x = b.op("Reshape", x, cx.ints([-1]))
    op = "ArgMax" if cx.kind == "arg_max" else "ArgMin"
    y = b.op(op, x, axis=int(cx.attr("axis", 0)), keepdims=int(bool(cx.attr("keepdims", False))))
    code = cx.attr("dtype", 3)
    if code == 2:
        y = b.op("Cast", y, to=6)
    b.op("Identity", y, out=cx.out())


# -- shapes, constants, data movement ---------------------------------------------------------

@_op("shape")
def _shape(cx: _Cx) -> None:
    s = cx.b.op("Shape", cx.x("Input"))
    out_type = Type.from_numpy(cx.dtype("Out", "out"))
    cx.b.op("Cast", s, to=out_type.onnx_code, out=cx.out())


@_op("fill_constant")
def _fill_constant(cx: _Cx) -> None:
    if cx.has("ShapeTensor") or cx.has("ShapeTensorList") or cx.has("ValueTensor"):
        raise cx.unsupported("fill_constant with tensor inputs is not supported; only attributes")
    code = cx.attr("dtype", 5)
    dtype = np.dtype(_numpy_dtype(VAR_DTYPES.get(code, "float32")))
    text = cx.attr("str_value", "")
    value = float(text) if text not in ("", None) else float(cx.attr("value", 0.0))
    arr = np.full([int(d) for d in cx.attr("shape", [])], value, dtype=dtype)
    name = cx.out()
    cx.b.set_const(name, arr)


@_op("assign_value")
def _assign_value(cx: _Cx) -> None:
    code = cx.attr("dtype", 5)
    dtype = np.dtype(_numpy_dtype(VAR_DTYPES.get(code, "float32")))
    for key in ("fp32_values", "int32_values", "int64_values", "bool_values", "values"):
        if cx.attr(key):
            values = cx.attr(key)
            break
    else:
        values = []
    cx.b.set_const(cx.out(), np.asarray(values, dtype=dtype).reshape(list(cx.attr("shape", []))))


def _shape_from(cx: _Cx, attr: str, tensor: str, tensor_list: str) -> str:
    """A shape given as a tensor, a list of 1-element tensors, or an attribute."""
    if cx.has(tensor):
        return cx.i64(cx.x(tensor))
    if cx.has(tensor_list):
        parts = [cx.b.op("Reshape", cx.i64(t), cx.ints([-1])) for t in cx.xs(tensor_list)]
        return cx.b.op("Concat", *parts, axis=0)
    return cx.ints(list(cx.attr(attr, [])), "shape")


@_op("reshape2", "reshape")
def _reshape(cx: _Cx) -> None:
    shape = _shape_from(cx, "shape", "Shape", "ShapeTensor")
    cx.b.op("Reshape", cx.x(), shape, out=cx.out())


@_op("transpose2", "transpose")
def _transpose(cx: _Cx) -> None:
    cx.b.op("Transpose", cx.x(), perm=[int(a) for a in cx.attr("axis", [])], out=cx.out())


@_op("flatten_contiguous_range")
def _flatten(cx: _Cx) -> None:
    rank = cx.rank()
    start, stop = int(cx.attr("start_axis", 1)) % max(rank, 1), int(cx.attr("stop_axis", -1)) % max(rank, 1)
    b, x = cx.b, cx.x()
    if stop == rank - 1:
        flat = b.op("Flatten", x, axis=start)
        if start == 0:
            flat = b.op("Reshape", flat, cx.ints([-1]))
        b.op("Identity", flat, out=cx.out())
        return
    shape = b.op("Shape", x)
    parts = [b.op("Slice", shape, cx.ints([0]), cx.ints([start])), cx.ints([-1]),
             b.op("Slice", shape, cx.ints([stop + 1]), cx.ints([INT64_MAX]))]
    b.op("Reshape", x, b.op("Concat", *parts, axis=0), out=cx.out())


@_op("squeeze2", "squeeze")
def _squeeze(cx: _Cx) -> None:
    axes = list(cx.attr("axes", []))
    cx.b.op("Squeeze", cx.x(), cx.ints(axes, "axes") if axes else None, out=cx.out())


@_op("unsqueeze2", "unsqueeze")
def _unsqueeze(cx: _Cx) -> None:
    axes = _shape_from(cx, "axes", "AxesTensor", "AxesTensorList")
    cx.b.op("Unsqueeze", cx.x(), axes, out=cx.out())


@_op("slice", "strided_slice")
def _slice(cx: _Cx) -> None:
    b = cx.b
    starts = _shape_from(cx, "starts", "StartsTensor", "StartsTensorList")
    ends = _shape_from(cx, "ends", "EndsTensor", "EndsTensorList")
    axes = cx.ints(list(cx.attr("axes", [])), "axes")
    steps = _shape_from(cx, "strides", "StridesTensor", "StridesTensorList") if cx.kind == "strided_slice" \
        else None
    y = b.op("Slice", cx.x("Input"), starts, ends, axes, steps)
    decrease = list(cx.attr("decrease_axis", []))
    if decrease:
        y = b.op("Squeeze", y, cx.ints(decrease, "axes"))
        out_dims = cx.dims("Out", "out")
        if out_dims is not None and len(out_dims) == 1 and len(decrease) == cx.rank("Input"):
            y = b.op("Reshape", y, cx.ints([1]))  # older Paddle keeps a 1-element vector
    b.op("Identity", y, out=cx.out())


@_op("concat")
def _concat(cx: _Cx) -> None:
    if cx.has("AxisTensor"):
        axis = cx.b.value(cx.x("AxisTensor"))
        if axis is None:
            raise cx.unsupported("a computed AxisTensor is not supported")
        axis = int(axis.reshape(-1)[0])
    else:
        axis = int(cx.attr("axis", 0))
    cx.b.op("Concat", *cx.xs("X"), axis=axis, out=cx.out())


@_op("stack")
def _stack(cx: _Cx) -> None:
    axis = int(cx.attr("axis", 0))
    parts = [cx.b.op("Unsqueeze", t, cx.ints([axis])) for t in cx.xs("X")]
    cx.b.op("Concat", *parts, axis=axis, out=cx.out("Y"))


@_op("split")
def _split(cx: _Cx) -> None:
    axis = int(cx.attr("axis", 0))
    if cx.has("AxisTensor"):
        raise cx.unsupported("a tensor axis is not supported")
    names = [cx.b.fresh(v) for v in cx._outs.get("Out", [])]
    sections = list(cx.attr("sections", []))
    if sections:
        if -1 in sections:
            dims = cx.dims()
            if dims is None or dims[axis] < 0:
                raise cx.unsupported("a -1 section needs a static split dimension")
            sections[sections.index(-1)] = dims[axis] - (sum(sections) + 1)
        cx.b.op("Split", cx.x(), cx.ints(sections), axis=axis, out=names)
    else:
        cx.b.op("Split", cx.x(), axis=axis, num_outputs=len(names), out=names)
    for var, name in zip(cx._outs.get("Out", []), names):
        cx._current[var] = name
    cx.first_output = names[0]


@_op("gather")
def _gather(cx: _Cx) -> None:
    axis = int(cx.attr("axis", 0))
    if cx.has("Axis"):
        value = cx.b.value(cx.x("Axis"))
        if value is None:
            raise cx.unsupported("a computed gather axis is not supported")
        axis = int(value.reshape(-1)[0])
    cx.b.op("Gather", cx.x(), cx.x("Index"), axis=axis, out=cx.out())


@_op("lookup_table_v2")
def _lookup_table(cx: _Cx) -> None:
    cx.b.op("Gather", cx.x("W"), cx.x("Ids"), axis=0, out=cx.out())


@_op("expand_v2", "expand_as_v2")
def _expand(cx: _Cx) -> None:
    if cx.kind == "expand_as_v2":
        shape = cx.ints(list(cx.attr("target_shape", [])))
    else:
        shape = _shape_from(cx, "shape", "Shape", "expand_shapes_tensor")
    if cx.b.value(shape) is not None and -1 in cx.b.value(shape):  # -1 keeps the input size
        shape = cx.ints([1 if v == -1 else v for v in cx.b.value(shape)])
    cx.b.op("Expand", cx.x(), shape, out=cx.out())


@_op("tile")
def _tile(cx: _Cx) -> None:
    repeats = list(cx.attr("repeat_times", []))
    if cx.has("RepeatTimes") or cx.has("repeat_times_tensor"):
        raise cx.unsupported("tensor repeat_times are not supported")
    x, rank = cx.x(), cx.rank()
    if len(repeats) > rank:
        x = cx.b.op("Unsqueeze", x, cx.ints(range(len(repeats) - rank)))
    repeats = [1] * (rank - len(repeats)) + repeats
    cx.b.op("Tile", x, cx.ints(repeats), out=cx.out())


@_op("range")
def _range(cx: _Cx) -> None:
    scalars = [cx.b.op("Reshape", cx.x(p), cx.ints([], "scalar")) for p in ("Start", "End", "Step")]
    cx.b.op("Range", *scalars, out=cx.out())


@_op("where")
def _where(cx: _Cx) -> None:
    cx.b.op("Where", cx.x("Condition"), cx.x(), cx.x("Y"), out=cx.out())


@_op("pad3d")
def _pad3d(cx: _Cx) -> None:
    if cx.has("Paddings"):
        raise cx.unsupported("tensor paddings are not supported")
    fmt = cx.attr("data_format", "NCDHW")
    if fmt != "NCDHW":
        raise cx.unsupported(f"data_format='{fmt}' is not supported; only NCDHW")
    left, right, top, bottom, front, back = list(cx.attr("paddings", [0] * 6))
    mode = {"constant": "constant", "reflect": "reflect", "replicate": "edge"}.get(cx.attr("mode", "constant"))
    if mode is None:
        raise cx.unsupported(f"mode='{cx.attr('mode')}' is not supported; accepted: constant, reflect, replicate")
    pads = cx.ints([0, 0, front, top, left, 0, 0, back, bottom, right], "pads")
    value = cx.scalar(float(cx.attr("value", 0.0))) if mode == "constant" else None
    cx.b.op("Pad", cx.x(), pads, value, mode=mode, out=cx.out())


@_op("pad")
def _pad(cx: _Cx) -> None:
    p = list(cx.attr("paddings", []))
    pads = cx.ints(p[0::2] + p[1::2], "pads")
    cx.b.op("Pad", cx.x(), pads, cx.scalar(float(cx.attr("pad_value", 0.0))), mode="constant", out=cx.out())


_INTERP = {"nearest_interp_v2": "nearest", "bilinear_interp_v2": "linear", "nearest_interp": "nearest",
           "bilinear_interp": "linear", "bicubic_interp_v2": "cubic", "linear_interp_v2": "linear"}


@_op(*_INTERP)
def _interp(cx: _Cx) -> None:
    """Paddle's resize rules: SizeTensor > OutSize > Scale > scale attr > out_h/out_w."""
    _nchw(cx, "data_layout")
    mode = _INTERP[cx.kind]
    align = bool(cx.attr("align_corners", False))
    if mode == "nearest":
        coords, nearest = ("align_corners", "round_prefer_ceil") if align else ("asymmetric", "floor")
    else:
        coords = "align_corners" if align else ("asymmetric" if cx.attr("align_mode", 1) == 1
                                                 else "half_pixel")
        nearest = "round_prefer_floor"
    b, axes = cx.b, [2, 3]
    scales = sizes = None
    scale_attr = [float(s) for s in cx.attr("scale", []) or []]
    if cx.has("SizeTensor"):
        sizes = b.op("Concat", *[b.op("Reshape", cx.i64(t), cx.ints([-1])) for t in cx.xs("SizeTensor")], axis=0)
    elif cx.has("OutSize"):
        sizes = cx.i64(cx.x("OutSize"))
    elif cx.has("Scale"):
        s = b.op("Cast", b.op("Reshape", cx.x("Scale"), cx.ints([-1])), to=1)
        scales = b.op("Expand", s, cx.ints([2]))
    elif scale_attr and all(s > 0 for s in scale_attr):
        scales = b.const(np.array((scale_attr * 2)[:2], np.float32), "scales")
    else:
        sizes = cx.ints([int(cx.attr("out_h", -1)), int(cx.attr("out_w", -1))], "sizes")
    b.op("Resize", cx.x(), None, scales, sizes, mode=mode, coordinate_transformation_mode=coords,
         nearest_mode=nearest, axes=axes, cubic_coeff_a=-0.75, out=cx.out())


@_op("top_k_v2")
def _top_k(cx: _Cx) -> None:
    k = cx.b.op("Reshape", cx.i64(cx.x("K")), cx.ints([1])) if cx.has("K") else cx.ints([int(cx.attr("k", 1))])
    b = cx.b
    values, indices = b.op("TopK", cx.x(), k, axis=int(cx.attr("axis", -1)),
                           largest=int(bool(cx.attr("largest", True))), sorted=1, n_out=2)
    b.op("Identity", values, out=cx.out())
    b.op("Identity", indices, out=cx.out("Indices"))


SUPPORTED_OPS = frozenset(_OPS) | {"feed", "fetch"}
