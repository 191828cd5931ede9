"""Resize (opsets 10, 11, 13, 18, 19) and the older Upsample (1, 7, 9, 10).

Resize is separable, so it is applied one axis at a time.  For each resized axis the output
coordinates are mapped back to input coordinates (``coordinate_transformation_mode``), then
turned into a small table of source indices and weights, ``(out_size, taps)``, and the axis is
resampled with one ``take`` per tap: no per-pixel Python loop.

* ``nearest`` picks one index (``nearest_mode``); the data is never converted, so any dtype works.
* ``linear`` uses 2 taps and ``cubic`` 4 (Keys kernel with ``cubic_coeff_a``); with
  ``antialias`` and a scale below 1 the kernel is stretched by 1/scale (more taps) and
  normalised.  Indices past the edges repeat the edge pixel; with ``exclude_outside`` their
  weights are dropped instead and the rest renormalised.
* ``tf_crop_and_resize`` samples inside ``roi`` and writes ``extrapolation_value`` where the
  source coordinate falls outside the input.
* With ``sizes`` and ``keep_aspect_ratio_policy`` not ``stretch``, one scale (the smallest for
  ``not_larger``, the largest for ``not_smaller``) is used for every axis in ``axes`` and the
  output size is ``round_half_up(scale * in)``.  With ``scales`` the output size is
  ``floor(scale * in)``.

Interpolation is computed in float32 (float64 for float64 and wide integer inputs); integer
outputs are rounded half to even and saturated to the type.

Resize-10 and Upsample follow onnxruntime: ``asymmetric`` coordinates, and nearest picks
``ceil`` when downsampling and ``floor`` otherwise.
"""

from __future__ import annotations

import math

import numpy as np

from infermux.errors import ShapeMismatchError, UnsupportedOpError
from infermux.ops.registry import kernel

__all__: list[str] = []

_TRANSFORMS = ("half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners",
               "asymmetric", "tf_crop_and_resize")
_NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil", "simple")
_POLICIES = ("stretch", "not_larger", "not_smaller")


def _host_floats(a) -> list[float] | None:
    """A small tensor as Python floats; None when absent or empty."""
    if a is None or a.size == 0:
        return None
    return [float(v) for v in a.reshape(-1).tolist()]


def _output_geometry(shape, axes, scales, sizes, policy):
    """(scale, out_size) for each axis in ``axes``."""
    if (scales is None) == (sizes is None):
        raise ValueError("Resize: exactly one of 'scales' and 'sizes' must be given")
    in_sizes = [shape[a] for a in axes]
    given = scales if scales is not None else sizes
    if len(given) != len(axes):
        raise ShapeMismatchError(f"Resize: {len(given)} scales/sizes for {len(axes)} axes")
    if scales is not None:
        if any(s <= 0 for s in scales):
            raise ValueError(f"Resize: scales must be positive, got {scales}")
        return list(scales), [math.floor(s * d) for s, d in zip(scales, in_sizes)]
    sizes = [int(s) for s in sizes]
    if policy == "stretch":
        return [s / d if d else 1.0 for s, d in zip(sizes, in_sizes)], sizes
    if policy not in _POLICIES:
        raise UnsupportedOpError(f"Resize: keep_aspect_ratio_policy {policy!r} is not supported; "
                                 f"use one of {_POLICIES}")
    ratios = [s / d for s, d in zip(sizes, in_sizes)]
    scale = min(ratios) if policy == "not_larger" else max(ratios)
    return [scale] * len(axes), [math.floor(scale * d + 0.5) for d in in_sizes]


def _source_coords(xp, out_size, in_size, scale, transform, roi):
    """Input coordinate of every output index along one axis, and the out-of-roi mask.

    Computed in float32 like onnxruntime, so that e.g. ``3 / 0.6`` lands on 5, not 4.999...
    ``length_resized`` in the spec's formulas is the integer output size, except for
    ``align_corners``, where the ONNX reference (and so the backend tests) divides by the
    fractional ``scale * in_size - 1``; onnxruntime differs there when that is not integral.
    """
    y = xp.arange(out_size, dtype=xp.float32)
    if transform == "half_pixel":
        return (y + 0.5) / scale - 0.5, None
    if transform == "half_pixel_symmetric":
        offset = in_size / 2 * (1 - out_size / (scale * in_size))
        return offset + (y + 0.5) / scale - 0.5, None
    if transform == "pytorch_half_pixel":
        return ((y + 0.5) / scale - 0.5) if out_size > 1 else xp.zeros_like(y), None
    if transform == "align_corners":
        out_width = scale * in_size
        if out_width == 1:
            return xp.zeros_like(y), None
        return y * ((in_size - 1) / (out_width - 1)), None
    if transform == "asymmetric":
        return y / scale, None
    if transform == "tf_crop_and_resize":
        start, end = roi
        if out_size > 1:
            x = start * (in_size - 1) + y * ((end - start) * (in_size - 1) / (out_size - 1))
        else:
            x = xp.full(out_size, 0.5 * (start + end) * (in_size - 1), dtype=xp.float32)
        return x, (x < 0) | (x > in_size - 1)
    raise UnsupportedOpError(f"Resize: coordinate_transformation_mode {transform!r} is not "
                             f"supported; use one of {_TRANSFORMS}")


def _nearest_index(xp, x, mode, scale):
    if mode == "round_prefer_floor":
        return xp.ceil(x - 0.5)
    if mode == "round_prefer_ceil":
        return xp.floor(x + 0.5)
    if mode == "floor":
        return xp.floor(x)
    if mode == "ceil":
        return xp.ceil(x)
    if mode == "simple":
        return xp.ceil(x) if scale < 1 else xp.trunc(x)
    raise UnsupportedOpError(f"Resize: nearest_mode {mode!r} is not supported; "
                             f"use one of {_NEAREST_MODES[:4]}")


def _cubic_kernel(xp, d, a):
    """Keys' cubic convolution kernel at distances ``d``."""
    d = xp.abs(d)
    near = ((a + 2) * d - (a + 3)) * d * d + 1
    far = ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
    return xp.where(d <= 1, near, xp.where(d < 2, far, 0.0))


def _filter_taps(xp, x, in_size, scale, mode, cubic_a, antialias, exclude_outside):
    """(indices, weights), both (out_size, taps), for linear or cubic along one axis.

    Tap j of output i sits at ``ceil(x_i) - 1 + start + j``: the taps nearest ``x_i``, ties
    going to the left, as the ONNX reference picks them.
    """
    support = 1.0 if mode == "linear" else 2.0
    stretch = min(scale, 1.0) if antialias else 1.0
    start = math.floor(-support / stretch) + 1
    taps = 2 - 2 * start
    idx = (xp.ceil(x) - 1 + start)[:, None] + xp.arange(taps, dtype=x.dtype)[None, :]
    dist = (idx - x[:, None]) * stretch
    if mode == "linear":
        w = xp.clip(1 - xp.abs(dist), 0, 1)
    else:
        w = _cubic_kernel(xp, dist, cubic_a)
    if antialias:
        w = w / w.sum(axis=1, keepdims=True)
    idx = idx.astype(xp.int64)
    if exclude_outside:
        w = xp.where((idx < 0) | (idx >= in_size), 0.0, w)
        total = w.sum(axis=1, keepdims=True)
        w = w / xp.where(total == 0, 1.0, total)
    return xp.clip(idx, 0, in_size - 1), w


def _along(shape_len: int, axis: int, v):
    """``v`` (1-D) shaped to broadcast along ``axis`` of a rank-``shape_len`` array."""
    return v.reshape((-1,) + (1,) * (shape_len - axis - 1))


def _resize_axis(xp, y, axis, out_size, scale, roi, opts):
    """Resample ``y`` along ``axis`` to ``out_size``."""
    in_size = y.shape[axis]
    x, outside = _source_coords(xp, out_size, in_size, scale, opts["transform"], roi)
    if out_size == 0 or in_size == 0:
        shape = list(y.shape)
        shape[axis] = out_size
        return xp.zeros(shape, dtype=y.dtype), None
    if opts["mode"] == "nearest":
        idx = _nearest_index(xp, x, opts["nearest_mode"], scale)
        idx = xp.clip(idx, 0, in_size - 1).astype(xp.int64)
        return xp.take(y, idx, axis=axis), outside
    idx, w = _filter_taps(xp, x, in_size, scale, opts["mode"], opts["cubic_a"],
                          opts["antialias"], opts["exclude_outside"])
    w = w.astype(y.dtype)
    out = xp.take(y, idx[:, 0], axis=axis)
    out *= _along(y.ndim, axis, w[:, 0])
    for j in range(1, idx.shape[1]):
        term = xp.take(y, idx[:, j], axis=axis)
        term *= _along(y.ndim, axis, w[:, j])
        out += term
    return out, outside


def _compute_dtype(dtype):
    if dtype == np.float64 or (dtype.kind in "iu" and dtype.itemsize >= 4):
        return np.dtype(np.float64)
    return np.dtype(np.float32)


def _to_dtype(xp, y, dtype):
    if y.dtype == dtype:
        return y
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return xp.clip(xp.rint(y), info.min, info.max).astype(dtype)
    return y.astype(dtype)


def _resize(xp, x, *, axes, scales, sizes, roi, policy="stretch", **opts):
    """Resize ``x`` along ``axes`` (all when None); ``opts`` holds the interpolation settings."""
    if opts["mode"] not in ("nearest", "linear", "cubic"):
        raise UnsupportedOpError(f"Resize: mode {opts['mode']!r} is not supported; "
                                 "use 'nearest', 'linear' or 'cubic'")
    rank = x.ndim
    axes = list(range(rank)) if not axes else [_normalise_axis(a, rank) for a in axes]
    axis_scales, out_sizes = _output_geometry(x.shape, axes, scales, sizes, policy)
    rois = _axis_rois(roi, axes, rank, opts["transform"])
    y = x if opts["mode"] == "nearest" else x.astype(_compute_dtype(x.dtype))
    masks = []
    for a, scale, size, r in zip(axes, axis_scales, out_sizes, rois):
        if scale == 1.0 and size == y.shape[a] and r == (0.0, 1.0):
            continue
        y, outside = _resize_axis(xp, y, a, size, scale, r, opts)
        if outside is not None:
            masks.append((a, outside))
    for a, outside in masks:
        y = xp.where(_along(rank, a, outside), y.dtype.type(opts["extrapolation_value"]), y)
    return _to_dtype(xp, y, x.dtype)


def _normalise_axis(a: int, rank: int) -> int:
    if not -rank <= a < rank:
        raise ValueError(f"Resize: axis {a} is out of range for rank {rank}")
    return a % rank


def _axis_rois(roi, axes, rank, transform):
    """(start, end) of the roi for each axis in ``axes``; (0, 1) when not cropping."""
    if transform != "tf_crop_and_resize" or roi is None:
        return [(0.0, 1.0)] * len(axes)
    n = len(roi) // 2
    if n == len(axes):
        return [(roi[i], roi[n + i]) for i in range(n)]
    if n == rank:
        return [(roi[a], roi[n + a]) for a in axes]
    raise ShapeMismatchError(
        f"Resize: roi of length {len(roi)} for {len(axes)} axes of rank {rank}")


@kernel("Resize", since=11)
def resize(xp, x, roi=None, scales=None, sizes=None, /, *, mode="nearest",
           coordinate_transformation_mode="half_pixel", nearest_mode="round_prefer_floor",
           cubic_coeff_a=-0.75, exclude_outside=0, extrapolation_value=0.0, antialias=0,
           axes=None, keep_aspect_ratio_policy="stretch"):
    if nearest_mode not in _NEAREST_MODES[:4]:
        raise UnsupportedOpError(f"Resize: nearest_mode {nearest_mode!r} is not supported; "
                                 f"use one of {_NEAREST_MODES[:4]}")
    if antialias and mode == "nearest":
        raise UnsupportedOpError("Resize: antialias=1 is only supported for linear and cubic modes")
    return _resize(xp, x, axes=axes, scales=_host_floats(scales), sizes=_host_floats(sizes),
                   roi=_host_floats(roi), policy=keep_aspect_ratio_policy, mode=mode,
                   transform=coordinate_transformation_mode, nearest_mode=nearest_mode,
                   cubic_a=cubic_coeff_a, exclude_outside=exclude_outside,
                   extrapolation_value=extrapolation_value, antialias=antialias)


def _legacy_resize(xp, x, scales, mode):
    """Upsample and Resize-10: asymmetric coordinates, onnxruntime's 'simple' nearest."""
    mode = {"bilinear": "linear"}.get(mode, mode)
    if mode not in ("nearest", "linear"):
        raise UnsupportedOpError(f"mode {mode!r} is not supported; use 'nearest' or 'linear'")
    return _resize(xp, x, axes=None, scales=list(scales), sizes=None, roi=None, mode=mode,
                   transform="asymmetric", nearest_mode="simple", cubic_a=-0.75,
                   exclude_outside=0, extrapolation_value=0.0, antialias=0)


@kernel("Resize", since=10)
def resize_v10(xp, x, scales, /, *, mode="nearest"):
    return _legacy_resize(xp, x, _host_floats(scales), mode)


@kernel("Upsample", since=1)
def upsample_v1(xp, x, /, *, mode="nearest", height_scale=1.0, width_scale=1.0):
    if x.ndim != 4:
        raise ShapeMismatchError(f"Upsample-1: input must be 4-D, got shape {x.shape}")
    return _legacy_resize(xp, x, [1.0, 1.0, height_scale, width_scale], mode)


@kernel("Upsample", since=7)
def upsample_v7(xp, x, /, *, mode="nearest", scales=()):
    return _legacy_resize(xp, x, list(scales), mode)


@kernel("Upsample", since=9)
def upsample(xp, x, scales, /, *, mode="nearest"):
    return _legacy_resize(xp, x, _host_floats(scales), mode)
