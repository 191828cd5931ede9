"""Helpers shared by several op families (not kernels themselves)."""

from __future__ import annotations

import numpy as np

__all__ = ["acc_dtype", "host_ints", "row_dots", "row_sums"]


def host_ints(a) -> list[int]:
    """A small integer tensor (axes, k, axis, ...) as a Python list; works for NumPy and CuPy."""
    return [int(v) for v in a.reshape(-1).tolist()]


def acc_dtype(dtype):
    """The dtype to accumulate ``dtype`` in: float32 for 16-bit floats, else ``dtype`` itself."""
    if dtype.itemsize == 2 and (dtype.kind == "f" or dtype.name == "bfloat16"):
        return np.dtype(np.float32)
    return dtype


def row_sums(xp, x):
    """Sums over the last axis of ``x``, keeping it (shape ``(..., 1)``).

    For contiguous float32/float64 data this is one BLAS matrix-vector product with a vector
    of ones, several times faster than NumPy's pairwise reduction over short rows (Softmax,
    LayerNorm and ReduceMean over the hidden axis all reduce rows of a few hundred values).
    """
    n = x.shape[-1] if x.ndim else 1
    if x.ndim == 0 or x.dtype not in (np.float32, np.float64) or not x.flags.c_contiguous:
        return x.sum(axis=-1, keepdims=True)
    ones = xp.ones((n, 1), dtype=x.dtype)
    return xp.matmul(x.reshape(-1, n), ones).reshape(x.shape[:-1] + (1,))


def row_dots(xp, a, b):
    """Per-row dot products of two (rows, n) arrays as (rows, 1): sum(a * b) without a temporary."""
    if a.dtype not in (np.float32, np.float64):
        return (a * b).sum(axis=-1, keepdims=True)
    return xp.matmul(a[:, None, :], b[:, :, None]).reshape(-1, 1)
