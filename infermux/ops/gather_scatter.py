"""Indexed reads and writes: Gather, GatherElements, GatherND and the Scatter family.

Negative indices count from the end of the indexed axis everywhere.  Scatter ops copy ``data``
once and write into the copy.  With ``reduction="none"`` duplicate indices are undefined in ONNX;
here the last update wins.  Reductions (``add``/``mul`` from opset 16, ``max``/``min`` from 18)
fold every duplicate in with ``ufunc.at``; where the array module has no ``ufunc.at`` for the
reduction (CuPy's ``multiply``), updates are applied in rounds that each hit a target once.

Scatter (deprecated at opset 11) is ScatterElements without ``reduction``.  TensorScatter (24)
writes ``update`` into a KV-cache-like tensor at per-batch positions along ``axis``.
"""

from __future__ import annotations

import math

from infermux.errors import ShapeMismatchError, UnsupportedOpError
from infermux.ops.registry import kernel

__all__: list[str] = []

_UFUNCS = {"add": "add", "mul": "multiply", "max": "maximum", "min": "minimum"}


def _axis(axis: int, rank: int, op: str) -> int:
    if not -rank <= axis < rank:
        raise ValueError(f"{op}: axis {axis} is out of range for rank {rank}")
    return axis % rank


def _wrap(xp, indices, dim: int, op: str):
    """int64 indices with negatives counted from ``dim``; raises when any is out of range."""
    idx = indices.astype(xp.int64, copy=False)
    if idx.size:
        lo, hi = int(idx.min()), int(idx.max())
        if lo < -dim or hi >= dim:
            raise IndexError(f"{op}: index {lo if lo < -dim else hi} is out of range for "
                             f"a dimension of size {dim}")
        if lo < 0:
            idx = xp.where(idx < 0, idx + dim, idx)
    return idx


def _scatter(xp, out, key: tuple, updates, reduction: str):
    """out[key] (op)= updates, with duplicates in ``key`` reduced, not overwritten."""
    if reduction == "none":
        out[key] = updates
        return out
    if reduction not in _UFUNCS:
        raise UnsupportedOpError(
            f"reduction {reduction!r} is not supported; use one of none, {', '.join(_UFUNCS)}")
    ufunc = getattr(xp, _UFUNCS[reduction])
    try:
        ufunc.at(out, key, updates)
    except (AttributeError, NotImplementedError, TypeError):
        _scatter_in_rounds(xp, out, key, updates, ufunc)
    return out


def _scatter_in_rounds(xp, out, key: tuple, updates, ufunc) -> None:
    """ufunc.at without ufunc.at: round k applies the k-th update of every target."""
    key = xp.broadcast_arrays(*key, updates)
    updates, key = key[-1].reshape(-1), [k.reshape(-1) for k in key[:-1]]
    flat = xp.ravel_multi_index(tuple(key), out.shape)
    order = xp.argsort(flat, kind="stable")
    ranked = flat[order]
    first = xp.ones(ranked.shape[0], dtype=bool)
    first[1:] = ranked[1:] != ranked[:-1]
    start = xp.nonzero(first)[0][xp.cumsum(first) - 1]  # where each target's run begins
    occurrence = xp.empty_like(order)
    occurrence[order] = xp.arange(ranked.shape[0]) - start
    view = out.reshape(-1)
    for k in range(int(occurrence.max()) + 1 if occurrence.size else 0):
        pick = occurrence == k
        view[flat[pick]] = ufunc(view[flat[pick]], updates[pick])


# --- Gather family ------------------------------------------------------------------------


@kernel("Gather", since=1)
def gather(xp, data, indices, /, *, axis=0):
    axis = _axis(axis, data.ndim, "Gather")
    return xp.take(data, _wrap(xp, indices, data.shape[axis], "Gather"), axis=axis)


@kernel("GatherElements", since=11)
def gather_elements(xp, data, indices, /, *, axis=0):
    axis = _axis(axis, data.ndim, "GatherElements")
    if indices.ndim != data.ndim:
        raise ShapeMismatchError(f"GatherElements: indices of rank {indices.ndim} for data of "
                                 f"rank {data.ndim}")
    # An explicit index tuple, not take_along_axis: indices may be smaller than data on any axis.
    return data[_elements_key(xp, indices, axis, data.shape[axis], "GatherElements")]


def _nd_key(xp, data_shape, indices, batch_dims: int, op: str):
    """Fancy-index tuple for GatherND/ScatterND over data reshaped to (batch, *rest)."""
    m = indices.shape[-1]
    if batch_dims + m > len(data_shape):
        raise ShapeMismatchError(f"{op}: index tuples of length {m} with batch_dims={batch_dims} "
                                 f"exceed data rank {len(data_shape)}")
    batch = math.prod(data_shape[:batch_dims])
    idx = indices.reshape(batch, -1, m)
    cols = [_wrap(xp, idx[..., i], data_shape[batch_dims + i], op) for i in range(m)]
    return (xp.arange(batch, dtype=xp.int64)[:, None], *cols)


@kernel("GatherND", since=11)
def gather_nd(xp, data, indices, /, *, batch_dims=0):
    """Gather slices of ``data`` at the index tuples in the last axis of ``indices``."""
    key = _nd_key(xp, data.shape, indices, batch_dims, "GatherND")
    m = indices.shape[-1]
    batched = data.reshape((math.prod(data.shape[:batch_dims]),) + data.shape[batch_dims:])
    out = batched[key]
    return out.reshape(indices.shape[:-1] + data.shape[batch_dims + m:])


# --- Scatter family -----------------------------------------------------------------------


def _elements_key(xp, indices, axis: int, dim: int, op: str) -> tuple:
    """Index tuple placing indices[i0..in] at (i0, .., indices, .., in)."""
    key = []
    for d, size in enumerate(indices.shape):
        if d == axis:
            key.append(_wrap(xp, indices, dim, op))
        else:
            shape = [1] * indices.ndim
            shape[d] = size
            key.append(xp.arange(size, dtype=xp.int64).reshape(shape))
    return tuple(key)


@kernel("ScatterElements", since=11)
def scatter_elements(xp, data, indices, updates, /, *, axis=0, reduction="none"):
    axis = _axis(axis, data.ndim, "ScatterElements")
    if indices.shape != updates.shape or indices.ndim != data.ndim:
        raise ShapeMismatchError(
            f"ScatterElements: indices {indices.shape} and updates {updates.shape} must match "
            f"and have the rank of data {data.shape}")
    key = _elements_key(xp, indices, axis, data.shape[axis], "ScatterElements")
    return _scatter(xp, data.copy(), key, updates, reduction)


@kernel("Scatter", since=9)
def scatter(xp, data, indices, updates, /, *, axis=0):
    """Deprecated alias of ScatterElements without reduction."""
    return scatter_elements(xp, data, indices, updates, axis=axis)


@kernel("ScatterND", since=11)
def scatter_nd(xp, data, indices, updates, /, *, reduction="none"):
    m = indices.shape[-1]
    expected = indices.shape[:-1] + data.shape[m:]
    if updates.shape != expected:
        raise ShapeMismatchError(f"ScatterND: updates shape {updates.shape} != {expected}")
    key = tuple(col[0] for col in _nd_key(xp, data.shape, indices, 0, "ScatterND")[1:])
    rows = updates.reshape((-1,) + data.shape[m:])
    return _scatter(xp, data.copy(), key, rows, reduction)


@kernel("TensorScatter", since=24)
def tensor_scatter(xp, past_cache, update, write_indices=None, /, *, mode="linear", axis=-2):
    """Write ``update`` into a copy of ``past_cache`` from ``write_indices[b]`` along ``axis``."""
    if mode not in ("linear", "circular"):
        raise UnsupportedOpError(f"TensorScatter: mode {mode!r} is not supported; "
                                 "use 'linear' or 'circular'")
    axis = _axis(axis, past_cache.ndim, "TensorScatter")
    if axis == 0:
        raise ValueError("TensorScatter: axis must not be the batch axis 0")
    cap, seq, batch = past_cache.shape[axis], update.shape[axis], past_cache.shape[0]
    others = [d for d in range(past_cache.ndim) if d != axis]
    if update.ndim != past_cache.ndim or seq > cap or any(
            update.shape[d] != past_cache.shape[d] for d in others):
        raise ShapeMismatchError(f"TensorScatter: update {update.shape} does not fit cache "
                                 f"{past_cache.shape} along axis {axis}")
    start = (xp.zeros(batch, dtype=xp.int64) if write_indices is None
             else write_indices.astype(xp.int64).reshape(batch))
    pos = start[:, None] + xp.arange(seq, dtype=xp.int64)[None, :]
    if mode == "circular":
        pos = pos % cap
    elif pos.size and (int(pos.min()) < 0 or int(pos.max()) >= cap):
        raise IndexError(f"TensorScatter: write positions run past the cache length {cap}")
    out = past_cache.copy()
    # Move the sequence axis next to batch so (batch, pos) index the first two dims of views.
    xp.moveaxis(out, axis, 1)[xp.arange(batch)[:, None], pos] = xp.moveaxis(update, axis, 1)
    return out
