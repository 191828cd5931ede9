"""Activation functions: Relu and its relatives, the sigmoid family, Gelu, Swish and SwiGLU.

Every kernel returns its input's element type.  bfloat16 (from ml_dtypes) turns into float32
when mixed with a Python float, so ``_same_dtype`` computes those in float32 and casts back.
Formulas of several passes work in place on one temporary (``out=``) to save memory traffic.
Legacy opset-1 forms carried a ``consumed_inputs`` attribute; it is accepted and ignored.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from infermux.errors import ShapeMismatchError, UnsupportedOpError
from infermux.ops.elementwise import erf, erf_float64
from infermux.ops.registry import kernel

_SELU_ALPHA = 1.67326319217681884765625
_SELU_GAMMA = 1.05070102214813232421875


def _same_dtype(fn):
    """Give ``fn`` a float array it may update in place, and return x's dtype and shape.

    bfloat16 and other ml_dtypes floats are computed in float32; a 0-d input is computed as
    one element, since NumPy ufuncs turn 0-d arrays into scalars that ``out=`` rejects.
    """
    @functools.wraps(fn)
    def run(xp, x, /, *args, **kwargs):
        work = x.astype(np.float32) if x.dtype.kind == "V" else x
        if work.ndim == 0:
            work = work.reshape(1)
        return fn(xp, work, *args, **kwargs).astype(x.dtype, copy=False).reshape(x.shape)
    return run


@kernel("Relu", since=1)
@_same_dtype
def relu(xp, x, /, *, consumed_inputs=None):
    """max(x, 0); integer types too (opset 14)."""
    return xp.maximum(x, 0)


@kernel("LeakyRelu", since=1)
@_same_dtype
def leaky_relu(xp, x, /, *, alpha=0.01, consumed_inputs=None):
    """x for x >= 0, alpha * x below: max(x, alpha * x) when alpha <= 1, else the min."""
    t = x * alpha
    return xp.maximum(x, t, out=t) if alpha <= 1 else xp.minimum(x, t, out=t)


def _elu_core(xp, x, alpha, scale=1.0):
    """relu(x) + alpha * expm1(min(x, 0)), times ``scale``: ELU without where/overflow."""
    neg = xp.minimum(x, 0)
    xp.expm1(neg, out=neg)
    neg *= alpha
    neg += xp.maximum(x, 0)
    if scale != 1.0:
        neg *= scale
    return neg


@kernel("Elu", since=1)
@_same_dtype
def elu(xp, x, /, *, alpha=1.0, consumed_inputs=None):
    return _elu_core(xp, x, alpha)


@kernel("Selu", since=1)
@_same_dtype
def selu(xp, x, /, *, alpha=_SELU_ALPHA, gamma=_SELU_GAMMA, consumed_inputs=None):
    return _elu_core(xp, x, alpha, gamma)


@kernel("Celu", since=12)
@_same_dtype
def celu(xp, x, /, *, alpha=1.0):
    """max(0, x) + min(0, alpha * (exp(x / alpha) - 1))."""
    neg = xp.minimum(x, 0)
    neg /= alpha
    xp.expm1(neg, out=neg)
    neg *= alpha
    neg += xp.maximum(x, 0)
    return neg


@np.errstate(all="ignore")  # exp(-x) -> inf for very negative x gives the right 0
def _sigmoid(xp, x):
    t = xp.negative(x)
    xp.exp(t, out=t)
    t += 1
    return xp.reciprocal(t, out=t)


@kernel("Sigmoid", since=1)
@_same_dtype
def sigmoid(xp, x, /, *, consumed_inputs=None):
    return _sigmoid(xp, x)


@kernel("HardSigmoid", since=1)
@_same_dtype
def hard_sigmoid(xp, x, /, *, alpha=0.2, beta=0.5, consumed_inputs=None):
    t = x * alpha
    t += beta
    return xp.clip(t, 0, 1, out=t)


@kernel("HardSwish", since=14)
@_same_dtype
def hard_swish(xp, x, /):
    """x * HardSigmoid(x) with alpha = 1/6, beta = 0.5."""
    t = x * (1 / 6)
    t += 0.5
    xp.clip(t, 0, 1, out=t)
    t *= x
    return t


@kernel("Softplus", since=1)
@_same_dtype
def softplus(xp, x, /):
    """log(1 + exp(x)), without overflow for large x."""
    return xp.logaddexp(x, 0)


@kernel("Softsign", since=1)
@_same_dtype
def softsign(xp, x, /):
    t = xp.abs(x)
    t += 1
    return xp.divide(x, t, out=t)


@kernel("Mish", since=18)
@_same_dtype
def mish(xp, x, /):
    """x * tanh(softplus(x))."""
    t = xp.logaddexp(x, 0)
    xp.tanh(t, out=t)
    t *= x
    return t


@kernel("PRelu", since=1)
def prelu_legacy(xp, x, slope, /, *, consumed_inputs=None):
    """Opsets 1-6: a 1-D slope of C values applies per channel (axis 1)."""
    if slope.ndim == 1 and x.ndim > 2 and slope.size == x.shape[1] > 1:
        slope = slope.reshape((-1,) + (1,) * (x.ndim - 2))
    return prelu(xp, x, slope)


@kernel("PRelu", since=7)
def prelu(xp, x, slope, /):
    """x where x >= 0, slope * x elsewhere; ``slope`` broadcasts to x."""
    return xp.where(x < 0, x * slope, x)


@kernel("ThresholdedRelu", since=10)
@_same_dtype
def thresholded_relu(xp, x, /, *, alpha=1.0):
    return xp.where(x > alpha, x, 0)


@kernel("Shrink", since=9)
def shrink(xp, x, /, *, bias=0.0, lambd=0.5):
    """x + bias below -lambd, x - bias above lambd, 0 between; any numeric type."""
    work = x.astype(np.float32) if x.dtype.kind == "V" else x
    inner = xp.where(work > lambd, work - bias, 0)
    return xp.where(work < -lambd, work + bias, inner).astype(x.dtype, copy=False)


@kernel("Swish", since=24)
@_same_dtype
def swish(xp, x, /, *, alpha=1.0):
    """x * sigmoid(alpha * x)."""
    t = _sigmoid(xp, x * alpha if alpha != 1.0 else x)
    t *= x
    return t


@kernel("SwiGLU", since=28)
def swiglu(xp, a, b, /, *, alpha=1.0):
    """Swish(a, alpha) * b; A and B must have one shape (no broadcasting)."""
    if a.shape != b.shape:
        raise ShapeMismatchError(f"SwiGLU needs inputs of one shape, got A {a.shape} and "
                                 f"B {b.shape} (it does not broadcast)")
    t = swish(xp, a, alpha=alpha)
    t *= b
    return t


# --- Gelu ------------------------------------------------------------------------------------

@_same_dtype
def _gelu_erf(xp, x):
    """0.5 * x * (1 + erf(x / sqrt(2))), reusing ``erf``.

    float64 stays in float64, where 1 + erf keeps its precision for negative x.  Other types
    work in float32 like onnxruntime: for x < -3, 1 + erf cancels and the result is accurate
    to about 1e-7 absolute rather than relative.
    """
    if x.dtype == np.float64:
        t = erf_float64(xp, x * math.sqrt(0.5))
        t += 1
        t *= x
        t *= 0.5
        return t
    w = x.astype(np.float32, copy=False)
    t = erf(xp, w * np.float32(math.sqrt(0.5)))
    t += 1
    t *= w
    t *= 0.5
    return t.astype(x.dtype, copy=False)


@_same_dtype
def _gelu_tanh(xp, x):
    """0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x^3)))."""
    c = math.sqrt(2 / math.pi)
    t = x * x
    t *= 0.044715 * c
    t += c
    t *= x
    xp.tanh(t, out=t)
    t += 1
    t *= x
    t *= 0.5
    return t


def _check_approximate(approximate: str) -> None:
    if approximate not in ("none", "tanh"):
        raise UnsupportedOpError(f"Gelu attribute approximate={approximate!r} is not "
                                 f"supported: use 'none' or 'tanh'")


@kernel("Gelu", since=20)
def gelu(xp, x, /, *, approximate="none"):
    """Gelu with the exact erf form or the tanh approximation."""
    _check_approximate(approximate)
    return _gelu_tanh(xp, x) if approximate == "tanh" else _gelu_erf(xp, x)
