"""ONNX nodes written as IR: shapes and data movement (Reshape, Slice, Gather, Pad, Resize...)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from infermux.graph.ir.writer_ops import np_type, translates
from infermux.graph.model import Node

if TYPE_CHECKING:
    from infermux.graph.ir.writer import Writer


@translates("Shape")
def _shape(w: Writer, n: Node) -> None:
    s = w.layer("ShapeOf", "opset3", [n.inputs[0]], {"output_type": "i64"})
    start, end = n.attrs.get("start", 0), n.attrs.get("end")
    if start or end is not None:
        stop = w.ints([end if end is not None else np.iinfo(np.int64).max])
        s = w.layer("Slice", "opset8", [s, w.ints([start]), stop, w.ints([1])])
    w.alias(n.outputs[0], s)


@translates("Size")
def _size(w: Writer, n: Node) -> None:
    s = w.layer("ShapeOf", "opset3", [n.inputs[0]], {"output_type": "i64"})
    w.layer("ReduceProd", "opset1", [s, w.ints([0])], {"keep_dims": False}, outputs=n.outputs[0])


@translates("Reshape")
def _reshape(w: Writer, n: Node) -> None:
    w.layer("Reshape", "opset1", n.inputs[:2], {"special_zero": not n.attrs.get("allowzero", 0)},
            outputs=n.outputs[0])


@translates("Flatten")
def _flatten(w: Writer, n: Node) -> None:
    axis = n.attrs.get("axis", 1)
    dims = w.dims(n.inputs[0])
    if axis < 0:
        axis += w.rank(n.inputs[0])
    if axis == 0:
        shape = w.ints([1, -1])
    elif axis == 1:
        shape = w.ints([0, -1])
    elif dims is not None and all(d >= 0 for d in dims[:axis]):
        shape = w.ints([math.prod(dims[:axis]), -1])
    else:
        raise w.unsupported(f"Flatten at axis {axis} needs static leading dimensions")
    w.layer("Reshape", "opset1", [n.inputs[0], shape], {"special_zero": True}, outputs=n.outputs[0])


@translates("Transpose")
def _transpose(w: Writer, n: Node) -> None:
    perm = n.attrs.get("perm")
    if perm is None:
        perm = list(reversed(range(w.rank(n.inputs[0]))))
    w.layer("Transpose", "opset1", [n.inputs[0], w.ints(perm)], outputs=n.outputs[0])


def _axes_input(w: Writer, n: Node) -> str | None:
    if "axes" in n.attrs:
        return w.ints(n.attrs["axes"])
    return n.inputs[1] if len(n.inputs) > 1 and n.inputs[1] else None


@translates("Squeeze", "Unsqueeze")
def _squeeze(w: Writer, n: Node) -> None:
    axes = _axes_input(w, n)
    inputs = [n.inputs[0]] + ([axes] if axes else [])
    if n.op_type == "Unsqueeze" and axes is None:
        raise w.unsupported("Unsqueeze needs axes")
    w.layer(n.op_type, "opset1", inputs, outputs=n.outputs[0])


@translates("Concat")
def _concat(w: Writer, n: Node) -> None:
    w.layer("Concat", "opset1", list(n.inputs), {"axis": n.attrs["axis"]}, outputs=n.outputs[0])


@translates("Split")
def _split(w: Writer, n: Node) -> None:
    axis = n.attrs.get("axis", 0)
    split = n.attrs.get("split")
    if split is None and len(n.inputs) > 1 and n.inputs[1]:
        split = n.inputs[1]
    axis_t = w.const(np.int64(axis))
    if split is None:
        w.layer("Split", "opset1", [n.inputs[0], axis_t], {"num_splits": len(n.outputs)}, outputs=list(n.outputs))
        return
    lengths = w.ints(split) if isinstance(split, list) else split
    w.layer("VariadicSplit", "opset1", [n.inputs[0], axis_t, lengths], outputs=list(n.outputs))


@translates("Slice")
def _slice(w: Writer, n: Node) -> None:
    if w.model.opset() < 10:
        starts, ends = w.ints(n.attrs["starts"]), w.ints(n.attrs["ends"])
        axes = w.ints(n.attrs["axes"]) if "axes" in n.attrs else None
        steps = None
    else:
        starts, ends = n.inputs[1], n.inputs[2]
        axes = n.inputs[3] if len(n.inputs) > 3 and n.inputs[3] else None
        steps = n.inputs[4] if len(n.inputs) > 4 and n.inputs[4] else None
    if steps is None:
        steps = w.layer("Broadcast", "opset3", [w.const(np.int64(1)), w.layer("ShapeOf", "opset3", [starts], {"output_type": "i64"})],
                        {"mode": "numpy"})
    w.layer("Slice", "opset8", [n.inputs[0], starts, ends, steps] + ([axes] if axes else []),
            outputs=n.outputs[0])


@translates("Gather")
def _gather(w: Writer, n: Node) -> None:
    w.layer("Gather", "opset8", [n.inputs[0], n.inputs[1], w.const(np.int64(n.attrs.get("axis", 0)))],
            {"batch_dims": 0}, outputs=n.outputs[0])


@translates("GatherElements")
def _gather_elements(w: Writer, n: Node) -> None:
    w.layer("GatherElements", "opset6", n.inputs[:2], {"axis": n.attrs.get("axis", 0)}, outputs=n.outputs[0])


@translates("GatherND")
def _gather_nd(w: Writer, n: Node) -> None:
    w.layer("GatherND", "opset8", n.inputs[:2], {"batch_dims": n.attrs.get("batch_dims", 0)},
            outputs=n.outputs[0])


_SCATTER = {"none": "none", "add": "sum", "mul": "prod", "max": "max", "min": "min"}


@translates("ScatterND")
def _scatter_nd(w: Writer, n: Node) -> None:
    red = _SCATTER[n.attrs.get("reduction", "none")]
    if red == "none":
        w.layer("ScatterNDUpdate", "opset4", n.inputs[:3], outputs=n.outputs[0])
    else:
        w.layer("ScatterNDUpdate", "opset15", n.inputs[:3], {"reduction": red}, outputs=n.outputs[0])


@translates("ScatterElements")
def _scatter_elements(w: Writer, n: Node) -> None:
    axis = w.const(np.int64(n.attrs.get("axis", 0)))
    w.layer("ScatterElementsUpdate", "opset12", list(n.inputs[:3]) + [axis],
            {"reduction": _SCATTER[n.attrs.get("reduction", "none")], "use_init_val": True},
            outputs=n.outputs[0])


@translates("Expand")
def _expand(w: Writer, n: Node) -> None:
    w.layer("Broadcast", "opset3", n.inputs[:2], {"mode": "bidirectional"}, outputs=n.outputs[0])


@translates("Tile")
def _tile(w: Writer, n: Node) -> None:
    w.layer("Tile", "opset1", n.inputs[:2], outputs=n.outputs[0])


@translates("Pad")
def _pad(w: Writer, n: Node) -> None:
    mode = n.attrs.get("mode", "constant")
    if mode not in ("constant", "reflect", "edge"):
        raise w.unsupported(f"mode='{mode}' is not supported; accepted: constant, reflect, edge")
    if w.model.opset() < 11:
        pads, value = np.asarray(n.attrs.get("pads", n.attrs.get("paddings")), np.int64), n.attrs.get("value", 0.0)
        value_t = w.const(np.array(value, np_type(w, n.inputs[0])))
    else:
        pads = w.value(n.inputs[1])
        value_t = n.inputs[2] if len(n.inputs) > 2 and n.inputs[2] else None
        if pads is None:
            raise w.unsupported("pads must be a constant")
        pads = pads.astype(np.int64).reshape(-1)
        if len(n.inputs) > 3 and n.inputs[3]:
            pads = _full_pads(w, n, pads)
    half = len(pads) // 2
    inputs = [n.inputs[0], w.ints(pads[:half]), w.ints(pads[half:])]
    if value_t is not None and mode == "constant":
        inputs.append(value_t)
    w.layer("Pad", "opset12", inputs, {"pad_mode": mode}, outputs=n.outputs[0])


def _full_pads(w: Writer, n: Node, pads: np.ndarray) -> np.ndarray:
    axes = w.value(n.inputs[3])
    if axes is None:
        raise w.unsupported("axes must be a constant")
    rank = w.rank(n.inputs[0])
    full = np.zeros(2 * rank, np.int64)
    k = len(axes)
    for i, a in enumerate(np.asarray(axes).reshape(-1) % rank):
        full[a], full[rank + a] = pads[i], pads[k + i]
    return full


@translates("DepthToSpace", "SpaceToDepth")
def _depth_to_space(w: Writer, n: Node) -> None:
    mode = "depth_first" if n.attrs.get("mode", "DCR") == "CRD" else "blocks_first"
    w.layer(n.op_type, "opset1", [n.inputs[0]], {"mode": mode, "block_size": n.attrs["blocksize"]},
            outputs=n.outputs[0])


@translates("ReverseSequence")
def _reverse_sequence(w: Writer, n: Node) -> None:
    w.layer("ReverseSequence", "opset1", n.inputs[:2], {"batch_axis": n.attrs.get("batch_axis", 1),
                                                        "seq_axis": n.attrs.get("time_axis", 0)},
            outputs=n.outputs[0])


@translates("GridSample")
def _grid_sample(w: Writer, n: Node) -> None:
    mode = {"linear": "bilinear", "cubic": "bicubic"}.get(n.attrs.get("mode", "bilinear"),
                                                          n.attrs.get("mode", "bilinear"))
    w.layer("GridSample", "opset9", n.inputs[:2],
            {"align_corners": bool(n.attrs.get("align_corners", 0)), "mode": mode,
             "padding_mode": n.attrs.get("padding_mode", "zeros")}, outputs=n.outputs[0])


_RESIZE_MODES = {"nearest": "nearest", "linear": "linear_onnx", "cubic": "cubic"}


@translates("Resize")
def _resize(w: Writer, n: Node) -> None:
    a = n.attrs
    coords = a.get("coordinate_transformation_mode", "half_pixel")
    if coords in ("tf_crop_and_resize", "half_pixel_symmetric") or a.get("exclude_outside", 0) \
            or a.get("keep_aspect_ratio_policy", "stretch") != "stretch":
        raise w.unsupported(f"coordinate_transformation_mode='{coords}', exclude_outside and "
                            f"keep_aspect_ratio_policy other than stretch are not supported")
    if w.model.opset() < 11:
        raise w.unsupported("Resize before opset 11 is not supported")
    scales = n.inputs[2] if len(n.inputs) > 2 and n.inputs[2] else None
    sizes = n.inputs[3] if len(n.inputs) > 3 and n.inputs[3] else None
    axes = a.get("axes")
    if axes is None:
        axes = list(range(w.rank(n.inputs[0])))
    by_sizes = sizes is not None
    target = sizes if by_sizes else scales
    value = w.value(target)
    if not by_sizes and value is not None:  # OpenVINO resizes only what changes
        keep = [i for i, s in enumerate(value.reshape(-1)) if s != 1.0] or [len(axes) - 1]
        target = w.const(value.reshape(-1)[keep].astype(np.float32))
        axes = [axes[i] for i in keep]
    attrs = {"mode": _RESIZE_MODES[a.get("mode", "nearest")],
             "shape_calculation_mode": "sizes" if by_sizes else "scales",
             "coordinate_transformation_mode": coords,
             "nearest_mode": a.get("nearest_mode", "round_prefer_floor"),
             "antialias": bool(a.get("antialias", 0)), "cube_coeff": float(a.get("cubic_coeff_a", -0.75)),
             "pads_begin": [0] * w.rank(n.inputs[0]), "pads_end": [0] * w.rank(n.inputs[0])}
    w.layer("Interpolate", "opset11", [n.inputs[0], target, w.ints(axes)], attrs, outputs=n.outputs[0])
