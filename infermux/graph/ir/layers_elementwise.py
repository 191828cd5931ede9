"""IR layers of the elementwise family: unary and binary math, comparisons, activations, Convert."""

from __future__ import annotations

import math

import numpy as np

from infermux.graph.ir.layers import LayerContext, is_int, scalar_like, translates
from infermux.graph.types import Type

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


@translates(*_UNARY)
def _unary(cx: LayerContext) -> None:
    cx.b.op(_UNARY[cx.layer.type], cx.ins[0], out=cx.outs[0])


def _binary_inputs(cx: LayerContext) -> tuple[str, str]:
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


@translates(*_BINARY)
def _binary(cx: LayerContext) -> None:
    a, b = _binary_inputs(cx)
    cx.b.op(_BINARY[cx.layer.type], a, b, out=cx.outs[0])


@translates("NotEqual")
def _not_equal(cx: LayerContext) -> None:
    a, b = _binary_inputs(cx)
    cx.b.op("Not", cx.b.op("Equal", a, b), out=cx.outs[0])


@translates("SquaredDifference")
def _squared_difference(cx: LayerContext) -> None:
    a, b = _binary_inputs(cx)
    d = cx.b.op("Sub", a, b)
    cx.b.op("Mul", d, d, out=cx.outs[0])


@translates("Divide")
def _divide(cx: LayerContext) -> None:
    a, b = _binary_inputs(cx)
    if is_int(cx.out_type()) and cx.bool_("m_pythondiv", True):
        # Python's floor division: a - a mod b is an exact multiple of b.
        a = cx.b.op("Sub", a, cx.b.op("Mod", a, b, fmod=0))
    cx.b.op("Div", a, b, out=cx.outs[0])


@translates("Mod")
def _mod(cx: LayerContext) -> None:
    a, b = _binary_inputs(cx)
    cx.b.op("Mod", a, b, fmod=1, out=cx.outs[0])  # truncated: the sign of the dividend


@translates("FloorMod")
def _floor_mod(cx: LayerContext) -> None:
    a, b = _binary_inputs(cx)
    if is_int(cx.out_type()):
        cx.b.op("Mod", a, b, fmod=0, out=cx.outs[0])
        return
    q = cx.b.op("Floor", cx.b.op("Div", a, b))
    cx.b.op("Sub", a, cx.b.op("Mul", q, b), out=cx.outs[0])


@translates("Clamp")
def _clamp(cx: LayerContext) -> None:
    lo, hi = cx.float_("min"), cx.float_("max")
    if is_int(cx.in_type(0)):
        lo, hi = math.ceil(lo), math.floor(hi)
    cx.b.op("Clip", cx.ins[0], scalar_like(cx, lo), scalar_like(cx, hi), out=cx.outs[0])


@translates("Elu")
def _elu(cx: LayerContext) -> None:
    cx.b.op("Elu", cx.ins[0], alpha=cx.float_("alpha"), out=cx.outs[0])


@translates("HSigmoid")
def _hsigmoid(cx: LayerContext) -> None:
    cx.b.op("HardSigmoid", cx.ins[0], alpha=1.0 / 6.0, beta=0.5, out=cx.outs[0])


@translates("HardSigmoid")
def _hard_sigmoid(cx: LayerContext) -> None:
    alpha, beta = float(cx.const(1, "alpha").reshape(-1)[0]), float(cx.const(2, "beta").reshape(-1)[0])
    cx.b.op("HardSigmoid", cx.ins[0], alpha=alpha, beta=beta, out=cx.outs[0])


@translates("Selu")
def _selu(cx: LayerContext) -> None:
    alpha, lam = float(cx.const(1, "alpha").reshape(-1)[0]), float(cx.const(2, "lambda").reshape(-1)[0])
    cx.b.op("Selu", cx.ins[0], alpha=alpha, gamma=lam, out=cx.outs[0])


@translates("Swish")
def _swish(cx: LayerContext) -> None:
    x = cx.ins[0]
    z = cx.b.op("Mul", x, cx.ins[1]) if cx.input(1) else x
    cx.b.op("Mul", x, cx.b.op("Sigmoid", z), out=cx.outs[0])


@translates("Gelu")
def _gelu(cx: LayerContext) -> None:
    """Gelu decomposed (ONNX has Gelu only from opset 20): erf or tanh approximation."""
    mode = cx.choice("approximation_mode", {"erf": "erf", "tanh": "tanh"}, "erf")
    x, b = cx.ins[0], cx.b
    half = b.op("Mul", x, scalar_like(cx, 0.5))
    if mode == "erf":
        inner = b.op("Erf", b.op("Mul", x, scalar_like(cx, 1 / math.sqrt(2))))
    else:
        cube = b.op("Mul", b.op("Mul", x, x), x)
        poly = b.op("Add", x, b.op("Mul", cube, scalar_like(cx, 0.044715)))
        inner = b.op("Tanh", b.op("Mul", poly, scalar_like(cx, math.sqrt(2 / math.pi))))
    b.op("Mul", half, b.op("Add", inner, scalar_like(cx, 1.0)), out=cx.outs[0])


@translates("PReLU")
def _prelu(cx: LayerContext) -> None:
    """PReLU's 1-D slope with one value per channel applies along axis 1 (not numpy's last axis)."""
    x, slope = cx.ins[0], cx.ins[1]
    dims, sdims = cx.in_dims(0), cx.in_dims(1)
    if dims is not None and sdims is not None and len(sdims) == 1 and len(dims) > 2 and sdims[0] != 1:
        slope = cx.b.op("Reshape", slope, cx.b.const([-1] + [1] * (len(dims) - 2), "shape", np.int64))
    cx.b.op("PRelu", x, slope, out=cx.outs[0])


@translates("Round")
def _round(cx: LayerContext) -> None:
    mode = cx.choice("mode", {"half_to_even": "even", "half_away_from_zero": "away"}, "half_to_even")
    x, b = cx.ins[0], cx.b
    if mode == "even":
        b.op("Round", x, out=cx.outs[0])
        return
    rounded = b.op("Floor", b.op("Add", b.op("Abs", x), scalar_like(cx, 0.5)))
    b.op("Mul", b.op("Sign", x), rounded, out=cx.outs[0])


@translates("Convert")
def _convert(cx: LayerContext) -> None:
    et = cx.attr("destination_type").lower()
    if et not in Type._BY_NAME or Type._BY_NAME[et].is_dynamic() or et in ("u4", "i4", "string"):
        raise cx.unsupported(f"destination_type='{et}' is not supported")
    # weights stored compressed (f16 -> f32 "decompression") stay compressed until compile time
    cx.b.op("Cast", cx.ins[0], to=Type._BY_NAME[et].onnx_code, out=cx.outs[0],
            fold="decompression" not in cx.layer.rt_info)


@translates("ConvertLike")
def _convert_like(cx: LayerContext) -> None:
    cx.b.op("CastLike", cx.ins[0], cx.ins[1], out=cx.outs[0])
