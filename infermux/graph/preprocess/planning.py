"""Planning, side-effect free: what the user asked for per port (:class:`InputSpec`,
:class:`OutputSpec`), the chain of values the steps produce (:class:`Chain`), the checks against
the model's side, and the text ``print(ppp)`` shows."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from infermux.errors import InfermuxError, ShapeMismatchError, TypeMismatchError
from infermux.graph.layout import Layout, as_layout
from infermux.graph.model import Graph
from infermux.graph.preprocess.color import plane_shapes
from infermux.graph.preprocess.options import _NHWC, ColorFormat, PreprocessError
from infermux.graph.preprocess.steps import (
    Context,
    ConvertElementType,
    ConvertLayout,
    Step,
    permutation,
)
from infermux.graph.preprocess.value import Value, _Builder
from infermux.graph.shape import Dimension, PartialShape
from infermux.graph.types import Type

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
