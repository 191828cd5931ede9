"""The pre/post-processing steps other than colour conversion: each one a frozen dataclass with a
``label`` for ``print(ppp)`` and an ``apply`` that emits ONNX ops behind a :class:`Value`."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from infermux.errors import UnsupportedOpError
from infermux.graph.layout import Layout
from infermux.graph.preprocess.options import (
    _INT64_MIN,
    NEEDS_OPSET,
    ColorFormat,
    PaddingMode,
    PreprocessError,
    ResizeAlgorithm,
)
from infermux.graph.preprocess.value import Value
from infermux.graph.shape import Dimension, PartialShape
from infermux.graph.types import Type


@dataclasses.dataclass
class Context:
    """What a step may read besides its input: the model's side of the port, the other planes."""

    port: str
    model_shape: PartialShape
    model_type: Type
    model_layout: Layout | None
    planes: list[Value] = dataclasses.field(default_factory=list)


def _require_float(value: Value, what: str) -> None:
    if not value.element_type.is_real():
        raise PreprocessError(
            f"{what} preprocessing can be applied to 'float' inputs. Consider using of "
            f"'convert_element_type' before scaling. Current type is: {value.element_type.name}")


def _axis(value: Value, name: str, error: str) -> int:
    layout = value.layout
    if layout is None or not layout.has_name(name):
        raise PreprocessError(error.format(layout=layout or Layout()))
    return layout.index_in(name, len(value.partial_shape))


def _num(x: float) -> str:
    return f"{x:g}"


class Step:
    """One pre/post-processing step: a label for ``print(ppp)`` and an ``apply`` that emits ops."""

    def label(self) -> str:
        raise NotImplementedError

    def apply(self, value: Value, ctx: Context) -> Value:
        raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class ConvertElementType(Step):
    element_type: Type | None  # None: the model's

    def label(self) -> str:
        t = self.element_type
        return f"convert type ({t.name if t is not None else 'dynamic'})"  # OpenVINO's text

    def apply(self, value: Value, ctx: Context) -> Value:
        target = self.element_type if self.element_type is not None and self.element_type.is_static() \
            else ctx.model_type
        if target == value.element_type:
            return value
        out = value._builder.op("Cast", [value.name], "cast", to=target.onnx_code)
        return value._derive(out, target)


@dataclasses.dataclass(frozen=True)
class ConvertLayout(Step):
    layout: Layout | None = None
    dims: tuple[int, ...] | None = None

    def label(self) -> str:
        return f"convert layout {self.layout}" if self.dims is None else \
            f"convert layout ({','.join(str(d) for d in self.dims)})"

    def apply(self, value: Value, ctx: Context) -> Value:
        rank = len(value.partial_shape)
        if self.dims is not None:
            perm = list(self.dims)
            if sorted(perm) != list(range(rank)):
                raise PreprocessError(f"convert_layout({perm}) is not a permutation of the {rank} "
                                      f"dimensions of {value.partial_shape}")
            new_layout = None
            if value.layout is not None:
                names = value.layout.names_for_rank(rank)
                new_layout = Layout("[" + ",".join(names[p] for p in perm) + "]")
        else:
            if value.layout is None:
                raise PreprocessError(f"Can't convert layout of input '{ctx.port}' to {self.layout}: the "
                                      f"tensor's layout is not set; use tensor().set_layout(...)")
            perm = permutation(value.layout, self.layout, rank)
            new_layout = self.layout
        if perm == list(range(rank)):
            return value._derive(value.name, layout=new_layout)
        shape = PartialShape([value.partial_shape[p] for p in perm])
        out = value._builder.op("Transpose", [value.name], "transpose", perm=perm)
        return value._derive(out, shape=shape, layout=new_layout)


def permutation(src: Layout, dst: Layout, rank: int) -> list[int]:
    """``perm`` for Transpose so that a ``src``-laid-out tensor comes out as ``dst``."""
    a, b = src.names_for_rank(rank), dst.names_for_rank(rank)
    named_a, named_b = [n for n in a if n != "?"], [n for n in b if n != "?"]
    if len(a) != rank or len(b) != rank or sorted(named_a) != sorted(named_b):
        raise PreprocessError(f"Layout conversion from {src} to {dst} is not possible for a tensor "
                              f"of rank {rank}")
    unnamed = iter(i for i, n in enumerate(a) if n == "?")
    return [a.index(n) if n != "?" else next(unnamed) for n in b]


@dataclasses.dataclass(frozen=True)
class Resize(Step):
    algorithm: ResizeAlgorithm
    height: int | None = None
    width: int | None = None

    def label(self) -> str:
        if self.height is None:
            return "resize to model width/height"
        return f"resize to ({self.height}, {self.width})"

    def apply(self, value: Value, ctx: Context) -> Value:
        no_hw = ("Can't add resize for layout without W/H specified. Use 'set_layout' API to define "
                 "layout of image data, like `NCHW`")
        if value.layout is None or not (value.layout.has_name("H") and value.layout.has_name("W")):
            raise PreprocessError(no_hw)
        rank = len(value.partial_shape)
        hi, wi = value.layout.index_in("H", rank), value.layout.index_in("W", rank)
        h, w = self._target(ctx, no_hw)
        mode = {ResizeAlgorithm.RESIZE_LINEAR: "linear", ResizeAlgorithm.RESIZE_CUBIC: "cubic",
                ResizeAlgorithm.RESIZE_NEAREST: "nearest"}.get(self.algorithm)
        if mode is None:
            raise UnsupportedOpError(f"{self.algorithm.name} is not supported: use RESIZE_LINEAR, "
                                     f"RESIZE_CUBIC or RESIZE_NEAREST")
        dims = list(value.partial_shape)
        dims[hi], dims[wi] = Dimension(h), Dimension(w)
        b = value._builder
        sizes = _sizes(value, hi, wi, h, w)
        if b.opset >= 13:
            roi = scales = ""
        else:
            roi = b.const(np.zeros(0, np.float32), hint="roi")
            scales = b.const(np.zeros(0, np.float32), hint="scales")
        out = b.op("Resize", [value.name, roi, scales, sizes], "resize", needs_opset=NEEDS_OPSET,
                   mode=mode, coordinate_transformation_mode="half_pixel",
                   nearest_mode="round_prefer_floor", cubic_coeff_a=-0.75)
        return value._derive(out, shape=PartialShape(dims))

    def _target(self, ctx: Context, no_hw: str) -> tuple[int, int]:
        if self.height is not None:
            return int(self.height), int(self.width)
        layout = ctx.model_layout
        if layout is None or not (layout.has_name("H") and layout.has_name("W")):
            raise PreprocessError(no_hw)
        rank = len(ctx.model_shape)
        h, w = ctx.model_shape[layout.index_in("H", rank)], ctx.model_shape[layout.index_in("W", rank)]
        if h.is_dynamic or w.is_dynamic:
            raise PreprocessError(f"Can't resize input '{ctx.port}' to the model's height/width: they "
                                  f"are dynamic in {ctx.model_shape}; use resize(algorithm, height, width)")
        return h.get_length(), w.get_length()


def _sizes(value: Value, hi: int, wi: int, h: int, w: int) -> str:
    """The ``sizes`` input of Resize: a constant, or the input's shape with H and W replaced."""
    b = value._builder
    dims = list(value.partial_shape)
    if all(d.is_static for i, d in enumerate(dims) if i not in (hi, wi)):
        sizes = [d.get_length() if i not in (hi, wi) else (h if i == hi else w) for i, d in enumerate(dims)]
        return b.const(np.array(sizes, np.int64), hint="sizes")
    mask = np.ones(len(dims), np.int64)
    mask[[hi, wi]] = 0
    override = np.zeros(len(dims), np.int64)
    override[hi], override[wi] = h, w
    shape = b.op("Shape", [value.name], "shape")
    kept = b.op("Mul", [shape, b.const(mask, hint="keep")], "kept")
    return b.op("Add", [kept, b.const(override, hint="hw")], "sizes")


@dataclasses.dataclass(frozen=True)
class _PerChannel(Step):
    values: tuple[float, ...]
    op_type = "Sub"
    what = "Mean"

    def __post_init__(self):
        if not self.values:
            raise PreprocessError(f"{self.what.lower()}: give at least one value")
        if self.op_type == "Div" and any(v == 0 for v in self.values):
            raise PreprocessError(f"scale({list(self.values)}): a scale of 0 would divide by zero")

    def label(self) -> str:
        return f"{self.what.lower()} ({','.join(_num(v) for v in self.values)})"

    def apply(self, value: Value, ctx: Context) -> Value:
        _require_float(value, self.what)
        rank = len(value.partial_shape)
        shape = [1] * max(rank, 1)
        if len(self.values) > 1:
            c = _axis(value, "C", "Layout {layout} doesn't have `channels` dimension")
            channels = value.partial_shape[c]
            if channels.is_static and channels.get_length() != len(self.values):
                raise PreprocessError(
                    f"Number of channels and mean/values size mismatch: Channels = {channels}, "
                    f"mean/scale = {len(self.values)}, shape = {value.partial_shape}, layout = {value.layout}")
            shape[c] = len(self.values)
        arr = np.array(self.values, dtype=value.element_type.to_dtype()).reshape(shape)
        b = value._builder
        out = b.op(self.op_type, [value.name, b.const(arr, hint=self.what.lower())], self.what.lower())
        return value._derive(out)


class Mean(_PerChannel):
    """Subtract one value, or one a channel."""


class Scale(_PerChannel):
    """Divide by one value, or one a channel."""

    op_type = "Div"
    what = "Scale"


@dataclasses.dataclass(frozen=True)
class Crop(Step):
    begin: tuple[int, ...]
    end: tuple[int, ...]

    def label(self) -> str:
        return f"Crop ([ {', '.join(map(str, self.begin))} ],[ {', '.join(map(str, self.end))} ])"

    def apply(self, value: Value, ctx: Context) -> Value:
        rank = len(value.partial_shape)
        if len(self.begin) != rank or len(self.end) != rank:
            raise PreprocessError(f"crop: begin {list(self.begin)} and end {list(self.end)} must have "
                                  f"one value a dimension of {value.partial_shape}")
        dims = [_cropped(d, b, e) for d, b, e in zip(value.partial_shape, self.begin, self.end)]
        bld = value._builder
        out = bld.op("Slice", [value.name, bld.const(np.array(self.begin, np.int64), hint="begin"),
                               bld.const(np.array(self.end, np.int64), hint="end"),
                               bld.const(np.arange(rank, dtype=np.int64), hint="axes")],
                     "crop", needs_opset=NEEDS_OPSET)
        return value._derive(out, shape=PartialShape(dims))


def _cropped(d: Dimension, b: int, e: int) -> Dimension:
    if d.is_static:
        n = d.get_length()
        lo = max(0, min(n, b + n if b < 0 else b))
        hi = max(0, min(n, e + n if e < 0 else e))
        return Dimension(max(0, hi - lo))
    if b >= 0 and e >= 0:
        return Dimension(max(0, e - b))
    return Dimension()


@dataclasses.dataclass(frozen=True)
class Pad(Step):
    begin: tuple[int, ...]
    end: tuple[int, ...]
    value: float
    mode: PaddingMode

    def label(self) -> str:
        how = {PaddingMode.CONSTANT: f"with ({_num(self.value)})",
               PaddingMode.REFLECT: "reflected from tensor",
               PaddingMode.SYMMETRIC: "symmetrically added from tensor"}[self.mode]
        return f"pad(begin ({','.join(map(str, self.begin))}), end ({','.join(map(str, self.end))}), {how})"

    def apply(self, value: Value, ctx: Context) -> Value:
        rank = len(value.partial_shape)
        if len(self.begin) != rank or len(self.end) != rank:
            raise PreprocessError(f"pad: pads_begin {list(self.begin)} and pads_end {list(self.end)} "
                                  f"must have one value a dimension of {value.partial_shape}")
        dims = [Dimension(d.get_length() + b + e) if d.is_static else Dimension()
                for d, b, e in zip(value.partial_shape, self.begin, self.end)]
        if self.mode == PaddingMode.SYMMETRIC:
            out = _symmetric_pad(value, self.begin, self.end)
        else:
            bld = value._builder
            pads = bld.const(np.array(list(self.begin) + list(self.end), np.int64), hint="pads")
            fill = bld.const(np.array(self.value, dtype=value.element_type.to_dtype()), hint="fill")
            out = bld.op("Pad", [value.name, pads, fill], "pad", needs_opset=NEEDS_OPSET,
                         mode="constant" if self.mode == PaddingMode.CONSTANT else "reflect")
        return value._derive(out, shape=PartialShape(dims))


def _symmetric_pad(value: Value, begin, end) -> str:
    """Mirror padding that repeats the edge (NumPy's ``symmetric``): reversed Slices + Concat."""
    b = value._builder
    current = value.name

    def rev_slice(src, start, stop, axis):
        return b.op("Slice", [src, b.const(np.array([start], np.int64)), b.const(np.array([stop], np.int64)),
                              b.const(np.array([axis], np.int64)), b.const(np.array([-1], np.int64))],
                    "mirror", needs_opset=NEEDS_OPSET)

    for axis, (lo, hi) in enumerate(zip(begin, end)):
        parts = []
        if lo > 0:
            parts.append(rev_slice(current, lo - 1, _INT64_MIN, axis))
        parts.append(current)
        if hi > 0:
            parts.append(rev_slice(current, -1, -hi - 1, axis))
        if len(parts) > 1:
            current = b.op("Concat", parts, "padded", axis=axis)
    return current


@dataclasses.dataclass(frozen=True)
class ReverseChannels(Step):
    def label(self) -> str:
        return "reverse channels"

    def apply(self, value: Value, ctx: Context) -> Value:
        c = _axis(value, "C", "Layout {layout} doesn't have `channels` dimension")
        flipped = {ColorFormat.RGB: ColorFormat.BGR, ColorFormat.BGR: ColorFormat.RGB}
        return value._derive(_reverse(value, c), color=flipped.get(value.color, value.color))


def _reverse(value: Value, axis: int) -> str:
    b = value._builder
    dim = value.partial_shape[axis]
    if dim.is_static:
        idx = b.const(np.arange(dim.get_length() - 1, -1, -1, dtype=np.int64), hint="reversed")
        return b.op("Gather", [value.name, idx], "reversed", axis=axis)
    return b.op("Slice", [value.name, b.const(np.array([-1], np.int64)), b.const(np.array([_INT64_MIN])),
                          b.const(np.array([axis], np.int64)), b.const(np.array([-1], np.int64))],
                "reversed", needs_opset=NEEDS_OPSET)


@dataclasses.dataclass(frozen=True)
class Custom(Step):
    fn: Callable[[Value], Value]

    def label(self) -> str:
        return "custom"

    def apply(self, value: Value, ctx: Context) -> Value:
        out = self.fn(value)
        if not isinstance(out, Value) or out._builder is not value._builder:
            raise TypeError(f"a custom step must return a Value built from the one it was given "
                            f"(e.g. value.apply('Abs')), got {type(out).__name__}")
        return out

