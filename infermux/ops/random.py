"""Random generators: RandomUniform(Like), RandomNormal(Like), Multinomial and Bernoulli.

Draws come from a NumPy ``Generator`` (PCG64) made for each call: with the ``seed`` attribute it
is seeded from the seed's float64 bit pattern, so a seeded node gives the same values on every
run and on every device; without one it takes fresh OS entropy, so every run differs.  The draws
are made on the host and copied to ``xp`` (random draws of CuPy's generators would differ from
the CPU's for the same seed); probabilities (Bernoulli, Multinomial) are compared on ``xp``.
No runtime reproduces another's draws: ONNX's node tests for these ops compare against one draw
of NumPy's legacy generator and cannot pass.
"""

from __future__ import annotations

import struct

import numpy as np

from infermux.errors import TypeMismatchError, UnsupportedOpError
from infermux.ops._dtypes import onnx_to_numpy
from infermux.ops.registry import kernel

__all__ = []

_FLOAT_CODES = {1: "float", 10: "float16", 11: "double", 16: "bfloat16"}


def _generator(seed) -> np.random.Generator:
    if seed is None:
        return np.random.default_rng()
    (bits,) = struct.unpack("<Q", struct.pack("<d", float(seed)))
    return np.random.default_rng(bits)


def _float_dtype(op: str, code) -> np.dtype:
    if code not in _FLOAT_CODES:
        accepted = ", ".join(f"{c} ({name})" for c, name in _FLOAT_CODES.items())
        raise UnsupportedOpError(f"{op} attribute dtype={code} is not supported: the output must "
                                 f"be a float type: {accepted}")
    return onnx_to_numpy(code)


def _like_dtype(op: str, x, dtype) -> np.dtype:
    """``dtype`` if given, else the input's, which must then be a float type."""
    if dtype is not None:
        return _float_dtype(op, dtype)
    if x.dtype.kind != "f" and x.dtype.name != "bfloat16":
        raise TypeMismatchError(f"{op} without the dtype attribute takes its output type from "
                                f"the input, which must be a float type, got {x.dtype}")
    return x.dtype


def _uniform(xp, shape, dtype, low, high, seed):
    draw = _generator(seed).uniform(low, high, size=tuple(shape))
    return xp.asarray(draw.astype(dtype))


def _normal(xp, shape, dtype, mean, scale, seed):
    draw = _generator(seed).normal(mean, scale, size=tuple(shape))
    return xp.asarray(draw.astype(dtype))


@kernel("RandomUniform", since=1)
def random_uniform(xp, /, *, shape=None, dtype=1, low=0.0, high=1.0, seed=None):
    """Values drawn uniformly from [low, high), of shape ``shape``."""
    if shape is None:
        raise ValueError("RandomUniform needs the shape attribute")
    return _uniform(xp, shape, _float_dtype("RandomUniform", dtype), low, high, seed)


@kernel("RandomUniformLike", since=1)
def random_uniform_like(xp, x, /, *, dtype=None, low=0.0, high=1.0, seed=None):
    """RandomUniform with the shape (and, without ``dtype``, the type) of the input."""
    return _uniform(xp, x.shape, _like_dtype("RandomUniformLike", x, dtype), low, high, seed)


@kernel("RandomNormal", since=1)
def random_normal(xp, /, *, shape=None, dtype=1, mean=0.0, scale=1.0, seed=None):
    """Values drawn from N(mean, scale^2), of shape ``shape``."""
    if shape is None:
        raise ValueError("RandomNormal needs the shape attribute")
    return _normal(xp, shape, _float_dtype("RandomNormal", dtype), mean, scale, seed)


@kernel("RandomNormalLike", since=1)
def random_normal_like(xp, x, /, *, dtype=None, mean=0.0, scale=1.0, seed=None):
    """RandomNormal with the shape (and, without ``dtype``, the type) of the input."""
    return _normal(xp, x.shape, _like_dtype("RandomNormalLike", x, dtype), mean, scale, seed)


@kernel("Bernoulli", since=15)
def bernoulli(xp, x, /, *, dtype=None, seed=None):
    """1 with probability x, else 0, in ``dtype`` (default: x's type; bool gives True/False)."""
    out = x.dtype if dtype is None else onnx_to_numpy(dtype)
    if out.kind not in "biuf" and out.name != "bfloat16":
        raise UnsupportedOpError(f"Bernoulli attribute dtype={dtype} is not supported: use a "
                                 f"numeric or bool type")
    u = xp.asarray(_generator(seed).random(size=x.shape))
    return (u < x).astype(out)


@kernel("Multinomial", since=7)
def multinomial(xp, x, /, *, dtype=6, sample_size=1, seed=None):
    """``sample_size`` class indices per row of ``x`` ``[batch, classes]``, whose entries are
    unnormalised log-probabilities; output ``[batch, sample_size]`` of int32 (6) or int64 (7)."""
    if dtype not in (6, 7):
        raise UnsupportedOpError(f"Multinomial attribute dtype={dtype} is not supported: use "
                                 f"6 (int32) or 7 (int64)")
    if x.ndim != 2:
        raise ValueError(f"Multinomial takes input of shape [batch, classes], got {x.shape}")
    logits = x.astype(np.float64)
    p = xp.exp(logits - logits.max(axis=1, keepdims=True))
    cdf = xp.cumsum(p, axis=1)
    cdf = cdf / cdf[:, -1:]
    u = xp.asarray(_generator(seed).random(size=(x.shape[0], sample_size)))
    # the sampled class is the number of cumulative probabilities at or below the draw
    picks = (cdf[:, None, :] <= u[:, :, None]).sum(axis=2)
    return xp.minimum(picks, x.shape[1] - 1).astype(onnx_to_numpy(dtype))
