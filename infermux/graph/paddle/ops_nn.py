"""Paddle ops of convolution, pooling, normalisation, matmul, softmax and reductions."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from infermux.graph.paddle.ops import OpContext, check_nchw, translates


def _pads(cx: OpContext, spatial: int) -> dict[str, Any]:
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


@translates("conv2d", "depthwise_conv2d", "conv3d")
def _conv(cx: OpContext) -> None:
    check_nchw(cx)
    spatial = 3 if cx.kind == "conv3d" else 2
    y = cx.b.op("Conv", cx.x("Input"), cx.x("Filter"), strides=list(cx.attr("strides", [1] * spatial)),
                dilations=list(cx.attr("dilations", [1] * spatial)), group=int(cx.attr("groups", 1)),
                **_pads(cx, spatial))
    if cx.has("Bias"):
        y = cx.b.op("Add", y, cx.b.op("Reshape", cx.x("Bias"), cx.ints([-1] + [1] * spatial)))
    cx.b.op("Identity", y, out=cx.out("Output"))


@translates("conv2d_transpose", "depthwise_conv2d_transpose")
def _conv_transpose(cx: OpContext) -> None:
    check_nchw(cx)
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


@translates("batch_norm")
def _batch_norm(cx: OpContext) -> None:
    check_nchw(cx, "data_layout")
    cx.b.op("BatchNormalization", cx.x(), cx.x("Scale"), cx.x("Bias"), cx.x("Mean"), cx.x("Variance"),
            epsilon=float(cx.attr("epsilon", 1e-5)), out=cx.out("Y"))


@translates("layer_norm")
def _layer_norm(cx: OpContext) -> None:
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


@translates("pool2d")
def _pool2d(cx: OpContext) -> None:
    check_nchw(cx)
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


def _avg_pool_ceil_inclusive(cx: OpContext, ksize: list[int], strides: list[int], pads: list[int]) -> None:
    """Paddle divides every window by kh*kw, even the ceil-mode ones hanging past the padding.

    Zero-padding s-1 more at the end makes floor mode produce exactly the ceil-mode windows.
    """
    begin = [0, 0] + pads[:2]
    end = [0, 0] + [p + s - 1 for p, s in zip(pads[2:], strides)]
    padded = cx.b.op("Pad", cx.x(), cx.ints(begin + end, "pads"), mode="constant")
    cx.b.op("AveragePool", padded, kernel_shape=ksize, strides=strides, count_include_pad=1, out=cx.out())


@translates("matmul_v2", "matmul")
def _matmul(cx: OpContext) -> None:
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


def _swap_last2(cx: OpContext, t: str, rank: int) -> str:
    if rank < 2:
        return t
    perm = list(range(rank))
    perm[-2], perm[-1] = perm[-1], perm[-2]
    return cx.b.op("Transpose", t, perm=perm)


@translates("mul")
def _mul(cx: OpContext) -> None:
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


@translates("softmax", "log_softmax")
def _softmax(cx: OpContext) -> None:
    op = "Softmax" if cx.kind == "softmax" else "LogSoftmax"
    cx.b.op(op, cx.x(), axis=int(cx.attr("axis", -1)), out=cx.out())


@translates("p_norm")
def _p_norm(cx: OpContext) -> None:
    porder = float(cx.attr("porder", 2.0))
    if porder not in (1.0, 2.0):
        raise cx.unsupported(f"porder={porder} is not supported; accepted: 1, 2")
    op = "ReduceL2" if porder == 2.0 else "ReduceL1"
    cx.b.op(op, cx.x(), cx.ints([int(cx.attr("axis", -1))]), keepdims=int(bool(cx.attr("keepdim", False))),
            out=cx.out())


_REDUCE = {"reduce_mean": "ReduceMean", "reduce_sum": "ReduceSum", "reduce_max": "ReduceMax",
           "reduce_min": "ReduceMin", "reduce_prod": "ReduceProd"}


@translates(*_REDUCE)
def _reduce(cx: OpContext) -> None:
    axes = None if cx.attr("reduce_all", False) else cx.ints(list(cx.attr("dim", [])), "axes")
    cx.b.op(_REDUCE[cx.kind], cx.x(), axes, keepdims=int(bool(cx.attr("keep_dim", False))), out=cx.out())


@translates("mean")
def _mean(cx: OpContext) -> None:
    cx.b.op("ReduceMean", cx.x(), keepdims=0, out=cx.out())


@translates("sum")
def _sum(cx: OpContext) -> None:
    cx.b.op("Sum", *cx.xs("X"), out=cx.out())


@translates("arg_max", "arg_min")
def _arg_max(cx: OpContext) -> None:
    x, b = cx.x(), cx.b
    if cx.attr("flatten", False):
        x = b.op("Reshape", x, cx.ints([-1]))
    op = "ArgMax" if cx.kind == "arg_max" else "ArgMin"
    y = b.op(op, x, axis=int(cx.attr("axis", 0)), keepdims=int(bool(cx.attr("keepdims", False))))
    code = cx.attr("dtype", 3)
    if code == 2:
        y = b.op("Cast", y, to=6)
    b.op("Identity", y, out=cx.out())
