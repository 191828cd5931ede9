"""Pooling: MaxPool, AveragePool, LpPool, their Global forms, MaxUnpool, MaxRoiPool and RoiAlign.

Windowed pools pad the input once (-inf or the dtype's minimum for max, zero for sums) and reduce
with strided views, one spatial dimension at a time: max and sum over a box are separable, so a
3x3 window costs 3 + 3 passes, not 9.  MaxPool's indices output tracks the argmax tap by tap.
Average divisors come from pooling a small mask of the valid region the same way.

``ceil_mode`` may add a last window that overhangs the end pads; those positions are never
counted, not even with ``count_include_pad``, as in onnxruntime and the ONNX reference.
"""

from __future__ import annotations

import math

import numpy as np

from infermux.errors import ShapeMismatchError, UnsupportedOpError
from infermux.ops.conv import Window, pad_spatial, same_pads, spatial_attr, tap_views
from infermux.ops.registry import kernel

__all__: list[str] = []


def pool_window(in_spatial, kernel_shape, strides, dilations, pads, auto_pad, ceil_mode):
    """The pooling :class:`Window` and the model's own end pads.

    The window's ``pads_end`` is what the padded buffer needs so every window fits (ceil_mode
    can need more than the model's end pads, and fewer suffice when those are larger); the
    model's end pads are returned apart because AveragePool's ``count_include_pad`` counts them.
    """
    if kernel_shape is None:
        raise ShapeMismatchError("pooling needs the 'kernel_shape' attribute")
    rank = len(in_spatial)
    kernel = spatial_attr(kernel_shape, rank, 1, "kernel_shape")
    strides = spatial_attr(strides, rank, 1, "strides")
    dilations = spatial_attr(dilations, rank, 1, "dilations")
    spans = [(k - 1) * d + 1 for k, d in zip(kernel, dilations)]
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        out = [-(-n // s) for n, s in zip(in_spatial, strides)]
        both = [same_pads(n, o, s, sp, auto_pad) for n, o, s, sp in zip(in_spatial, out, strides, spans)]
        begin, end = [b for b, _ in both], [e for _, e in both]
    elif auto_pad in ("NOTSET", "VALID"):
        flat = [0] * (2 * rank) if auto_pad == "VALID" or not pads else [int(p) for p in pads]
        if len(flat) != 2 * rank:
            raise ShapeMismatchError(f"attribute 'pads' has {len(flat)} values, expected {2 * rank}")
        begin, end = flat[:rank], flat[rank:]
        out = [_pooled_size(n, b, e, sp, s, ceil_mode)
               for n, b, e, sp, s in zip(in_spatial, begin, end, spans, strides)]
    else:
        raise UnsupportedOpError(
            f"auto_pad '{auto_pad}' is not supported; use NOTSET, SAME_UPPER, SAME_LOWER or VALID")
    if any(o <= 0 for o in out):
        raise ShapeMismatchError(f"pooling window {kernel} does not fit input {tuple(in_spatial)}")
    # The buffer must hold every window; ceil_mode may need more than the end pads.
    buf_end = [max(0, (o - 1) * s + sp - n - b)
               for o, s, sp, n, b in zip(out, strides, spans, in_spatial, begin)]
    win = Window(kernel, strides, dilations, tuple(begin), tuple(buf_end), tuple(out))
    return win, tuple(end)


def _pooled_size(n: int, begin: int, end: int, span: int, stride: int, ceil_mode: int) -> int:
    room = n + begin + end - span
    if not ceil_mode:
        return room // stride + 1
    out = -(-room // stride) + 1
    if (out - 1) * stride >= n + begin:  # the last window must start inside the image or left pad
        out -= 1
    return out


def _lowest(dtype):
    dtype = np.dtype(dtype)
    return -np.inf if dtype.kind == "f" else np.iinfo(dtype).min


def _reduce_separable(xp, xpad, win: Window, combine):
    """Combine (xp.maximum or xp.add) each window of ``xpad``, one spatial axis at a time."""
    y = xpad
    for axis in range(len(win.kernel)):
        k, d, s, o = win.kernel[axis], win.dilations[axis], win.strides[axis], win.out[axis]
        views = [y[(slice(None),) * (2 + axis) + (slice(t * d, t * d + (o - 1) * s + 1, s),)]
                 for t in range(k)]
        acc = views[0].copy()
        for view in views[1:]:
            combine(acc, view, out=acc)
        y = acc
    return y


def _window_counts(xp, in_spatial, win: Window, end_pads, include_pad: bool, dtype):
    """How many positions of each window are counted by AveragePool (shape (1, 1, *out))."""
    sizes = [b + n + e for b, n, e in zip(win.pads_begin, in_spatial, win.pads_end)]
    mask = xp.zeros((1, 1) + tuple(sizes), dtype=dtype)
    if include_pad:
        region = tuple(slice(0, b + n + e) for b, n, e in zip(win.pads_begin, in_spatial, end_pads))
    else:
        region = tuple(slice(b, b + n) for b, n in zip(win.pads_begin, in_spatial))
    mask[(slice(None), slice(None)) + region] = 1
    return _reduce_separable(xp, mask, win, xp.add)


def _check_input(x, op: str):
    if x.ndim < 3:
        raise ShapeMismatchError(f"{op} needs an input of rank >= 3 (N, C, ...), got shape {x.shape}")


# ---- MaxPool ------------------------------------------------------------------------------


def _max_with_indices(xp, x, xpad, win: Window, storage_order: int):
    """Max over each window and the flat index of its first maximum in the unpadded input."""
    spatial = x.shape[2:]
    order = range(len(spatial)) if storage_order == 0 else reversed(range(len(spatial)))
    place = [0] * len(spatial)
    step = 1
    for axis in reversed(list(order)):
        place[axis] = step
        step *= spatial[axis]
    best = arg = None
    for tap, view in tap_views(xpad, win):
        index = 0
        for axis, (t, d, s, o, b) in enumerate(zip(tap, win.dilations, win.strides, win.out, win.pads_begin)):
            pos = xp.arange(o, dtype=np.int64) * s + (t * d - b)
            index = index + pos.reshape((o,) + (1,) * (len(spatial) - axis - 1)) * place[axis]
        if best is None:
            best, arg = view.copy(), xp.broadcast_to(index, view.shape).copy()
            continue
        better = view > best
        best = xp.where(better, view, best)
        arg = xp.where(better, index, arg)
    base = xp.arange(x.shape[0] * x.shape[1], dtype=np.int64).reshape(x.shape[:2] + (1,) * len(spatial))
    return best, arg + base * math.prod(spatial)


@kernel("MaxPool", since=1)
def max_pool(xp, x, /, *, auto_pad="NOTSET", ceil_mode=0, dilations=None, kernel_shape=None,
             pads=None, storage_order=0, strides=None, _used_outputs=(True, False)):
    """Max over each window; the optional second output holds flat argmax indices (int64)."""
    _check_input(x, "MaxPool")
    win, _ = pool_window(x.shape[2:], kernel_shape, strides, dilations, pads, auto_pad, ceil_mode)
    xpad = pad_spatial(xp, x, win.pads_begin, win.pads_end, _lowest(x.dtype))
    if len(_used_outputs) > 1 and _used_outputs[1]:
        return _max_with_indices(xp, x, xpad, win, storage_order)
    return _reduce_separable(xp, xpad, win, xp.maximum), None


# ---- AveragePool and LpPool ---------------------------------------------------------------


@kernel("AveragePool", since=1)
def average_pool(xp, x, /, *, auto_pad="NOTSET", ceil_mode=0, count_include_pad=0,
                 dilations=None, kernel_shape=None, pads=None, strides=None):
    """Mean over each window; pads count towards the divisor only with ``count_include_pad``."""
    _check_input(x, "AveragePool")
    win, end_pads = pool_window(x.shape[2:], kernel_shape, strides, dilations, pads, auto_pad, ceil_mode)
    dt = np.dtype(np.float32) if x.dtype.itemsize < 4 else x.dtype
    xpad = pad_spatial(xp, x.astype(dt, copy=False), win.pads_begin, win.pads_end)
    total = _reduce_separable(xp, xpad, win, xp.add)
    padded = any(win.pads_begin) or any(win.pads_end)
    if not padded or (count_include_pad and win.pads_end == end_pads):
        total *= dt.type(1.0 / math.prod(win.kernel))
    else:
        total /= _window_counts(xp, x.shape[2:], win, end_pads, bool(count_include_pad), dt)
    return total.astype(x.dtype, copy=False)


def _power_sum(xp, x, p):
    """|x| ** p, exact for the common p = 1 and 2 (opset 1 gives p as a float)."""
    if p == 1:
        return xp.abs(x)
    if p == 2:
        return x * x
    return xp.abs(x) ** float(p)


def _power_root(xp, s, p):
    if p == 2:
        return xp.sqrt(s)
    return s if p == 1 else s ** (1.0 / float(p))


@kernel("LpPool", since=1)
def lp_pool(xp, x, /, *, auto_pad="NOTSET", ceil_mode=0, dilations=None, kernel_shape=None, p=2,
            pads=None, strides=None):
    """(sum |x|^p)^(1/p) over each window; padding contributes zeros."""
    _check_input(x, "LpPool")
    win, _ = pool_window(x.shape[2:], kernel_shape, strides, dilations, pads, auto_pad, ceil_mode)
    xpad = pad_spatial(xp, _power_sum(xp, x, p), win.pads_begin, win.pads_end)
    return _power_root(xp, _reduce_separable(xp, xpad, win, xp.add), p).astype(x.dtype, copy=False)


# ---- Global pools ---------------------------------------------------------------------------


def _spatial_axes(x, op: str):
    _check_input(x, op)
    return tuple(range(2, x.ndim))


@kernel("GlobalAveragePool", since=1)
def global_average_pool(xp, x, /):
    """Mean over all spatial dims, kept as size-1 dims."""
    return x.mean(axis=_spatial_axes(x, "GlobalAveragePool"), keepdims=True).astype(x.dtype, copy=False)


@kernel("GlobalMaxPool", since=1)
def global_max_pool(xp, x, /):
    """Max over all spatial dims, kept as size-1 dims."""
    return x.max(axis=_spatial_axes(x, "GlobalMaxPool"), keepdims=True)


@kernel("GlobalLpPool", since=1)
def global_lp_pool(xp, x, /, *, p=2):
    """(sum |x|^p)^(1/p) over all spatial dims, kept as size-1 dims."""
    axes = _spatial_axes(x, "GlobalLpPool")
    s = _power_sum(xp, x, p).sum(axis=axes, keepdims=True)
    return _power_root(xp, s, p).astype(x.dtype, copy=False)


# ---- MaxUnpool ----------------------------------------------------------------------------


@kernel("MaxUnpool", since=9)
def max_unpool(xp, x, indices, output_shape=None, /, *, kernel_shape=None, pads=None, strides=None):
    """Scatter ``x`` to the flat ``indices`` of the shape MaxPool saw; zeros elsewhere.

    The indices address the shape inferred from kernel, strides and pads; an ``output_shape``
    larger than that pads the result with zeros at the end (as the ONNX reference does).
    """
    _check_input(x, "MaxUnpool")
    rank = x.ndim - 2
    kernel = spatial_attr(kernel_shape, rank, 1, "kernel_shape")
    strides = spatial_attr(strides, rank, 1, "strides")
    flat = [0] * (2 * rank) if not pads else [int(v) for v in pads]
    inferred = x.shape[:2] + tuple((n - 1) * s - (flat[i] + flat[rank + i]) + k
                                   for i, (n, s, k) in enumerate(zip(x.shape[2:], strides, kernel)))
    y = xp.zeros(math.prod(inferred), dtype=x.dtype)
    y[indices.reshape(-1)] = x.reshape(-1)
    y = y.reshape(inferred)
    if output_shape is None:
        return y
    shape = tuple(int(v) for v in (output_shape.get() if hasattr(output_shape, "get") else output_shape))
    if len(shape) != x.ndim:
        raise ShapeMismatchError(f"MaxUnpool output_shape {shape} must have rank {x.ndim}")
    out = xp.zeros(shape, dtype=x.dtype)
    common = tuple(slice(0, min(a, b)) for a, b in zip(shape, inferred))
    out[common] = y[common]
    return out


# ---- MaxRoiPool -----------------------------------------------------------------------------


def _host(a):
    """A small array as host (NumPy) data, for per-ROI Python loops."""
    return np.asarray(a.get() if hasattr(a, "get") else a)


@kernel("MaxRoiPool", since=1)
def max_roi_pool(xp, x, rois, /, *, pooled_shape=None, spatial_scale=1.0):
    """Max over each of pooled_shape bins of each ROI (batch, x1, y1, x2, y2), Caffe-style."""
    if pooled_shape is None or len(pooled_shape) != 2 or x.ndim != 4:
        raise ShapeMismatchError("MaxRoiPool needs a 4-D input and a 2-value 'pooled_shape'")
    ph_n, pw_n = (int(v) for v in pooled_shape)
    _, c, h, w = x.shape
    boxes = _host(rois)
    y = xp.zeros((boxes.shape[0], c, ph_n, pw_n), dtype=x.dtype)
    for r, (b, x1, y1, x2, y2) in enumerate(boxes.tolist()):
        sx, sy = round(x1 * spatial_scale), round(y1 * spatial_scale)
        ex, ey = round(x2 * spatial_scale), round(y2 * spatial_scale)
        bin_h, bin_w = max(ey - sy + 1, 1) / ph_n, max(ex - sx + 1, 1) / pw_n
        for ph in range(ph_n):
            hs = min(max(math.floor(ph * bin_h) + sy, 0), h)
            he = min(max(math.ceil((ph + 1) * bin_h) + sy, 0), h)
            for pw in range(pw_n):
                ws = min(max(math.floor(pw * bin_w) + sx, 0), w)
                we = min(max(math.ceil((pw + 1) * bin_w) + sx, 0), w)
                if he > hs and we > ws:
                    y[r, :, ph, pw] = x[int(b), :, hs:he, ws:we].max(axis=(1, 2))
    return y


# ---- RoiAlign -----------------------------------------------------------------------------


def _interp_taps(xp, coords, size: int, dtype):
    """Bilinear taps along one axis: (index, weight) pairs with a trailing axis of 2 corners.

    Follows onnxruntime: samples beyond [-1, size] weigh nothing, others clamp to the border.
    """
    valid = (coords >= -1.0) & (coords <= size)
    c = xp.maximum(coords, 0.0)
    low = xp.floor(c).astype(np.int64)
    edge = low >= size - 1
    low = xp.where(edge, size - 1, low)
    high = xp.where(edge, size - 1, low + 1)
    c = xp.where(edge, low.astype(c.dtype), c)
    frac = c - low
    weights = xp.stack([1.0 - frac, frac], axis=-1) * valid[..., None]
    return xp.stack([low, high], axis=-1), weights.astype(dtype)


def _sample_coords(xp, start, bin_size, pooled: int, grid: int):
    """(pooled, grid) sample positions inside each bin."""
    ph = xp.arange(pooled, dtype=np.float64)[:, None]
    g = (xp.arange(grid, dtype=np.float64)[None, :] + 0.5) / grid
    return start + (ph + g) * bin_size


def _roi_align_one(xp, image, box, out_h, out_w, sampling_ratio, scale, offset, aligned, mode):
    """RoiAlign of one ROI over ``image`` (C, H, W)."""
    _, h, w = image.shape
    x1, y1, x2, y2 = (v * scale - offset for v in box)
    roi_w, roi_h = x2 - x1, y2 - y1
    if not aligned:  # malformed ROIs are forced to 1x1 in the legacy mode
        roi_w, roi_h = max(roi_w, 1.0), max(roi_h, 1.0)
    bin_h, bin_w = roi_h / out_h, roi_w / out_w
    grid_h = sampling_ratio if sampling_ratio > 0 else max(1, math.ceil(roi_h / out_h))
    grid_w = sampling_ratio if sampling_ratio > 0 else max(1, math.ceil(roi_w / out_w))
    iy, wy = _interp_taps(xp, _sample_coords(xp, y1, bin_h, out_h, grid_h), h, image.dtype)
    ix, wx = _interp_taps(xp, _sample_coords(xp, x1, bin_w, out_w, grid_w), w, image.dtype)
    if mode == "avg":  # bilinear averaging is separable: Ay @ image @ Ax^T
        ay = (wy[..., None] * (iy[..., None] == xp.arange(h))).sum(axis=(1, 2))
        ax = (wx[..., None] * (ix[..., None] == xp.arange(w))).sum(axis=(1, 2))
        return xp.matmul(xp.matmul(ay, image), ax.T) / (grid_h * grid_w)
    # max: the max over samples of the max over the four weighted corners (onnxruntime's rule)
    vals = image[:, iy[:, :, :, None, None, None], ix[None, None, None, :, :, :]]
    vals = vals * (wy[:, :, :, None, None, None] * wx[None, None, None, :, :, :])
    return vals.max(axis=(2, 3, 5, 6))


def _roi_align(xp, x, rois, batch_indices, mode, output_height, output_width, sampling_ratio,
               spatial_scale, half_pixel):
    if mode not in ("avg", "max"):
        raise UnsupportedOpError(f"RoiAlign mode '{mode}' is not supported; use 'avg' or 'max'")
    if x.ndim != 4 or rois.ndim != 2 or rois.shape[1] != 4:
        raise ShapeMismatchError(
            f"RoiAlign needs X (N, C, H, W) and rois (R, 4), got {x.shape} and {rois.shape}")
    boxes, batches = _host(rois).astype(np.float64), _host(batch_indices).astype(np.int64)
    y = xp.empty((boxes.shape[0], x.shape[1], output_height, output_width), dtype=x.dtype)
    offset = 0.5 if half_pixel else 0.0
    for r in range(boxes.shape[0]):
        y[r] = _roi_align_one(xp, x[batches[r]], boxes[r].tolist(), output_height, output_width,
                              int(sampling_ratio), float(spatial_scale), offset, half_pixel, mode)
    return y


@kernel("RoiAlign", since=10)
def roi_align_10(xp, x, rois, batch_indices, /, *, mode="avg", output_height=1, output_width=1,
                 sampling_ratio=0, spatial_scale=1.0):
    """RoiAlign before opset 16: pixel coordinates without the half-pixel shift."""
    return _roi_align(xp, x, rois, batch_indices, mode, output_height, output_width,
                      sampling_ratio, spatial_scale, half_pixel=False)


@kernel("RoiAlign", since=16)
def roi_align(xp, x, rois, batch_indices, /, *, coordinate_transformation_mode="half_pixel",
              mode="avg", output_height=1, output_width=1, sampling_ratio=0, spatial_scale=1.0):
    """Bilinear ROI pooling; ``half_pixel`` shifts ROI coordinates by -0.5 (opset 16 default)."""
    if coordinate_transformation_mode not in ("half_pixel", "output_half_pixel"):
        raise UnsupportedOpError(
            f"RoiAlign coordinate_transformation_mode '{coordinate_transformation_mode}' is not "
            "supported; use 'half_pixel' or 'output_half_pixel'")
    return _roi_align(xp, x, rois, batch_indices, mode, output_height, output_width,
                      sampling_ratio, spatial_scale,
                      half_pixel=coordinate_transformation_mode == "half_pixel")
