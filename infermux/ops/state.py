"""Model state: ``ReadValue`` and ``Assign`` (domain ``infermux``), as OpenVINO's stateful ops.

A variable lives in the *state frame* of one infer request, which the plan passes to these two
kernels as their first input.  ``ReadValue`` returns the variable's value, or its initial value
(the optional input, else zeros of the declared shape) before the first write.  ``Assign`` records
the new value; the plan commits all writes when the inference ends, so every ``ReadValue`` of one
inference sees the state as it was when the inference started.
"""

from __future__ import annotations

from infermux.ops.registry import kernel

STATE_DOMAIN = "infermux"

__all__ = ["STATE_DOMAIN", "StateFrame"]


class StateFrame:
    """One request's variables: committed values plus the writes of the running inference.

    ``home`` names the device a scheduler pinned the request's state to (MULTI runs every
    inference of a stateful request on the device that ran its first one)."""

    __slots__ = ("values", "pending", "home")

    def __init__(self, values: dict | None = None):
        self.values: dict[str, object] = values if values is not None else {}
        self.pending: dict[str, object] = {}
        self.home: str | None = None

    def commit(self) -> None:
        """Make this inference's writes the state the next one reads."""
        if self.pending:
            self.values.update(self.pending)
            self.pending = {}


@kernel("ReadValue", since=1, domain=STATE_DOMAIN)
def read_value(xp, frame, init=None, /, *, variable_id, variable_shape=None, variable_type=None):
    """The variable's value; before any write, ``init`` (or zeros of ``variable_shape``)."""
    value = frame.values.get(variable_id)
    if value is not None:
        return value
    if init is not None:
        return init
    import numpy as np

    from infermux.ops._dtypes import onnx_to_numpy

    if variable_shape is None or any(d < 0 for d in variable_shape):
        raise ValueError(f"variable '{variable_id}' has no initial value and no static shape: "
                         f"give ReadValue an init input")
    dtype = onnx_to_numpy(variable_type) if variable_type is not None else np.float32
    return xp.zeros(tuple(variable_shape), dtype=dtype)


@kernel("Assign", since=1, domain=STATE_DOMAIN)
def assign(xp, frame, value, /, *, variable_id):
    """Record the variable's new value (visible from the next inference on)."""
    frame.pending[variable_id] = value
    return value
