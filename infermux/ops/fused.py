"""Fused ops of the ``infermux`` domain, made by the compile-time fusions of
:mod:`infermux.graph.fusion` out of standard ONNX subgraphs (transformer blocks mostly).

Each kernel computes what the subgraph it replaces computes, with the same element type:

* ``Gelu(X, bias?)``: ``Gelu(X + bias)``, erf form (the Div/Erf/Add/Mul/Mul pattern).
* ``FusedMatMul(A, B, bias?; activation)``: ``act(A @ B + bias)``, activation ``""`` (none),
  ``"Relu"`` or ``"Gelu"``; ``bias`` broadcasts against the product.
* ``SelfAttention(Q, K?, V?; num_heads, scale)``: multi-head scaled dot-product attention on
  ``[N, S, D]`` tensors, heads split from D: ``softmax(scale * Qh @ Kh^T) @ Vh`` with heads
  merged back to ``[N, S, D]``.  Without K and V, Q is the packed ``[N, S, 3 D]`` projection
  of a merged QKV MatMul.
* ``LayerNorm(X, scale, bias?, skip?; axis, epsilon)``: ``LayerNormalization(X + skip)``.
* ``ChannelAffine(X, scale, shift; activation)``: ``act(X * scale[c] + shift[c])`` on
  ``[N, C, ...]``, an inference BatchNormalization with its statistics folded in.
* ``AddActivation(A, B; activation)``: ``act(A + B)``, a residual add and its Relu.

These are the reference kernels (NumPy or CuPy through ``xp``); the CPU's compiled versions
are in ``fast_elementwise.py``, ``fast_norm.py`` and ``fast_attention.py``.
"""

from __future__ import annotations

from infermux.errors import ShapeMismatchError, UnsupportedOpError
from infermux.ops.activations import gelu as _onnx_gelu
from infermux.ops.matmul import matmul as _onnx_matmul
from infermux.ops.normalization import layer_norm as _onnx_layer_norm
from infermux.ops.registry import kernel
from infermux.ops.softmax import softmax_13

__all__ = [
    "ACTIVATIONS",
    "FUSED_DOMAIN",
    "activate",
    "channel_shape",
    "check_activation",
    "heads",
    "merge_heads",
    "split_packed_qkv",
    "unpack_qkv",
]

FUSED_DOMAIN = "infermux"
ACTIVATIONS = ("", "Relu", "Gelu")


@kernel("Gelu", since=1, domain=FUSED_DOMAIN)
def gelu(xp, x, bias=None, /):
    """Gelu (erf form) of ``x + bias``."""
    return _onnx_gelu(xp, x if bias is None else x + bias)


def check_activation(activation: str, op: str = "FusedMatMul") -> None:
    if activation not in ACTIVATIONS:
        raise UnsupportedOpError(f"{op} attribute activation={activation!r} is not "
                                 f"supported: use one of {ACTIVATIONS}")


def activate(xp, y, activation: str):
    """``y`` (a fresh array, overwritten where possible) through ``activation``."""
    if activation == "Relu":
        return xp.maximum(y, 0, out=y)
    if activation == "Gelu":
        return _onnx_gelu(xp, y)
    return y


@kernel("FusedMatMul", since=1, domain=FUSED_DOMAIN)
def fused_matmul(xp, a, b, bias=None, /, *, activation=""):
    """``activation(a @ b + bias)``."""
    check_activation(activation)
    y = _onnx_matmul(xp, a, b)
    if bias is not None:
        y = y + bias if y.shape != xp.broadcast_shapes(y.shape, bias.shape) else \
            xp.add(y, bias, out=y)
    return activate(xp, y, activation)


def split_packed_qkv(qkv):
    """Views of Q, K and V in a packed ``[..., 3 D]`` projection."""
    d3 = qkv.shape[-1]
    if d3 % 3:
        raise ShapeMismatchError(f"SelfAttention: packed QKV input of shape {qkv.shape} does not "
                                 f"split into three equal parts on its last axis")
    d = d3 // 3
    return qkv[..., :d], qkv[..., d:2 * d], qkv[..., 2 * d:]


def heads(x, num_heads: int, what: str):
    """``[N, S, D]`` as a ``[N, H, S, D / H]`` view (a copy only if ``x`` cannot be split)."""
    if x.ndim != 3 or x.shape[-1] % num_heads:
        raise ShapeMismatchError(f"SelfAttention: {what} of shape {x.shape} is not [N, S, D] "
                                 f"with D divisible by num_heads={num_heads}")
    n, s, d = x.shape
    return x.reshape(n, s, num_heads, d // num_heads).transpose(0, 2, 1, 3)


def merge_heads(ctx):
    """``[N, H, S, Dh]`` back to ``[N, S, H * Dh]``."""
    n, h, s, dh = ctx.shape
    return ctx.transpose(0, 2, 1, 3).reshape(n, s, h * dh)


def unpack_qkv(q, k, v):
    if k is None and v is None:
        return split_packed_qkv(q)
    if k is None or v is None:
        raise ShapeMismatchError("SelfAttention takes Q alone (packed QKV) or Q, K and V")
    return q, k, v


@kernel("SelfAttention", since=1, domain=FUSED_DOMAIN)
def self_attention(xp, q, k=None, v=None, /, *, num_heads, scale=1.0):
    """``softmax(scale * Q K^T) V`` per head, heads split from and merged into the last axis."""
    q, k, v = unpack_qkv(q, k, v)
    qh, kh, vh = (heads(t, num_heads, name) for t, name in ((q, "Q"), (k, "K"), (v, "V")))
    scores = xp.matmul(qh, kh.transpose(0, 1, 3, 2))
    if scale != 1.0:
        scores *= scores.dtype.type(scale)
    return merge_heads(xp.matmul(softmax_13(xp, scores, axis=-1), vh))


@kernel("LayerNorm", since=1, domain=FUSED_DOMAIN)
def layer_norm(xp, x, scale, bias=None, skip=None, /, *, axis=-1, epsilon=1e-5):
    """``LayerNormalization(x + skip)`` over the axes from ``axis`` on."""
    return _onnx_layer_norm(xp, x if skip is None else x + skip, scale, bias, axis=axis,
                            epsilon=epsilon)


def channel_shape(param, x_ndim: int):
    """A (C,) parameter shaped to broadcast over axis 1 of an (N, C, ...) tensor."""
    return param.reshape((-1,) + (1,) * (x_ndim - 2))


@kernel("ChannelAffine", since=1, domain=FUSED_DOMAIN)
def channel_affine(xp, x, scale, shift, /, *, activation=""):
    """``activation(x * scale + shift)``, scale and shift per channel (axis 1)."""
    check_activation(activation, "ChannelAffine")
    if x.ndim < 2 or scale.shape != (x.shape[1],) or shift.shape != (x.shape[1],):
        raise ShapeMismatchError(f"ChannelAffine: scale {scale.shape} and shift {shift.shape} "
                                 f"must be ({x.shape[1] if x.ndim > 1 else '?'},) for input "
                                 f"{x.shape}")
    y = x * channel_shape(scale, x.ndim)
    y += channel_shape(shift, x.ndim)
    return activate(xp, y, activation)


@kernel("AddActivation", since=1, domain=FUSED_DOMAIN)
def add_activation(xp, a, b, /, *, activation="Relu"):
    """``activation(a + b)``."""
    check_activation(activation, "AddActivation")
    return activate(xp, xp.add(a, b), activation)
