"""TfIdfVectorizer: counts of pooled n-grams (optionally skip-grams) in rows of tokens.

The pool of n-grams (``pool_int64s`` or ``pool_strings``, cut into 1-grams, 2-grams, ... by
``ngram_counts``) becomes a trie kept as sorted arrays: level ``k`` holds one integer code per
distinct length-``k`` prefix, ``code = rank of its (k-1)-prefix * V + token id`` (``V`` distinct
tokens), so a prefix's code never overflows and lookups are binary searches.  The input is then
matched for every skip distance and gram length at once over all rows and start positions on
``xp``; string inputs are turned into token ids on the host first.

As the spec and onnxruntime say, the i-th weight scales the i-th pooled n-gram, wherever
``ngram_indexes`` puts it (onnx.reference indexes ``weights`` by output coordinate instead, which
differs when ``ngram_indexes`` is not the identity).  As in both, unigrams are counted once (not
once per skip distance) and a gram repeated in the pool counts at the coordinate of its last
occurrence.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools

import numpy as np

from infermux.errors import ShapeMismatchError, TypeMismatchError, UnsupportedOpError
from infermux.ops.registry import kernel

__all__ = []

_MODES = ("TF", "IDF", "TFIDF")


@dataclasses.dataclass(frozen=True)
class _Pool:
    """The pooled n-grams of lengths ``min_gram_length..max_gram_length`` as a sorted-array trie."""

    vocab: np.ndarray               # sorted distinct tokens (int64, or object for strings)
    levels: tuple[np.ndarray, ...]  # levels[k - 1]: sorted codes of the length-k prefixes
    coords: tuple[np.ndarray, ...]  # coords[k - 1][i]: output coordinate of levels[k - 1][i], or -1
    output_size: int


def _grams_by_size(pool: tuple, ngram_counts: tuple, ngram_indexes: tuple, min_len: int,
                   max_len: int) -> dict[int, tuple[list, list]]:
    """{size: (grams as token lists, their output coordinates)} for the sizes counted."""
    grams: dict[int, tuple[list, list]] = {}
    starts = list(ngram_counts) + [len(pool)]
    gram_id = 0
    for size, (start, end) in enumerate(itertools.pairwise(starts), start=1):
        count = max(end - start, 0) // size
        if min_len <= size <= max_len and count:
            if gram_id + count > len(ngram_indexes):
                raise ValueError(f"TfIdfVectorizer pool holds more n-grams than ngram_indexes "
                                 f"({len(ngram_indexes)}) has entries")
            tokens = [list(pool[start + j * size:start + (j + 1) * size]) for j in range(count)]
            grams[size] = (tokens, list(ngram_indexes[gram_id:gram_id + count]))
        gram_id += count
    return grams


@functools.lru_cache(maxsize=32)
def _build_pool(pool: tuple, ngram_counts: tuple, ngram_indexes: tuple, min_len: int,
                max_len: int) -> _Pool:
    grams = _grams_by_size(pool, ngram_counts, ngram_indexes, min_len, max_len)
    is_str = bool(pool) and isinstance(pool[0], str)
    vocab = np.unique(np.array(pool, dtype=object if is_str else np.int64))
    tokens = {s: np.searchsorted(vocab, np.array(g, dtype=vocab.dtype).reshape(len(g), s))
              for s, (g, _) in grams.items()}
    ranks = {s: np.zeros(len(t), np.int64) for s, t in tokens.items()}
    levels, coords = [], []
    for k in range(1, max(grams, default=0) + 1):
        sizes = [s for s in grams if s >= k]
        codes = {s: ranks[s] * len(vocab) + tokens[s][:, k - 1] for s in sizes}
        level = np.unique(np.concatenate([codes[s] for s in sizes]))
        ranks.update({s: np.searchsorted(level, codes[s]) for s in sizes})
        coord = np.full(len(level), -1, np.int64)
        if k in grams:
            coord[ranks[k]] = grams[k][1]
        levels.append(level)
        coords.append(coord)
    output_size = max(ngram_indexes) + 1 if ngram_indexes else 0
    return _Pool(vocab, tuple(levels), tuple(coords), output_size)


def _token_ids(xp, rows, pool: _Pool):
    """Each token's index in the pool's vocabulary, -1 where it is not in the pool."""
    if rows.dtype == object:
        lookup = {t: i for i, t in enumerate(pool.vocab.tolist())}
        ids = np.frompyfunc(lambda t: lookup.get(t, -1), 1, 1)(rows)
        return np.asarray(ids, dtype=np.int64).reshape(rows.shape)
    if len(pool.vocab) == 0:
        return xp.full(rows.shape, -1, dtype=np.int64)
    vocab = xp.asarray(pool.vocab)
    pos = xp.clip(xp.searchsorted(vocab, rows.astype(np.int64)), 0, len(pool.vocab) - 1)
    return xp.where(vocab[pos] == rows, pos, -1)


def _counts(xp, ids, pool: _Pool, min_len: int, max_len: int, max_skip: int):
    """Per-row counts of every output coordinate, shape (rows, output_size), as float64."""
    n_rows, n_cols = ids.shape
    counts = xp.zeros(n_rows * pool.output_size, dtype=np.float64)
    row_base = (xp.arange(n_rows, dtype=np.int64) * pool.output_size)[:, None]
    longest = min(max_len, len(pool.levels))
    for skip in range(1, max_skip + 2):
        shortest = min_len if skip == 1 else max(min_len, 2)  # unigrams ignore skips: count once
        rank = xp.zeros(ids.shape, dtype=np.int64)
        found = xp.ones(ids.shape, dtype=bool)
        for k in range(1, longest + 1):
            n_starts = n_cols - (k - 1) * skip
            if n_starts <= 0 or shortest > longest:
                break
            token = ids[:, (k - 1) * skip:(k - 1) * skip + n_starts]
            level, coord = xp.asarray(pool.levels[k - 1]), xp.asarray(pool.coords[k - 1])
            code = rank[:, :n_starts] * len(pool.vocab) + token
            rank = xp.clip(xp.searchsorted(level, code), 0, len(level) - 1)
            found = found[:, :n_starts] & (token >= 0) & (level[rank] == code)
            if k >= shortest:
                out = coord[rank]
                hit = found & (out >= 0)
                counts += xp.bincount((row_base + xp.maximum(out, 0)).reshape(-1),
                                      weights=hit.reshape(-1).astype(np.float64),
                                      minlength=counts.size)
    return counts.reshape(n_rows, pool.output_size)


def _coordinate_weights(weights, ngram_indexes, output_size: int) -> np.ndarray | None:
    """``weights`` (one per pooled n-gram) moved to the output coordinates they scale."""
    if weights is None:
        return None
    if len(weights) != len(ngram_indexes):
        raise ValueError(f"TfIdfVectorizer has {len(weights)} weights for {len(ngram_indexes)} "
                         f"pooled n-grams")
    scale = np.ones(output_size, np.float64)
    scale[np.asarray(ngram_indexes, np.int64)] = weights
    return scale


def _weigh(xp, counts, mode: str, scale):
    if mode == "TF":
        return counts
    if mode == "IDF":
        counts = (counts > 0).astype(np.float64)
    return counts if scale is None else counts * xp.asarray(scale)


@kernel("TfIdfVectorizer", since=9)
def tfidf_vectorizer(xp, x, /, *, mode=None, min_gram_length=None, max_gram_length=None,
                     max_skip_count=None, ngram_counts=None, ngram_indexes=None,
                     pool_int64s=None, pool_strings=None, weights=None):
    """Y[..., ngram_indexes[i]] = count (TF), presence * weight (IDF) or count * weight (TFIDF)
    of the i-th pooled n-gram in X (``[C]`` gives ``[out]``, ``[N, C]`` gives ``[N, out]``).
    n-grams of every length from min to max are gathered with 0..max_skip_count skipped tokens
    between their items."""
    if mode not in _MODES:
        raise UnsupportedOpError(f"TfIdfVectorizer attribute mode={mode!r} is not supported: "
                                 f"use one of {', '.join(_MODES)}")
    if None in (min_gram_length, max_gram_length, max_skip_count, ngram_counts, ngram_indexes):
        raise ValueError("TfIdfVectorizer needs min_gram_length, max_gram_length, "
                         "max_skip_count, ngram_counts and ngram_indexes")
    if (pool_int64s is None) == (pool_strings is None):
        raise ValueError("TfIdfVectorizer needs exactly one of pool_int64s and pool_strings")
    strings_in = x.dtype.kind in "OUS"
    if strings_in != (pool_strings is not None):
        pool_name = "pool_strings" if pool_strings is not None else "pool_int64s"
        raise TypeMismatchError(f"TfIdfVectorizer with {pool_name} cannot take X of dtype "
                                f"{x.dtype}")
    if x.ndim > 2:
        raise ShapeMismatchError(f"TfIdfVectorizer takes X of shape [C] or [N, C], got {x.shape}")
    pool_items = tuple(pool_strings) if strings_in else tuple(int(v) for v in pool_int64s)
    pool = _build_pool(pool_items, tuple(ngram_counts), tuple(ngram_indexes),
                       int(min_gram_length), int(max_gram_length))
    rows = x.reshape(x.shape if x.ndim == 2 else (1, x.size))
    if strings_in:
        rows = np.asarray(rows, dtype=object)
    ids = _token_ids(xp, rows, pool)
    counts = _counts(np if strings_in else xp, ids, pool, int(min_gram_length),
                     int(max_gram_length), int(max_skip_count))
    scale = _coordinate_weights(weights, ngram_indexes, pool.output_size)
    y = xp.asarray(_weigh(xp, xp.asarray(counts), mode, scale), np.float32)
    return y.reshape(pool.output_size) if x.ndim < 2 else y
