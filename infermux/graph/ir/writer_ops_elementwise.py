"""ONNX nodes written as IR: elementwise math, activations, Cast, Constant."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from infermux.graph.ir.writer_ops import np_type, translates
from infermux.graph.model import Node
from infermux.graph.types import Type

if TYPE_CHECKING:
    from infermux.graph.ir.writer import Writer


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


@translates(*_UNARY)
def _unary(w: Writer, n: Node) -> None:
    type_, version = _UNARY[n.op_type]
    w.layer(type_, version, [n.inputs[0]], outputs=n.outputs[0])


@translates(*_BINARY)
def _binary(w: Writer, n: Node) -> None:
    w.layer(_BINARY[n.op_type], "opset1", n.inputs[:2], {"auto_broadcast": "numpy"}, outputs=n.outputs[0])


@translates("Div")
def _div(w: Writer, n: Node) -> None:
    w.layer("Divide", "opset1", n.inputs[:2], {"auto_broadcast": "numpy", "m_pythondiv": False},
            outputs=n.outputs[0])  # ONNX integer division truncates


@translates("Mod")
def _mod(w: Writer, n: Node) -> None:
    kind = "Mod" if n.attrs.get("fmod", 0) else "FloorMod"
    w.layer(kind, "opset1", n.inputs[:2], {"auto_broadcast": "numpy"}, outputs=n.outputs[0])


@translates("Max", "Min", "Sum", "Mean")
def _variadic(w: Writer, n: Node) -> None:
    kind = {"Max": "Maximum", "Min": "Minimum", "Sum": "Add", "Mean": "Add"}[n.op_type]
    acc = n.inputs[0]
    for other in n.inputs[1:]:
        acc = w.layer(kind, "opset1", [acc, other], {"auto_broadcast": "numpy"})
    if n.op_type == "Mean" and len(n.inputs) > 1:
        scale = w.const(np.array(len(n.inputs), dtype=np_type(w, n.inputs[0])))
        acc = w.layer("Divide", "opset1", [acc, scale], {"auto_broadcast": "numpy"})
    w.alias(n.outputs[0], acc)


@translates("Identity", "Dropout")
def _identity(w: Writer, n: Node) -> None:
    if len(n.outputs) > 1 and n.outputs[1] and n.outputs[1] in w.consumers:
        raise w.unsupported("the Dropout mask output is not supported")
    w.alias(n.outputs[0], n.inputs[0])


@translates("Reciprocal")
def _reciprocal(w: Writer, n: Node) -> None:
    one = w.const(np.array(1, dtype=np_type(w, n.inputs[0])))
    w.layer("Divide", "opset1", [one, n.inputs[0]], {"auto_broadcast": "numpy"}, outputs=n.outputs[0])


@translates("Round")
def _round(w: Writer, n: Node) -> None:
    w.layer("Round", "opset5", [n.inputs[0]], {"mode": "half_to_even"}, outputs=n.outputs[0])


@translates("Clip")
def _clip(w: Writer, n: Node) -> None:
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
    dt = np_type(w, n.inputs[0])
    y = w.layer("Maximum", "opset1", [n.inputs[0], lo if isinstance(lo, str) else w.const(np.array(lo, dt))],
                {"auto_broadcast": "numpy"})
    w.layer("Minimum", "opset1", [y, hi if isinstance(hi, str) else w.const(np.array(hi, dt))],
            {"auto_broadcast": "numpy"}, outputs=n.outputs[0])


def _scalar(w: Writer, tensor: str) -> float | None:
    v = w.value(tensor)
    return None if v is None else float(np.asarray(v).reshape(-1)[0])


@translates("Elu")
def _elu(w: Writer, n: Node) -> None:
    w.layer("Elu", "opset1", [n.inputs[0]], {"alpha": float(n.attrs.get("alpha", 1.0))}, outputs=n.outputs[0])


@translates("LeakyRelu")
def _leaky_relu(w: Writer, n: Node) -> None:
    slope = w.const(np.array([n.attrs.get("alpha", 0.01)], dtype=np_type(w, n.inputs[0])))
    w.layer("PReLU", "opset1", [n.inputs[0], slope], outputs=n.outputs[0])


@translates("PRelu")
def _prelu(w: Writer, n: Node) -> None:
    """ONNX broadcasts the slope numpy-style; give it the data's rank so OpenVINO does too."""
    slope, rank = n.inputs[1], w.rank(n.inputs[0])
    srank = w.rank(slope)
    if srank < rank and not (srank == 1 and (w.dims(slope) or [0])[0] == 1):
        slope = w.layer("Unsqueeze", "opset1", [slope, w.ints(range(rank - srank))])
    w.layer("PReLU", "opset1", [n.inputs[0], slope], outputs=n.outputs[0])


@translates("Selu", "HardSigmoid")
def _selu(w: Writer, n: Node) -> None:
    dt = np_type(w, n.inputs[0])
    if n.op_type == "Selu":
        a = w.const(np.array(n.attrs.get("alpha", 1.67326319217681884765625), dt))
        g = w.const(np.array(n.attrs.get("gamma", 1.05070102214813232421875), dt))
        w.layer("Selu", "opset1", [n.inputs[0], a, g], outputs=n.outputs[0])
    else:
        a = w.const(np.array(n.attrs.get("alpha", 0.2), dt))
        b = w.const(np.array(n.attrs.get("beta", 0.5), dt))
        w.layer("HardSigmoid", "opset1", [n.inputs[0], a, b], outputs=n.outputs[0])


@translates("Gelu")
def _gelu(w: Writer, n: Node) -> None:
    mode = "TANH" if n.attrs.get("approximate", "none") == "tanh" else "ERF"
    w.layer("Gelu", "opset7", [n.inputs[0]], {"approximation_mode": mode}, outputs=n.outputs[0])


@translates("Softmax", "LogSoftmax")
def _softmax(w: Writer, n: Node) -> None:
    axis = n.attrs.get("axis", -1 if w.model.opset() >= 13 else 1)
    if w.model.opset() < 13 and axis not in (-1, w.rank(n.inputs[0]) - 1):
        raise w.unsupported("opset<13 Softmax over several axes (flattened) is not supported")
    kind, version = ("SoftMax", "opset8") if n.op_type == "Softmax" else ("LogSoftmax", "opset5")
    w.layer(kind, version, [n.inputs[0]], {"axis": axis}, outputs=n.outputs[0])


@translates("Cast")
def _cast(w: Writer, n: Node) -> None:
    et = Type.from_onnx(n.attrs["to"]).name
    w.layer("Convert", "opset1", [n.inputs[0]], {"destination_type": et}, outputs=n.outputs[0])


@translates("CastLike")
def _cast_like(w: Writer, n: Node) -> None:
    w.layer("ConvertLike", "opset1", n.inputs[:2], outputs=n.outputs[0])


@translates("Constant")
def _constant(w: Writer, n: Node) -> None:
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
    w.const_layer(n.outputs[0], value)


@translates("ConstantOfShape")
def _constant_of_shape(w: Writer, n: Node) -> None:
    value = np.asarray(n.attrs.get("value", np.zeros(1, np.float32))).reshape(-1)[:1].reshape(())
    w.layer("Broadcast", "opset3", [w.const(value), n.inputs[0]], {"mode": "numpy"}, outputs=n.outputs[0])
