"""The infermux error hierarchy.

Every error is an :class:`InfermuxError`, which is a :class:`RuntimeError` so that code written
for OpenVINO (which raises ``RuntimeError`` for everything) keeps working.  Each subclass also
inherits the builtin a Python user would reach for first (``KeyError`` for an unknown tensor name,
``ValueError`` for a bad shape, ...).  Messages name the node, tensor, device or property and say
what would be accepted.
"""

from __future__ import annotations

__all__ = [
    "InfermuxError",
    "ModelReadError",
    "UnsupportedOpError",
    "DeviceNotFoundError",
    "InvalidDeviceStringError",
    "PropertyError",
    "ShapeMismatchError",
    "TypeMismatchError",
    "TensorNameError",
    "NodeExecutionError",
    "RequestBusyError",
    "RequestCancelledError",
]


class InfermuxError(RuntimeError):
    """Base class of every error infermux raises on purpose."""


class ModelReadError(InfermuxError, ValueError):
    """A model file or buffer could not be read (malformed, unsafe path, missing weights)."""


class UnsupportedOpError(InfermuxError, NotImplementedError):
    """An op (type, domain, opset version or attribute value) has no kernel."""


class DeviceNotFoundError(InfermuxError, KeyError):
    """A device name that no registered plugin provides."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class InvalidDeviceStringError(InfermuxError, ValueError):
    """A device string that does not follow the grammar."""


class PropertyError(InfermuxError, ValueError):
    """An unknown property key, a read-only key being set, or a bad value."""


class ShapeMismatchError(InfermuxError, ValueError):
    """A tensor whose shape is not compatible with what the model expects."""


class TypeMismatchError(InfermuxError, TypeError):
    """A tensor whose element type cannot be converted to what the model expects."""


class TensorNameError(InfermuxError, KeyError):
    """An input or output name, index or port that the model does not have."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class NodeExecutionError(InfermuxError):
    """A kernel failed while running one node; the message names the node and its op."""


class RequestBusyError(InfermuxError):
    """An infer request was started while it was still running."""


class RequestCancelledError(InfermuxError):
    """An infer request was cancelled before it finished."""
