"""IR layers that resample: Interpolate (v1, v4, v11) and GridSample."""

from __future__ import annotations

import numpy as np

from infermux.graph.ir.layers import LayerContext, translates

_RESIZE_MODES = {"nearest": "nearest", "linear": "linear", "linear_onnx": "linear", "cubic": "cubic"}
_COORDS = {m: m for m in ("half_pixel", "pytorch_half_pixel", "asymmetric", "tf_half_pixel_for_nn",
                          "align_corners")}
_NEAREST = {m: m for m in ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")}


@translates("Interpolate")
def _interpolate(cx: LayerContext) -> None:
    if cx.version < 4:
        _interpolate_v1(cx)
        return
    mode = cx.choice("mode", _RESIZE_MODES)
    by_sizes = cx.choice("shape_calculation_mode", {"sizes": True, "scales": False})
    axes_in = 3 if cx.version < 11 else 2
    target_in = (1 if by_sizes else 2) if cx.version < 11 else 1
    x = _interpolate_pads(cx)
    axes = [int(v) for v in cx.const(axes_in, "axes").reshape(-1)] if cx.input(axes_in) else None
    sizes = scales = None
    if by_sizes:
        sizes = cx.vec(target_in)
    else:
        scales = cx.b.op("Cast", cx.ins[target_in], to=1)
    _resize(cx, x, mode, cx.choice("coordinate_transformation_mode", _COORDS, "half_pixel"),
            cx.choice("nearest_mode", _NEAREST, "round_prefer_floor"), axes, scales, sizes)


def _interpolate_pads(cx: LayerContext) -> str:
    begin, end = cx.ints("pads_begin", []), cx.ints("pads_end", [])
    if not any(begin) and not any(end):
        return cx.ins[0]
    rank = cx.rank(0)
    pads = (begin + [0] * rank)[:rank] + (end + [0] * rank)[:rank]
    return cx.b.op("Pad", cx.ins[0], cx.b.const(pads, "pads", np.int64), mode="constant")


def _resize(cx: LayerContext, x: str, mode: str, coords: str, nearest: str, axes, scales, sizes) -> None:
    cx.b.op("Resize", x, None, scales, sizes, mode=mode, coordinate_transformation_mode=coords,
            nearest_mode=nearest, cubic_coeff_a=cx.float_("cube_coeff", -0.75), axes=axes,
            antialias=int(cx.bool_("antialias")), out=cx.outs[0])


def _interpolate_v1(cx: LayerContext) -> None:
    """Interpolate-1, as OpenVINO converts it to Interpolate-4 (sizes, 'simple' nearest rounding)."""
    mode = cx.choice("mode", {"nearest": "nearest", "linear": "linear", "cubic": "cubic",
                              "linear_onnx": "linear"})
    axes = cx.ints("axes")
    x = _interpolate_pads(cx)
    rank = cx.rank(0)
    padded = any(cx.ints("pads_begin", [])) or any(cx.ints("pads_end", []))
    if cx.bool_("align_corners"):
        coords = "align_corners"
    elif mode == "linear" and not padded and not (rank == 4 and sorted(axes) == [2, 3]):
        coords = "half_pixel"
    else:
        coords = "asymmetric"
    nearest = "floor"  # 'simple' rounds down when upsampling
    dims, sizes = cx.in_dims(0), cx.b.value(cx.ins[1])
    if dims is not None and sizes is not None and any(
            0 <= dims[a] and s < dims[a] for a, s in zip(axes, sizes.reshape(-1))):
        nearest = "ceil"  # ... and up when downsampling
    _resize(cx, x, mode, coords, nearest, axes, None, cx.vec(1))


@translates("GridSample")
def _grid_sample(cx: LayerContext) -> None:
    cx.b.op("GridSample", cx.ins[0], cx.ins[1], align_corners=int(cx.bool_("align_corners")),
            mode=cx.choice("mode", {"bilinear": "bilinear", "bicubic": "bicubic", "nearest": "nearest"},
                           "bilinear"),
            padding_mode=cx.choice("padding_mode", {"zeros": "zeros", "border": "border",
                                                    "reflection": "reflection"}, "zeros"),
            out=cx.outs[0])
