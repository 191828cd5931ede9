"""The CPU (NumPy-only) fast path of depthwise convolution, used by Conv's ``fast`` kernel.

NumPy cannot fuse the k multiply-adds of a depthwise tap loop: as ufuncs they cost two passes
over the output per tap.  So the loops are compiled through :mod:`infermux.ops._numba`, one
fused pass per output, parallel over planes (or row blocks) on numba's thread pool for layers
big enough to pay for waking it.  Without numba they run as single-threaded ufuncs over
cache-sized blocks.

The padded input is split into its stride phases (phase (a, b) holds padded rows a, a + s, ...
and columns b, b + s, ...), so every tap of a strided or dilated kernel reads a stride-1 window
of one phase.  Large planes stay channels-first: a tap is then a contiguous run along each row
(or, for ufuncs, one slice of the flattened plane, computed on the phase's full width and
cropped).  Small planes (late CNN layers: 7x7 to 28x28, hundreds of channels) go channels-last,
where a tap is a contiguous run of C (or OW * C) values.

Inputs are 2-D (N, C, H, W) or 1-D (run as H = 1) float arrays with one channel per group.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np

from infermux.ops import _numba
from infermux.ops._numba import prange  # numba parallelizes calls of this global only

if TYPE_CHECKING:
    from infermux.ops.conv import Window

__all__ = ["depthwise_cpu"]

_BLOCK_ELEMENTS = 1 << 16  # ufunc path: outputs per block, so block and temporary stay in L2
_SMALL_PLANE = 1024  # output positions per channel up to which channels-last is faster


def _blocks(fn, num_rows: int, row_elements: int) -> None:
    """Run ``fn(start, stop)`` over ``range(num_rows)`` in blocks of about _BLOCK_ELEMENTS."""
    block = max(1, _BLOCK_ELEMENTS // max(1, row_elements))
    for start in range(0, num_rows, block):
        fn(start, min(num_rows, start + block))


def _phase_taps(win: Window):
    """Per tap: (phase row, phase col, row offset, col offset) inside the phase planes."""
    (kh, kw), (sh, sw), (dh, dw) = win.kernel, win.strides, win.dilations
    return [((i * dh) % sh, (j * dw) % sw, (i * dh) // sh, (j * dw) // sw)
            for i in range(kh) for j in range(kw)]


def _phase_extent(win: Window) -> tuple[int, int]:
    """Rows and columns of each stride phase that the taps read."""
    (sh, sw), (oh, ow) = win.strides, win.out
    return (oh + ((win.kernel[0] - 1) * win.dilations[0]) // sh,
            ow + ((win.kernel[1] - 1) * win.dilations[1]) // sw)


def _phase_buffer(x, win: Window, extra_rows: int, channels_last: bool):
    """The zero-padded input split into stride phases: (sh, sw, N, C, Hq, Wq) or (sh, sw, N, Hq, Wq, C)."""
    n, c, h, w = x.shape
    (sh, sw), (ph, pw) = win.strides, win.pads_begin
    hq, wq = _phase_extent(win)
    hq += extra_rows
    shape = (sh, sw, n, hq, wq, c) if channels_last else (sh, sw, n, c, hq, wq)
    buf = np.zeros(shape, dtype=x.dtype)
    src = x.transpose(0, 2, 3, 1) if channels_last else x
    for a in range(sh):
        r0, r1 = max(0, -(-(ph - a) // sh)), min(hq, (h - 1 + ph - a) // sh + 1)
        for b in range(sw):
            c0, c1 = max(0, -(-(pw - b) // sw)), min(wq, (w - 1 + pw - b) // sw + 1)
            if r1 <= r0 or c1 <= c0:
                continue
            rows = slice(r0 * sh + a - ph, (r1 - 1) * sh + a - ph + 1, sh)
            cols = slice(c0 * sw + b - pw, (c1 - 1) * sw + b - pw + 1, sw)
            if channels_last:
                buf[a, b, :, r0:r1, c0:c1] = src[:, rows, cols]
            else:
                buf[a, b, :, :, r0:r1, c0:c1] = src[:, :, rows, cols]
    return buf


def _multiply_accumulate(out, tmp, k: int, view, weight) -> None:
    if k == 0:
        np.multiply(view, weight, out=out)
    else:
        np.multiply(view, weight, out=tmp)
        out += tmp


def _depthwise_planar(x, w, win: Window):
    """Channels-first: each channel's phase plane flattened, one contiguous slice per tap."""
    n, c = x.shape[:2]
    buf = _phase_buffer(x, win, 1, channels_last=False)
    hq, wq = buf.shape[-2:]
    planes = buf.reshape(buf.shape[:2] + (n * c, hq * wq))
    length = win.out[0] * wq
    weights = np.tile(w.reshape(c, -1), (n, 1))
    taps = [(a, b, oi * wq + oj) for a, b, oi, oj in _phase_taps(win)]
    y = np.empty((n * c, length), dtype=x.dtype)

    def run(p0: int, p1: int) -> None:
        out, tmp = y[p0:p1], np.empty((p1 - p0, length), dtype=x.dtype)
        for k, (a, b, off) in enumerate(taps):
            _multiply_accumulate(out, tmp, k, planes[a, b, p0:p1, off:off + length], weights[p0:p1, k:k + 1])

    _blocks(run, n * c, length)
    return y.reshape(n, c, win.out[0], wq)[..., :win.out[1]]


def _depthwise_channels_last(x, w, win: Window):
    """Channels-last: per output row, each tap is one contiguous run of OW * C values."""
    n, c = x.shape[:2]
    oh, ow = win.out
    buf = _phase_buffer(x, win, 0, channels_last=True)
    weights = np.tile(w.reshape(c, -1).T, (1, ow))  # (taps, OW * C)
    y = np.empty((n, oh, ow * c), dtype=x.dtype)
    taps = _phase_taps(win)

    def run(r0: int, r1: int) -> None:
        out, tmp = y[:, r0:r1], np.empty((n, r1 - r0, ow * c), dtype=x.dtype)
        for k, (a, b, oi, oj) in enumerate(taps):
            view = buf[a, b, :, r0 + oi:r1 + oi, oj:oj + ow].reshape(n, r1 - r0, ow * c)
            _multiply_accumulate(out, tmp, k, view, weights[k])

    _blocks(run, oh, n * ow * c)
    return y.reshape(n, oh, ow, c).transpose(0, 3, 1, 2)


def _finish(raw, b, shape):
    """The contiguous (N, C, *out) result from a layout view, with the bias added on the way."""
    out = np.empty(shape, dtype=raw.dtype)
    if b is None:
        np.copyto(out, raw)
    else:
        np.add(raw, b.reshape((1, -1) + (1,) * (len(shape) - 2)), out=out)
    return out


# The compiled loops accumulate into a private array: LLVM only vectorizes when it can see that
# the accumulator does not alias the input.  Taps come three at a time (the caller pads them with
# zero-weight taps), so each pass over the accumulator does three multiply-adds.  ``taps`` rows
# are (phase index a * sw + b, row offset, column offset).

def _planar_loops(planes, weights, bias, taps, geometry, y):  # pragma: no cover - numba
    """y (P, OH, OW)[p] = bias[p] + sum over taps k of weights[p, k] * tap view of plane p.

    Each plane is first split into its zero-padded stride phases in a private scratch buffer,
    hot in cache for the taps that follow.
    """
    sh, sw, ph, pw, hq, wq = geometry
    height, width = planes.shape[1], planes.shape[2]
    out_h, out_w = y.shape[1], y.shape[2]
    first = taps[:, 0] * hq + taps[:, 1]  # the phase row each tap reads for output row 0
    for p in prange(planes.shape[0]):
        phases = np.empty((sh * sw * hq, wq), dtype=y.dtype)
        acc = np.empty(out_w, dtype=y.dtype)
        for r in range(sh * sw * hq):
            row = (r % hq) * sh + (r // hq) // sw - ph
            for q in range(wq):
                col = q * sw + (r // hq) % sw - pw
                inside = 0 <= row < height and 0 <= col < width
                phases[r, q] = planes[p, row, col] if inside else 0.0
        for oh in range(out_h):
            acc[:] = bias[p]
            for k in range(0, taps.shape[0], 3):
                s0 = phases[first[k] + oh, taps[k, 2]:taps[k, 2] + out_w]
                s1 = phases[first[k + 1] + oh, taps[k + 1, 2]:taps[k + 1, 2] + out_w]
                s2 = phases[first[k + 2] + oh, taps[k + 2, 2]:taps[k + 2, 2] + out_w]
                w0, w1, w2 = weights[p, k], weights[p, k + 1], weights[p, k + 2]
                for ow in range(out_w):
                    acc[ow] += w0 * s0[ow] + w1 * s1[ow] + w2 * s2[ow]
            y[p, oh, :] = acc


def _channels_last_loops(x, weights, bias, taps, geometry, y, block_rows):  # pragma: no cover
    """y (N, C, OH, OW) by blocks of ``block_rows`` output rows, channels innermost.

    The phase pixels a block reads are first gathered channels-last into a private scratch
    buffer, so each tap is a multiply-add over a contiguous run of C channels.
    """
    sh, sw, ph, pw, hq, wq = geometry
    batch, channels, height, width = x.shape
    out_h, out_w = y.shape[2], y.shape[3]
    for blk in prange((out_h + block_rows - 1) // block_rows):
        r0 = blk * block_rows
        r1 = min(out_h, r0 + block_rows)
        rows = r1 - r0 + hq - out_h
        pixels = np.empty((sh * sw * rows, wq, channels), dtype=y.dtype)
        acc = np.empty(channels, dtype=y.dtype)
        first = taps[:, 0] * rows + taps[:, 1] - r0  # the scratch row each tap reads for row 0
        for n in range(batch):
            for r in range(sh * sw * rows):
                row = (r0 + r % rows) * sh + (r // rows) // sw - ph
                for q in range(wq):
                    col = q * sw + (r // rows) % sw - pw
                    inside = 0 <= row < height and 0 <= col < width
                    for ch in range(channels):
                        pixels[r, q, ch] = x[n, ch, row, col] if inside else 0.0
            for oh in range(r0, r1):
                for ow in range(out_w):
                    acc[:] = bias
                    for k in range(0, taps.shape[0], 3):
                        s0 = pixels[first[k] + oh, ow + taps[k, 2]]
                        s1 = pixels[first[k + 1] + oh, ow + taps[k + 1, 2]]
                        s2 = pixels[first[k + 2] + oh, ow + taps[k + 2, 2]]
                        w0, w1, w2 = weights[k], weights[k + 1], weights[k + 2]
                        for ch in range(channels):
                            acc[ch] += w0[ch] * s0[ch] + w1[ch] * s1[ch] + w2[ch] * s2[ch]
                    for ch in range(channels):
                        y[n, ch, oh, ow] = acc[ch]


# {parallel: (planar, channels_last)}; empty without numba (then the ufunc path runs)
_LOOPS: dict[bool, tuple] = {
    parallel: (_numba.jit(_planar_loops, parallel=parallel),
               _numba.jit(_channels_last_loops, parallel=parallel))
    for parallel in (False, True)} if _numba.AVAILABLE else {}


def _depthwise_compiled(x, w, b, win: Window, parallel: bool):
    """Depthwise convolution plus bias through the compiled tap loops."""
    n, c = x.shape[:2]
    oh, ow = win.out
    planar, channels_last = _LOOPS[parallel]
    sw = win.strides[1]
    taps = np.array([(a * sw + b, oi, oj) for a, b, oi, oj in _phase_taps(win)], dtype=np.int64)
    extra = -len(taps) % 3  # zero-weight taps so the loops can take them three at a time
    taps = np.concatenate([taps, np.repeat(taps[:1], extra, axis=0)])
    weights = np.zeros((len(taps), c), dtype=x.dtype)
    weights[:len(taps) - extra] = w.reshape(c, -1).T
    bias = np.zeros(c, x.dtype) if b is None else np.ascontiguousarray(b, dtype=x.dtype)
    geometry = np.array(win.strides + win.pads_begin + _phase_extent(win), dtype=np.int64)
    x = np.ascontiguousarray(x)
    y = np.empty((n, c, oh, ow), dtype=x.dtype)
    if oh * ow <= _SMALL_PLANE:
        block_rows = -(-oh // _numba.get_num_threads()) if parallel else oh
        channels_last(x, weights, bias, taps, geometry, y, block_rows)
        return y
    per_plane = np.ascontiguousarray(np.tile(weights.T, (n, 1)))
    planar(x.reshape((n * c,) + x.shape[2:]), per_plane, np.tile(bias, n), taps, geometry,
           y.reshape(n * c, oh, ow))
    return y


def depthwise_cpu(x, w, b, win: Window):
    """Depthwise convolution (C == group == M) of float ``x`` plus bias ``b`` (or None)."""
    shape = x.shape[:2] + win.out
    if x.ndim == 3:
        win = dataclasses.replace(
            win, kernel=(1,) + win.kernel, strides=(1,) + win.strides, dilations=(1,) + win.dilations,
            pads_begin=(0,) + win.pads_begin, pads_end=(0,) + win.pads_end, out=(1,) + win.out)
        x, w = x[:, :, None], w[:, :, None]
    if x.ndim != 4:
        raise ValueError(f"depthwise_cpu takes 1-D or 2-D convolutions, got input shape {x.shape}")
    if _LOOPS and x.dtype in (np.float32, np.float64):
        parallel = x.size >= _numba.PARALLEL_MIN_SIZE and _numba.get_num_threads() > 1
        return _depthwise_compiled(x, w, b, win, parallel).reshape(shape)
    if win.out[0] * win.out[1] <= _SMALL_PLANE:
        raw = _depthwise_channels_last(x, w, win)
    else:
        raw = _depthwise_planar(x, w, win)
    return _finish(raw.reshape(shape), b, shape)


def _warm_up() -> None:
    """Compile (or load) the float32 loops, serial and parallel, both layouts, on tiny inputs."""
    from infermux.ops.conv import conv_window

    for size in (40, 4):  # a large plane (planar loops) and a small one (channels-last loops)
        x = np.ones((1, 2, size, size), np.float32)
        w = np.ones((2, 1, 3, 3), np.float32)
        win = conv_window(x.shape[2:], (3, 3), None, None, [1, 1, 1, 1])
        for parallel in _LOOPS:
            _depthwise_compiled(x, w, None, win, parallel)


_numba.register_warm_up("Conv", _warm_up)
