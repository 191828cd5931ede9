"""Unary math, binary arithmetic and variadic kernels against onnx.reference."""

from __future__ import annotations

import math

import numpy as np
import pytest

from infermux.ops.elementwise import UNARY, erf
from tests.ops.op_oracle import call, reference


def assert_same(got, want, rtol=1e-6, atol=1e-7):
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64),
                               rtol=rtol, atol=atol, equal_nan=True)


RNG = np.random.default_rng(0)
X = RNG.uniform(-3, 3, (3, 4)).astype(np.float32)


@pytest.mark.parametrize("op_type", sorted(set(UNARY) - {"Erf"}))
def test_unary_matches_reference(op_type):
    x = {"Acos": X / 4, "Asin": X / 4, "Atanh": X / 4, "Acosh": np.abs(X) + 1,
         "Log": np.abs(X) + 0.1, "Sqrt": np.abs(X)}.get(op_type, X)
    assert_same(call(op_type, 22, x), reference(op_type, [x], 22)[0])


def test_round_is_half_to_even():
    x = np.array([0.5, 1.5, 2.5, -0.5, -1.5, 2.4], np.float32)
    np.testing.assert_array_equal(call("Round", 22, x), [0, 2, 2, -0, -2, 2])


def test_out_of_domain_gives_nan_without_warnings():
    with np.errstate(all="raise"):
        got = call("Log", 13, np.array([-1.0, 0.0], np.float32))
    assert np.isnan(got[0]) and got[1] == -np.inf


@pytest.mark.parametrize("dtype, max_rel", [(np.float32, 1e-7), (np.float64, 2e-15)])
@pytest.mark.parametrize("fast", [False, True])
def test_erf_accuracy(dtype, max_rel, fast):
    x = np.concatenate([np.linspace(-7, 7, 40001), np.geomspace(1e-30, 7, 2000)]).astype(dtype)
    want = np.array([math.erf(v) for v in x.astype(np.float64)])
    got = call("Erf", 13, x, fast=fast)
    assert got.dtype == dtype
    assert np.all(np.abs(got - want) <= max_rel * np.abs(want))


def test_erf_special_values_and_float16():
    x = np.array([np.nan, np.inf, -np.inf, 0.0, 0.5], np.float32)
    np.testing.assert_array_equal(erf(np, x)[1:4], [1, -1, 0])
    assert np.isnan(erf(np, x)[0])
    half = call("Erf", 13, x.astype(np.float16))
    assert half.dtype == np.float16 and abs(float(half[4]) - math.erf(0.5)) < 1e-3


@pytest.mark.parametrize("op_type", ["Add", "Sub", "Mul", "Div"])
@pytest.mark.parametrize("dtype", [np.float32, np.int32, np.uint8])
def test_binary_broadcasts_like_reference(op_type, dtype):
    a = RNG.integers(1, 100, (2, 3, 4)).astype(dtype)
    b = RNG.integers(1, 9, (3, 1)).astype(dtype)
    assert_same(call(op_type, 14, a, b), reference(op_type, [a, b], 14)[0])


def test_integer_div_truncates_toward_zero():
    a = np.array([7, -7, 7, -7, 0], np.int32)
    b = np.array([2, 2, -2, -2, 3], np.int32)
    np.testing.assert_array_equal(call("Div", 14, a, b), [3, -3, -3, 3, 0])
    assert call("Div", 14, a, b).dtype == np.int32


def test_legacy_broadcast_with_axis():
    a = RNG.standard_normal((2, 3, 4, 5)).astype(np.float32)
    b = RNG.standard_normal((3, 4)).astype(np.float32)
    got = call("Add", 6, a, b, broadcast=1, axis=1)
    np.testing.assert_allclose(got, a + b[None, :, :, None])


def test_legacy_broadcast_rejects_a_misfit_axis():
    a, b = np.ones((2, 3), np.float32), np.ones((3, 4), np.float32)
    with pytest.raises(ValueError, match="axis"):
        call("Mul", 6, a, b, broadcast=1, axis=1)


@pytest.mark.parametrize("base, exponent", [
    (np.float32, np.int64), (np.float32, np.int32), (np.float32, np.uint64),
    (np.int32, np.float32), (np.int64, np.float32), (np.int64, np.int64),
    (np.float16, np.float32)])
def test_pow_keeps_the_base_type(base, exponent):
    a = np.array([1, 2, 3, 4], base)
    b = np.array([2, 3, 1, 0], exponent)
    assert_same(call("Pow", 15, a, b), reference("Pow", [a, b], 15)[0])


def test_pow_of_integers_with_negative_exponent():
    got = call("Pow", 15, np.array([2, 1, -1], np.int32), np.array([-1, -3, -3], np.int32))
    np.testing.assert_array_equal(got, [0, 1, -1])


@pytest.mark.parametrize("fmod", [0, 1])
@pytest.mark.parametrize("dtype", [np.int32, np.float32])
def test_mod_sign_rules(fmod, dtype):
    a = np.array([-4, 7, 5, 4, -7, 8], dtype)
    b = np.array([3, -3, 8, -3, 3, 5], dtype)
    assert_same(call("Mod", 13, a, b, fmod=fmod), reference("Mod", [a, b], 13, fmod=fmod)[0])


@pytest.mark.parametrize("op_type", ["Max", "Min", "Sum", "Mean"])
def test_variadic_broadcasts_three_inputs(op_type):
    args = [RNG.standard_normal(s).astype(np.float32) for s in [(3, 1), (1, 4), (4,)]]
    # onnx.reference's Mean does not broadcast; ONNX's Mean does (opset 8 on)
    want = (sum(args) / 3 if op_type == "Mean" else reference(op_type, args, 13)[0])
    assert_same(call(op_type, 13, *args), want.astype(np.float32))
    one = call(op_type, 13, args[0])
    np.testing.assert_array_equal(one, args[0])


def test_variadic_accumulates_without_touching_inputs():
    a, b, c = (np.full((2, 2), v, np.float32) for v in (1, 2, 3))
    np.testing.assert_array_equal(call("Sum", 13, a, b, c), np.full((2, 2), 6))
    np.testing.assert_array_equal(a, 1)
    np.testing.assert_array_equal(b, 2)


def test_variadic_needs_an_input():
    with pytest.raises(ValueError, match="at least one"):
        call("Sum", 13)
