"""Convolutions: Conv, ConvTranspose, ConvInteger, DeformConv and CausalConvWithState.

Every op works on ``(N, C, *spatial)`` tensors of any spatial rank.  The window geometry
(kernel, strides, dilations, pads, output size) is computed once into a :class:`Window`, which
the pooling ops share.  How each convolution runs:

* dense: im2col as one strided view of the padded input, copied once, then one ``xp.matmul``
  batched over groups (weights as ``(G, M/G, C/G*k)``); 1x1 stride-1 convolutions skip im2col.
* depthwise (one input channel per group): ``k`` shifted multiply-accumulates over strided views
  of the padded input, never im2col.  On the CPU, :mod:`infermux.ops._depthwise` runs them as
  compiled loops, parallel over channels (or as cache-blocked ufuncs without numba).
* transposed: one matmul to columns, then col2im as ``k`` strided adds.

16-bit floats are computed in float32 (there is no half BLAS on the CPU) and cast back.
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np

from infermux.errors import ShapeMismatchError, UnsupportedOpError
from infermux.ops._depthwise import depthwise_cpu
from infermux.ops.registry import kernel

__all__ = ["Window", "compute_dtype", "conv_nd", "conv_window", "pad_spatial", "same_pads", "spatial_attr",
           "tap_views"]

_AUTO_PADS = ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID")


@dataclasses.dataclass(frozen=True)
class Window:
    """Where a sliding window reads: per spatial dim, its size, step, spacing, pads and count."""

    kernel: tuple[int, ...]
    strides: tuple[int, ...]
    dilations: tuple[int, ...]
    pads_begin: tuple[int, ...]
    pads_end: tuple[int, ...]
    out: tuple[int, ...]

    @property
    def span(self) -> tuple[int, ...]:
        """Extent of one dilated window."""
        return tuple((k - 1) * d + 1 for k, d in zip(self.kernel, self.dilations))

    @property
    def is_identity(self) -> bool:
        """A 1x1 window with unit strides and no padding (a plain matmul)."""
        return (all(k == 1 for k in self.kernel) and all(s == 1 for s in self.strides)
                and not any(self.pads_begin) and not any(self.pads_end))


def spatial_attr(values, rank: int, default: int, name: str) -> tuple[int, ...]:
    """A per-spatial-dim attribute (strides, dilations, ...) as a tuple, ``default`` when absent."""
    if values is None or len(values) == 0:
        return (default,) * rank
    if len(values) != rank:
        raise ShapeMismatchError(f"attribute '{name}' has {len(values)} values, expected {rank}")
    return tuple(int(v) for v in values)


def same_pads(in_size: int, out_size: int, stride: int, span: int, auto_pad: str) -> tuple[int, int]:
    """(begin, end) pads that make a window of ``span`` produce ``out_size`` outputs."""
    total = max(0, (out_size - 1) * stride + span - in_size)
    small, large = total // 2, total - total // 2
    return (small, large) if auto_pad == "SAME_UPPER" else (large, small)


def conv_window(in_spatial, kernel_shape, strides=None, dilations=None, pads=None,
                auto_pad: str = "NOTSET") -> Window:
    """The geometry of a convolution window (floor division, as Conv and ConvInteger use)."""
    rank = len(in_spatial)
    kernel_shape = tuple(int(k) for k in kernel_shape)
    strides = spatial_attr(strides, rank, 1, "strides")
    dilations = spatial_attr(dilations, rank, 1, "dilations")
    if auto_pad not in _AUTO_PADS:
        raise UnsupportedOpError(f"auto_pad '{auto_pad}' is not supported; use one of {_AUTO_PADS}")
    spans = [(k - 1) * d + 1 for k, d in zip(kernel_shape, dilations)]
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        out = [-(-n // s) for n, s in zip(in_spatial, strides)]
        both = [same_pads(n, o, s, sp, auto_pad) for n, o, s, sp in zip(in_spatial, out, strides, spans)]
        begin, end = [b for b, _ in both], [e for _, e in both]
    else:
        flat = [0] * (2 * rank) if auto_pad == "VALID" or not pads else [int(p) for p in pads]
        if len(flat) != 2 * rank:
            raise ShapeMismatchError(f"attribute 'pads' has {len(flat)} values, expected {2 * rank}")
        begin, end = flat[:rank], flat[rank:]
        out = [(n + b + e - sp) // s + 1 for n, b, e, sp, s in zip(in_spatial, begin, end, spans, strides)]
    if any(o <= 0 for o in out):
        raise ShapeMismatchError(
            f"window {kernel_shape} (dilations {dilations}) does not fit input {tuple(in_spatial)} "
            f"with pads {begin + end}")
    return Window(kernel_shape, strides, dilations, tuple(begin), tuple(end), tuple(out))


def compute_dtype(dtype):
    """The dtype a float kernel computes in: float32 for 16-bit floats, else the dtype itself."""
    dtype = np.dtype(dtype)
    return np.dtype(np.float32) if dtype.itemsize <= 2 else dtype


def pad_spatial(xp, x, begin, end, value=0):
    """``x`` with its spatial dims (all after the first two) padded; ``x`` itself if no padding."""
    if not any(begin) and not any(end):
        return x
    shape = x.shape[:2] + tuple(n + b + e for n, b, e in zip(x.shape[2:], begin, end))
    out = xp.full(shape, value, dtype=x.dtype)
    inner = tuple(slice(b, b + n) for b, n in zip(begin, x.shape[2:]))
    out[(slice(None), slice(None)) + inner] = x
    return out


def tap_views(xpad, win: Window):
    """Yield ``(tap, view)``: per kernel offset, the ``(N, C, *out)`` view of ``xpad`` it reads."""
    for tap in itertools.product(*(range(k) for k in win.kernel)):
        index = tuple(slice(t * d, t * d + (o - 1) * s + 1, s)
                      for t, d, s, o in zip(tap, win.dilations, win.strides, win.out))
        yield tap, xpad[(slice(None), slice(None)) + index]


def _im2col(xp, xpad, win: Window):
    """``(N, C, *kernel, *out)`` strided view of the padded input, copied to contiguous columns."""
    st = xpad.strides
    spatial = st[2:]
    view = xp.lib.stride_tricks.as_strided(
        xpad, shape=xpad.shape[:2] + win.kernel + win.out,
        strides=st[:2] + tuple(s * d for s, d in zip(spatial, win.dilations))
        + tuple(s * k for s, k in zip(spatial, win.strides)))
    return xp.ascontiguousarray(view)


def _conv_dense(xp, x, w, win: Window, group: int):
    """Grouped convolution of float arrays through one (batched) matmul; no bias."""
    n, c = x.shape[:2]
    m = w.shape[0]
    length = math.prod(win.out)
    if win.is_identity:
        cols = x.reshape(n, group, c // group, length)
    else:
        xpad = pad_spatial(xp, x, win.pads_begin, win.pads_end)
        cols = _im2col(xp, xpad, win).reshape(n, group, -1, length)
    wmat = w.reshape(group, m // group, -1)
    if group == 1:
        y = xp.matmul(wmat[0], cols[:, 0])
    else:
        y = xp.matmul(wmat, cols)
    return y.reshape((n, m) + win.out)


def _conv_depthwise(xp, x, w, win: Window):
    """Convolution with one input channel per group: shifted multiply-accumulates, no im2col."""
    n, c = x.shape[:2]
    mult = w.shape[0] // c
    xpad = pad_spatial(xp, x, win.pads_begin, win.pads_end)
    wk = w.reshape((c, mult) + win.kernel)
    bshape = (1, c, mult) + (1,) * len(win.out)
    y = None
    for tap, view in tap_views(xpad, win):
        term = view[:, :, None] * wk[(slice(None), slice(None)) + tap].reshape(bshape)
        if y is None:
            y = term
        else:
            y += term
    return y.reshape((n, c * mult) + win.out)


def conv_nd(xp, x, w, win: Window, group: int = 1):
    """Float convolution of ``x`` (N, C, ...) with ``w`` (M, C/group, ...) over ``win``; no bias."""
    c, m = x.shape[1], w.shape[0]
    if group <= 0 or c % group or m % group or w.shape[1] * group != c:
        raise ShapeMismatchError(
            f"Conv of input {x.shape} with weights {w.shape} and group={group}: "
            "channels must be divisible by group and W.shape[1] * group == C")
    if group > 1 and group == c:
        return _conv_depthwise(xp, x, w, win)
    return _conv_dense(xp, x, w, win, group)


def _add_bias(y, b):
    if b is not None:
        y += b.reshape((1, -1) + (1,) * (y.ndim - 2)).astype(y.dtype, copy=False)
    return y


def _check_rank(x, w, op: str):
    if x.ndim < 3 or w.ndim != x.ndim:
        raise ShapeMismatchError(f"{op} needs X and W of the same rank >= 3, got {x.shape} and {w.shape}")


def _conv(xp, x, w, b, auto_pad, dilations, group, pads, strides, depthwise):
    _check_rank(x, w, "Conv")
    win = conv_window(x.shape[2:], w.shape[2:], strides, dilations, pads, auto_pad)
    dt = compute_dtype(x.dtype)
    xc, wc = x.astype(dt, copy=False), w.astype(dt, copy=False)
    if depthwise is not None and group > 1 and group == x.shape[1] == w.shape[0]:
        y = depthwise(xc, wc, None if b is None else b.astype(dt, copy=False), win)
    else:
        y = _add_bias(conv_nd(xp, xc, wc, win, group), b)
    return y.astype(x.dtype, copy=False)


@kernel("Conv", since=1)
def conv(xp, x, w, b=None, /, *, auto_pad="NOTSET", dilations=None, group=1, kernel_shape=None,
         pads=None, strides=None):
    """N-d grouped convolution with bias (cross-correlation, as ONNX defines it)."""
    return _conv(xp, x, w, b, auto_pad, dilations, group, pads, strides, None)


def _depthwise_cpu(x, w, b, win: Window):
    """The NumPy depthwise fast path for 1-D and 2-D; other ranks take the generic loop."""
    if x.ndim in (3, 4):
        return depthwise_cpu(x, w, b, win)
    return _add_bias(_conv_depthwise(np, x, w, win), b)


@kernel("Conv", since=1, fast=True)
def conv_fast(xp, x, w, b=None, /, *, auto_pad="NOTSET", dilations=None, group=1,
              kernel_shape=None, pads=None, strides=None):
    """CPU path: as Conv, with depthwise layers compiled (or cache-blocked) and threaded."""
    return _conv(xp, x, w, b, auto_pad, dilations, group, pads, strides, _depthwise_cpu)


# ---- ConvTranspose -----------------------------------------------------------------------


def _transpose_geometry(in_spatial, kernel, strides, dilations, pads, output_padding,
                        output_shape, auto_pad):
    """(pads_begin, out_spatial, strides, dilations) of a transposed convolution (ONNX formulas).

    With ``output_shape`` or SAME auto-padding the pads follow from the output size; the odd
    pixel goes to the end for SAME_UPPER and to the beginning otherwise, as the spec says.
    """
    rank = len(in_spatial)
    strides = spatial_attr(strides, rank, 1, "strides")
    dilations = spatial_attr(dilations, rank, 1, "dilations")
    out_pad = spatial_attr(output_padding, rank, 0, "output_padding")
    if auto_pad not in _AUTO_PADS:
        raise UnsupportedOpError(f"auto_pad '{auto_pad}' is not supported; use one of {_AUTO_PADS}")
    full = [s * (n - 1) + op + (k - 1) * d + 1
            for n, k, s, d, op in zip(in_spatial, kernel, strides, dilations, out_pad)]
    if (output_shape is not None and len(output_shape)) or auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        if output_shape is not None and len(output_shape):
            out = [int(v) for v in output_shape][-rank:]
        else:
            out = [n * s for n, s in zip(in_spatial, strides)]
        totals = [f - o for f, o in zip(full, out)]
        if auto_pad == "SAME_UPPER":
            begin = [t // 2 for t in totals]
        else:
            begin = [t - t // 2 for t in totals]
        return begin, out, strides, dilations
    flat = [0] * (2 * rank) if auto_pad == "VALID" or not pads else [int(p) for p in pads]
    if len(flat) != 2 * rank:
        raise ShapeMismatchError(f"attribute 'pads' has {len(flat)} values, expected {2 * rank}")
    out = [f - b - e for f, b, e in zip(full, flat[:rank], flat[rank:])]
    return flat[:rank], out, strides, dilations


def _col2im(xp, cols, in_spatial, strides, dilations, begin, out, dtype):
    """Sum the ``(N, M, *kernel, *in)`` columns into the output window starting at ``begin``."""
    rank = len(in_spatial)
    kernel = cols.shape[2:2 + rank]
    full = [(n - 1) * s + (k - 1) * d + 1 for n, k, s, d in zip(in_spatial, kernel, strides, dilations)]
    lo = [min(0, b) for b in begin]
    hi = [max(f, b + o) for f, b, o in zip(full, begin, out)]
    buf = xp.zeros(cols.shape[:2] + tuple(h - l for h, l in zip(hi, lo)), dtype=dtype)
    for tap in itertools.product(*(range(k) for k in kernel)):
        index = tuple(slice(t * d - l, t * d - l + (n - 1) * s + 1, s)
                      for t, d, s, n, l in zip(tap, dilations, strides, in_spatial, lo))
        buf[(slice(None), slice(None)) + index] += cols[(slice(None), slice(None)) + tap]
    crop = tuple(slice(b - l, b - l + o) for b, l, o in zip(begin, lo, out))
    return buf[(slice(None), slice(None)) + crop]


@kernel("ConvTranspose", since=1)
def conv_transpose(xp, x, w, b=None, /, *, auto_pad="NOTSET", dilations=None, group=1,
                   kernel_shape=None, output_padding=None, output_shape=None, pads=None,
                   strides=None):
    """Transposed convolution: W is (C, M/group, *k); output size from pads or output_shape."""
    _check_rank(x, w, "ConvTranspose")
    n, c = x.shape[:2]
    if group <= 0 or c % group or w.shape[0] != c:
        raise ShapeMismatchError(
            f"ConvTranspose of input {x.shape} with weights {w.shape} and group={group}: "
            "W.shape[0] must equal C and C be divisible by group")
    in_spatial, kernel = x.shape[2:], w.shape[2:]
    begin, out, strides, dilations = _transpose_geometry(
        in_spatial, kernel, strides, dilations, pads, output_padding, output_shape, auto_pad)
    dt = compute_dtype(x.dtype)
    m_g = w.shape[1]
    wmat = w.astype(dt, copy=False).reshape(group, c // group, -1).transpose(0, 2, 1)
    xmat = x.astype(dt, copy=False).reshape(n, group, c // group, -1)
    cols = xp.matmul(wmat, xmat).reshape((n, group * m_g) + tuple(kernel) + tuple(in_spatial))
    y = _col2im(xp, cols, in_spatial, strides, dilations, begin, out, dt)
    y = xp.ascontiguousarray(y)
    return _add_bias(y, b).astype(x.dtype, copy=False)


# ---- Integer convolution -------------------------------------------------------------------


def exact_float_dtype(terms: int):
    """A float dtype whose matmul is exact for sums of ``terms`` products of 8-bit differences."""
    return np.dtype(np.float32) if terms * 255 * 255 < 2 ** 24 else np.dtype(np.float64)


def _zero_point_per_channel(zp, ndim: int):
    """A zero point (scalar or one per output channel) shaped to broadcast over W."""
    if zp is None:
        return 0
    if zp.ndim == 1 and zp.size > 1:
        return zp.reshape((-1,) + (1,) * (ndim - 1))
    return zp.reshape(())


def conv_integer_float(xp, x, w, x_zero_point, w_zero_point, auto_pad, dilations, group, pads,
                       strides):
    """Integer convolution of zero-point-shifted inputs, computed exactly in float."""
    _check_rank(x, w, "ConvInteger")
    win = conv_window(x.shape[2:], w.shape[2:], strides, dilations, pads, auto_pad)
    dt = exact_float_dtype(w[0].size)
    xs = x.astype(dt)
    if x_zero_point is not None:
        xs -= x_zero_point.reshape(()).astype(dt)
    ws = w.astype(dt) - xp.asarray(_zero_point_per_channel(w_zero_point, w.ndim)).astype(dt)
    return conv_nd(xp, xs, ws, win, group)


@kernel("ConvInteger", since=10)
def conv_integer(xp, x, w, x_zero_point=None, w_zero_point=None, /, *, auto_pad="NOTSET",
                 dilations=None, group=1, kernel_shape=None, pads=None, strides=None):
    """Convolution of 8-bit integers with zero points; int32 result."""
    y = conv_integer_float(xp, x, w, x_zero_point, w_zero_point, auto_pad, dilations, group,
                           pads, strides)
    return xp.rint(y).astype(np.int32)


# ---- DeformConv ----------------------------------------------------------------------------


def _bilinear_gather(xp, x, py, px):
    """Bilinear samples of ``x`` (N, G, Cg, H, W) at (N, G, P) points, zero outside the image."""
    n, g, cg, h, wd = x.shape
    flat = x.reshape(n, g, cg, h * wd)
    y0, x0 = xp.floor(py), xp.floor(px)
    total = None
    for dy, dx in ((0, 0), (0, 1), (1, 0), (1, 1)):
        yy, xx = y0 + dy, x0 + dx
        weight = (1 - xp.abs(py - yy)) * (1 - xp.abs(px - xx))
        inside = (yy >= 0) & (yy <= h - 1) & (xx >= 0) & (xx <= wd - 1)
        index = (xp.clip(yy, 0, h - 1) * wd + xp.clip(xx, 0, wd - 1)).astype(np.int64)
        values = xp.take_along_axis(flat, index[:, :, None, :], axis=3)
        term = values * (weight * inside)[:, :, None, :].astype(x.dtype)
        total = term if total is None else total + term
    return total


@kernel("DeformConv", since=19)
def deform_conv(xp, x, w, offset, b=None, mask=None, /, *, dilations=None, group=1,
                kernel_shape=None, offset_group=1, pads=None, strides=None):
    """2-D deformable convolution: taps move by learned offsets, sampled bilinearly."""
    if x.ndim != 4:
        raise UnsupportedOpError(f"DeformConv supports 2-D inputs (rank 4) only, got rank {x.ndim}")
    n, c, h, wd = x.shape
    kh, kw = w.shape[2:]
    out = offset.shape[2:]
    win = conv_window((h, wd), (kh, kw), strides, dilations, pads)
    if tuple(out) != win.out or offset.shape[1] != offset_group * kh * kw * 2 or c % offset_group:
        raise ShapeMismatchError(
            f"DeformConv offset {offset.shape} does not match offset_group={offset_group}, "
            f"kernel {(kh, kw)} and output {win.out}")
    dt = compute_dtype(x.dtype)
    taps = kh * kw
    off = offset.astype(dt).reshape(n, offset_group, kh, kw, 2, out[0], out[1])
    base_y = (xp.arange(out[0], dtype=dt) * win.strides[0] - win.pads_begin[0])[:, None]
    base_x = (xp.arange(out[1], dtype=dt) * win.strides[1] - win.pads_begin[1])[None, :]
    tap_y = (xp.arange(kh, dtype=dt) * win.dilations[0])[:, None, None, None]
    tap_x = (xp.arange(kw, dtype=dt) * win.dilations[1])[None, :, None, None]
    py = (off[:, :, :, :, 0] + tap_y + base_y).reshape(n, offset_group, -1)
    px = (off[:, :, :, :, 1] + tap_x + base_x).reshape(n, offset_group, -1)
    groups = x.astype(dt).reshape(n, offset_group, c // offset_group, h, wd)
    cols = _bilinear_gather(xp, groups, py, px)
    if mask is not None:
        cols = cols * mask.astype(dt).reshape(n, offset_group, 1, -1)
    cols = cols.reshape(n, group, (c // group) * taps, out[0] * out[1])
    y = xp.matmul(w.astype(dt).reshape(group, w.shape[0] // group, -1), cols)
    y = y.reshape((n, w.shape[0]) + tuple(out))
    return _add_bias(y, b).astype(x.dtype, copy=False)


# ---- CausalConvWithState -------------------------------------------------------------------


@kernel("CausalConvWithState", since=27)
def causal_conv_with_state(xp, x, w, b=None, past_state=None, /, *, activation="none"):
    """Depthwise causal 1-D convolution carrying the last k-1 inputs as state; optional SiLU."""
    if activation not in ("none", "silu", "swish"):
        raise UnsupportedOpError(
            f"CausalConvWithState activation '{activation}' is not supported; use none, silu or swish")
    if x.ndim != 3 or w.ndim != 3 or w.shape[0] != x.shape[1] or w.shape[1] != 1:
        raise ShapeMismatchError(
            f"CausalConvWithState needs input (B, C, L) and weight (C, 1, k), got {x.shape} and {w.shape}")
    n, c, _ = x.shape
    k = w.shape[2]
    if past_state is None:
        past_state = xp.zeros((n, c, k - 1), dtype=x.dtype)
    padded = xp.concatenate([past_state.astype(x.dtype, copy=False), x], axis=2)
    dt = compute_dtype(x.dtype)
    win = conv_window(padded.shape[2:], (k,))
    y = _add_bias(_conv_depthwise(xp, padded.astype(dt, copy=False), w.astype(dt, copy=False), win), b)
    if activation != "none":
        y = y * (0.5 * xp.tanh(0.5 * y) + 0.5)
    present = padded[:, :, padded.shape[2] - (k - 1):]
    return y.astype(x.dtype, copy=False), xp.ascontiguousarray(present)
