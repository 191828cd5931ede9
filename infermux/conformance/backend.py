"""infermux as an ``onnx.backend`` backend, so ONNX's own ``BackendTest`` can drive it.

>>> import onnx.backend.test                                           # doctest: +SKIP
>>> from infermux.conformance.backend import InfermuxBackend
>>> suite = onnx.backend.test.BackendTest(InfermuxBackend, __name__)   # doctest: +SKIP
>>> suite.include(r"test_relu_cpu$")                                   # doctest: +SKIP

``prepare`` reads and compiles the model once through the public API; ``BackendRep.run`` takes
the inputs in graph-input order (arrays, lists for sequences, None for empty optionals) and returns
the outputs in graph-output order.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import numpy as np
import onnx
from onnx import helper
from onnx.backend.base import Backend, BackendRep, Device, DeviceType

__all__ = ["InfermuxBackend", "InfermuxBackendRep", "prepare", "run_model", "run_node",
           "supports_device"]

# onnx.backend device names -> infermux device names
_DEVICES = {DeviceType.CPU: "CPU", DeviceType.CUDA: "GPU"}
# keywords BackendTest passes to prepare() that are tolerances, not compile properties
_TEST_KWARGS = frozenset({"rtol", "atol"})


def _device_name(device: str) -> str:
    parsed = Device(device)
    return _DEVICES[parsed.type] + (f".{parsed.device_id}" if parsed.type == DeviceType.CUDA else "")


class InfermuxBackendRep(BackendRep):
    """A model compiled by infermux; ``run(inputs)`` returns a tuple of outputs."""

    def __init__(self, compiled) -> None:
        self.compiled = compiled

    def run(self, inputs: Any, **kwargs: Any) -> tuple[Any, ...]:
        """Run once: ``inputs`` is a list in graph-input order, a dict by name, or one array."""
        if isinstance(inputs, Mapping):
            feeds = dict(inputs)
        elif isinstance(inputs, (list, tuple)):
            feeds = dict(enumerate(inputs))  # by index: a list value is one sequence input
        else:
            feeds = {0: inputs}
        return self.compiled(feeds).to_tuple()


class InfermuxBackend(Backend):
    """The ``onnx.backend.base.Backend`` for infermux (CPU; GPU where the GPU plugin is present)."""

    @classmethod
    def prepare(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs: Any) -> InfermuxBackendRep:
        """Read and compile ``model`` for ``device``; other ``kwargs`` are compile properties."""
        import infermux

        super().prepare(model, device, **kwargs)
        config = {k: v for k, v in kwargs.items() if k not in _TEST_KWARGS}
        core = infermux.Core()
        compiled = core.compile_model(core.read_model(model), _device_name(device), config or None)
        return InfermuxBackendRep(compiled)

    @classmethod
    def run_model(cls, model: onnx.ModelProto, inputs: Any, device: str = "CPU",
                  **kwargs: Any) -> tuple[Any, ...]:
        """Prepare and run once."""
        return cls.prepare(model, device, **kwargs).run(inputs)

    @classmethod
    def run_node(cls, node: onnx.NodeProto, inputs: Any, device: str = "CPU",
                 outputs_info=None, **kwargs: Any) -> tuple[Any, ...]:
        """Run one node on array inputs by wrapping it in a one-node model."""
        super().run_node(node, inputs, device=device, outputs_info=outputs_info, **kwargs)
        opset = kwargs.pop("opset_version", onnx.defs.onnx_opset_version())
        arrays = [np.asarray(x) for x in inputs]
        graph_inputs = [helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(a.dtype),
                                                      a.shape)
                        for name, a in zip(node.input, arrays) if name]
        names = [name for name in node.output if name]
        if outputs_info:
            graph_outputs = [helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(
                np.dtype(dtype)), shape) for name, (dtype, shape) in zip(names, outputs_info)]
        else:
            graph_outputs = [helper.make_empty_tensor_value_info(name) for name in names]
        graph = helper.make_graph([node], "run_node", graph_inputs, graph_outputs)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
        if not outputs_info:
            model = onnx.shape_inference.infer_shapes(model)  # fills in the outputs' types
        return cls.run_model(model, [a for name, a in zip(node.input, arrays) if name], device, **kwargs)

    @classmethod
    def supports_device(cls, device: str) -> bool:
        """CPU always; CUDA when infermux sees a GPU."""
        try:
            parsed = Device(device)
        except Exception:  # noqa: BLE001 - an unknown device string
            return False
        return parsed.type == DeviceType.CPU or (parsed.type == DeviceType.CUDA and _has_gpu())


@functools.cache
def _has_gpu() -> bool:
    import infermux

    return any(d.startswith("GPU") for d in infermux.Core().available_devices)


prepare = InfermuxBackend.prepare
run_model = InfermuxBackend.run_model
run_node = InfermuxBackend.run_node
supports_device = InfermuxBackend.supports_device
