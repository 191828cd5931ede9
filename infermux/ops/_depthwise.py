"""The CPU (NumPy-only) fast path of depthwise convolution, used by Conv's ``fast`` kernel.

NumPy cannot fuse the k multiply-adds of a depthwise tap loop: as ufuncs they cost two passes
over the output per tap.  So the loops are compiled with numba (a dependency) when it imports,
one fused pass per output; without it they run as ufuncs over cache-sized blocks.  Either way
the work is shared out over a small thread pool (ufuncs and ``nogil`` loops release the GIL).

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
import os
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from infermux.ops.conv import Window

__all__ = ["depthwise_cpu", "set_num_threads"]

_BLOCK_ELEMENTS = 1 << 16
_SMALL_PLANE = 1024  # output positions per channel up to which channels-last is faster
_PARALLEL_MIN_ELEMENTS = 1 << 15


_POOL: dict[str, object] = {"workers": None, "executor": None}
if hasattr(os, "register_at_fork"):  # a forked child has none of the pool's threads: start afresh
    os.register_at_fork(after_in_child=lambda: _POOL.update(executor=None))


def set_num_threads(num_threads: int | None) -> None:
    """Threads the NumPy depthwise path may use; None: the CPUs this process may run on (<= 4)."""
    executor = _POOL["executor"]
    if executor is not None:
        executor.shutdown(wait=True)
    _POOL["workers"], _POOL["executor"] = num_threads, None


def _thread_pool() -> tuple[ThreadPoolExecutor | None, int]:
    if _POOL["executor"] is None:
        workers = _POOL["workers"]
        if workers is None:
            cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
            workers = min(4, cores or 1)
        if workers > 1:
            _POOL["executor"] = ThreadPoolExecutor(workers, thread_name_prefix="infermux-conv")
        _POOL["workers"] = workers
    return _POOL["executor"], int(_POOL["workers"])


def _parallel_rows(fn, num_rows: int, row_elements: int, blocked: bool = True) -> None:
    """Run ``fn(start, stop)`` over ``range(num_rows)``, one share per pool worker.

    ``blocked`` cuts each share into blocks of about _BLOCK_ELEMENTS outputs (for ufunc loops,
    whose temporaries should stay in L2); compiled loops take their whole share at once.
    """
    block = max(1, _BLOCK_ELEMENTS // max(1, row_elements)) if blocked else num_rows
    pool, workers = _thread_pool()
    if pool is None or num_rows * row_elements < _PARALLEL_MIN_ELEMENTS:
        shares = [(0, num_rows)]
    else:
        step = -(-num_rows // workers)
        shares = [(s, min(num_rows, s + step)) for s in range(0, num_rows, step)]

    def run_share(lo: int, hi: int) -> None:
        for s in range(lo, hi, block):
            fn(s, min(hi, s + block))

    if len(shares) == 1:
        run_share(*shares[0])
        return
    for f in [pool.submit(run_share, lo, hi) for lo, hi in shares]:
        f.result()


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

    _parallel_rows(run, n * c, length)
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

    _parallel_rows(run, oh, n * ow * c)
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

def _planar_loops(planes, weights, bias, taps, geometry, y, p0, p1):  # pragma: no cover - numba
    """Planes p0..p1 of y (P, OH, OW): bias[p] + sum over taps k of weights[p, k] * tap view.

    Each plane is first split into its zero-padded stride phases in a private scratch buffer,
    hot in cache for the taps that follow.
    """
    sh, sw, ph, pw, hq, wq = geometry
    height, width = planes.shape[1], planes.shape[2]
    out_h, out_w = y.shape[1], y.shape[2]
    phases = np.empty((sh * sw * hq, wq), dtype=y.dtype)
    acc = np.empty(out_w, dtype=y.dtype)
    first = taps[:, 0] * hq + taps[:, 1]  # the phase row each tap reads for output row 0
    for p in range(p0, p1):
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


def _channels_last_loops(x, weights, bias, taps, geometry, y, r0, r1):  # pragma: no cover - numba
    """Output rows r0..r1 of y (N, C, OH, OW), channels innermost (for small planes).

    The phase pixels these rows read are first gathered channels-last into a private scratch
    buffer, so each tap is a multiply-add over a contiguous run of C channels.
    """
    sh, sw, ph, pw, hq, wq = geometry
    batch, channels, height, width = x.shape
    out_w = y.shape[3]
    rows = r1 - r0 + hq - y.shape[2]
    pixels = np.empty((sh * sw * rows, wq, channels), dtype=y.dtype)
    acc = np.empty(channels, dtype=y.dtype)
    first = taps[:, 0] * rows + taps[:, 1] - r0  # the scratch row each tap reads for output row 0
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


_COMPILED: dict[str, object] = {}


def _compiled_loops():
    """(planar, channels_last) tap loops compiled by numba, or None without numba.

    One fused pass per output instead of two ufunc passes per tap: 3-5x faster on large planes.
    Compiled on first use (about a second, then cached on disk); ``nogil`` lets the pool run them.
    """
    if "loops" not in _COMPILED:
        try:
            import numba
        except ImportError:  # pragma: no cover - numba is a dependency; the ufunc path remains
            _COMPILED["loops"] = None
        else:
            jit = numba.njit(nogil=True, fastmath={"contract"}, cache=True)  # FMA only: NaN and inf stay exact
            _COMPILED["loops"] = (jit(_planar_loops), jit(_channels_last_loops))
    return _COMPILED["loops"]


def _depthwise_compiled(x, w, b, win: Window, loops):
    """Depthwise convolution plus bias through the numba tap loops."""
    n, c = x.shape[:2]
    oh, ow = win.out
    planar, channels_last = loops
    sw = win.strides[1]
    taps = np.array([(a * sw + b, oi, oj) for a, b, oi, oj in _phase_taps(win)], dtype=np.int64)
    extra = -len(taps) % 3  # zero-weight taps so the loops can take them three at a time
    taps = np.concatenate([taps, np.repeat(taps[:1], extra, axis=0)])
    weights = np.zeros((len(taps), c), dtype=x.dtype)
    weights[:len(taps) - extra] = w.reshape(c, -1).T
    bias = np.zeros(c, x.dtype) if b is None else np.ascontiguousarray(b)
    geometry = np.array(win.strides + win.pads_begin + _phase_extent(win), dtype=np.int64)
    x = np.ascontiguousarray(x)
    y = np.empty((n, c, oh, ow), dtype=x.dtype)
    if oh * ow <= _SMALL_PLANE:
        _parallel_rows(lambda r0, r1: channels_last(x, weights, bias, taps, geometry, y, r0, r1),
                       oh, n * ow * c, blocked=False)
        return y
    planes, out = x.reshape((n * c,) + x.shape[2:]), y.reshape(n * c, oh, ow)
    per_plane, per_bias = np.ascontiguousarray(np.tile(weights.T, (n, 1))), np.tile(bias, n)
    _parallel_rows(lambda p0, p1: planar(planes, per_plane, per_bias, taps, geometry, out, p0, p1),
                   n * c, oh * ow, blocked=False)
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
    loops = _compiled_loops() if x.dtype in (np.float32, np.float64) else None
    if loops is not None:
        return _depthwise_compiled(x, w, b, win, loops).reshape(shape)
    if win.out[0] * win.out[1] <= _SMALL_PLANE:
        raw = _depthwise_channels_last(x, w, win)
    else:
        raw = _depthwise_planar(x, w, win)
    return _finish(raw.reshape(shape), b, shape)
