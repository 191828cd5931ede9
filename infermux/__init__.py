"""infermux: an inference runtime and multi-device scheduler with OpenVINO's Python API.

>>> import infermux as im                       # where you had `import openvino as ov`
>>> core = im.Core()
>>> core.available_devices                      # doctest: +SKIP
['CPU']

Logging goes to ``logging.getLogger("infermux")``; set ``INFERMUX_LOG_LEVEL=DEBUG`` to see it on
stderr without configuring logging yourself.
"""

from infermux._version import __version__
from infermux._logging import configure_from_env as _configure_logging
from infermux.errors import (
    DeviceNotFoundError, InfermuxError, InvalidDeviceStringError, ModelReadError,
    PropertyError, ShapeMismatchError, TensorNameError, TypeMismatchError, UnsupportedOpError)
from infermux.graph.model import Model, Node, Output
from infermux.graph.shape import Dimension, PartialShape, Shape
from infermux.graph.tensor import Tensor
from infermux.graph.types import Type
from infermux.scheduler.async_queue import AsyncInferQueue
from infermux.scheduler.requests import InferRequest, InferResults, ProfilingInfo, VariableState
from infermux.graph.stateful import make_stateful
from infermux.api import CompiledModel, Core, Version, compile_model, save_model
from infermux import properties
from infermux.graph.layout import Layout
from infermux.graph import layout as layout_helpers
from infermux.graph.reshape import get_batch, set_batch
from infermux import preprocess

ConstOutput = Output
OVDict = InferResults

_configure_logging()

__all__ = [
    "__version__", "Core", "Model", "Node", "CompiledModel", "InferRequest", "InferResults",
    "AsyncInferQueue", "Tensor", "Type", "PartialShape", "Dimension", "Shape", "Output",
    "ConstOutput", "OVDict", "ProfilingInfo", "VariableState", "Version", "compile_model", "save_model",
    "properties", "make_stateful", "Layout", "layout_helpers", "set_batch", "get_batch",
    "preprocess",
    "InfermuxError", "ModelReadError", "UnsupportedOpError", "DeviceNotFoundError",
    "InvalidDeviceStringError", "PropertyError", "ShapeMismatchError", "TypeMismatchError",
    "TensorNameError",
]
