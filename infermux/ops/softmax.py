"""Softmax, LogSoftmax and Hardmax.

Before opset 13 these ops flatten the input to 2-D at ``axis`` (default 1) and normalise over
the whole second dimension, i.e. over every axis from ``axis`` on; from opset 13 they normalise
over the single axis ``axis`` (default -1).  The maximum is always subtracted first, so large
logits do not overflow.  Everything runs in the input precision, as the ONNX reference (and
the function bodies of ops built on Softmax, such as Attention) do.
"""

from __future__ import annotations

import math

from infermux.ops._util import row_sums
from infermux.ops.registry import kernel

__all__: list[str] = []


def _check_axis(x, axis: int) -> int:
    if not -max(x.ndim, 1) <= axis < max(x.ndim, 1):
        raise ValueError(f"axis {axis} is out of range for a tensor of rank {x.ndim}")
    return axis % x.ndim if x.ndim else 0


def _sums(xp, x, axis: int):
    return row_sums(xp, x) if axis == x.ndim - 1 else x.sum(axis=axis, keepdims=True)


def _softmax(xp, x, axis: int):
    """exp(x - max) / sum over ``axis``: one full-size temporary, updated in place."""
    e = x - x.max(axis=axis, keepdims=True)
    xp.exp(e, out=e)
    e /= _sums(xp, e, axis)
    return e


def _log_softmax(xp, x, axis: int):
    """(x - max) - log(sum(exp(x - max))), over ``axis``."""
    shifted = x - x.max(axis=axis, keepdims=True)
    s = _sums(xp, xp.exp(shifted), axis)
    shifted -= xp.log(s, out=s)
    return shifted


def _hardmax(xp, x, axis: int):
    """1 at the first maximum along ``axis``, 0 elsewhere."""
    idx = xp.expand_dims(xp.argmax(x, axis=axis), axis)
    positions = xp.arange(x.shape[axis]).reshape((-1,) + (1,) * (x.ndim - axis - 1))
    return (positions == idx).astype(x.dtype)


def _flattened(xp, fn, x, axis: int):
    """Opset < 13 semantics: normalise over every axis from ``axis`` on."""
    axis = _check_axis(x, axis)
    if x.ndim == 0:
        return fn(xp, x.reshape(1, 1), 1).reshape(())
    rows = math.prod(x.shape[:axis])
    return fn(xp, x.reshape(rows, -1), 1).reshape(x.shape)


@kernel("Softmax", since=1)
def softmax_1(xp, x, /, *, axis=1):
    """Softmax over the 2-D flattening of ``x`` at ``axis``."""
    return _flattened(xp, _softmax, x, axis)


@kernel("Softmax", since=13)
def softmax_13(xp, x, /, *, axis=-1):
    """Softmax along ``axis``."""
    return _softmax(xp, x, _check_axis(x, axis))


@kernel("LogSoftmax", since=1)
def log_softmax_1(xp, x, /, *, axis=1):
    """LogSoftmax over the 2-D flattening of ``x`` at ``axis``."""
    return _flattened(xp, _log_softmax, x, axis)


@kernel("LogSoftmax", since=13)
def log_softmax_13(xp, x, /, *, axis=-1):
    """LogSoftmax along ``axis``."""
    return _log_softmax(xp, x, _check_axis(x, axis))


@kernel("Hardmax", since=1)
def hardmax_1(xp, x, /, *, axis=1):
    """Hardmax over the 2-D flattening of ``x`` at ``axis``."""
    return _flattened(xp, _hardmax, x, axis)


@kernel("Hardmax", since=13)
def hardmax_13(xp, x, /, *, axis=-1):
    """Hardmax along ``axis`` (ties: the first maximum wins)."""
    return _hardmax(xp, x, _check_axis(x, axis))
