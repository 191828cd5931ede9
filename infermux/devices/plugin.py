"""The ``Plugin`` protocol every device implements, and the compiled-model protocol it returns.

A plugin turns a :class:`~infermux.graph.model.Model` into a *device compiled model*: something
that runs one inference synchronously (``infer``) and owns the executor its asynchronous requests
run on (``submit``).  The scheduler's infer requests and the virtual devices (AUTO, MULTI, HETERO,
BATCH) are written against these two protocols only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from typing import Any, Protocol, runtime_checkable

from infermux.graph.model import Model, ValueInfo

__all__ = ["Plugin", "DeviceCompiledModel"]


@runtime_checkable
class DeviceCompiledModel(Protocol):
    """A model compiled for one (possibly virtual) device."""

    device_name: str
    input_infos: list[ValueInfo]
    output_infos: list[ValueInfo]

    variables: dict[str, Any]

    def infer(self, inputs: Sequence[Any], *, profile: bool = False,
              state: Any = None) -> tuple[list[Any], list | None]:
        """Run once in the calling thread: ``(outputs, per-node timings or None)``.

        ``state`` is the request's :class:`~infermux.ops.state.StateFrame` (stateful models)."""

    def submit(self, fn: Callable[[], Any]) -> Future:
        """Run ``fn`` on this model's executor (its streams); returns the future."""

    def get_property(self, key: str) -> Any:
        """A compiled-model property (``OPTIMAL_NUMBER_OF_INFER_REQUESTS``, ...)."""

    def set_property(self, properties: Mapping[str, Any]) -> None:
        """Change a mutable compiled-model property."""

    def release(self) -> None:
        """Free executors and buffers."""


@runtime_checkable
class Plugin(Protocol):
    """A device family: ``CPU``, ``GPU``, ``VPU``, or a virtual device."""

    name: str

    def devices(self) -> list[str]:
        """Device ids present now (``['']`` for CPU, ``['0', '1']`` for two GPUs)."""

    def get_property(self, key: str, device_id: str = "") -> Any:
        """A device property or metric."""

    def set_property(self, properties: Mapping[str, Any], device_id: str = "") -> None:
        """Set defaults for later compiles."""

    def query_model(self, model: Model, config: Mapping[str, Any] | None = None,
                    device_id: str = "") -> dict[str, str]:
        """``{node name: device name}`` for the nodes this device can run."""

    def compile_model(self, model: Model, config: Mapping[str, Any] | None = None,
                      device_id: str = "") -> DeviceCompiledModel:
        """Compile ``model`` for this device."""
