"""Attention: Attention (opsets 23-25), FlexAttention (ai.onnx.preview), RotaryEmbedding (23)
and the recurrent LinearAttention (27).

Attention follows the ONNX reference: 3-D inputs are split into heads; ``past_key``/``past_value``
are concatenated in front of K/V (and returned as the present cache); the additive bias is the
sum of the attention mask (boolean masks become 0/-inf, a mask shorter than the key length is
padded with -inf), the bottom-right causal mask, the sliding window (opset 25) and the padding
mask from ``nonpad_kv_seqlen``; a query row whose bias is -inf everywhere attends nothing and
yields zeros, never NaN.  Grouped/multi-query attention (fewer KV heads than query heads) runs
without repeating K and V: query heads that share a KV head are stacked into one matrix.

As the spec says, everything runs in the input precision (unless ``softmax_precision`` asks
for another one for the softmax); only the two matrix products of 16-bit floats accumulate in
float32, rounding once, as NumPy's and cuBLAS's half products do.
"""

from __future__ import annotations

import math

import numpy as np

from infermux.errors import ShapeMismatchError
from infermux.ops._dtypes import onnx_to_numpy
from infermux.ops._util import row_sums
from infermux.ops.registry import kernel

__all__: list[str] = []


def _is_half(dtype) -> bool:
    return dtype.itemsize == 2 and (dtype.kind == "f" or dtype.name == "bfloat16")


def _matmul(xp, a, b):
    if _is_half(a.dtype):
        return xp.matmul(a.astype(np.float32), b.astype(np.float32)).astype(a.dtype)
    return xp.matmul(a, b)


def _split_heads(x, num_heads, what: str):
    """(batch, seq, heads * size) -> (batch, heads, seq, size), a view."""
    if not num_heads:
        raise ValueError(f"Attention with 3-D inputs needs the {what} attribute")
    b, s, hidden = x.shape
    if hidden % num_heads:
        raise ShapeMismatchError(f"hidden size {hidden} is not divisible by {what}={num_heads}")
    return x.reshape(b, s, num_heads, hidden // num_heads).transpose(0, 2, 1, 3)


def _grouped(xp, a, b, kv_heads: int):
    """a @ b where a has a multiple of b's heads; a's heads sharing one b head are stacked."""
    batch, heads, rows, _ = a.shape
    if heads == kv_heads:
        return _matmul(xp, a, b)
    if heads % kv_heads:
        raise ShapeMismatchError(
            f"{heads} query heads cannot share {kv_heads} key/value heads")
    reps = heads // kv_heads
    stacked = a.reshape(batch, kv_heads, reps * rows, a.shape[-1])
    out = _matmul(xp, stacked, b)
    return out.reshape(batch, heads, rows, out.shape[-1])


# ---------------------------------------------------------------- the additive bias
def _add(bias, term):
    return term if bias is None else bias + term


def _frontier(xp, q_len: int, kv_len: int, offset):
    """(i + offset) - j for query i and key j: (q, kv), or (batch, 1, q, kv) per batch."""
    i = xp.arange(q_len, dtype=np.int64).reshape(q_len, 1)
    j = xp.arange(kv_len, dtype=np.int64).reshape(1, kv_len)
    if isinstance(offset, int):
        return (i + offset) - j
    return ((i + offset.reshape(-1, 1, 1)) - j).reshape(-1, 1, q_len, kv_len)


def _where_bias(xp, allowed, dtype):
    return xp.where(allowed, dtype.type(0), dtype.type(-math.inf))


def _mask_bias(xp, attn_mask, kv_len: int, dtype):
    """The mask as an additive term, padded with -inf up to ``kv_len`` keys."""
    if attn_mask.dtype == np.bool_:
        mask = _where_bias(xp, attn_mask, dtype)
    else:
        mask = attn_mask.astype(dtype, copy=False)
    missing = kv_len - mask.shape[-1]
    if missing > 0:
        pad = xp.full(mask.shape[:-1] + (missing,), -math.inf, dtype=dtype)
        mask = xp.concatenate([mask, pad], axis=-1)
    return mask


def _attention_bias(xp, dtype, q_len, kv_len, attn_mask, is_causal, offset, nonpad,
                    left: int, right: int):
    """Sum of the mask, causal, window and padding terms; None when there is none.

    ``offset`` is the number of keys before the query block: an int, or one per batch entry.
    """
    bias = None if attn_mask is None else _mask_bias(xp, attn_mask, kv_len, dtype)
    if is_causal or left >= 0 or right >= 0:
        diff = _frontier(xp, q_len, kv_len, offset)
        allowed = diff >= 0 if is_causal else xp.ones(diff.shape, dtype=bool)
        if left >= 0:
            allowed &= diff <= left
        if right >= 0:
            allowed &= -diff <= right
        bias = _add(bias, _where_bias(xp, allowed, dtype))
    if nonpad is not None:
        valid = xp.arange(kv_len).reshape(1, kv_len) < nonpad.reshape(-1, 1)
        bias = _add(bias, _where_bias(xp, valid, dtype).reshape(-1, 1, 1, kv_len))
    return bias


def _masked_softmax(xp, scores, bias):
    """Softmax over the last axis, in place; rows the bias masks entirely become zeros."""
    m = scores.max(axis=-1, keepdims=True)
    if bias is not None:
        m[m == -math.inf] = 0
    scores -= m
    xp.exp(scores, out=scores)
    s = row_sums(xp, scores)
    if bias is None:
        scores /= s
        return scores
    s[s == 0] = 1
    scores /= s
    dead = bias.max(axis=-1, keepdims=True) == -math.inf
    return xp.where(dead, scores.dtype.type(0), scores)


# ---------------------------------------------------------------- Attention
def _heads_and_cache(xp, q, k, v, past_key, past_value, nonpad, q_num_heads, kv_num_heads):
    """4-D Q, K, V (past prepended) and the offset of the query block among the keys."""
    if q.ndim == 3:
        q = _split_heads(q, q_num_heads, "q_num_heads")
        k = _split_heads(k, kv_num_heads, "kv_num_heads")
        v = _split_heads(v, kv_num_heads, "kv_num_heads")
    elif q.ndim != 4 or k.ndim != 4 or v.ndim != 4:
        raise ShapeMismatchError(
            f"Attention needs 3-D or 4-D Q, K, V; got {q.shape}, {k.shape}, {v.shape}")
    if (past_key is None) != (past_value is None):
        raise ValueError("Attention: past_key and past_value must be given together")
    if past_key is not None:
        offset = past_key.shape[2]
        k = xp.concatenate([past_key, k], axis=2)
        v = xp.concatenate([past_value, v], axis=2)
    elif nonpad is not None:  # an external cache: the valid keys end the query block
        offset = nonpad.astype(np.int64) - q.shape[2]
    else:
        offset = 0
    # K and V are also the present_key/present_value outputs: no strided views of the input
    return q, xp.ascontiguousarray(k), xp.ascontiguousarray(v), offset


def _qk(xp, q, k, scale):
    """scale * Q @ K^T as a fresh (batch, q_heads, q_len, kv_len) array."""
    dt = q.dtype
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    if _is_half(dt):  # round where the spec's function body rounds: sqrt(scale) on both sides
        root = dt.type(math.sqrt(scale))
        return _grouped(xp, q * root, (k * root).swapaxes(-1, -2), k.shape[1])
    return _grouped(xp, q * dt.type(scale), k.swapaxes(-1, -2), k.shape[1])  # scale Q only


@kernel("Attention", since=23)
def attention(xp, q, k, v, attn_mask=None, past_key=None, past_value=None,  # noqa: PLR0913
              nonpad_kv_seqlen=None, /, *, is_causal=0, q_num_heads=None, kv_num_heads=None,
              scale=None, softcap=0.0, softmax_precision=None, qk_matmul_output_mode=0,
              left_window_size=-1, right_window_size=-1, _used_outputs=(True,)):
    """Outputs (Y, present_key, present_value, qk_matmul_output).

    qk_matmul_output_mode: 0 the scaled Q @ K^T, 1 after softcap, 2 after adding the bias,
    3 the softmax probabilities.  The window attributes exist from opset 25 on.
    """
    if qk_matmul_output_mode not in (0, 1, 2, 3):
        raise ValueError(f"Attention: qk_matmul_output_mode={qk_matmul_output_mode}; use 0-3")
    q_in = q
    q, k, v, offset = _heads_and_cache(xp, q, k, v, past_key, past_value, nonpad_kv_seqlen,
                                       q_num_heads, kv_num_heads)
    mode = qk_matmul_output_mode if len(_used_outputs) > 3 and _used_outputs[3] else None
    scores = _qk(xp, q, k, scale)
    qk_out = scores.copy() if mode == 0 else None
    if softcap > 0:
        scores /= softcap
        xp.tanh(scores, out=scores)
        scores *= softcap
    qk_out = scores.copy() if mode == 1 else qk_out
    bias = _attention_bias(xp, q.dtype, q.shape[2], k.shape[2], attn_mask, is_causal, offset,
                           nonpad_kv_seqlen, left_window_size, right_window_size)
    if bias is not None:
        scores += bias
    qk_out = scores.copy() if mode == 2 else qk_out
    if softmax_precision is not None:
        scores = scores.astype(onnx_to_numpy(softmax_precision), copy=False)
    probs = _masked_softmax(xp, scores, bias).astype(q.dtype, copy=False)
    qk_out = probs if mode == 3 else qk_out

    y = _grouped(xp, probs, v, v.shape[1])
    if q_in.ndim == 3:
        y = y.transpose(0, 2, 1, 3).reshape(y.shape[0], y.shape[2], -1)
    return y, k, v, None if qk_out is None else qk_out.astype(q.dtype, copy=False)


# ---------------------------------------------------------------- FlexAttention
def _apply_mod(xp, mod, x):
    """Run a score_mod/prob_mod subgraph (a callable returning its outputs) on ``x``."""
    (out,) = mod(x)
    return xp.asarray(out).astype(x.dtype, copy=False)


@kernel("FlexAttention", since=1, domain="ai.onnx.preview")
def flex_attention(xp, q, k, v, /, *, scale=None, score_mod=None, prob_mod=None,
                   softmax_precision=None):
    """softmax(score_mod(Q @ K^T * scale)), then prob_mod, @ V; 4-D inputs, GQA allowed.

    Scores are computed in ``softmax_precision`` (default float32, float64 for float64 input).
    """
    if q.ndim != 4 or k.ndim != 4 or v.ndim != 4:
        raise ShapeMismatchError(
            f"FlexAttention needs 4-D Q, K, V; got {q.shape}, {k.shape}, {v.shape}")
    if softmax_precision is not None:
        sd = onnx_to_numpy(softmax_precision)
    else:
        sd = np.dtype(np.float64 if q.dtype == np.float64 else np.float32)
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    root = q.dtype.type(math.sqrt(np.float32(scale)))
    scores = _grouped(xp, q * root, (k * root).swapaxes(-1, -2), k.shape[1]).astype(sd)
    if score_mod is not None:
        scores = _apply_mod(xp, score_mod, scores)
    probs = _masked_softmax(xp, scores, None)
    if prob_mod is not None:
        probs = _apply_mod(xp, prob_mod, probs)
    return _grouped(xp, probs, v.astype(sd), v.shape[1]).astype(v.dtype, copy=False)


# ---------------------------------------------------------------- RotaryEmbedding
@kernel("RotaryEmbedding", since=23)
def rotary_embedding(xp, x, cos_cache, sin_cache, position_ids=None, /, *, interleaved=0,
                     num_heads=0, rotary_embedding_dim=0):
    """Rotate the first ``rotary_embedding_dim`` features of each head by cached angles.

    ``x`` is (batch, heads, seq, head_size) or (batch, seq, heads * head_size); the caches are
    (max_position, dim / 2) indexed by ``position_ids`` (batch, seq), or (batch, seq, dim / 2).
    Pairs are (i, i + dim/2), or adjacent (2i, 2i + 1) when ``interleaved``.
    """
    out = x.copy()
    if x.ndim == 4:
        src, dst = x.transpose(0, 2, 1, 3), out.transpose(0, 2, 1, 3)  # (batch, seq, heads, size)
    elif x.ndim == 3:
        if not num_heads:
            raise ValueError("RotaryEmbedding with a 3-D input needs the num_heads attribute")
        shape = x.shape[:2] + (num_heads, x.shape[2] // num_heads)
        src, dst = x.reshape(shape), out.reshape(shape)
    else:
        raise ShapeMismatchError(f"RotaryEmbedding needs a 3-D or 4-D input, got {x.shape}")
    dim = rotary_embedding_dim or src.shape[-1]
    if position_ids is not None:
        cos_cache, sin_cache = cos_cache[position_ids], sin_cache[position_ids]
    if cos_cache.shape[-1] != dim // 2 or sin_cache.shape[-1] != dim // 2:
        raise ShapeMismatchError(f"RotaryEmbedding: caches of width {cos_cache.shape[-1]} and "
                                 f"{sin_cache.shape[-1]} do not match rotary dim {dim} / 2")
    cos, sin = cos_cache[:, :, None, :], sin_cache[:, :, None, :]
    if interleaved:
        first, second = slice(0, dim, 2), slice(1, dim, 2)
    else:
        first, second = slice(0, dim // 2), slice(dim // 2, dim)
    x1, x2 = src[..., first], src[..., second]
    dst[..., first] = cos * x1 - sin * x2
    dst[..., second] = sin * x1 + cos * x2
    return out


# ---------------------------------------------------------------- LinearAttention
_UPDATE_RULES = ("linear", "gated", "delta", "gated_delta")


def _heads(x, num_heads: int, what: str):
    """(batch, time, heads * size) -> (batch, time, heads, size), as float32."""
    if x.ndim != 3 or x.shape[-1] % num_heads:
        raise ShapeMismatchError(f"LinearAttention {what} of shape {x.shape} is not "
                                 f"(batch, time, {num_heads} * size)")
    return x.reshape(x.shape[0], x.shape[1], num_heads, -1).astype(np.float32, copy=False)


def _check_gates(update_rule: str, decay, beta) -> tuple[bool, bool]:
    if update_rule not in _UPDATE_RULES:
        raise ValueError(f"LinearAttention: update_rule={update_rule!r}; use one of "
                         f"{', '.join(_UPDATE_RULES)}")
    gated, delta = "gated" in update_rule, "delta" in update_rule
    if gated != (decay is not None):
        raise ValueError(f"LinearAttention: update_rule {update_rule!r} "
                         f"{'needs' if gated else 'forbids'} the decay input")
    if delta != (beta is not None):
        raise ValueError(f"LinearAttention: update_rule {update_rule!r} "
                         f"{'needs' if delta else 'forbids'} the beta input")
    return gated, delta


@kernel("LinearAttention", since=27)
def linear_attention(xp, query, key, value, past_state=None, decay=None, beta=None, /, *,
                     q_num_heads, kv_num_heads, scale=0.0, update_rule="gated_delta",
                     chunk_size=64):
    """Recurrent linear attention over packed (batch, time, heads * size) inputs.

    The state S (batch, kv_heads, d_k, d_v) is updated token by token, in float32:
    S = exp(g) * S (gated); v = beta * (v - S^T k) (delta); S += k v^T; o = scale * q^T S.
    Query heads sharing a KV head read its state together.  Returns (output, present_state).
    """
    gated, delta = _check_gates(update_rule, decay, beta)
    if q_num_heads <= 0 or kv_num_heads <= 0 or q_num_heads % kv_num_heads:
        raise ValueError(f"LinearAttention: q_num_heads={q_num_heads} must be a positive "
                         f"multiple of kv_num_heads={kv_num_heads}")
    q = _heads(query, q_num_heads, "query")
    k, v = _heads(key, kv_num_heads, "key"), _heads(value, kv_num_heads, "value")
    batch, steps, _, d_k = q.shape
    d_v, group = v.shape[-1], q_num_heads // kv_num_heads
    q = q.reshape(batch, steps, kv_num_heads, group, d_k)
    g = None if decay is None else _heads(decay, kv_num_heads, "decay")
    rate = None if beta is None else beta.reshape(batch, steps, -1, 1).astype(np.float32)
    if past_state is None:
        state = xp.zeros((batch, kv_num_heads, d_k, d_v), dtype=np.float32)
    else:
        if past_state.shape != (batch, kv_num_heads, d_k, d_v):
            raise ShapeMismatchError(f"LinearAttention past_state of shape {past_state.shape}"
                                     f" is not {(batch, kv_num_heads, d_k, d_v)}")
        state = past_state.astype(np.float32)  # a copy: updated in place below
    scale = scale or 1.0 / math.sqrt(d_k)
    out = xp.empty((batch, steps, kv_num_heads, group, d_v), dtype=np.float32)
    for t in range(steps):
        k_t, v_t = k[:, t], v[:, t]
        if gated:
            state *= xp.exp(g[:, t])[..., None]
        if delta:
            retrieved = xp.matmul(k_t[..., None, :], state)[..., 0, :]
            v_t = rate[:, t] * (v_t - retrieved)
        state += k_t[..., :, None] * v_t[..., None, :]
        out[:, t] = xp.matmul(q[:, t], state)
    out *= scale
    present_dtype = query.dtype if past_state is None else past_state.dtype
    return (out.reshape(batch, steps, -1).astype(query.dtype, copy=False),
            state.astype(present_dtype, copy=False))
