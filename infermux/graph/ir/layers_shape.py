"""IR layers that move data or compute shapes: Reshape, Concat, Split, Gather, StridedSlice, Pad..."""

from __future__ import annotations

import numpy as np

from infermux.graph.builder import INT64_MAX, INT64_MIN
from infermux.graph.ir.layers import LayerContext, translates
from infermux.graph.types import Type


@translates("ShapeOf")
def _shape_of(cx: LayerContext) -> None:
    out_type = cx.attr("output_type", "i64").lower()
    if out_type == "i64":
        cx.b.op("Shape", cx.ins[0], out=cx.outs[0])
    else:
        cx.b.op("Cast", cx.b.op("Shape", cx.ins[0]), to=Type._BY_NAME[out_type].onnx_code, out=cx.outs[0])


@translates("Reshape")
def _reshape(cx: LayerContext) -> None:
    shape = cx.i64(1)
    special_zero = cx.bool_("special_zero")
    value = cx.b.value(shape)
    allowzero = 0 if special_zero or (value is not None and 0 not in value) else 1
    cx.b.op("Reshape", cx.ins[0], shape, allowzero=allowzero, out=cx.outs[0])


@translates("Squeeze", "Unsqueeze")
def _squeeze(cx: LayerContext) -> None:
    axes = cx.vec(1) if cx.input(1) else None
    cx.b.op(cx.layer.type, cx.ins[0], axes, out=cx.outs[0])


@translates("Transpose")
def _transpose(cx: LayerContext) -> None:
    perm = [int(v) for v in cx.const(1, "order").reshape(-1)]
    cx.b.op("Transpose", cx.ins[0], perm=perm or None, out=cx.outs[0])


@translates("Concat")
def _concat(cx: LayerContext) -> None:
    cx.b.op("Concat", *cx.ins, axis=cx.int_("axis"), out=cx.outs[0])


@translates("Split")
def _split(cx: LayerContext) -> None:
    axis = int(cx.const(1, "axis").reshape(-1)[0])
    n = cx.int_("num_splits")
    if n == 1:
        cx.b.op("Identity", cx.ins[0], out=cx.outs[0])
        return
    cx.b.op("Split", cx.ins[0], axis=axis, num_outputs=n, out=list(cx.outs))


@translates("VariadicSplit")
def _variadic_split(cx: LayerContext) -> None:
    axis = int(cx.const(1, "axis").reshape(-1)[0])
    lengths = [int(v) for v in cx.const(2, "split_lengths").reshape(-1)]
    b = cx.b
    if -1 in lengths:
        k = lengths.index(-1)
        dims = cx.in_dims(0)
        if dims is not None and dims[axis] >= 0:
            lengths[k] = dims[axis] - (sum(lengths) + 1)
            split = b.const(lengths, "split", np.int64)
        else:
            total = b.op("Gather", b.op("Shape", cx.ins[0]), b.const([axis], "axis", np.int64), axis=0)
            rest = b.op("Sub", total, b.const([sum(lengths) + 1], "known", np.int64))
            parts = [b.const(lengths[:k], "split", np.int64), rest, b.const(lengths[k + 1:], "split", np.int64)]
            split = b.op("Concat", *parts, axis=0)
    else:
        split = b.const(lengths, "split", np.int64)
    if len(cx.outs) == 1:
        b.op("Identity", cx.ins[0], out=cx.outs[0])
        return
    b.op("Split", cx.ins[0], split, axis=axis, out=list(cx.outs))


@translates("Gather")
def _gather(cx: LayerContext) -> None:
    axis = int(cx.const(2, "axis").reshape(-1)[0])
    batch_dims = cx.int_("batch_dims", 0) if cx.version >= 7 else 0
    if batch_dims != 0:
        raise cx.unsupported(f"batch_dims={batch_dims} is not supported; only 0")
    cx.b.op("Gather", cx.ins[0], cx.ins[1], axis=axis, out=cx.outs[0])


@translates("GatherND")
def _gather_nd(cx: LayerContext) -> None:
    batch_dims = cx.int_("batch_dims", 0)
    if batch_dims and cx.version < 8:
        raise cx.unsupported("GatherND-5 with batch_dims > 0 flattens the batch dimensions; "
                             "only GatherND-8 semantics are supported")
    cx.b.op("GatherND", cx.ins[0], cx.i64(1), batch_dims=batch_dims, out=cx.outs[0])


@translates("GatherElements")
def _gather_elements(cx: LayerContext) -> None:
    cx.b.op("GatherElements", cx.ins[0], cx.ins[1], axis=cx.int_("axis"), out=cx.outs[0])


_SCATTER_REDUCTION = {"none": "none", "sum": "add", "prod": "mul", "max": "max", "min": "min"}


@translates("ScatterNDUpdate")
def _scatter_nd(cx: LayerContext) -> None:
    red = cx.choice("reduction", _SCATTER_REDUCTION, "none")
    cx.b.op("ScatterND", cx.ins[0], cx.i64(1), cx.ins[2], reduction=red, out=cx.outs[0])


@translates("ScatterElementsUpdate")
def _scatter_elements(cx: LayerContext) -> None:
    red = cx.choice("reduction", _SCATTER_REDUCTION, "none")
    if red != "none" and not cx.bool_("use_init_val", True):
        raise cx.unsupported("use_init_val=false is not supported")
    axis = int(cx.const(3, "axis").reshape(-1)[0])
    cx.b.op("ScatterElements", cx.ins[0], cx.i64(1), cx.ins[2], axis=axis, reduction=red,
            out=cx.outs[0])


@translates("Broadcast")
def _broadcast(cx: LayerContext) -> None:
    # OpenVINO spells explicit broadcasting 'none' as well (AutoBroadcastType::EXPLICIT == NONE)
    mode = cx.choice("mode", {"numpy": "numpy", "bidirectional": "numpy", "explicit": "explicit",
                              "none": "explicit", "pdpd": "pdpd"}, "numpy")
    x, b = cx.ins[0], cx.b
    if mode == "pdpd":
        raise cx.unsupported("mode='pdpd' is not supported; accepted: numpy, bidirectional, explicit")
    if mode == "explicit":
        mapping = [int(v) for v in cx.const(2, "axes_mapping").reshape(-1)]
        target_dims = cx.in_dims(1)
        if target_dims is None or target_dims[0] < 0:
            raise cx.unsupported("explicit broadcast needs a target shape of known length")
        missing = [a for a in range(target_dims[0]) if a not in mapping]
        if missing:
            x = b.op("Unsqueeze", x, b.const(missing, "axes", np.int64))
    b.op("Expand", x, cx.i64(1), out=cx.outs[0])


@translates("Tile")
def _tile(cx: LayerContext) -> None:
    x, b = cx.ins[0], cx.b
    rank, rdims = cx.rank(0), cx.in_dims(1)
    if rdims is None or rdims[0] < 0:
        raise cx.unsupported("the number of repeats must be known")
    n = rdims[0]
    repeats = cx.vec(1)
    if n < rank:
        repeats = b.op("Concat", b.const([1] * (rank - n), "ones", np.int64), repeats, axis=0)
    elif n > rank:
        x = b.op("Unsqueeze", x, b.const(list(range(n - rank)), "axes", np.int64))
    b.op("Tile", x, repeats, out=cx.outs[0])


@translates("Pad")
def _pad(cx: LayerContext) -> None:
    mode = cx.choice("pad_mode", {"constant": "constant", "edge": "edge", "reflect": "reflect"})
    pads = cx.b.op("Concat", cx.vec(1), cx.vec(2), axis=0)
    value = cx.ins[3] if mode == "constant" and cx.input(3) else None
    cx.b.op("Pad", cx.ins[0], pads, value, mode=mode, out=cx.outs[0])


@translates("StridedSlice")
def _strided_slice(cx: LayerContext) -> None:
    _StridedSlice(cx).emit()


class _StridedSlice:
    """StridedSlice as Slice + Squeeze (shrink_axis_mask) + Unsqueeze (new_axis_mask).

    OpenVINO masks: begin_mask/end_mask 1 = ignore begin/end (take the whole range); an ellipsis
    stands for every input axis the other entries do not name.
    """

    def __init__(self, cx: LayerContext):
        self.cx = cx
        n = cx.in_dims(1)
        if n is None or len(n) != 1 or n[0] < 0:
            raise cx.unsupported("the begin input must be 1-D with a known length")
        self.n = n[0]
        masks = {}
        for name in ("begin_mask", "end_mask", "new_axis_mask", "shrink_axis_mask", "ellipsis_mask"):
            m = cx.ints(name, [])
            masks[name] = (m + [0] * self.n)[:self.n]
        self.m = masks
        if cx.input(3):
            self.strides = [int(v) for v in cx.const(3, "strides").reshape(-1)]
        else:
            self.strides = [1] * self.n

    def emit(self) -> None:
        cx, b, m = self.cx, self.cx.b, self.m
        ellipsis = [i for i in range(self.n) if m["ellipsis_mask"][i]]
        consumed = sum(1 for i in range(self.n) if not m["new_axis_mask"][i] and not m["ellipsis_mask"][i])
        rank = cx.rank(0) if ellipsis else consumed
        entries, new_axes, shrink, axis, out_pos = [], [], [], 0, 0  # entries: (spec idx, input axis)
        for i in range(self.n):
            if m["ellipsis_mask"][i] and i == ellipsis[0]:
                span = rank - consumed
                axis, out_pos = axis + span, out_pos + span
            elif m["ellipsis_mask"][i] or m["new_axis_mask"][i]:
                if m["new_axis_mask"][i]:
                    new_axes.append(out_pos)
                    out_pos += 1
            else:
                entries.append((i, axis))
                if m["shrink_axis_mask"][i]:
                    shrink.append(axis)
                else:
                    out_pos += 1
                axis += 1
        y = cx.ins[0]
        if entries:
            y = b.op("Slice", y, *self._bounds(entries))
        if shrink:
            y = b.op("Squeeze", y, b.const(shrink, "axes", np.int64))
        if new_axes:
            y = b.op("Unsqueeze", y, b.const(new_axes, "axes", np.int64))
        b.op("Identity", y, out=cx.outs[0])

    def _bounds(self, entries: list[tuple[int, int]]) -> list[str]:
        cx, b, m = self.cx, self.cx.b, self.m
        idx = b.const([i for i, _ in entries], "idx", np.int64)
        begin = b.op("Gather", cx.vec(1), idx, axis=0)
        end = b.op("Gather", cx.vec(2), idx, axis=0)
        steps = [self.strides[i] if not m["shrink_axis_mask"][i] else 1 for i, _ in entries]
        for i, _ in entries:
            if self.strides[i] == 0:
                raise cx.unsupported("a stride of 0 is invalid")
        begin_default = [0 if s > 0 else INT64_MAX for s in steps]
        end_default = [INT64_MAX if s > 0 else INT64_MIN for s in steps]
        use_begin_default = [bool(m["begin_mask"][i]) and not m["shrink_axis_mask"][i] for i, _ in entries]
        use_end_default = [bool(m["end_mask"][i]) and not m["shrink_axis_mask"][i] for i, _ in entries]
        begin = b.op("Where", b.const(use_begin_default, "mask", np.bool_),
                     b.const(begin_default, "default", np.int64), begin)
        # a shrunk axis keeps the single element at begin (begin = -1 runs to the end)
        shrink = [bool(m["shrink_axis_mask"][i]) for i, _ in entries]
        if any(shrink):
            one_past = b.op("Add", begin, b.const(1, "one", np.int64))
            one_past = b.op("Where", b.op("Equal", one_past, b.const(0, "zero", np.int64)),
                            b.const(INT64_MAX, "max", np.int64), one_past)
            end = b.op("Where", b.const(shrink, "mask", np.bool_), one_past, end)
        end = b.op("Where", b.const(use_end_default, "mask", np.bool_),
                   b.const(end_default, "default", np.int64), end)
        axes = b.const([a for _, a in entries], "axes", np.int64)
        return [begin, end, axes, b.const(steps, "steps", np.int64)]


@translates("Slice")
def _slice(cx: LayerContext) -> None:
    axes = cx.vec(4) if cx.input(4) else None
    cx.b.op("Slice", cx.ins[0], cx.vec(1), cx.vec(2), axes, cx.vec(3), out=cx.outs[0])


@translates("Reverse")
def _reverse(cx: LayerContext) -> None:
    axes_in = cx.const(1, "axes").reshape(-1)
    if cx.attr("mode", "index").lower() == "mask":
        axes = [i for i, flag in enumerate(axes_in) if flag]
    else:
        axes = [int(v) for v in axes_in]
    if not axes:
        cx.b.op("Identity", cx.ins[0], out=cx.outs[0])
        return
    n = len(axes)
    b = cx.b
    cx.b.op("Slice", cx.ins[0], b.const([-1] * n, "starts", np.int64), b.const([INT64_MIN] * n, "ends", np.int64),
            b.const(axes, "axes", np.int64), b.const([-1] * n, "steps", np.int64), out=cx.outs[0])


@translates("ReverseSequence")
def _reverse_sequence(cx: LayerContext) -> None:
    cx.b.op("ReverseSequence", cx.ins[0], cx.i64(1), batch_axis=cx.int_("batch_axis", 0),
            time_axis=cx.int_("seq_axis", 1), out=cx.outs[0])


@translates("DepthToSpace", "SpaceToDepth")
def _depth_to_space(cx: LayerContext) -> None:
    mode = cx.choice("mode", {"blocks_first": "DCR", "depth_first": "CRD"})
    block = cx.int_("block_size")
    if cx.layer.type == "DepthToSpace":
        cx.b.op("DepthToSpace", cx.ins[0], blocksize=block, mode=mode, out=cx.outs[0])
        return
    if mode != "DCR":
        raise cx.unsupported("SpaceToDepth with mode='depth_first' is not supported; only blocks_first")
    cx.b.op("SpaceToDepth", cx.ins[0], blocksize=block, out=cx.outs[0])


@translates("ShuffleChannels")
def _shuffle_channels(cx: LayerContext) -> None:
    dims = cx.in_dims(0)
    axis, group = cx.int_("axis", 1), cx.int_("group", 1)
    if dims is None:
        raise cx.unsupported("the input rank must be known")
    axis %= len(dims)
    if dims[axis] < 0:
        raise cx.unsupported("the shuffled dimension must be static")
    b = cx.b
    split = b.op("Reshape", cx.ins[0], b.const([0] * axis + [group, dims[axis] // group, -1], "shape", np.int64))
    perm = list(range(axis + 3))
    perm[axis], perm[axis + 1] = perm[axis + 1], perm[axis]
    y = b.op("Transpose", split, perm=perm)
    b.op("Reshape", y, b.op("Shape", cx.ins[0]), out=cx.outs[0])
