"""Paddle ops that make constants, move data or compute shapes: reshape, slice, concat, pad, interp..."""

from __future__ import annotations

import numpy as np

from infermux.graph.builder import INT64_MAX
from infermux.graph.paddle.ops import OpContext, check_nchw, translates
from infermux.graph.paddle.params import numpy_dtype
from infermux.graph.paddle.proto import VAR_DTYPES
from infermux.graph.types import Type


@translates("shape")
def _shape(cx: OpContext) -> None:
    s = cx.b.op("Shape", cx.x("Input"))
    out_type = Type.from_numpy(cx.dtype("Out", "out"))
    cx.b.op("Cast", s, to=out_type.onnx_code, out=cx.out())


@translates("fill_constant")
def _fill_constant(cx: OpContext) -> None:
    if cx.has("ShapeTensor") or cx.has("ShapeTensorList") or cx.has("ValueTensor"):
        raise cx.unsupported("fill_constant with tensor inputs is not supported; only attributes")
    code = cx.attr("dtype", 5)
    dtype = np.dtype(numpy_dtype(VAR_DTYPES.get(code, "float32")))
    text = cx.attr("str_value", "")
    value = float(text) if text not in ("", None) else float(cx.attr("value", 0.0))
    arr = np.full([int(d) for d in cx.attr("shape", [])], value, dtype=dtype)
    name = cx.out()
    cx.b.set_const(name, arr)


@translates("assign_value")
def _assign_value(cx: OpContext) -> None:
    code = cx.attr("dtype", 5)
    dtype = np.dtype(numpy_dtype(VAR_DTYPES.get(code, "float32")))
    for key in ("fp32_values", "int32_values", "int64_values", "bool_values", "values"):
        if cx.attr(key):
            values = cx.attr(key)
            break
    else:
        values = []
    cx.b.set_const(cx.out(), np.asarray(values, dtype=dtype).reshape(list(cx.attr("shape", []))))


def _shape_from(cx: OpContext, attr: str, tensor: str, tensor_list: str) -> str:
    """A shape given as a tensor, a list of 1-element tensors, or an attribute."""
    if cx.has(tensor):
        return cx.i64(cx.x(tensor))
    if cx.has(tensor_list):
        parts = [cx.b.op("Reshape", cx.i64(t), cx.ints([-1])) for t in cx.xs(tensor_list)]
        return cx.b.op("Concat", *parts, axis=0)
    return cx.ints(list(cx.attr(attr, [])), "shape")


@translates("reshape2", "reshape")
def _reshape(cx: OpContext) -> None:
    shape = _shape_from(cx, "shape", "Shape", "ShapeTensor")
    cx.b.op("Reshape", cx.x(), shape, out=cx.out())


@translates("transpose2", "transpose")
def _transpose(cx: OpContext) -> None:
    cx.b.op("Transpose", cx.x(), perm=[int(a) for a in cx.attr("axis", [])], out=cx.out())


@translates("flatten_contiguous_range")
def _flatten(cx: OpContext) -> None:
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


@translates("squeeze2", "squeeze")
def _squeeze(cx: OpContext) -> None:
    axes = list(cx.attr("axes", []))
    cx.b.op("Squeeze", cx.x(), cx.ints(axes, "axes") if axes else None, out=cx.out())


@translates("unsqueeze2", "unsqueeze")
def _unsqueeze(cx: OpContext) -> None:
    axes = _shape_from(cx, "axes", "AxesTensor", "AxesTensorList")
    cx.b.op("Unsqueeze", cx.x(), axes, out=cx.out())


@translates("slice", "strided_slice")
def _slice(cx: OpContext) -> None:
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


@translates("concat")
def _concat(cx: OpContext) -> None:
    if cx.has("AxisTensor"):
        axis = cx.b.value(cx.x("AxisTensor"))
        if axis is None:
            raise cx.unsupported("a computed AxisTensor is not supported")
        axis = int(axis.reshape(-1)[0])
    else:
        axis = int(cx.attr("axis", 0))
    cx.b.op("Concat", *cx.xs("X"), axis=axis, out=cx.out())


@translates("stack")
def _stack(cx: OpContext) -> None:
    axis = int(cx.attr("axis", 0))
    parts = [cx.b.op("Unsqueeze", t, cx.ints([axis])) for t in cx.xs("X")]
    cx.b.op("Concat", *parts, axis=axis, out=cx.out("Y"))


@translates("split")
def _split(cx: OpContext) -> None:
    axis = int(cx.attr("axis", 0))
    if cx.has("AxisTensor"):
        raise cx.unsupported("a tensor axis is not supported")
    names = [cx.b.fresh(v) for v in cx.out_vars("Out")]
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
    for var, name in zip(cx.out_vars("Out"), names):
        cx.bind(var, name)
    cx.first_output = names[0]


@translates("gather")
def _gather(cx: OpContext) -> None:
    axis = int(cx.attr("axis", 0))
    if cx.has("Axis"):
        value = cx.b.value(cx.x("Axis"))
        if value is None:
            raise cx.unsupported("a computed gather axis is not supported")
        axis = int(value.reshape(-1)[0])
    cx.b.op("Gather", cx.x(), cx.x("Index"), axis=axis, out=cx.out())


@translates("lookup_table_v2")
def _lookup_table(cx: OpContext) -> None:
    cx.b.op("Gather", cx.x("W"), cx.x("Ids"), axis=0, out=cx.out())


@translates("expand_v2", "expand_as_v2")
def _expand(cx: OpContext) -> None:
    if cx.kind == "expand_as_v2":
        shape = cx.ints(list(cx.attr("target_shape", [])))
    else:
        shape = _shape_from(cx, "shape", "Shape", "expand_shapes_tensor")
    if cx.b.value(shape) is not None and -1 in cx.b.value(shape):  # -1 keeps the input size
        shape = cx.ints([1 if v == -1 else v for v in cx.b.value(shape)])
    cx.b.op("Expand", cx.x(), shape, out=cx.out())


@translates("tile")
def _tile(cx: OpContext) -> None:
    repeats = list(cx.attr("repeat_times", []))
    if cx.has("RepeatTimes") or cx.has("repeat_times_tensor"):
        raise cx.unsupported("tensor repeat_times are not supported")
    x, rank = cx.x(), cx.rank()
    if len(repeats) > rank:
        x = cx.b.op("Unsqueeze", x, cx.ints(range(len(repeats) - rank)))
    repeats = [1] * (rank - len(repeats)) + repeats
    cx.b.op("Tile", x, cx.ints(repeats), out=cx.out())


@translates("range")
def _range(cx: OpContext) -> None:
    scalars = [cx.b.op("Reshape", cx.x(p), cx.ints([], "scalar")) for p in ("Start", "End", "Step")]
    cx.b.op("Range", *scalars, out=cx.out())


@translates("where")
def _where(cx: OpContext) -> None:
    cx.b.op("Where", cx.x("Condition"), cx.x(), cx.x("Y"), out=cx.out())


@translates("pad3d")
def _pad3d(cx: OpContext) -> None:
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


@translates("pad")
def _pad(cx: OpContext) -> None:
    p = list(cx.attr("paddings", []))
    pads = cx.ints(p[0::2] + p[1::2], "pads")
    cx.b.op("Pad", cx.x(), pads, cx.scalar(float(cx.attr("pad_value", 0.0))), mode="constant", out=cx.out())


_INTERP = {"nearest_interp_v2": "nearest", "bilinear_interp_v2": "linear", "nearest_interp": "nearest",
           "bilinear_interp": "linear", "bicubic_interp_v2": "cubic", "linear_interp_v2": "linear"}


@translates(*_INTERP)
def _interp(cx: OpContext) -> None:
    """Paddle's resize rules: SizeTensor > OutSize > Scale > scale attr > out_h/out_w."""
    check_nchw(cx, "data_layout")
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


@translates("top_k_v2")
def _top_k(cx: OpContext) -> None:
    k = cx.b.op("Reshape", cx.i64(cx.x("K")), cx.ints([1])) if cx.has("K") else cx.ints([int(cx.attr("k", 1))])
    b = cx.b
    values, indices = b.op("TopK", cx.x(), k, axis=int(cx.attr("axis", -1)),
                           largest=int(bool(cx.attr("largest", True))), sorted=1, n_out=2)
    b.op("Identity", values, out=cx.out())
    b.op("Identity", indices, out=cx.out("Indices"))
