"""TfIdfVectorizer against onnxruntime and onnx.reference."""

from __future__ import annotations

import numpy as np
import pytest

from infermux.errors import TypeMismatchError, UnsupportedOpError
from tests.ops.op_oracle import check, run

INTS = np.array([[1, 1, 3, 3, 3, 7, 2, 5], [8, 6, 7, 5, 6, 8, 1, 2]], np.int64)
POOL = {"pool_int64s": [2, 3, 5, 4,        # 1-grams
                        5, 6, 7, 8, 6, 7,  # 2-grams
                        1, 3, 3, 8, 6, 7],  # 3-grams
        "ngram_counts": [0, 4, 10], "ngram_indexes": [6, 0, 1, 2, 3, 4, 5, 7, 8]}


def attrs(mode="TF", lo=1, hi=3, skip=0, **extra):
    return {"mode": mode, "min_gram_length": lo, "max_gram_length": hi, "max_skip_count": skip,
            **POOL, **extra}


WEIGHTS = [0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]


@pytest.mark.parametrize("engine", ["ort", "reference"])
@pytest.mark.parametrize("a", [
    attrs(), attrs(skip=2), attrs(lo=2, hi=2, skip=5), attrs(lo=1, hi=1, skip=3),
    attrs(lo=3, hi=3, skip=1), attrs(lo=2, hi=3, skip=7),
])
def test_int_pool(a, engine):
    check("TfIdfVectorizer", [INTS], a, opset=9, engine=engine)
    check("TfIdfVectorizer", [INTS[1].astype(np.int32)], a, opset=9, engine=engine)


# onnxruntime applies the i-th weight to the i-th pooled n-gram, as the spec says; onnx.reference
# applies it to the i-th output coordinate, so it is no oracle once ngram_indexes permutes them
# (and it fails on IDF without weights).
@pytest.mark.parametrize("a", [attrs("IDF", skip=1, weights=WEIGHTS),
                               attrs("TFIDF", skip=1, weights=WEIGHTS), attrs("IDF", skip=2),
                               attrs("TFIDF", lo=2, skip=2)])
def test_int_pool_weights(a):
    check("TfIdfVectorizer", [INTS], a, opset=9)


def test_weights_follow_the_pool_order():
    a = attrs("TFIDF", lo=1, hi=1, weights=WEIGHTS)
    (y,) = run("TfIdfVectorizer", [np.array([2, 2, 3], np.int64)], a, opset=9)
    # 1-gram 2 is pool entry 0 (weight 0.5) at coordinate 6; 3 is entry 1 (weight 1) at 0
    assert y.tolist() == [1.0, 0, 0, 0, 0, 0, 1.0, 0, 0]


def test_string_pool():
    x = np.array([["the", "cat", "sat", "on", "the", "mat"], ["a", "cat", "the", "cat", "x", "y"]],
                 dtype=object)
    a = {"mode": "TFIDF", "min_gram_length": 1, "max_gram_length": 2, "max_skip_count": 1,
         "pool_strings": ["cat", "the", "mat", "the", "cat", "cat", "sat"],
         "ngram_counts": [0, 3], "ngram_indexes": [2, 0, 1, 3, 4],
         "weights": [1.0, 0.5, 2.0, 1.5, 3.0]}
    check("TfIdfVectorizer", [x], a, opset=9)


def test_empty_rows_give_zeros():
    (y,) = run("TfIdfVectorizer", [np.zeros((2, 0), np.int64)], attrs(), opset=9)
    assert y.dtype == np.float32 and y.shape == (2, 9) and not y.any()


def test_errors():
    with pytest.raises(UnsupportedOpError, match="mode='BM25'"):
        run("TfIdfVectorizer", [INTS], attrs("BM25"), opset=9)
    with pytest.raises(TypeMismatchError, match="pool_int64s"):
        run("TfIdfVectorizer", [np.array(["a"], dtype=object)], attrs(), opset=9)
    with pytest.raises(ValueError, match="exactly one of pool_int64s and pool_strings"):
        run("TfIdfVectorizer", [INTS], attrs(pool_strings=["a"]), opset=9)
