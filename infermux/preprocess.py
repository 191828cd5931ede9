"""Pre- and post-processing built into the model, as ``openvino.preprocess``.

Describe the tensor users will feed (element type, layout, shape, colour format), the steps to
get from it to what the model expects, and what the model's outputs should become; ``build()``
embeds all of it as ONNX ops in the model, so every device runs it.  Steps apply in the order
called; a final element-type conversion and layout transpose are added when the user's tensor and
the model still differ (``print(ppp)`` lists them as implicit steps).

>>> import infermux as im
>>> from infermux.preprocess import PrePostProcessor, ColorFormat, ResizeAlgorithm
>>> ppp = PrePostProcessor(model)                                        # doctest: +SKIP
>>> ppp.input().tensor().set_element_type(im.Type.u8).set_layout(im.Layout("NHWC")) \\
...     .set_spatial_dynamic_shape().set_color_format(ColorFormat.BGR)   # doctest: +SKIP
>>> ppp.input().model().set_layout(im.Layout("NCHW"))                   # doctest: +SKIP
>>> ppp.input().preprocess().convert_element_type(im.Type.f32) \\
...     .convert_color(ColorFormat.RGB).resize(ResizeAlgorithm.RESIZE_LINEAR) \\
...     .mean([123.7, 116.3, 103.5]).scale([58.4, 57.1, 57.4])         # doctest: +SKIP
>>> model = ppp.build()                                                 # doctest: +SKIP

``set_memory_type`` is accepted and shown by ``print(ppp)`` but has no effect: infermux has no
device-specific memory (remote tensors, GPU surfaces) to bind to.  A ``custom`` step receives a
:class:`Value` — a tensor in the graph being built — and returns one made from it, e.g.
``lambda v: v.apply("Abs")`` (any ONNX op; extra inputs may be Values, arrays or numbers).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from infermux.errors import TensorNameError
from infermux.graph import preprocess as _pp
from infermux.graph.layout import Layout, as_layout
from infermux.graph.model import Model
from infermux.graph.preprocess import ColorFormat, PaddingMode, ResizeAlgorithm, Value
from infermux.graph.shape import PartialShape
from infermux.graph.types import Type

__all__ = [
    "PrePostProcessor", "InputInfo", "OutputInfo", "InputTensorInfo", "OutputTensorInfo",
    "InputModelInfo", "OutputModelInfo", "PreProcessSteps", "PostProcessSteps",
    "ColorFormat", "ResizeAlgorithm", "PaddingMode", "Value",
]


def _floats(values: float | Sequence[float]) -> tuple[float, ...]:
    if isinstance(values, (int, float, np.number)):
        return (float(values),)
    return tuple(float(v) for v in values)


class InputTensorInfo:
    """What the user will feed to one input (``ppp.input().tensor()``); setters chain."""

    def __init__(self, spec: _pp.InputSpec):
        self._spec = spec

    def set_element_type(self, element_type: Type | Any) -> InputTensorInfo:
        """The user's element type (converted to the model's automatically)."""
        self._spec.element_type = _pp.as_element_type(element_type)
        return self

    def set_layout(self, layout: Layout | str) -> InputTensorInfo:
        """The user's layout (transposed to the model's automatically)."""
        self._spec.layout = as_layout(layout)
        return self

    def set_shape(self, shape: PartialShape | Sequence[int] | str) -> InputTensorInfo:
        """The user's shape (for planar colour formats: the first plane's)."""
        from infermux.graph.reshape import to_partial_shape

        self._spec.shape = to_partial_shape(shape)
        return self

    def set_spatial_dynamic_shape(self) -> InputTensorInfo:
        """Any height and width (needs a layout with H and W; pair with ``resize``)."""
        self._spec.spatial = "dynamic"
        return self

    def set_spatial_static_shape(self, height: int, width: int) -> InputTensorInfo:
        """A fixed height and width different from the model's (pair with ``resize``)."""
        self._spec.spatial = (int(height), int(width))
        return self

    def set_color_format(self, color_format: ColorFormat, sub_names: Sequence[str] = ()) -> InputTensorInfo:
        """The colour format; planar formats become one model input a plane (``<name>/<sub_name>``)."""
        self._spec.color = color_format
        self._spec.sub_names = tuple(sub_names)
        return self

    def set_memory_type(self, memory_type: str) -> InputTensorInfo:
        """Accepted for compatibility and shown by ``print(ppp)``; it has no effect in infermux."""
        self._spec.memory_type = str(memory_type)
        return self

    def set_from(self, tensor: Any) -> InputTensorInfo:
        """Element type and shape from an existing array or :class:`~infermux.Tensor`."""
        arr = getattr(tensor, "data", tensor)
        arr = np.asarray(arr)
        self._spec.element_type = Type.from_numpy(arr.dtype)
        self._spec.shape = PartialShape(list(arr.shape))
        return self


class InputModelInfo:
    """What is known about the model's side of an input (``ppp.input().model()``)."""

    def __init__(self, spec: _pp.InputSpec):
        self._spec = spec

    def set_layout(self, layout: Layout | str) -> InputModelInfo:
        """The layout the model expects (needed for implicit transposes and ``resize``)."""
        self._spec.model_layout = as_layout(layout)
        return self


class PreProcessSteps:
    """The steps from the user's tensor to the model's input, in call order; methods chain."""

    def __init__(self, spec: _pp.InputSpec):
        self._steps = spec.steps

    def _add(self, step: _pp.Step) -> PreProcessSteps:
        self._steps.append(step)
        return self

    def convert_element_type(self, element_type: Type | Any = None) -> PreProcessSteps:
        """Cast to ``element_type`` (default: the model's)."""
        return self._add(_pp.ConvertElementType(None if element_type is None else _pp.as_element_type(element_type)))

    def convert_color(self, dst_format: ColorFormat) -> PreProcessSteps:
        """Convert the colour format: RGB<->BGR, RGBX/BGRX->RGB/BGR, NV12/I420->RGB/BGR, RGB/BGR->GRAY."""
        return self._add(_pp.ConvertColor(dst_format))

    def convert_layout(self, layout: Layout | str | Sequence[int]) -> PreProcessSteps:
        """Transpose to a layout, or by explicit dimension indices (``[0, 3, 1, 2]``)."""
        if isinstance(layout, (Layout, str)):
            return self._add(_pp.ConvertLayout(layout=as_layout(layout)))
        return self._add(_pp.ConvertLayout(dims=tuple(int(d) for d in layout)))

    def resize(self, algorithm: ResizeAlgorithm, height: int | None = None, width: int | None = None) -> PreProcessSteps:
        """Resize H and W to ``height``x``width`` (default: the model's)."""
        if (height is None) != (width is None):
            raise ValueError("resize: give both height and width, or neither (the model's size)")
        return self._add(_pp.Resize(algorithm, height, width))

    def mean(self, value: float | Sequence[float]) -> PreProcessSteps:
        """Subtract one value, or one a channel (needs C in the layout)."""
        return self._add(_pp.Mean(_floats(value)))

    def scale(self, value: float | Sequence[float]) -> PreProcessSteps:
        """Divide by one value, or one a channel (needs C in the layout)."""
        return self._add(_pp.Scale(_floats(value)))

    def crop(self, begin: Sequence[int], end: Sequence[int]) -> PreProcessSteps:
        """Keep ``[begin, end)`` of every dimension (negative values count from the end)."""
        return self._add(_pp.Crop(tuple(int(b) for b in begin), tuple(int(e) for e in end)))

    def pad(self, pads_begin: Sequence[int], pads_end: Sequence[int], value: float = 0.0,
            mode: PaddingMode = PaddingMode.CONSTANT) -> PreProcessSteps:
        """Pad every dimension: with ``value``, reflected, or symmetrically (edge repeated)."""
        return self._add(_pp.Pad(tuple(int(b) for b in pads_begin), tuple(int(e) for e in pads_end),
                                 float(value), mode))

    def reverse_channels(self) -> PreProcessSteps:
        """Reverse the C dimension (RGB <-> BGR)."""
        return self._add(_pp.ReverseChannels())

    def custom(self, operation: Callable[[Value], Value]) -> PreProcessSteps:
        """``operation(value) -> value``: add any ONNX ops (see :class:`Value`)."""
        return self._add(_pp.Custom(operation))


class InputInfo:
    """One input's description: ``tensor()``, ``preprocess()``, ``model()``."""

    def __init__(self) -> None:
        self._spec = _pp.InputSpec()

    def tensor(self) -> InputTensorInfo:
        """The user's tensor."""
        return InputTensorInfo(self._spec)

    def preprocess(self) -> PreProcessSteps:
        """The steps."""
        return PreProcessSteps(self._spec)

    def model(self) -> InputModelInfo:
        """The model's side."""
        return InputModelInfo(self._spec)


class OutputTensorInfo:
    """What the user will receive from one output (``ppp.output().tensor()``)."""

    def __init__(self, spec: _pp.OutputSpec):
        self._spec = spec

    def set_element_type(self, element_type: Type | Any) -> OutputTensorInfo:
        """The element type to return (converted automatically)."""
        self._spec.element_type = _pp.as_element_type(element_type)
        return self

    def set_layout(self, layout: Layout | str) -> OutputTensorInfo:
        """The layout to return (transposed automatically from the model's)."""
        self._spec.layout = as_layout(layout)
        return self


class OutputModelInfo:
    """What is known about the model's side of an output."""

    def __init__(self, spec: _pp.OutputSpec):
        self._spec = spec

    def set_layout(self, layout: Layout | str) -> OutputModelInfo:
        """The layout the model produces."""
        self._spec.model_layout = as_layout(layout)
        return self


class PostProcessSteps:
    """The steps from the model's output to the user's tensor; methods chain."""

    def __init__(self, spec: _pp.OutputSpec):
        self._steps = spec.steps

    def _add(self, step: _pp.Step) -> PostProcessSteps:
        self._steps.append(step)
        return self

    def convert_element_type(self, element_type: Type | Any = None) -> PostProcessSteps:
        """Cast to ``element_type`` (default: the output's own type, i.e. nothing)."""
        return self._add(_pp.ConvertElementType(None if element_type is None else _pp.as_element_type(element_type)))

    def convert_layout(self, layout: Layout | str | Sequence[int]) -> PostProcessSteps:
        """Transpose to a layout, or by explicit dimension indices."""
        if isinstance(layout, (Layout, str)):
            return self._add(_pp.ConvertLayout(layout=as_layout(layout)))
        return self._add(_pp.ConvertLayout(dims=tuple(int(d) for d in layout)))

    def custom(self, operation: Callable[[Value], Value]) -> PostProcessSteps:
        """``operation(value) -> value``: add any ONNX ops (see :class:`Value`)."""
        return self._add(_pp.Custom(operation))


class OutputInfo:
    """One output's description: ``tensor()``, ``postprocess()``, ``model()``."""

    def __init__(self) -> None:
        self._spec = _pp.OutputSpec()

    def tensor(self) -> OutputTensorInfo:
        """The user's tensor."""
        return OutputTensorInfo(self._spec)

    def postprocess(self) -> PostProcessSteps:
        """The steps."""
        return PostProcessSteps(self._spec)

    def model(self) -> OutputModelInfo:
        """The model's side."""
        return OutputModelInfo(self._spec)


class PrePostProcessor:
    """Builds pre/post-processing into ``model``: ``ppp.input(...)``, ``ppp.output(...)``, ``build()``.

    ``build()`` changes the model in place and returns it.  ``str(ppp)`` describes every input and
    output touched so far, with the shapes between steps and the implicit steps.
    """

    def __init__(self, model: Model):
        if not isinstance(model, Model):
            raise TypeError(f"PrePostProcessor needs an infermux Model, got {type(model).__name__}")
        self._model = model
        self._inputs: dict[int, InputInfo] = {}
        self._outputs: dict[int, OutputInfo] = {}

    def input(self, key: int | str | None = None) -> InputInfo:
        """The input by tensor name or index (no key: the only input)."""
        index = self._index(self._model.graph.inputs, key, "input")
        return self._inputs.setdefault(index, InputInfo())

    def output(self, key: int | str | None = None) -> OutputInfo:
        """The output by tensor name or index (no key: the only output)."""
        index = self._index(self._model.graph.outputs, key, "output")
        return self._outputs.setdefault(index, OutputInfo())

    @staticmethod
    def _index(ports, key, kind: str) -> int:
        if key is None:
            if len(ports) != 1:
                raise TensorNameError(f"PrePostProcessor::{kind}() - Model must have exactly one {kind}, "
                                      f"got {len(ports)}: name one ({', '.join(p.name for p in ports)})")
            return 0
        if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
            if not 0 <= key < len(ports):
                raise TensorNameError(f"PrePostProcessor::{kind}(size_t) - Model doesn't have {kind} with "
                                      f"index {key}. Total number of {kind}s is {len(ports)}")
            return int(key)
        name = getattr(key, "any_name", key)
        for i, p in enumerate(ports):
            if p.name == name:
                return i
        raise TensorNameError(f"Model doesn't have {kind} with name {name}")

    def _plans(self) -> tuple[list[_pp.PortPlan], list[_pp.PortPlan]]:
        graph, opset = self._model.graph, self._model.opset()
        ins = [_pp.plan_input(graph, opset, i, info._spec) for i, info in sorted(self._inputs.items())]
        outs = [_pp.plan_output(graph, opset, i, info._spec) for i, info in sorted(self._outputs.items())]
        return ins, outs

    def build(self) -> Model:
        """Embed the steps in the model (in place) and return it; shapes are inferred again."""
        from infermux.graph.reshape import commit_rewrite

        ins, outs = self._plans()
        for plan in ins + outs:
            if plan.chain.error is not None:
                raise plan.chain.error
        needed = max((p.chain.builder.needs_opset for p in ins + outs), default=0)
        if needed > self._model.opset():
            _pp.upgrade_opset(self._model, needed)
            ins, outs = self._plans()
        commit_rewrite(self._model, lambda graph: _pp.splice(graph, ins, outs))
        return self._model

    def __str__(self) -> str:
        ins, outs = self._plans()
        parts = [_pp.describe_input(p) for p in ins] + [_pp.describe_output(p) for p in outs]
        return "\n".join(parts) + ("\n" if parts else "")

    def __repr__(self) -> str:
        return f"<PrePostProcessor for '{self._model.friendly_name}'>"
