"""Pre- and post-processing as graph rewrites: the engine behind :mod:`infermux.preprocess`.

Each step (convert type, colour, layout; resize; mean; scale; crop; pad; reverse channels; custom)
emits standard ONNX ops — Cast, Transpose, Resize, Sub, Div, Slice, Pad, Gather, Concat, Reshape,
MatMul — in front of an input or behind an output, so every device runs them like the rest of
the model.  A chain is planned first, side-effect free, tracking what flows between steps
(:class:`Value`: tensor name, element type, shape, layout, colour format); ``print(ppp)`` shows that
plan, and ``build()`` splices it into the graph and re-infers every shape in strict mode.

Choices worth knowing:

- Resize is ONNX Resize with ``half_pixel`` coordinates, ``round_prefer_floor`` for nearest and
  ``cubic_coeff_a=-0.75``: the attributes OpenVINO's Interpolate gets from its PrePostProcessor.
- NV12/I420 to RGB/BGR is arithmetic (BT.601 limited range, OpenVINO's formula): the chroma
  contribution is a MatMul at half resolution, upsampled 2x by Concat+Reshape, added to the luma,
  clamped to [0, 255] and, for integer types, rounded half up.  Planar inputs become one model
  input a plane, named ``<input>/y``, ``<input>/uv`` (``/u``, ``/v``) unless ``sub_names`` says
  otherwise (OpenVINO leaves them unnamed).
- Resize, crop, pad, single-plane NV12/I420 and a reverse of a dynamic channel axis need
  opset >= 11 forms (Resize with ``sizes``, Slice and Pad with tensor inputs).  ``build()`` converts
  an older model to opset 11 with ``onnx.version_converter`` first, and says so in the log.
- A ``scale`` of 0 is refused (OpenVINO accepts it and fills the tensor with inf).
- ``RESIZE_BILINEAR_PILLOW`` and ``RESIZE_BICUBIC_PILLOW`` are refused (``UnsupportedOpError``):
  Pillow's antialiasing filters are not reproduced.
- An op a ``custom`` step adds in a non-default domain gets no shape inference: its output has
  an unknown element type and shape, so later steps that need them fail with a clear message.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from infermux.errors import (
    InfermuxError,
    ShapeMismatchError,
    TypeMismatchError,
    UnsupportedOpError,
)
from infermux.graph.layout import Layout, as_layout
from infermux.graph.model import Graph, Node
from infermux.graph.shape import Dimension, PartialShape
from infermux.graph.types import Type

__all__ = ["ColorFormat", "ResizeAlgorithm", "PaddingMode", "Value", "PreprocessError",
           "NEEDS_OPSET"]

log = logging.getLogger(__name__)

NEEDS_OPSET = 11  # Resize with sizes, Slice/Pad with tensor inputs
_INT64_MIN, _INT64_MAX = np.iinfo(np.int64).min, np.iinfo(np.int64).max
_NHWC = Layout("NHWC")


class PreprocessError(InfermuxError, ValueError):
    """A pre/post-processing step that cannot apply to the tensor it gets."""


class ColorFormat(enum.Enum):
    """Colour formats of image inputs (``openvino.preprocess.ColorFormat``)."""

    UNDEFINED = 0
    NV12_SINGLE_PLANE = 1
    NV12_TWO_PLANES = 2
    I420_SINGLE_PLANE = 3
    I420_THREE_PLANES = 4
    RGB = 5
    BGR = 6
    GRAY = 7
    RGBX = 8
    BGRX = 9

    @property
    def label(self) -> str:
        """The name OpenVINO prints: ``'NV12 (single plane)'``, ``'RGB'``."""
        special = {"NV12_SINGLE_PLANE": "NV12 (single plane)", "NV12_TWO_PLANES": "NV12 (multi-plane)",
                   "I420_SINGLE_PLANE": "I420 (single plane)", "I420_THREE_PLANES": "I420 (multi-plane)"}
        return special.get(self.name, self.name)

    @property
    def is_yuv(self) -> bool:
        """True for NV12 and I420."""
        return self.name.startswith(("NV12", "I420"))

    @property
    def planes(self) -> tuple[str, ...]:
        """Default names of the planes of a multi-plane format (one entry for other formats)."""
        return {"NV12_TWO_PLANES": ("y", "uv"), "I420_THREE_PLANES": ("y", "u", "v")}.get(self.name, ("",))


class ResizeAlgorithm(enum.Enum):
    """Interpolation of ``resize`` (``openvino.preprocess.ResizeAlgorithm``)."""

    RESIZE_LINEAR = 0
    RESIZE_CUBIC = 1
    RESIZE_NEAREST = 2
    RESIZE_BILINEAR_PILLOW = 3
    RESIZE_BICUBIC_PILLOW = 4


class PaddingMode(enum.Enum):
    """How ``pad`` fills (``openvino.preprocess.PaddingMode``)."""

    CONSTANT = 0
    REFLECT = 1
    SYMMETRIC = 2


# -- the graph being built ------------------------------------------------------------------------

class _Builder:
    """Collects the nodes and weights of one chain, with names unique in the model's graph."""

    def __init__(self, graph: Graph, prefix: str, opset: int):
        self.prefix, self.opset = prefix, max(opset, NEEDS_OPSET)
        self.model_opset = opset
        self.nodes: list[Node] = []
        self.initializers: dict[str, np.ndarray] = {}
        self.needs_opset = 0
        self._taken = (set(graph.initializers) | {v.name for v in graph.inputs + graph.outputs}
                       | {o for n in graph.nodes for o in n.outputs} | {n.name for n in graph.nodes})

    def name(self, hint: str) -> str:
        base = f"{self.prefix}/{hint}"
        name, k = base, 1
        while name in self._taken:
            k += 1
            name = f"{base}_{k}"
        self._taken.add(name)
        return name

    def const(self, value: Any, dtype: Any = None, hint: str = "const") -> str:
        name = self.name(hint)
        self.initializers[name] = np.asarray(value, dtype=dtype)
        return name

    def op(self, op_type: str, inputs: Sequence[str], hint: str | None = None, *, needs_opset: int = 0,
           **attrs) -> str:
        self.needs_opset = max(self.needs_opset, needs_opset)
        out = self.name(hint or op_type.lower())
        self.nodes.append(Node(self.name(f"{op_type}"), op_type, list(inputs), [out], dict(attrs)))
        return out


class Value:
    """A tensor in the graph a PrePostProcessor builds: what a ``custom`` step gets and returns.

    It has a ``name`` (the ONNX tensor), ``element_type`` and ``partial_shape``.  Build on it with
    ONNX ops: ``value.apply("Abs")``, ``value.apply("Clip", 0.0, 1.0)`` (extra inputs may be Values,
    NumPy arrays or numbers, which become constants), or with ``+ - * /``.

    >>> ppp.input().preprocess().custom(lambda v: v.apply("Abs") * 2.0)    # doctest: +SKIP
    """

    __slots__ = ("_builder", "name", "element_type", "partial_shape", "layout", "color")

    def __init__(self, builder: _Builder, name: str, element_type: Type, shape: PartialShape,
                 layout: Layout | None = None, color: ColorFormat | None = None):
        self._builder, self.name, self.element_type = builder, name, element_type
        self.partial_shape, self.layout, self.color = shape, layout, color

    def get_element_type(self) -> Type:
        """The element type."""
        return self.element_type

    def get_partial_shape(self) -> PartialShape:
        """The shape, possibly dynamic."""
        return self.partial_shape

    def get_any_name(self) -> str:
        """The tensor's name."""
        return self.name

    def _derive(self, name: str, element_type: Type | None = None, shape: PartialShape | None = None,
                layout: Any = "same", color: Any = "same") -> Value:
        return Value(self._builder, name, element_type or self.element_type,
                     shape if shape is not None else self.partial_shape,
                     self.layout if layout == "same" else layout, self.color if color == "same" else color)

    def apply(self, op_type: str, *inputs: Any, domain: str = "", **attrs) -> Value:
        """Append ``op_type`` reading this value (then ``inputs``); its output as a new Value."""
        names = [self.name] + [self._input_name(i) for i in inputs]
        out = self._builder.op(op_type, names, **attrs)
        node = self._builder.nodes[-1]
        node.domain = domain
        etype, shape = _infer_custom(self._builder, node, self, inputs)
        keep = shape is not None and len(shape) == len(self.partial_shape)
        return self._derive(out, etype, shape if shape is not None else PartialShape([]),
                            layout=self.layout if keep else None)

    def _input_name(self, value: Any) -> str:
        if isinstance(value, Value):
            return value.name
        if value is None:
            return ""
        arr = np.asarray(value)
        if arr.ndim == 0 and isinstance(value, (int, float)) and self.element_type.is_static():
            arr = arr.astype(self.element_type.to_dtype())
        return self._builder.const(arr)

    def __add__(self, other) -> Value:
        return self.apply("Add", other)

    def __sub__(self, other) -> Value:
        return self.apply("Sub", other)

    def __mul__(self, other) -> Value:
        return self.apply("Mul", other)

    def __truediv__(self, other) -> Value:
        return self.apply("Div", other)

    def describe(self) -> str:
        """``([1,?,?,3], [N,H,W,C], u8, BGR)`` as OpenVINO prints a step's input and output."""
        parts = [str(self.partial_shape), str(self.layout) if self.layout else "<no layout>",
                 self.element_type.name]
        if self.color is not None:
            parts.append(self.color.label)
        return "(" + ", ".join(parts) + ")"

    def __repr__(self) -> str:
        return f"<Value '{self.name}' {self.describe()}>"


def _infer_custom(builder: _Builder, node: Node, first: Value, extra) -> tuple[Type, PartialShape | None]:
    """Type and shape of a node added by a custom step, from ONNX's inference of that node alone."""
    import onnx

    from infermux.graph.model import Model, ValueInfo
    from infermux.graph.onnx_writer import to_onnx

    inputs = [ValueInfo(first.name, first.element_type, first.partial_shape)]
    inputs += [ValueInfo(v.name, v.element_type, v.partial_shape) for v in extra if isinstance(v, Value)]
    consts = {n: builder.initializers[n] for n in node.inputs if n in builder.initializers}
    out = ValueInfo(node.outputs[0], Type.dynamic, None)
    graph = Graph("custom", [node], inputs, [out], consts)
    # the opset the model will have: its own, unless a step already needs a newer one
    opsets = {"": builder.opset if builder.needs_opset else builder.model_opset}
    if node.domain:
        opsets[node.domain] = 1
    try:
        proto = to_onnx(Model(graph, opsets))
        inferred = onnx.shape_inference.infer_shapes(proto, strict_mode=not node.domain)
    except Exception as exc:  # noqa: BLE001 - reported with the node
        raise PreprocessError(f"custom step: {node.op_type} cannot apply to {first.describe()}: "
                              f"{str(exc).strip().splitlines()[-1]}") from None
    from infermux.graph.onnx_reader import value_info_from_proto

    info = value_info_from_proto(inferred.graph.output[0])
    return info.element_type, info.shape


# -- steps -------------------------------------------------------------------------------------------

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


# -- a whole chain -------------------------------------------------------------------------------------

@dataclasses.dataclass
class Chain:
    """A planned chain: the values between steps (for printing) and what to splice into the graph."""

    start: list[Value]
    explicit: list[tuple[str, Value, Value]]
    implicit: list[tuple[str, Value, Value]]
    builder: _Builder
    result: Value
    error: Exception | None = None

    @property
    def changed(self) -> bool:
        return bool(self.builder.nodes)


def run_steps(chain: Chain, steps: Sequence[Step], implicit: Sequence[Step], ctx: Context) -> Chain:
    """Apply ``steps`` then ``implicit`` to ``chain.result``; the first error stops and is kept."""
    for bucket, todo in ((chain.explicit, steps), (chain.implicit, implicit)):
        for step in todo:
            before = chain.result
            try:
                after = step.apply(before, ctx)
            except Exception as exc:  # noqa: BLE001 - kept for print(ppp) and raised by build()
                chain.error = exc
                bucket.append((step.label(), before, None))
                return chain
            bucket.append((step.label(), before, after))
            chain.result = after
    return chain


def new_value(builder: _Builder, name: str, element_type: Type, shape: PartialShape,
              layout: Layout | None, color: ColorFormat | None) -> Value:
    """A chain's starting value."""
    return Value(builder, name, element_type, shape, layout, color)


def check_shape_fits(value: Value, model_shape: PartialShape, port: str) -> None:
    """The chain must end in a shape the model accepts (OpenVINO's message)."""
    if not model_shape.compatible(value.partial_shape):
        raise ShapeMismatchError(
            f"Resulting shape '{value.partial_shape}' after preprocessing is not aligned with original "
            f"parameter's shape: {model_shape}, input parameter: {port}")


def check_type(value: Value, want: Type, port: str) -> None:
    """The chain must end in the model's element type."""
    if value.element_type != want:
        raise TypeMismatchError(f"Element type after preprocessing {value.element_type.name} does not "
                                f"match the model's {want.name}, input parameter: {port}")


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


def as_element_type(value: Any) -> Type:
    """A Type from a Type, a NumPy dtype or a name like ``'f32'``."""
    if isinstance(value, Type):
        return value
    if isinstance(value, str) and value in Type._BY_NAME:
        return Type._BY_NAME[value]
    return Type(value)


def to_layout(value: Any) -> Layout:
    """A Layout from a Layout or string."""
    return as_layout(value)


# -- what the user asked for, per port -------------------------------------------------------------

@dataclasses.dataclass
class InputSpec:
    """Everything said about one input: the user's tensor, the model's side, the steps."""

    element_type: Type | None = None
    layout: Layout | None = None
    shape: PartialShape | None = None
    spatial: Any = None  # None, "dynamic" or (height, width)
    color: ColorFormat | None = None
    sub_names: tuple[str, ...] = ()
    memory_type: str | None = None
    model_layout: Layout | None = None
    steps: list[Step] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class OutputSpec:
    """Everything said about one output."""

    element_type: Type | None = None
    layout: Layout | None = None
    model_layout: Layout | None = None
    steps: list[Step] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class PortPlan:
    """A planned chain for one port and the graph ports it becomes."""

    index: int
    port: str
    spec: Any
    ctx: Context
    chain: Chain
    ports: list  # ValueInfo: the new graph inputs (planes) or the new graph output


def plan_input(graph: Graph, opset: int, index: int, spec: InputSpec) -> PortPlan:
    """Plan the pre-processing of input ``index`` without touching the graph."""
    from infermux.graph.model import ValueInfo

    info = graph.inputs[index]
    if info.shape is None:
        raise PreprocessError(f"input '{info.name}' has an unknown rank; reshape the model first")
    color = spec.color if spec.color not in (None, ColorFormat.UNDEFINED) else None
    model_layout = spec.model_layout or info.layout
    tensor_layout = spec.layout or (_NHWC if color is not None else model_layout)
    model_layout = model_layout or tensor_layout
    etype = spec.element_type or info.element_type
    shapes = _user_shapes(info.shape, spec, color, tensor_layout, model_layout)
    names = [info.name]
    if color is not None and len(color.planes) > 1:
        subs = spec.sub_names or color.planes
        if len(subs) != len(color.planes):
            raise PreprocessError(f"{color.name} has {len(color.planes)} planes; got sub_names {list(subs)}")
        names = [f"{info.name}/{s}" for s in subs]
    builder = _Builder(graph, f"{info.name}/preprocess", opset)
    start = [new_value(builder, n, etype, s, tensor_layout, color) for n, s in zip(names, shapes)]
    ctx = Context(info.name, info.shape, info.element_type, model_layout, planes=start[1:])
    chain = run_steps(Chain(start, [], [], builder, start[0]), spec.steps, [], ctx)
    if chain.error is None:
        chain = run_steps(chain, [], _implicit(chain.result, ctx.model_type, model_layout), ctx)
    if chain.error is None:
        try:
            if chain.result.color is not None and chain.result.color.is_yuv:
                raise PreprocessError(f"input '{info.name}' is {chain.result.color.label}: add "
                                      f"preprocess().convert_color(ColorFormat.RGB or BGR)")
            check_type(chain.result, info.element_type, info.name)
            check_shape_fits(chain.result, info.shape, info.name)
        except InfermuxError as exc:
            chain.error = exc
    ports = [ValueInfo(v.name, v.element_type, v.partial_shape, layout=v.layout) for v in start]
    return PortPlan(index, info.name, spec, ctx, chain, ports)


def _implicit(value: Value, model_type: Type, model_layout: Layout | None) -> list[Step]:
    steps: list[Step] = []
    if value.element_type != model_type:
        steps.append(ConvertElementType(model_type))
    if value.layout is not None and model_layout is not None and value.layout != model_layout:
        steps.append(ConvertLayout(model_layout))
    return steps


def _user_shapes(model_shape: PartialShape, spec: InputSpec, color: ColorFormat | None,
                 tensor_layout: Layout | None, model_layout: Layout | None) -> list[PartialShape]:
    """The shape of each plane the user will feed."""
    if spec.shape is not None:
        if color is not None and len(color.planes) > 1:
            return [spec.shape] + plane_shapes(color, spec.shape)[1:]
        return [spec.shape]
    shape = PartialShape(model_shape)
    rank = len(shape)
    by_indices = [s.dims for s in spec.steps if isinstance(s, ConvertLayout) and s.dims is not None]
    if by_indices:  # as OpenVINO: the model's shape with the explicit transposes undone
        for dims in reversed(by_indices):
            if len(dims) == rank:
                undone = list(shape)
                for i, p in enumerate(dims):
                    undone[p] = shape[i]
                shape = PartialShape(undone)
    elif tensor_layout is not None and model_layout is not None and tensor_layout != model_layout:
        perm = permutation(model_layout, tensor_layout, rank)
        shape = PartialShape([shape[p] for p in perm])
    if spec.spatial is not None:
        if tensor_layout is None or not (tensor_layout.has_name("H") and tensor_layout.has_name("W")):
            raise PreprocessError("set_spatial_dynamic_shape/set_spatial_static_shape need a tensor "
                                  "layout with H and W: use tensor().set_layout(...)")
        h, w = (None, None) if spec.spatial == "dynamic" else spec.spatial
        shape[tensor_layout.index_in("H", rank)] = Dimension(h) if h is not None else Dimension()
        shape[tensor_layout.index_in("W", rank)] = Dimension(w) if w is not None else Dimension()
    if color is not None and color.is_yuv or color in (ColorFormat.RGBX, ColorFormat.BGRX):
        if rank != 4:
            raise PreprocessError(f"{color.label} needs a 4-D NHWC tensor, the model's is {model_shape}")
        return plane_shapes(color, shape)
    return [shape]


def plan_output(graph: Graph, opset: int, index: int, spec: OutputSpec) -> PortPlan:
    """Plan the post-processing of output ``index`` without touching the graph."""
    from infermux.graph.model import ValueInfo

    info = graph.outputs[index]
    model_layout = spec.model_layout or info.layout
    tensor_layout = spec.layout or model_layout
    builder = _Builder(graph, f"{info.name}/postprocess", opset)
    shape = info.shape if info.shape is not None else PartialShape([])
    start = new_value(builder, builder.name("model_output"), info.element_type, shape, model_layout, None)
    ctx = Context(info.name, shape, info.element_type, model_layout)
    chain = run_steps(Chain([start], [], [], builder, start), spec.steps, [], ctx)
    if chain.error is None:
        implicit: list[Step] = []
        if spec.element_type is not None and spec.element_type != chain.result.element_type:
            implicit.append(ConvertElementType(spec.element_type))
        if tensor_layout is not None and chain.result.layout is not None and chain.result.layout != tensor_layout:
            implicit.append(ConvertLayout(tensor_layout))
        chain = run_steps(chain, [], implicit, ctx)
    if chain.changed and info.shape is None:
        chain.error = chain.error or PreprocessError(
            f"output '{info.name}' has an unknown rank; reshape the model to known shapes first")
    r = chain.result
    port = ValueInfo(info.name, r.element_type, r.partial_shape if info.shape is not None else None,
                     layout=tensor_layout if r.layout is None else r.layout)
    return PortPlan(index, info.name, spec, ctx, chain, [port])


# -- printing --------------------------------------------------------------------------------------------

def _layout_text(layout: Layout | None) -> str:
    return str(layout) if layout is not None else "<no layout>"


def _step_lines(items) -> list[str]:
    lines = []
    for label, before, after in items:
        lines.append(f"      {label}: {before.describe()} -> " + (after.describe() if after is not None else "?"))
    return lines


def describe_input(plan: PortPlan) -> str:
    """One input's part of ``print(ppp)``, in OpenVINO's format."""
    spec, chain, ctx = plan.spec, plan.chain, plan.ctx
    head = f'Input "{plan.port}"'
    if chain.start[0].color is not None:
        head += f" (color {chain.start[0].color.label})"
    if spec.memory_type:
        head += f" memory type={spec.memory_type}"
    lines = [head + ":"]
    if len(chain.start) > 1:
        lines.append(f"    {len(chain.start)} user's tensors expected for each plane:")
        lines += [f"       {i}: {v.partial_shape}, {_layout_text(v.layout)}, {v.element_type.name}"
                  for i, v in enumerate(chain.start)]
    else:
        v = chain.start[0]
        lines.append(f"    User's input tensor: {v.partial_shape}, {_layout_text(v.layout)}, {v.element_type.name}")
    lines.append(f"    Model's expected tensor: {ctx.model_shape}, {_layout_text(ctx.model_layout)}, "
                 f"{ctx.model_type.name}")
    if chain.explicit:
        lines += [f"    Pre-processing steps ({len(chain.explicit)}):"] + _step_lines(chain.explicit)
    if chain.implicit:
        lines += [f"    Implicit pre-processing steps ({len(chain.implicit)}):"] + _step_lines(chain.implicit)
    if chain.error is not None:
        lines.append(f"Error occurred: {chain.error}")
    return "\n".join(lines)


def describe_output(plan: PortPlan) -> str:
    """One output's part of ``print(ppp)``, in OpenVINO's format."""
    chain, ctx = plan.chain, plan.ctx
    lines = [f'Output "{plan.port}":',
             f"    Model's data tensor: {ctx.model_shape}, {_layout_text(ctx.model_layout)}, {ctx.model_type.name}"]
    if chain.explicit:
        lines += [f"    Post-processing steps ({len(chain.explicit)}):"] + _step_lines(chain.explicit)
    if chain.implicit:
        lines += [f"    Post-processing implicit steps ({len(chain.implicit)}):"] + _step_lines(chain.implicit)
    if chain.error is not None:
        lines.append(f"Error occurred: {chain.error}")
    else:
        r = chain.result
        lines.append(f"    User's output tensor: {r.partial_shape}, {_layout_text(plan.ports[0].layout)}, "
                     f"{r.element_type.name}")
    return "\n".join(lines)


# -- splicing into the graph -------------------------------------------------------------------------------

def splice(graph: Graph, inputs: Sequence[PortPlan], outputs: Sequence[PortPlan]) -> None:
    """Insert planned chains into ``graph`` (in place): inputs first, outputs last."""
    prefix: list[Node] = []
    for plan in sorted(inputs, key=lambda p: p.index, reverse=True):
        chain = plan.chain
        if chain.changed:
            if any(o.name == plan.port for o in graph.outputs):
                raise PreprocessError(f"input '{plan.port}' is also a model output; pre-processing it "
                                      f"is not supported")
            _rename_reads(graph, plan.port, chain.result.name)
            prefix[:0] = chain.builder.nodes
            graph.initializers.update(chain.builder.initializers)
        graph.inputs[plan.index:plan.index + 1] = plan.ports
    graph.nodes[:0] = prefix
    for plan in outputs:
        chain = plan.chain
        if chain.changed:
            start = chain.start[0].name
            _rename_tensor(graph, plan.port, start)
            last = chain.builder.nodes
            for node in last:
                node.outputs = [plan.port if o == chain.result.name else o for o in node.outputs]
            graph.nodes.extend(last)
            graph.initializers.update(chain.builder.initializers)
        graph.outputs[plan.index] = plan.ports[0]


def _rename_reads(graph: Graph, old: str, new: str) -> None:
    """Every read of tensor ``old`` (in subgraphs too, unless they define their own) reads ``new``."""
    for node in graph.nodes:
        node.inputs = [new if i == old else i for i in node.inputs]
        for sub in node.subgraphs():
            defined = {v.name for v in sub.inputs} | set(sub.initializers) | {o for n in sub.nodes for o in n.outputs}
            if old not in defined:
                _rename_reads(sub, old, new)
                for out in sub.outputs:
                    if out.name == old:
                        raise PreprocessError(f"a subgraph returns '{old}' unchanged; cannot rename it")


def _rename_tensor(graph: Graph, old: str, new: str) -> None:
    """The node writing ``old`` writes ``new``, and every reader follows."""
    producers = [n for n in graph.nodes if old in n.outputs]
    if not producers:
        raise PreprocessError(f"output '{old}' is a model input or a weight, not computed by a node; "
                              f"post-processing it is not supported")
    for node in producers:
        node.outputs = [new if o == old else o for o in node.outputs]
    _rename_reads(graph, old, new)


def upgrade_opset(model, opset: int) -> None:
    """Convert ``model`` (in place) to ``opset`` with ``onnx.version_converter``, keeping its weights,
    port layouts and node ``rt_info``."""
    from onnx import version_converter

    from infermux.graph.onnx_reader import graph_from_proto
    from infermux.graph.onnx_writer import to_onnx
    from infermux.graph.shape_infer import infer_model_shapes

    old = model.graph
    proto = to_onnx(model, weights="shapes-only")
    try:
        converted = version_converter.convert_version(proto, opset)
    except Exception as exc:  # noqa: BLE001 - reported with what to do
        raise UnsupportedOpError(
            f"these pre-processing steps need opset >= {opset} ops (Resize with sizes, Slice, Pad); "
            f"converting the opset-{model.opset()} model failed: {exc}") from None
    graph = graph_from_proto(converted.graph)
    inputs = {v.name for v in old.inputs}
    graph.inputs = [v for v in graph.inputs if v.name in inputs]
    for name, arr in old.initializers.items():
        graph.initializers.setdefault(name, arr)
    for mine, theirs in zip(graph.inputs + graph.outputs, old.inputs + old.outputs):
        mine.layout = theirs.layout
    rt = {n.name: n.rt_info for n in old.nodes}
    for node in graph.nodes:
        node.rt_info.update(rt.get(node.name, {}))
    log.info("PrePostProcessor: model '%s' converted from opset %d to %d for its pre-processing ops",
             model.friendly_name, model.opset(), opset)
    model.graph = graph
    model.opsets.pop("ai.onnx", None)
    model.opsets[""] = opset
    infer_model_shapes(model)
