"""Paddle ops of the elementwise family: unary and binary math, comparisons, activations, cast."""

from __future__ import annotations

import math

from infermux.graph.paddle.ops import OpContext, translates
from infermux.graph.paddle.params import numpy_dtype
from infermux.graph.paddle.proto import VAR_DTYPES
from infermux.graph.types import Type

_UNARY = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh", "exp": "Exp", "log": "Log",
          "sqrt": "Sqrt", "abs": "Abs", "floor": "Floor", "ceil": "Ceil", "erf": "Erf", "sin": "Sin",
          "cos": "Cos", "softsign": "Softsign", "assign": "Identity", "round": "Round",
          "reciprocal": "Reciprocal", "logical_not": "Not", "sign": "Sign", "mish": "Mish"}


@translates(*_UNARY)
def _unary(cx: OpContext) -> None:
    cx.b.op(_UNARY[cx.kind], cx.x(), out=cx.out())


_ELEMENTWISE = {"elementwise_add": "Add", "elementwise_sub": "Sub", "elementwise_mul": "Mul",
                "elementwise_div": "Div", "elementwise_pow": "Pow", "elementwise_max": "Max",
                "elementwise_min": "Min", "equal": "Equal", "greater_than": "Greater",
                "less_than": "Less", "greater_equal": "GreaterOrEqual", "less_equal": "LessOrEqual",
                "logical_and": "And", "logical_or": "Or", "logical_xor": "Xor"}


def _aligned_y(cx: OpContext) -> str:
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


@translates(*_ELEMENTWISE)
def _elementwise(cx: OpContext) -> None:
    cx.b.op(_ELEMENTWISE[cx.kind], cx.x(), _aligned_y(cx), out=cx.out())


@translates("not_equal")
def _not_equal(cx: OpContext) -> None:
    cx.b.op("Not", cx.b.op("Equal", cx.x(), _aligned_y(cx)), out=cx.out())


@translates("elementwise_floordiv")
def _floordiv(cx: OpContext) -> None:
    x, y = cx.x(), _aligned_y(cx)
    if cx.dtype().kind == "f":
        cx.b.op("Floor", cx.b.op("Div", x, y), out=cx.out())
    else:
        cx.b.op("Div", cx.b.op("Sub", x, cx.b.op("Mod", x, y, fmod=0)), y, out=cx.out())


@translates("elementwise_mod")
def _mod(cx: OpContext) -> None:
    x, y = cx.x(), _aligned_y(cx)
    if cx.dtype().kind == "f":  # Python's modulo: the sign of the divisor
        q = cx.b.op("Floor", cx.b.op("Div", x, y))
        cx.b.op("Sub", x, cx.b.op("Mul", q, y), out=cx.out())
    else:
        cx.b.op("Mod", x, y, fmod=0, out=cx.out())


@translates("relu6")
def _relu6(cx: OpContext) -> None:
    cx.b.op("Clip", cx.x(), cx.scalar(0.0), cx.scalar(cx.attr("threshold", 6.0)), out=cx.out())


@translates("leaky_relu")
def _leaky_relu(cx: OpContext) -> None:
    cx.b.op("LeakyRelu", cx.x(), alpha=float(cx.attr("alpha", 0.02)), out=cx.out())


@translates("hard_sigmoid")
def _hard_sigmoid(cx: OpContext) -> None:
    cx.b.op("HardSigmoid", cx.x(), alpha=float(cx.attr("slope", 0.2)), beta=float(cx.attr("offset", 0.5)),
            out=cx.out())


@translates("hard_swish")
def _hard_swish(cx: OpContext) -> None:
    """x * min(max(x + offset, 0), threshold) / scale; ONNX HardSwish is the 6/6/3 default."""
    threshold, scale, offset = (float(cx.attr(k, d)) for k, d in
                                (("threshold", 6.0), ("scale", 6.0), ("offset", 3.0)))
    x, b = cx.x(), cx.b
    if (threshold, scale, offset) == (6.0, 6.0, 3.0):
        b.op("HardSwish", x, out=cx.out())
        return
    gate = b.op("Clip", b.op("Add", x, cx.scalar(offset)), cx.scalar(0.0), cx.scalar(threshold))
    b.op("Div", b.op("Mul", x, gate), cx.scalar(scale), out=cx.out())


@translates("swish", "silu")
def _swish(cx: OpContext) -> None:
    x, beta = cx.x(), float(cx.attr("beta", 1.0))
    z = x if beta == 1.0 else cx.b.op("Mul", x, cx.scalar(beta))
    cx.b.op("Mul", x, cx.b.op("Sigmoid", z), out=cx.out())


@translates("gelu")
def _gelu(cx: OpContext) -> None:
    x, b = cx.x(), cx.b
    half = b.op("Mul", x, cx.scalar(0.5))
    if cx.attr("approximate", False):
        cube = b.op("Mul", b.op("Mul", x, x), x)
        poly = b.op("Add", x, b.op("Mul", cube, cx.scalar(0.044715)))
        inner = b.op("Tanh", b.op("Mul", poly, cx.scalar(math.sqrt(2 / math.pi))))
    else:
        inner = b.op("Erf", b.op("Mul", x, cx.scalar(1 / math.sqrt(2))))
    b.op("Mul", half, b.op("Add", inner, cx.scalar(1.0)), out=cx.out())


@translates("softplus")
def _softplus(cx: OpContext) -> None:
    beta, threshold = float(cx.attr("beta", 1.0)), float(cx.attr("threshold", 20.0))
    if beta != 1.0:
        raise cx.unsupported(f"beta={beta} is not supported; only 1")
    del threshold  # Paddle switches to x above it; softplus(x) == x there in float32 anyway
    cx.b.op("Softplus", cx.x(), out=cx.out())


@translates("scale")
def _scale(cx: OpContext) -> None:
    x, b = cx.x(), cx.b
    scale = cx.x("ScaleTensor") if cx.has("ScaleTensor") else cx.scalar(float(cx.attr("scale", 1.0)))
    bias = cx.scalar(float(cx.attr("bias", 0.0)))
    if cx.attr("bias_after_scale", True):
        b.op("Add", b.op("Mul", x, scale), bias, out=cx.out())
    else:
        b.op("Mul", b.op("Add", x, bias), scale, out=cx.out())


@translates("pow")
def _pow(cx: OpContext) -> None:
    factor = cx.x("FactorTensor") if cx.has("FactorTensor") else cx.scalar(float(cx.attr("factor", 1.0)))
    cx.b.op("Pow", cx.x(), factor, out=cx.out())


@translates("clip")
def _clip(cx: OpContext) -> None:
    lo = cx.x("Min") if cx.has("Min") else cx.scalar(float(cx.attr("min", -3.4e38)))
    hi = cx.x("Max") if cx.has("Max") else cx.scalar(float(cx.attr("max", 3.4e38)))
    cx.b.op("Clip", cx.x(), lo, hi, out=cx.out())


@translates("cast")
def _cast(cx: OpContext) -> None:
    code = cx.attr("out_dtype", 5)
    if code not in VAR_DTYPES:
        raise cx.unsupported(f"out_dtype {code} is not supported")
    onnx = Type.from_numpy(numpy_dtype(VAR_DTYPES[code])).onnx_code
    cx.b.op("Cast", cx.x(), to=onnx, out=cx.out())


@translates("dropout")
def _dropout(cx: OpContext) -> None:
    if cx.attr("dropout_implementation", "downgrade_in_infer") == "upscale_in_train":
        cx.b.op("Identity", cx.x(), out=cx.out())
    else:
        cx.b.op("Mul", cx.x(), cx.scalar(1.0 - float(cx.attr("dropout_prob", 0.5))), out=cx.out())
