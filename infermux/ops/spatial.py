"""Spatial sampling ops: GridSample (16, 20, 22), AffineGrid (20) and Col2Im (18).

GridSample reads ``X`` (N, C, d1..dr) at the normalised positions of ``grid`` (N, D1..Dr, r),
whose last axis lists coordinates fastest-varying first (x for width, then y, ...).  It is
vectorised over every output position: each spatial axis gets a few taps (1 nearest, 2 linear,
4 cubic) of source indices and weights, and the output is the sum over the tap combinations of
one gather each.  The padding rules follow the ONNX reference (and PyTorch):

* for nearest and linear, coordinates outside the borders ([0, d-1] with ``align_corners``,
  else [-0.5, d-0.5]) are clamped to [0, d-1] (``border``) or reflected at the borders
  (``reflection``) first; cubic skips this step, as PyTorch and onnxruntime do (the ONNX
  reference clamps first, which differs for cubic + border only);
* taps that still fall outside read 0 (``zeros``), the edge (``border``) or the reflected pixel.

``nearest`` rounds half to even.  GridSample-16 spells the modes ``bilinear``/``bicubic``;
both spellings are accepted at every opset.

AffineGrid maps a base grid of normalised coordinates through ``theta``; Col2Im sums sliding
blocks back into an image (the inverse of im2col), one strided add per kernel offset.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from infermux.errors import ShapeMismatchError, UnsupportedOpError
from infermux.ops.registry import kernel

__all__: list[str] = []

_MODES = {"linear": "linear", "bilinear": "linear", "nearest": "nearest", "cubic": "cubic",
          "bicubic": "cubic"}
_PADDING = ("zeros", "border", "reflection")


def _host_ints(a) -> list[int]:
    return [int(v) for v in a.reshape(-1).tolist()]


def _float_dtype(dtype):
    return np.dtype(np.float64) if dtype == np.float64 else np.dtype(np.float32)


# --- GridSample ---------------------------------------------------------------------------


def _reflect(xp, x, lo: float, hi: float):
    """Reflect ``x`` at ``lo`` and ``hi`` until it lies between them."""
    span = hi - lo
    if span <= 0:
        return xp.full_like(x, lo)
    below, above = x < lo, x > hi
    dist = xp.where(below, lo - x, x - hi)
    flips = xp.trunc(dist / span)
    rest = dist - flips * span
    even = flips % 2 == 0
    from_below = xp.where(even, lo + rest, hi - rest)
    from_above = xp.where(even, hi - rest, lo + rest)
    return xp.where(below, from_below, xp.where(above, from_above, x))


def _cubic_weights(xp, t, a=-0.75):
    """Keys weights of the taps at -1, 0, 1, 2 for a fractional offset ``t`` in [0, 1)."""
    def near(d):
        return ((a + 2) * d - (a + 3)) * d * d + 1

    def far(d):
        return ((a * d - 5 * a) * d + 8 * a) * d - 4 * a

    return [far(t + 1), near(t), near(1 - t), far(2 - t)]


def _axis_taps(xp, coord, size: int, mode: str, padding: str, lo: float, hi: float):
    """[(index, weight)] taps of one spatial axis; indices are safe to gather with."""
    outside = (coord < lo) | (coord > hi)
    if mode == "cubic":
        pass  # as PyTorch and onnxruntime: only the taps are clamped or reflected
    elif padding == "border":
        coord = xp.where(outside, xp.clip(coord, 0, size - 1), coord)
    elif padding == "reflection":
        coord = _reflect(xp, coord, lo, hi)
    if mode == "nearest":
        taps = [(xp.trunc(coord), None)]
    else:
        base = xp.floor(coord)
        t = coord - base
        if mode == "linear":
            taps = [(base, 1 - t), (base + 1, t)]
        else:
            taps = [(base + k - 1, w) for k, w in enumerate(_cubic_weights(xp, t))]
    return [_fix_tap(xp, i, w, size, padding, lo, hi) for i, w in taps]


def _fix_tap(xp, index, weight, size, padding, lo, hi):
    """Apply the padding rule to a tap's (float) index: zero weight, clamp or reflect."""
    if padding == "zeros":
        valid = (index >= 0) & (index < size)
        weight = valid.astype(index.dtype) if weight is None else xp.where(valid, weight, 0)
    elif padding == "reflection":
        index = xp.trunc(_reflect(xp, index, lo, hi))
    index = xp.clip(index, 0, size - 1).astype(xp.int64)
    return index, weight


def _denormalise(g, size: int, align_corners: int):
    if align_corners:
        return (g + 1) / 2 * (size - 1)
    return ((g + 1) * size - 1) / 2


@kernel("GridSample", since=16)
def grid_sample(xp, x, grid, /, *, align_corners=0, mode="linear", padding_mode="zeros"):
    if mode not in _MODES:
        raise UnsupportedOpError(f"GridSample: mode {mode!r} is not supported; use one of "
                                 f"{sorted(_MODES)}")
    if padding_mode not in _PADDING:
        raise UnsupportedOpError(f"GridSample: padding_mode {padding_mode!r} is not supported; "
                                 f"use one of {_PADDING}")
    mode = _MODES[mode]
    n, c, dims = x.shape[0], x.shape[1], x.shape[2:]
    r = len(dims)
    if grid.ndim != r + 2 or grid.shape[0] != n or grid.shape[-1] != r:
        raise ShapeMismatchError(f"GridSample: grid {grid.shape} does not match input {x.shape}")
    cdt = _float_dtype(x.dtype)
    g = grid.reshape(n, -1, r).astype(cdt)
    per_axis = []
    for i, size in enumerate(dims):
        lo, hi = (0.0, size - 1.0) if align_corners else (-0.5, size - 0.5)
        coord = _denormalise(g[..., r - 1 - i], size, align_corners)
        if mode == "nearest":
            coord = xp.rint(coord)
        per_axis.append(_axis_taps(xp, coord, size, mode, padding_mode, lo, hi))
    flat = x.reshape(n, c, -1).astype(cdt, copy=False)
    strides = [math.prod(dims[i + 1:]) for i in range(r)]
    rows = xp.arange(n)[:, None, None]
    chans = xp.arange(c)[None, :, None]
    out = xp.zeros((n, c, g.shape[1]), dtype=cdt)
    for combo in itertools.product(*per_axis):
        offset = sum(idx * s for (idx, _), s in zip(combo, strides))
        weight = None
        for _, w in combo:
            weight = w if weight is None else (weight if w is None else weight * w)
        values = flat[rows, chans, offset[:, None, :]]
        out += values if weight is None else values * weight[:, None, :]
    return out.reshape((n, c) + grid.shape[1:-1]).astype(x.dtype, copy=False)


# --- AffineGrid ---------------------------------------------------------------------------


def _base_coords(xp, size: int, align_corners: int, dtype):
    """Normalised coordinates of the ``size`` pixel centres (or corners) along one axis."""
    if align_corners:
        if size <= 1:
            return xp.zeros(size, dtype=dtype)
        return xp.linspace(-1, 1, size, dtype=dtype)
    return ((2 * xp.arange(size, dtype=dtype) + 1) / size - 1).astype(dtype)


@kernel("AffineGrid", since=20)
def affine_grid(xp, theta, size, /, *, align_corners=0):
    """(N, *spatial, r) sampling grid: theta @ [x, y, (z,) 1] over the normalised base grid."""
    n, _, *spatial = _host_ints(size)
    r = len(spatial)
    if r not in (2, 3) or theta.shape != (n, r, r + 1):
        raise ShapeMismatchError(f"AffineGrid: theta {theta.shape} does not fit size "
                                 f"{[n, '*', *spatial]} (need (N, 2, 3) or (N, 3, 4))")
    axes = [_base_coords(xp, d, align_corners, theta.dtype) for d in spatial]
    mesh = xp.meshgrid(*axes, indexing="ij")
    ones = xp.ones(tuple(spatial), dtype=theta.dtype)
    base = xp.stack([*mesh[::-1], ones], axis=-1).reshape(-1, r + 1)
    grid = xp.matmul(base, xp.swapaxes(theta, 1, 2))  # (N, P, r)
    return grid.reshape(n, *spatial, r)


# --- Col2Im -------------------------------------------------------------------------------


@kernel("Col2Im", since=18)
def col2im(xp, x, image_shape, block_shape, /, *, dilations=None, pads=None, strides=None):
    """Sum the columns of ``x`` (N, C * prod(block), L) back into (N, C, *image_shape)."""
    image, block = _host_ints(image_shape), _host_ints(block_shape)
    r = len(image)
    dilations = list(dilations or [1] * r)
    strides = list(strides or [1] * r)
    pads = list(pads or [0] * (2 * r))
    n, ck, length = x.shape
    k = math.prod(block)
    if ck % k:
        raise ShapeMismatchError(f"Col2Im: {ck} rows are not a multiple of the block size {k}")
    padded = [image[i] + pads[i] + pads[r + i] for i in range(r)]
    blocks = [(padded[i] - dilations[i] * (block[i] - 1) - 1) // strides[i] + 1 for i in range(r)]
    if math.prod(blocks) != length or min(blocks) < 1:
        raise ShapeMismatchError(f"Col2Im: {length} columns do not match the {blocks} sliding "
                                 f"blocks of image {image} with block {block}")
    cols = x.reshape(n, ck // k, *block, *blocks)
    out = xp.zeros((n, ck // k, *padded), dtype=x.dtype)
    for offs in itertools.product(*(range(b) for b in block)):
        window = tuple(slice(o * d, o * d + s * (nb - 1) + 1, s)
                       for o, d, s, nb in zip(offs, dilations, strides, blocks))
        out[(slice(None), slice(None), *window)] += cols[(slice(None), slice(None), *offs)]
    crop = tuple(slice(pads[i], pads[i] + image[i]) for i in range(r))
    return out[(slice(None), slice(None), *crop)]
