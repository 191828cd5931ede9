"""ONNX nodes written as IR: reductions and index ops (ArgMax, TopK, CumSum, OneHot, Range, Where)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from infermux.graph.ir.writer_ops import translates
from infermux.graph.model import Node

if TYPE_CHECKING:
    from infermux.graph.ir.writer import Writer


_REDUCE = {"ReduceMean": "ReduceMean", "ReduceSum": "ReduceSum", "ReduceMax": "ReduceMax",
           "ReduceMin": "ReduceMin", "ReduceProd": "ReduceProd", "ReduceL1": "ReduceL1",
           "ReduceL2": "ReduceL2", "ReduceSumSquare": "ReduceSum", "ReduceLogSum": "ReduceSum",
           "ReduceLogSumExp": "ReduceSum"}


def _reduce_axes(w: Writer, n: Node) -> str | None:
    """The axes as a tensor; None when the op is a no-op (empty axes, noop_with_empty_axes)."""
    axes_attr_until = 13 if n.op_type == "ReduceSum" else 18
    if w.model.opset() < axes_attr_until:
        axes = n.attrs.get("axes")
        return w.ints(axes) if axes else w.ints(range(w.rank(n.inputs[0])))
    if len(n.inputs) > 1 and n.inputs[1]:
        value = w.value(n.inputs[1])
        if value is None or value.size:
            return n.inputs[1]
    if n.attrs.get("noop_with_empty_axes", 0):
        return None
    return w.ints(range(w.rank(n.inputs[0])))


@translates(*_REDUCE)
def _reduce(w: Writer, n: Node) -> None:
    x, axes = n.inputs[0], _reduce_axes(w, n)
    if axes is None:
        w.alias(n.outputs[0], x)
        return
    if n.op_type == "ReduceSumSquare":
        x = w.layer("Multiply", "opset1", [x, x], {"auto_broadcast": "numpy"})
    elif n.op_type == "ReduceLogSumExp":
        x = w.layer("Exp", "opset1", [x])
    kind, version = _REDUCE[n.op_type], ("opset4" if n.op_type in ("ReduceL1", "ReduceL2") else "opset1")
    y = w.layer(kind, version, [x, axes], {"keep_dims": bool(n.attrs.get("keepdims", 1))})
    if n.op_type in ("ReduceLogSum", "ReduceLogSumExp"):
        y = w.layer("Log", "opset1", [y])
    w.alias(n.outputs[0], y)


@translates("ArgMax", "ArgMin")
def _argmax(w: Writer, n: Node) -> None:
    if n.attrs.get("select_last_index", 0):
        raise w.unsupported("select_last_index=1 is not supported")
    axis = n.attrs.get("axis", 0)
    mode = "max" if n.op_type == "ArgMax" else "min"
    _, idx = w.layer("TopK", "opset11", [n.inputs[0], w.const(np.int64(1))],
                     {"axis": axis, "mode": mode, "sort": "value", "index_element_type": "i64",
                      "stable": True}, n_out=2)  # stable: the first of equal values, as ONNX
    if n.attrs.get("keepdims", 1):
        w.alias(n.outputs[0], idx)
    else:
        w.layer("Squeeze", "opset1", [idx, w.ints([axis])], outputs=n.outputs[0])


@translates("TopK")
def _topk(w: Writer, n: Node) -> None:
    k = w.layer("Squeeze", "opset1", [n.inputs[1], w.ints([0])])
    sort = bool(n.attrs.get("sorted", 1))
    attrs = {"axis": n.attrs.get("axis", -1), "mode": "max" if n.attrs.get("largest", 1) else "min",
             "sort": "value" if sort else "none", "index_element_type": "i64", "stable": sort}
    w.layer("TopK", "opset11", [n.inputs[0], k], attrs, outputs=list(n.outputs[:2]))


@translates("CumSum")
def _cumsum(w: Writer, n: Node) -> None:
    w.layer("CumSum", "opset3", n.inputs[:2], {"exclusive": bool(n.attrs.get("exclusive", 0)),
                                              "reverse": bool(n.attrs.get("reverse", 0))}, outputs=n.outputs[0])


@translates("NonZero")
def _nonzero(w: Writer, n: Node) -> None:
    w.layer("NonZero", "opset3", [n.inputs[0]], {"output_type": "i64"}, outputs=n.outputs[0])


@translates("OneHot")
def _one_hot(w: Writer, n: Node) -> None:
    values = n.inputs[2]
    zero, one = w.const(np.int64(0)), w.const(np.int64(1))
    off = w.layer("Gather", "opset8", [values, zero, w.const(np.int64(0))], {"batch_dims": 0})
    on = w.layer("Gather", "opset8", [values, one, w.const(np.int64(0))], {"batch_dims": 0})
    depth = w.layer("Reshape", "opset1", [n.inputs[1], w.ints([], np.int64)], {"special_zero": False})
    w.layer("OneHot", "opset1", [n.inputs[0], depth, on, off], {"axis": n.attrs.get("axis", -1)},
            outputs=n.outputs[0])


@translates("Range")
def _range(w: Writer, n: Node) -> None:
    et = w.etype(n.inputs[0]) or "f32"
    w.layer("Range", "opset4", n.inputs[:3], {"output_type": et}, outputs=n.outputs[0])


@translates("Where")
def _where(w: Writer, n: Node) -> None:
    w.layer("Select", "opset1", n.inputs[:3], {"auto_broadcast": "numpy"}, outputs=n.outputs[0])
