"""Normalisations: BatchNormalization, Instance/Layer/Group/RMS normalisation, LRN,
MeanVarianceNormalization and LpNormalization.

Statistics of 16-bit float inputs are computed in float32 (``stash_type`` 1, the only stash
type accepted); the result is cast back to the input type.  Kernels never write into their
inputs: every in-place step works on a temporary the kernel allocated itself.
"""

from __future__ import annotations

import math

import numpy as np

from infermux.errors import ShapeMismatchError, UnsupportedOpError
from infermux.ops._dtypes import onnx_to_numpy
from infermux.ops._util import row_dots, row_sums
from infermux.ops.registry import kernel

__all__: list[str] = []


def _work_dtype(dtype):
    """float32 for 16-bit floats (their statistics overflow or lose precision), else dtype."""
    if dtype.itemsize == 2 and (dtype.kind == "f" or dtype.name == "bfloat16"):
        return np.dtype(np.float32)
    return dtype


def _check_stash(op: str, stash_type: int) -> None:
    if stash_type != 1:
        raise UnsupportedOpError(f"{op}: attribute stash_type={stash_type} is not supported; "
                                 f"only 1 (float32) is")


def _rows(x, axis: int):
    """``x`` as a 2-D (rows, cols) view split before ``axis`` (a copy only if not contiguous)."""
    rows = math.prod(x.shape[:axis])
    return x.reshape(rows, -1)


def _standardize_rows(xp, x2d, epsilon: float):
    """Per-row (x - mean) / sqrt(var + eps) of a 2-D array, in the work dtype.

    Returns (y, mean, inv_std) with mean and inv_std of shape (rows, 1).  One full-size
    temporary: the centred values, turned into y in place.
    """
    work = x2d.astype(_work_dtype(x2d.dtype), copy=False)
    cols = work.shape[1]
    mean = row_sums(xp, work)
    mean /= cols
    centred = work - mean
    var = row_dots(xp, centred, centred)
    var /= cols
    var += epsilon
    inv_std = xp.sqrt(var, out=var)
    xp.reciprocal(inv_std, out=inv_std)
    centred *= inv_std
    return centred, mean, inv_std


def _channel_shape(param, x_ndim: int):
    """A per-channel parameter, (C,) or (C, D1, ...), shaped to broadcast on (N, C, ...)."""
    return param.reshape(param.shape + (1,) * (x_ndim - 1 - param.ndim))


# ---------------------------------------------------------------- BatchNormalization
def _batch_norm_inference(xp, x, scale, b, mean, var, epsilon: float):
    """y = x * a + c with a = scale / sqrt(var + eps) and c = b - mean * a, per channel."""
    dt = _work_dtype(x.dtype)
    a = scale.astype(dt) / xp.sqrt(var.astype(dt) + dt.type(epsilon))
    c = b.astype(dt) - mean.astype(dt) * a
    y = x.astype(dt, copy=False) * _channel_shape(a, x.ndim)
    y += _channel_shape(c, x.ndim)
    return y.astype(x.dtype, copy=False)


def _batch_stats(xp, x, spatial: int = 1):
    axes = (0,) + tuple(range(2, x.ndim)) if spatial else (0,)
    work = x.astype(_work_dtype(x.dtype), copy=False)
    return work.mean(axis=axes), work.var(axis=axes)


def _batch_norm_training(xp, x, scale, b, mean, var, epsilon, momentum, spatial=1):
    """Normalise with the batch statistics; also returns them and the updated running ones."""
    batch_mean, batch_var = _batch_stats(xp, x, spatial)
    y = _batch_norm_inference(xp, x, scale, b, batch_mean, batch_var, epsilon)
    running_mean = mean * momentum + batch_mean.astype(mean.dtype) * (1 - momentum)
    running_var = var * momentum + batch_var.astype(var.dtype) * (1 - momentum)
    return (y, running_mean.astype(mean.dtype), running_var.astype(var.dtype),
            batch_mean.astype(mean.dtype), batch_var.astype(var.dtype))


@kernel("BatchNormalization", since=1)
def batch_norm_1(xp, x, scale, b, mean, var, /, *, epsilon=1e-5, momentum=0.9, spatial=1,
                 is_test=0, consumed_inputs=None, _num_outputs=1):
    """Opset 1-13: inference with one output, training statistics when more are asked for.

    ``spatial=0`` (per-activation statistics) takes parameters of shape (C, D1, ...).
    """
    if _num_outputs == 1:
        return _batch_norm_inference(xp, x, scale, b, mean, var, epsilon)
    return _batch_norm_training(xp, x, scale, b, mean, var, epsilon, momentum, spatial)


@kernel("BatchNormalization", since=14)
def batch_norm_14(xp, x, scale, b, mean, var, /, *, epsilon=1e-5, momentum=0.9,
                  training_mode=0):
    """Inference, or with ``training_mode=1`` (Y, running_mean, running_var)."""
    if not training_mode:
        return _batch_norm_inference(xp, x, scale, b, mean, var, epsilon)
    return _batch_norm_training(xp, x, scale, b, mean, var, epsilon, momentum)[:3]


# ---------------------------------------------------------------- Instance / Group
def _grouped_norm(xp, x, groups: int, epsilon: float):
    """Normalise each (sample, group of channels) of (N, C, ...) ``x``; float work dtype."""
    n, c = x.shape[0], x.shape[1]
    if c % groups:
        raise ShapeMismatchError(f"{c} channels cannot be split into {groups} groups")
    y, _, _ = _standardize_rows(xp, x.reshape(n * groups, -1), epsilon)
    return y.reshape(x.shape)


def _affine(xp, y, scale, bias, dtype):
    """y * scale + bias for per-channel (C,) parameters, in place on y, cast to dtype."""
    y *= _channel_shape(scale.astype(y.dtype, copy=False), y.ndim)
    y += _channel_shape(bias.astype(y.dtype, copy=False), y.ndim)
    return y.astype(dtype, copy=False)


@kernel("InstanceNormalization", since=1)
def instance_norm(xp, x, scale, b, /, *, epsilon=1e-5, consumed_inputs=None):
    """Normalise each (sample, channel) over its spatial axes, then scale and shift."""
    return _affine(xp, _grouped_norm(xp, x, x.shape[1], epsilon), scale, b, x.dtype)


@kernel("GroupNormalization", since=18)
def group_norm_18(xp, x, scale, bias, /, *, num_groups, epsilon=1e-5):
    """Opset 18: ``scale`` and ``bias`` have one entry per group."""
    per_group = x.shape[1] // num_groups
    y = _grouped_norm(xp, x, num_groups, epsilon)
    return _affine(xp, y, xp.repeat(scale, per_group), xp.repeat(bias, per_group), x.dtype)


@kernel("GroupNormalization", since=21)
def group_norm_21(xp, x, scale, bias, /, *, num_groups, epsilon=1e-5, stash_type=1):
    """Opset 21: ``scale`` and ``bias`` have one entry per channel."""
    _check_stash("GroupNormalization", stash_type)
    # Stage two (the affine part) runs in the input type, per the spec.
    y = _grouped_norm(xp, x, num_groups, epsilon).astype(x.dtype, copy=False)
    return _affine(xp, y, scale, bias, x.dtype)


# ---------------------------------------------------------------- Layer / RMS
@kernel("LayerNormalization", since=17)
def layer_norm(xp, x, scale, b=None, /, *, axis=-1, epsilon=1e-5, stash_type=1,
               _used_outputs=(True,)):
    """Normalise over the axes from ``axis`` on; optional outputs Mean and InvStdDev."""
    _check_stash("LayerNormalization", stash_type)
    axis = _check_axis(x, axis)
    y, mean, inv_std = _standardize_rows(xp, _rows(x, axis), epsilon)
    y = y.reshape(x.shape)
    y *= scale
    if b is not None:
        y += b
    y = y.astype(x.dtype, copy=False)
    if len(_used_outputs) == 1:
        return y
    stats_shape = x.shape[:axis] + (1,) * (x.ndim - axis)
    stash = onnx_to_numpy(stash_type)
    return (y, mean.reshape(stats_shape).astype(stash, copy=False),
            inv_std.reshape(stats_shape).astype(stash, copy=False))


@kernel("RMSNormalization", since=23)
def rms_norm(xp, x, scale, /, *, axis=-1, epsilon=1e-5, stash_type=1):
    """x / sqrt(mean(x^2) + eps) * scale, the mean over the axes from ``axis`` on."""
    _check_stash("RMSNormalization", stash_type)
    axis = _check_axis(x, axis)
    work = _rows(x, axis).astype(_work_dtype(x.dtype), copy=False)
    ms = row_dots(xp, work, work)
    ms /= work.shape[1]
    ms += epsilon
    inv = xp.reciprocal(xp.sqrt(ms, out=ms), out=ms)
    y = (work * inv).reshape(x.shape)
    y *= scale
    return y.astype(x.dtype, copy=False)


def _check_axis(x, axis: int) -> int:
    if not -x.ndim <= axis < x.ndim:
        raise ValueError(f"axis {axis} is out of range for a tensor of rank {x.ndim}")
    return axis % x.ndim


# ---------------------------------------------------------------- LRN / MVN / Lp
@kernel("LRN", since=1)
def lrn(xp, x, /, *, size, alpha=1e-4, beta=0.75, bias=1.0):
    """x / (bias + alpha / size * sum of squares over ``size`` neighbouring channels) ** beta."""
    work = x.astype(_work_dtype(x.dtype), copy=False)
    squares = xp.square(work)
    channels = x.shape[1]
    before, after = (size - 1) // 2, math.ceil((size - 1) / 2)
    window = xp.zeros_like(squares)
    for shift in range(-before, after + 1):  # size is small: one pass per window position
        lo, hi = max(0, -shift), min(channels, channels - shift)
        if lo < hi:
            window[:, lo:hi] += squares[:, lo + shift:hi + shift]
    window *= alpha / size
    window += bias
    window **= beta
    return (work / window).astype(x.dtype, copy=False)


@kernel("MeanVarianceNormalization", since=9)
def mean_variance_norm(xp, x, /, *, axes=(0, 2, 3)):
    """(x - mean) / (std + 1e-9) over ``axes``, as the ONNX function body does."""
    axes = tuple(a % x.ndim for a in axes)
    work = x.astype(_work_dtype(x.dtype), copy=False)
    centred = work - work.mean(axis=axes, keepdims=True)
    std = xp.sqrt(xp.square(centred).mean(axis=axes, keepdims=True))
    std += 1e-9
    centred /= std
    return centred.astype(x.dtype, copy=False)


@kernel("LpNormalization", since=1)
def lp_norm(xp, x, /, *, axis=-1, p=2):
    """x / ||x||_p along ``axis`` (p is 1 or 2); a zero norm gives 0, not NaN."""
    if p not in (1, 2):
        raise UnsupportedOpError(f"LpNormalization: attribute p={p} is not supported; use 1 or 2")
    axis = _check_axis(x, axis)
    work = x.astype(_work_dtype(x.dtype), copy=False)
    if p == 1:
        norm = xp.abs(work).sum(axis=axis, keepdims=True)
    else:
        norm = xp.sqrt(xp.square(work).sum(axis=axis, keepdims=True))
    zero = norm == 0
    norm[zero] = 1
    return (work / norm).astype(x.dtype, copy=False)
