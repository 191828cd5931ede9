"""Reductions: the Reduce* family, ArgMax/ArgMin, CumSum/CumProd and TopK.

Reduce* ops take ``axes`` as an attribute up to opset 12 (ReduceSum) or 17 (the others) and as
an optional int64 input after that, where ``noop_with_empty_axes`` decides whether a missing or
empty ``axes`` means "every axis" (0, the default) or "no axis" (1, NumPy's ``axis=()``: the
element-wise part of the op is still applied, e.g. ``abs`` for ReduceL1).

16-bit float data is accumulated in float32, float32 data in float32 (as onnxruntime does) and
integer sums stay in the input type.  A reduction over an empty set yields the identity of the
op: 0 for sums, 1 for ReduceProd, -inf for ReduceLogSum(Exp), the lowest (highest) value of the
type for ReduceMax (ReduceMin) and NaN for ReduceMean.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from infermux.errors import UnsupportedOpError
from infermux.ops._util import acc_dtype, host_ints, row_sums
from infermux.ops.registry import kernel

__all__ = ["REDUCTIONS"]

Axes = tuple[int, ...] | None  # None: every axis


def _normalise_axes(ndim: int, axes: Axes) -> tuple[int, ...]:
    if axes is None:
        return tuple(range(ndim))
    out = []
    for a in axes:
        if not -ndim <= a < max(ndim, 1):
            raise ValueError(f"axis {a} is out of range for a tensor of rank {ndim}")
        out.append(a % ndim if ndim else 0)
    return tuple(out)


def _reduced_shape(shape: tuple[int, ...], axes: tuple[int, ...], keepdims: bool) -> tuple:
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


def _lowest(dtype, highest: bool):
    if dtype.kind == "b":
        return highest
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return info.max if highest else info.min
    return math.inf if highest else -math.inf


def _over_last_axis(x, axes) -> bool:
    """Whether ``axes`` is just the last axis of float32/64 ``x`` (the BLAS row-sum case)."""
    return (x.ndim > 0 and x.shape[-1] > 0 and x.dtype in (np.float32, np.float64)
            and axes is not None and tuple(a % x.ndim for a in axes) == (x.ndim - 1,))


# The reductions: (xp, x, axes, keepdims) -> array, cast to x's dtype by the caller.
def _sum(xp, x, axes, keepdims):
    if _over_last_axis(x, axes):
        out = row_sums(xp, x)
        return out if keepdims else out.reshape(x.shape[:-1])
    return xp.sum(x, axis=axes, keepdims=keepdims, dtype=acc_dtype(x.dtype))


def _sum_square(xp, x, axes, keepdims):
    x = x.astype(acc_dtype(x.dtype), copy=False)
    return xp.sum(x * x, axis=axes, keepdims=keepdims)


def _l1(xp, x, axes, keepdims):
    return xp.sum(xp.abs(x.astype(acc_dtype(x.dtype), copy=False)), axis=axes, keepdims=keepdims)


def _l2(xp, x, axes, keepdims):
    if x.dtype.kind in "iu":
        x = x.astype(np.float64)
    return xp.sqrt(_sum_square(xp, x, axes, keepdims))


def _log_sum(xp, x, axes, keepdims):
    return xp.log(xp.sum(x, axis=axes, keepdims=keepdims, dtype=acc_dtype(x.dtype)))


def _log_sum_exp(xp, x, axes, keepdims):
    x = x.astype(acc_dtype(x.dtype), copy=False)
    m = xp.max(x, axis=axes, keepdims=True)
    m[~xp.isfinite(m)] = 0  # an all -inf (or +inf) slice must not turn into NaN
    s = xp.sum(xp.exp(x - m), axis=axes, keepdims=True)
    out = xp.log(s, out=s)
    out += m
    if not keepdims:
        out = out.reshape(_reduced_shape(x.shape, _normalise_axes(x.ndim, axes), False))
    return out


def _mean(xp, x, axes, keepdims):
    if _over_last_axis(x, axes):
        out = row_sums(xp, x)
        out /= x.shape[-1]
        return out if keepdims else out.reshape(x.shape[:-1])
    dt = np.dtype(np.float64) if x.dtype.kind in "iu" else acc_dtype(x.dtype)
    return xp.mean(x, axis=axes, keepdims=keepdims, dtype=dt)


def _prod(xp, x, axes, keepdims):
    return xp.prod(x, axis=axes, keepdims=keepdims, dtype=acc_dtype(x.dtype))


def _max(xp, x, axes, keepdims):
    return xp.max(x, axis=axes, keepdims=keepdims)


def _min(xp, x, axes, keepdims):
    return xp.min(x, axis=axes, keepdims=keepdims)


REDUCTIONS: dict[str, tuple[Callable, Callable | None, int]] = {
    # name: (reduction, the value of an empty set for a dtype or None where the NumPy
    #        reduction already gives it, the opset where axes became an input)
    "ReduceSum": (_sum, None, 13),
    "ReduceSumSquare": (_sum_square, None, 18),
    "ReduceL1": (_l1, None, 18),
    "ReduceL2": (_l2, None, 18),
    "ReduceLogSum": (_log_sum, lambda dt: -math.inf, 18),
    "ReduceLogSumExp": (_log_sum_exp, lambda dt: -math.inf, 18),
    "ReduceMean": (_mean, lambda dt: math.nan, 18),
    "ReduceProd": (_prod, None, 18),
    "ReduceMax": (_max, lambda dt: _lowest(dt, highest=False), 18),
    "ReduceMin": (_min, lambda dt: _lowest(dt, highest=True), 18),
}


def _reduce(xp, fn, empty_value, data, axes: Axes, keepdims: int):
    keep = bool(keepdims)
    if axes is not None:
        axes = _normalise_axes(data.ndim, axes)
    if empty_value is not None and axes != ():
        full_axes = _normalise_axes(data.ndim, axes)
        if any(data.shape[a] == 0 for a in full_axes):
            shape = _reduced_shape(data.shape, full_axes, keep)
            return xp.full(shape, empty_value(data.dtype), dtype=data.dtype)
    out = fn(xp, data, axes, keep)
    return xp.asarray(out).astype(data.dtype, copy=False)


def _axes_from_input(axes, noop_with_empty_axes: int) -> Axes:
    values = [] if axes is None else host_ints(axes)
    if not values:
        return () if noop_with_empty_axes else None
    return tuple(values)


def _register(name: str, fn: Callable, empty_value: Callable | None, input_since: int) -> None:
    def reduce_axes_attribute(xp, data, /, *, axes=None, keepdims=1):
        return _reduce(xp, fn, empty_value, data, tuple(axes) if axes else None, keepdims)

    def reduce_axes_input(xp, data, axes=None, /, *, keepdims=1, noop_with_empty_axes=0):
        return _reduce(xp, fn, empty_value, data,
                       _axes_from_input(axes, noop_with_empty_axes), keepdims)

    for f, since in ((reduce_axes_attribute, 1), (reduce_axes_input, input_since)):
        f.__name__ = f.__qualname__ = f"{name}_{since}"
        f.__doc__ = f"{name} from opset {since} on."
        kernel(name, since=since)(f)


for _name, (_fn, _empty, _since) in REDUCTIONS.items():
    _register(_name, _fn, _empty, _since)


# ---------------------------------------------------------------- ArgMax / ArgMin
def _arg_reduce(xp, pick, data, axis: int, keepdims: int, select_last_index: int):
    axis = axis % data.ndim if data.ndim else 0
    if select_last_index:
        flipped = xp.flip(data, axis=axis)
        idx = (data.shape[axis] - 1) - pick(flipped, axis=axis)
    else:
        idx = pick(data, axis=axis)
    idx = idx.astype(np.int64, copy=False)
    return xp.expand_dims(idx, axis) if keepdims else idx


@kernel("ArgMax", since=1)
def argmax(xp, data, /, *, axis=0, keepdims=1, select_last_index=0):
    """Index of the largest element along ``axis`` (first one, or last with select_last_index)."""
    return _arg_reduce(xp, xp.argmax, data, axis, keepdims, select_last_index)


@kernel("ArgMin", since=1)
def argmin(xp, data, /, *, axis=0, keepdims=1, select_last_index=0):
    """Index of the smallest element along ``axis`` (first one, or last with select_last_index)."""
    return _arg_reduce(xp, xp.argmin, data, axis, keepdims, select_last_index)


# ---------------------------------------------------------------- CumSum / CumProd
def _scan(xp, scan, identity, x, axis, exclusive: int, reverse: int):
    (ax,) = host_ints(axis)
    if not -x.ndim <= ax < x.ndim:
        raise ValueError(f"axis {ax} is out of range for a tensor of rank {x.ndim}")
    ax %= x.ndim
    src = xp.flip(x, axis=ax) if reverse else x
    if exclusive:
        out = xp.empty_like(src)
        head = [slice(None)] * x.ndim
        head[ax] = slice(0, 1)
        out[tuple(head)] = identity
        body, tail = list(head), list(head)
        body[ax], tail[ax] = slice(1, None), slice(0, -1)
        if x.shape[ax] > 1:
            scan(src[tuple(tail)], axis=ax, dtype=x.dtype, out=out[tuple(body)])
    else:
        out = scan(src, axis=ax, dtype=x.dtype)
    return xp.flip(out, axis=ax) if reverse else out


@kernel("CumSum", since=11)
def cumsum(xp, x, axis, /, *, exclusive=0, reverse=0):
    """Cumulative sum along the scalar input ``axis``."""
    return _scan(xp, xp.cumsum, 0, x, axis, exclusive, reverse)


@kernel("CumProd", since=26)
def cumprod(xp, x, axis, /, *, exclusive=0, reverse=0):
    """Cumulative product along the scalar input ``axis``."""
    return _scan(xp, xp.cumprod, 1, x, axis, exclusive, reverse)


# ---------------------------------------------------------------- TopK
def _top_k(xp, x, k: int, axis: int, largest: int):
    """The k largest (smallest) values and their int64 indices; ties keep the lower index first."""
    if x.ndim == 0:
        raise ValueError("TopK needs an input of rank >= 1")
    axis %= x.ndim
    n = x.shape[axis]
    if not 0 <= k <= n:
        raise ValueError(f"TopK: k={k} must be in [0, {n}] for axis {axis} of shape {x.shape}")
    if largest:
        # A stable ascending sort of the reversed axis, read backwards, is a descending sort
        # in which equal values keep their original (ascending index) order.
        order = xp.argsort(xp.flip(x, axis=axis), axis=axis, kind="stable")
        order = (n - 1) - xp.flip(order, axis=axis)
    else:
        order = xp.argsort(x, axis=axis, kind="stable")
    take = [slice(None)] * x.ndim
    take[axis] = slice(0, k)
    indices = order[tuple(take)].astype(np.int64, copy=False)
    return xp.take_along_axis(x, indices, axis=axis), indices


@kernel("TopK", since=1)
def topk_1(xp, x, /, *, k, axis=-1):
    """TopK with ``k`` as an attribute (opset 1-9): largest, sorted."""
    return _top_k(xp, x, int(k), axis, 1)


@kernel("TopK", since=10)
def topk_10(xp, x, k, /, *, axis=-1, largest=1, sorted=1):  # noqa: A002 - ONNX's name
    """TopK with ``k`` as a 1-element int64 input; ``sorted=0`` still returns sorted output."""
    (kv,) = host_ints(k)
    if sorted not in (0, 1):
        raise UnsupportedOpError(f"TopK: attribute sorted={sorted} is not supported; use 0 or 1")
    return _top_k(xp, x, kv, axis, largest)
