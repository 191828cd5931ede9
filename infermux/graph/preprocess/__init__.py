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

The package follows those stages: ``options`` (the enums and the error), ``value`` (the graph being
built and the :class:`Value` handle), ``steps`` and ``color`` (the steps), ``planning`` (chains,
checks and ``print(ppp)``) and ``splice`` (into the graph, and the opset upgrade).
"""

from infermux.graph.preprocess.color import ConvertColor, plane_shapes
from infermux.graph.preprocess.options import (
    NEEDS_OPSET,
    ColorFormat,
    PaddingMode,
    PreprocessError,
    ResizeAlgorithm,
)
from infermux.graph.preprocess.planning import (
    Chain,
    InputSpec,
    OutputSpec,
    PortPlan,
    as_element_type,
    check_shape_fits,
    check_type,
    describe_input,
    describe_output,
    new_value,
    plan_input,
    plan_output,
    run_steps,
    to_layout,
)
from infermux.graph.preprocess.splice import splice, upgrade_opset
from infermux.graph.preprocess.steps import (
    Context,
    ConvertElementType,
    ConvertLayout,
    Crop,
    Custom,
    Mean,
    Pad,
    Resize,
    ReverseChannels,
    Scale,
    Step,
    permutation,
)
from infermux.graph.preprocess.value import Value

__all__ = [
    # what users of infermux.preprocess see
    "ColorFormat", "ResizeAlgorithm", "PaddingMode", "Value", "PreprocessError", "NEEDS_OPSET",
    # the engine infermux.preprocess drives
    "Step", "Context", "ConvertElementType", "ConvertLayout", "Resize", "Mean", "Scale", "Crop", "Pad",
    "ReverseChannels", "Custom", "ConvertColor", "permutation", "plane_shapes",
    "InputSpec", "OutputSpec", "PortPlan", "Chain", "plan_input", "plan_output", "run_steps", "new_value",
    "check_shape_fits", "check_type", "as_element_type", "to_layout", "describe_input", "describe_output",
    "splice", "upgrade_opset",
]
