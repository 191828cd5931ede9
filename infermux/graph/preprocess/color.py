"""Colour conversion: RGB/BGR swaps, RGBX/BGRX, GRAY, and NV12/I420 (one, two or three planes)
to RGB/BGR as arithmetic on standard ONNX ops; and the shapes of the planes a user feeds."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from infermux.errors import UnsupportedOpError
from infermux.graph.preprocess.options import (
    _INT64_MAX,
    _NHWC,
    NEEDS_OPSET,
    ColorFormat,
    PreprocessError,
)
from infermux.graph.preprocess.steps import Context, Step, _axis, _reverse
from infermux.graph.preprocess.value import Value, _Builder
from infermux.graph.shape import Dimension, PartialShape
from infermux.graph.types import Type


@dataclasses.dataclass(frozen=True)
class ConvertColor(Step):
    dst: ColorFormat

    def label(self) -> str:
        return f"convert color ({self.dst.label})"

    def apply(self, value: Value, ctx: Context) -> Value:
        src = value.color
        if src is None:
            raise PreprocessError(f"convert_color({self.dst.name}) on input '{ctx.port}': the tensor's "
                                  f"colour format is not set; use tensor().set_color_format(...)")
        if src == self.dst:
            return value
        if src.is_yuv and self.dst in (ColorFormat.RGB, ColorFormat.BGR):
            return _yuv_to_rgb(value, ctx, self.dst)
        c = _axis(value, "C", "Layout {layout} doesn't have `channels` dimension")
        if {src, self.dst} == {ColorFormat.RGB, ColorFormat.BGR}:
            return value._derive(_reverse(value, c), color=self.dst)
        if src in (ColorFormat.RGBX, ColorFormat.BGRX) and self.dst in (ColorFormat.RGB, ColorFormat.BGR):
            same = src.name[:3] == self.dst.name
            idx = value._builder.const(np.array([0, 1, 2] if same else [2, 1, 0], np.int64), hint="channels")
            out = value._builder.op("Gather", [value.name, idx], "color", axis=c)
            return value._derive(out, shape=_with_dim(value.partial_shape, c, 3), color=self.dst)
        if src in (ColorFormat.RGB, ColorFormat.BGR) and self.dst == ColorFormat.GRAY:
            return _to_gray(value, c, src)
        raise UnsupportedOpError(f"convert_color from {src.name} to {self.dst.name} is not supported")


def _with_dim(shape: PartialShape, axis: int, size: int | Dimension) -> PartialShape:
    dims = list(shape)
    dims[axis] = size if isinstance(size, Dimension) else Dimension(size)
    return PartialShape(dims)


def _to_gray(value: Value, c: int, src: ColorFormat) -> Value:
    """BT.601 luma: one MatMul over the channel axis, which must be last."""
    if c != len(value.partial_shape) - 1:
        raise PreprocessError(f"convert_color(GRAY) needs the channels last (a layout like NHWC), "
                              f"got {value.layout}")
    weights = np.array([0.299, 0.587, 0.114] if src == ColorFormat.RGB else [0.114, 0.587, 0.299])
    b = value._builder
    x, work = _as_float(value)
    gray = b.op("MatMul", [x, b.const(weights.reshape(3, 1).astype(work.to_dtype()), hint="luma")], "gray")
    out = _back_to(value, gray, work)
    return value._derive(out, shape=_with_dim(value.partial_shape, c, 1), color=ColorFormat.GRAY)


def _as_float(value: Value) -> tuple[str, Type]:
    """The value in a float type to compute in (itself when already float)."""
    if value.element_type.is_real():
        return value.name, value.element_type
    return value._builder.op("Cast", [value.name], "as_float", to=Type.f32.onnx_code), Type.f32


def _back_to(value: Value, result: str, work: Type, clamp: bool = False) -> str:
    """Clamp to [0, 255] (if asked), round half up for integer types, cast back to the input type."""
    b = value._builder
    dt = work.to_dtype()
    if clamp or value.element_type.is_integral():
        result = b.op("Min", [result, b.const(np.array(255, dt), hint="hi")], "clamped")
        result = b.op("Max", [result, b.const(np.array(0, dt), hint="lo")], "clamped")
    if value.element_type.is_integral():
        result = b.op("Floor", [b.op("Add", [result, b.const(np.array(0.5, dt), hint="half")])], "rounded")
    if value.element_type != work:
        result = b.op("Cast", [result], "cast_back", to=value.element_type.onnx_code)
    return result


# YUV -> RGB (BT.601, limited range): rgb = 1.164 (y - 16) + [u - 128, v - 128] @ _CHROMA
_CHROMA_RGB = np.array([[0.0, -0.391, 2.018], [1.596, -0.813, 0.0]])


def _yuv_to_rgb(value: Value, ctx: Context, dst: ColorFormat) -> Value:
    if value.layout is not None and value.layout != _NHWC:
        raise PreprocessError(f"{value.color.label} input '{ctx.port}' must have the NHWC layout, got "
                              f"{value.layout}")
    b = value._builder
    y, uv, luma_shape = _planes(value, ctx)
    work = value.element_type if value.element_type.is_real() else Type.f32
    dt = work.to_dtype()

    def as_work(name):
        return name if value.element_type == work else b.op("Cast", [name], "as_float", to=work.onnx_code)

    luma = b.op("Mul", [b.op("Sub", [as_work(y), b.const(np.array(16, dt), hint="y_offset")]),
                        b.const(np.array(1.164, dt), hint="y_gain")], "luma")
    matrix = _CHROMA_RGB if dst == ColorFormat.RGB else _CHROMA_RGB[:, ::-1]
    centred = b.op("Sub", [as_work(uv), b.const(np.array(128, dt), hint="uv_offset")], "chroma_centred")
    chroma = b.op("MatMul", [centred, b.const(np.ascontiguousarray(matrix).astype(dt), hint="chroma_matrix")],
                  "chroma")
    rgb = b.op("Add", [luma, _upsample2x(b, chroma, y, luma_shape)], "rgb")
    out = _back_to(value, rgb, work, clamp=True)
    shape = PartialShape(list(luma_shape)[:3] + [Dimension(3)])
    return value._derive(out, shape=shape, layout=_NHWC, color=dst)


def _planes(value: Value, ctx: Context) -> tuple[str, str, PartialShape]:
    """(Y [N,H,W,1], interleaved UV [N,H/2,W/2,2], Y's shape) from one, two or three planes."""
    b = value._builder
    fmt = value.color
    if fmt == ColorFormat.NV12_TWO_PLANES:
        return value.name, ctx.planes[0].name, value.partial_shape
    if fmt == ColorFormat.I420_THREE_PLANES:
        uv = b.op("Concat", [ctx.planes[0].name, ctx.planes[1].name], "uv", axis=3)
        return value.name, uv, value.partial_shape
    # single plane: [N, H*3/2, W, 1], Y rows first, then UV (NV12) or U then V (I420)
    rows = value.partial_shape[1]
    height = Dimension(rows.get_length() * 2 // 3) if rows.is_static else Dimension()
    luma_shape = _with_dim(value.partial_shape, 1, height)

    def rows_of(start, stop, hint):
        return b.op("Slice", [value.name, start, stop, b.const(np.array([1], np.int64), hint="rows_axis")],
                    hint, needs_opset=NEEDS_OPSET)

    h_at = _scaled_rows(value, rows)  # h_at(num, den): H * num / den as a [1] tensor
    zero, end = b.const(np.array([0], np.int64)), b.const(np.array([_INT64_MAX], np.int64))
    y = rows_of(zero, h_at(1, 1), "y")
    if fmt == ColorFormat.NV12_SINGLE_PLANE:
        uv = b.op("Reshape", [rows_of(h_at(1, 1), end, "uv_rows"),
                              b.const(np.array([0, 0, -1, 2], np.int64))], "uv")
        return y, uv, luma_shape
    quarter = b.op("Div", [b.op("Shape", [y]), b.const(np.array([1, 2, 2, 1], np.int64))], "chroma_shape")
    u = b.op("Reshape", [rows_of(h_at(1, 1), h_at(5, 4), "u_rows"), quarter], "u")
    v = b.op("Reshape", [rows_of(h_at(5, 4), end, "v_rows"), quarter], "v")
    return y, b.op("Concat", [u, v], "uv", axis=3), luma_shape


def _scaled_rows(value: Value, rows: Dimension) -> Callable[[int, int], str]:
    """A function giving ``H * num / den`` (H = 2/3 of the plane's rows) as a [1] int64 tensor."""
    b = value._builder
    if rows.is_static:
        height = rows.get_length() * 2 // 3
        return lambda num, den: b.const(np.array([height * num // den], np.int64), hint="row")
    total = b.op("Gather", [b.op("Shape", [value.name]), b.const(np.array([1], np.int64))], "plane_rows")
    height = b.op("Div", [b.op("Mul", [total, b.const(np.array([2], np.int64))]),
                          b.const(np.array([3], np.int64))], "height")

    def scaled(num, den):
        if num == den:
            return height
        return b.op("Div", [b.op("Mul", [height, b.const(np.array([num], np.int64))]),
                            b.const(np.array([den], np.int64))], "row")

    return scaled


def _upsample2x(b: _Builder, chroma: str, y: str, luma_shape: PartialShape) -> str:
    """[N,h,w,3] -> [N,2h,2w,3], each value repeated in a 2x2 block (Concat + Reshape only)."""
    wide = b.op("Reshape", [b.op("Concat", [chroma, chroma], "chroma_pairs", axis=3),
                            b.const(np.array([0, 0, -1, 3], np.int64))], "chroma_wide")
    tall = b.op("Concat", [wide, wide], "chroma_rows", axis=2)
    if luma_shape.is_static:
        target = b.const(np.array([*[d.get_length() for d in list(luma_shape)[:3]], 3], np.int64))
    else:
        target = b.op("Mul", [b.op("Shape", [y]), b.const(np.array([1, 1, 1, 3], np.int64))], "rgb_shape")
    return b.op("Reshape", [tall, target], "chroma_full")


def plane_shapes(fmt: ColorFormat, image: PartialShape) -> list[PartialShape]:
    """The user's tensor shapes of ``fmt`` for an NHWC ``image`` shape."""
    n, h, w, _ = list(image)

    def scaled(d: Dimension, num: int, den: int) -> Dimension:
        return Dimension(d.get_length() * num // den) if d.is_static else Dimension()

    one = Dimension(1)
    if fmt in (ColorFormat.NV12_SINGLE_PLANE, ColorFormat.I420_SINGLE_PLANE):
        return [PartialShape([n, scaled(h, 3, 2), w, one])]
    if fmt == ColorFormat.NV12_TWO_PLANES:
        return [PartialShape([n, h, w, one]), PartialShape([n, scaled(h, 1, 2), scaled(w, 1, 2), Dimension(2)])]
    if fmt == ColorFormat.I420_THREE_PLANES:
        half = PartialShape([n, scaled(h, 1, 2), scaled(w, 1, 2), one])
        return [PartialShape([n, h, w, one]), half, PartialShape(half)]
    if fmt in (ColorFormat.RGBX, ColorFormat.BGRX):
        return [PartialShape([n, h, w, Dimension(4)])]
    return [image]
