"""IR layers of linear algebra and normalisation: MatMul, BatchNorm, Softmax, MVN, LRN, FakeQuantize."""

from __future__ import annotations

import numpy as np

from infermux.graph.ir.layers import LayerContext, scalar_like, translates


def _transposed_last2(cx: LayerContext, i: int) -> str:
    dims = cx.in_dims(i)
    if dims is not None and len(dims) < 2:
        return cx.ins[i]
    if dims is None:
        return cx.b.op("Einsum", cx.ins[i], equation="...ij->...ji")
    perm = list(range(len(dims)))
    perm[-2], perm[-1] = perm[-1], perm[-2]
    return cx.b.op("Transpose", cx.ins[i], perm=perm)


@translates("MatMul")
def _matmul(cx: LayerContext) -> None:
    a = _transposed_last2(cx, 0) if cx.bool_("transpose_a") else cx.ins[0]
    b = _transposed_last2(cx, 1) if cx.bool_("transpose_b") else cx.ins[1]
    cx.b.op("MatMul", a, b, out=cx.outs[0])


@translates("BatchNormInference")
def _batch_norm(cx: LayerContext) -> None:
    # opset1 takes (gamma, beta, data, mean, variance); opset5 takes data first.
    order = [2, 0, 1, 3, 4] if cx.version < 5 else [0, 1, 2, 3, 4]
    cx.b.op("BatchNormalization", *[cx.ins[i] for i in order], epsilon=cx.float_("epsilon"),
            out=cx.outs[0])


@translates("Einsum")
def _einsum(cx: LayerContext) -> None:
    cx.b.op("Einsum", *cx.ins, equation=cx.attr("equation"), out=cx.outs[0])


@translates("Softmax", "SoftMax", "LogSoftmax")
def _softmax(cx: LayerContext) -> None:
    op = "LogSoftmax" if cx.layer.type == "LogSoftmax" else "Softmax"
    cx.b.op(op, cx.ins[0], axis=cx.int_("axis", 1), out=cx.outs[0])


@translates("NormalizeL2")
def _normalize_l2(cx: LayerContext) -> None:
    eps = cx.float_("eps")
    combine = cx.choice("eps_mode", {"add": "Add", "max": "Max"}, "add")
    b, x = cx.b, cx.ins[0]
    sq = b.op("ReduceSumSquare", x, cx.vec(1), keepdims=1, noop_with_empty_axes=1)
    norm = b.op("Sqrt", b.op(combine, sq, scalar_like(cx, eps)))
    b.op("Div", x, norm, out=cx.outs[0])


def _mvn(cx: LayerContext, axes: str, normalize: bool, eps: float, inside: bool) -> None:
    b, x = cx.b, cx.ins[0]
    centred = b.op("Sub", x, b.op("ReduceMean", x, axes, keepdims=1))
    if not normalize:
        b.op("Identity", centred, out=cx.outs[0])
        return
    var = b.op("ReduceMean", b.op("Mul", centred, centred), axes, keepdims=1)
    if inside:
        std = b.op("Sqrt", b.op("Add", var, scalar_like(cx, eps)))
    else:
        std = b.op("Add", b.op("Sqrt", var), scalar_like(cx, eps))
    b.op("Div", centred, std, out=cx.outs[0])


@translates("MVN")
def _mvn_layer(cx: LayerContext) -> None:
    normalize, eps = cx.bool_("normalize_variance", True), cx.float_("eps")
    if cx.version >= 6:
        inside = cx.choice("eps_mode", {"inside_sqrt": True, "outside_sqrt": False})
        _mvn(cx, cx.vec(1), normalize, eps, inside)
        return
    if "reduction_axes" in cx.layer.data:
        axes = cx.ints("reduction_axes")
    else:
        start = 1 if cx.bool_("across_channels", False) else 2
        axes = list(range(start, cx.rank(0)))
    _mvn(cx, cx.b.const(axes, "axes", np.int64), normalize, eps, inside=True)


@translates("LRN")
def _lrn(cx: LayerContext) -> None:
    axes = [int(v) for v in cx.const(1, "axes").reshape(-1)]
    if axes != [1]:
        raise cx.unsupported(f"LRN over axes {axes} is not supported; only across channels ([1])")
    cx.b.op("LRN", cx.ins[0], alpha=cx.float_("alpha"), beta=cx.float_("beta"),
            bias=cx.float_("bias"), size=cx.int_("size"), out=cx.outs[0])


@translates("FakeQuantize")
def _fake_quantize(cx: LayerContext) -> None:
    """Decomposed per OpenVINO's formula: clamp to the input range, round to levels-1 steps."""
    levels = cx.int_("levels")
    b = cx.b
    x, il, ih, ol, oh = cx.ins[:5]
    steps = scalar_like(cx, float(levels - 1))
    scaled = b.op("Div", b.op("Mul", b.op("Sub", x, il), steps), b.op("Sub", ih, il))
    q = b.op("Add", b.op("Mul", b.op("Div", b.op("Round", scaled), steps), b.op("Sub", oh, ol)), ol)
    high = b.op("Where", b.op("Greater", x, b.op("Max", il, ih)), oh, q)
    b.op("Where", b.op("LessOrEqual", x, b.op("Min", il, ih)), ol, high, out=cx.outs[0])
