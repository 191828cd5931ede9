"""Random generators: no runtime reproduces another's draws, so these tests check what can be
checked: shapes and dtypes (against onnxruntime), seeding, ranges and frequencies."""

from __future__ import annotations

import numpy as np
import pytest

from infermux.errors import TypeMismatchError, UnsupportedOpError
from tests.ops.op_oracle import call, oracle, run

X = np.zeros((3, 4), np.float16)


@pytest.mark.parametrize("op, inputs, attrs", [
    ("RandomUniform", [], {"shape": [2, 5]}),
    ("RandomUniform", [], {"shape": [3], "dtype": 11, "low": -2.0, "high": 2.0}),
    ("RandomNormal", [], {"shape": [4, 1, 2], "dtype": 11}),
    ("RandomUniformLike", [X], {}),
    ("RandomUniformLike", [X.astype(np.int32)], {"dtype": 1}),
    ("RandomNormalLike", [X], {"dtype": 11}),
    ("Bernoulli", [np.full((2, 3), 0.5, np.float32)], {}),
    ("Bernoulli", [np.full((2, 3), 0.5, np.float64)], {"dtype": 9}),
    ("Bernoulli", [np.full((5,), 0.5, np.float32)], {"dtype": 6}),
    ("Multinomial", [np.zeros((2, 5), np.float32)], {"sample_size": 7}),
    ("Multinomial", [np.zeros((1, 3), np.float32)], {"dtype": 7}),
])
def test_shape_and_dtype_match_onnxruntime(op, inputs, attrs):
    opset = 15  # onnxruntime implements the opset-22 versions of none of these
    (want,) = oracle(op, inputs, attrs, opset=opset)
    (got,) = run(op, inputs, attrs, opset=opset)
    assert (got.dtype, got.shape) == (want.dtype, want.shape)


@pytest.mark.parametrize("op, inputs, attrs", [
    ("RandomUniform", [], {"shape": [50]}),
    ("RandomNormalLike", [np.zeros(50, np.float32)], {}),
    ("Bernoulli", [np.full(50, 0.5)], {}),
    ("Multinomial", [np.zeros((1, 10), np.float32)], {"sample_size": 50}),
])
def test_seed_repeats_and_no_seed_varies(op, inputs, attrs):
    first = call(op, 22, *inputs, seed=3.0, **attrs)
    np.testing.assert_array_equal(call(op, 22, *inputs, seed=3.0, **attrs), first)
    assert not np.array_equal(call(op, 22, *inputs, seed=4.0, **attrs), first)
    assert not np.array_equal(call(op, 22, *inputs, **attrs), call(op, 22, *inputs, **attrs))


def test_float16_output():
    y = call("RandomNormal", 22, shape=[4, 1, 2], dtype=10)  # onnxruntime has no float16 here
    assert y.dtype == np.float16 and y.shape == (4, 1, 2)


def test_uniform_range_and_normal_moments():
    u = call("RandomUniform", 22, shape=[20000], low=-3.0, high=5.0, dtype=11)
    assert u.min() >= -3.0 and u.max() < 5.0 and abs(u.mean() - 1.0) < 0.1
    n = call("RandomNormal", 22, shape=[20000], mean=2.0, scale=0.5)
    assert n.dtype == np.float32 and abs(n.mean() - 2.0) < 0.02 and abs(n.std() - 0.5) < 0.02


def test_bernoulli_frequencies():
    p = np.array([0.0, 1.0, 0.25] * 10000, np.float32).reshape(-1, 3)
    y = call("Bernoulli", 22, p, seed=0.0)
    assert y.dtype == np.float32 and set(np.unique(y)) <= {0.0, 1.0}
    assert not y[:, 0].any() and y[:, 1].all() and abs(y[:, 2].mean() - 0.25) < 0.02


def test_multinomial_follows_the_softmax_of_the_logits():
    logits = np.log(np.array([[0.1, 0.6, 0.3], [1.0, 0.0, 0.0]], np.float32) + 1e-30)
    y = call("Multinomial", 22, logits, sample_size=20000, seed=1.0)
    assert y.dtype == np.int32 and y.shape == (2, 20000)
    np.testing.assert_allclose(np.bincount(y[0], minlength=3) / 20000, [0.1, 0.6, 0.3],
                               atol=0.02)
    assert (y[1] == 0).all()


def test_errors():
    with pytest.raises(TypeMismatchError, match="must be a float type"):
        call("RandomUniformLike", 22, np.zeros(3, np.int64))
    with pytest.raises(UnsupportedOpError, match="dtype=7"):
        call("RandomNormal", 22, shape=[2], dtype=7)
    with pytest.raises(UnsupportedOpError, match="dtype=1"):
        call("Multinomial", 22, np.zeros((1, 2), np.float32), dtype=1)
