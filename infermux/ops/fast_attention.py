"""CPU fast path for the fused ``infermux`` SelfAttention: NumPy only, no copies.

* Heads are strided views of Q, K and V (of the packed QKV projection when the fusion merged
  the three MatMuls): ``np.matmul`` takes them as they are, as fast as contiguous copies.
* The scores are a fresh array, so the softmax runs on them in place (max, subtract, exp, one
  BLAS row sum, divide): no temporaries.
* The context product writes through ``out=`` into a ``[N, S, H, Dh]`` buffer seen as
  ``[N, H, S, Dh]``, so merging the heads back to ``[N, S, D]`` is a free reshape instead of
  the transpose copy of the unfused graph.
"""

from __future__ import annotations

import numpy as np

from infermux.ops._util import row_sums
from infermux.ops.fused import FUSED_DOMAIN, heads, self_attention, unpack_qkv
from infermux.ops.registry import kernel

__all__: list[str] = []


def _softmax_rows_inplace(scores) -> None:
    """Softmax over the last axis of a fresh float array, overwriting it."""
    scores -= scores.max(axis=-1, keepdims=True)
    np.exp(scores, out=scores)
    scores /= row_sums(np, scores)


@kernel("SelfAttention", since=1, domain=FUSED_DOMAIN, fast=True)
def self_attention_fast(xp, q, k=None, v=None, /, *, num_heads, scale=1.0):
    """Multi-head attention on views, the softmax in place, heads merged by ``out=``."""
    q, k, v = unpack_qkv(q, k, v)
    if q.dtype not in (np.float32, np.float64) or not (q.dtype == k.dtype == v.dtype):
        return self_attention(np, q, k, v, num_heads=num_heads, scale=scale)
    qh, kh, vh = heads(q, num_heads, "Q"), heads(k, num_heads, "K"), heads(v, num_heads, "V")
    scores = np.matmul(qh, kh.transpose(0, 1, 3, 2))
    if scale != 1.0:
        scores *= scores.dtype.type(scale)
    _softmax_rows_inplace(scores)
    n, h, s, dh = qh.shape[0], qh.shape[1], qh.shape[2], vh.shape[3]
    out = np.empty((n, s, h, dh), dtype=q.dtype)
    np.matmul(scores, vh, out=out.transpose(0, 2, 1, 3))
    return out.reshape(n, s, h * dh)
