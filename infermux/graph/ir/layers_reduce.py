"""IR layers of reductions and index ops: Reduce*, TopK, CumSum, NonZero, OneHot, Range."""

from __future__ import annotations

import numpy as np

from infermux.graph.ir.layers import LayerContext, translates
from infermux.graph.types import Type

_REDUCE = {"ReduceMean": "ReduceMean", "ReduceSum": "ReduceSum", "ReduceMax": "ReduceMax",
           "ReduceMin": "ReduceMin", "ReduceProd": "ReduceProd", "ReduceL1": "ReduceL1",
           "ReduceL2": "ReduceL2"}


@translates(*_REDUCE)
def _reduce(cx: LayerContext) -> None:
    cx.b.op(_REDUCE[cx.layer.type], cx.ins[0], cx.vec(1), keepdims=int(cx.bool_("keep_dims")),
            noop_with_empty_axes=1, out=cx.outs[0])


@translates("ReduceLogicalAnd", "ReduceLogicalOr")
def _reduce_logical(cx: LayerContext) -> None:
    op = "ReduceMin" if cx.layer.type == "ReduceLogicalAnd" else "ReduceMax"
    as_int = cx.b.op("Cast", cx.ins[0], to=6)
    r = cx.b.op(op, as_int, cx.vec(1), keepdims=int(cx.bool_("keep_dims")), noop_with_empty_axes=1)
    cx.b.op("Cast", r, to=9, out=cx.outs[0])


@translates("TopK")
def _topk(cx: LayerContext) -> None:
    mode = cx.choice("mode", {"max": 1, "min": 0})
    sort = cx.choice("sort", {"value": "value", "index": "index", "none": "value"}, "none")
    axis = cx.int_("axis")
    k = cx.vec(1)
    b = cx.b
    idx_type = cx.attr("index_element_type", "i32").lower()
    values, indices = b.op("TopK", cx.ins[0], k, axis=axis, largest=mode, sorted=1, n_out=2)
    if sort == "index":  # reorder both outputs by ascending index
        _, order = b.op("TopK", indices, k, axis=axis, largest=0, sorted=1, n_out=2)
        values = b.op("GatherElements", values, order, axis=axis)
        indices = b.op("GatherElements", indices, order, axis=axis)
    b.op("Identity", values, out=cx.outs[0])
    if len(cx.outs) > 1 and cx.used[1]:
        b.op("Cast", indices, to=Type._BY_NAME[idx_type].onnx_code, out=cx.outs[1])


@translates("CumSum")
def _cumsum(cx: LayerContext) -> None:
    axis = cx.i64(1) if cx.input(1) else cx.b.const(0, "axis", np.int64)
    cx.b.op("CumSum", cx.ins[0], axis, exclusive=int(cx.bool_("exclusive")),
            reverse=int(cx.bool_("reverse")), out=cx.outs[0])


@translates("NonZero")
def _nonzero(cx: LayerContext) -> None:
    out_type = cx.attr("output_type", "i64").lower()
    nz = cx.b.op("NonZero", cx.ins[0])
    cx.b.op("Cast", nz, to=Type._BY_NAME[out_type].onnx_code, out=cx.outs[0])


@translates("OneHot")
def _one_hot(cx: LayerContext) -> None:
    b = cx.b
    values = b.op("Concat", b.op("Reshape", cx.ins[3], b.const([-1], "shape", np.int64)),
                  b.op("Reshape", cx.ins[2], b.const([-1], "shape", np.int64)), axis=0)
    b.op("OneHot", cx.ins[0], cx.vec(1), values, axis=cx.int_("axis"), out=cx.outs[0])


@translates("Range")
def _range(cx: LayerContext) -> None:
    ins = list(cx.ins[:3])
    if cx.version >= 4:
        out_type = Type._BY_NAME[cx.attr("output_type").lower()]
        ins = [i if cx.in_type(k) == out_type.name else cx.b.op("Cast", i, to=out_type.onnx_code)
               for k, i in enumerate(ins)]
    scalars = [cx.b.op("Reshape", i, cx.b.const([], "scalar_shape", np.int64)) for i in ins]
    cx.b.op("Range", *scalars, out=cx.outs[0])


@translates("Select")
def _select(cx: LayerContext) -> None:
    cx.b.op("Where", *cx.ins[:3], out=cx.outs[0])
