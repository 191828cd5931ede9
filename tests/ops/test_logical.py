"""Comparison, logic, bitwise, Where, IsNaN and IsInf kernels against onnx.reference."""

from __future__ import annotations

import numpy as np
import pytest

from infermux.errors import UnsupportedOpError
from tests.ops.op_oracle import call, reference


RNG = np.random.default_rng(0)
A = RNG.integers(-3, 4, (2, 3, 4)).astype(np.int32)
B = RNG.integers(-3, 4, (3, 1)).astype(np.int32)
P = RNG.random((2, 3, 4)) > 0.5
Q = RNG.random((4,)) > 0.5


@pytest.mark.parametrize("op_type, a, b", [
    ("Equal", A, B), ("Greater", A, B), ("Less", A, B), ("GreaterOrEqual", A, B),
    ("LessOrEqual", A, B), ("And", P, Q), ("Or", P, Q), ("Xor", P, Q),
    ("BitwiseAnd", A, B), ("BitwiseOr", A, B), ("BitwiseXor", A, B)])
def test_binary_matches_reference(op_type, a, b):
    got, want = call(op_type, 18, a, b), reference(op_type, [a, b], 18)[0]
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)


def test_equal_compares_strings():
    a = np.array(["ab", "c", ""], dtype=object)
    np.testing.assert_array_equal(call("Equal", 19, a, np.array(["ab"], dtype=object)),
                                  [True, False, False])


def test_legacy_and_broadcasts_along_axis():
    a = np.ones((2, 3, 4), bool)
    b = np.array([True, False, True])
    got = call("And", 6, a, b, broadcast=1, axis=1)
    np.testing.assert_array_equal(got[0, :, 0], b)


def test_not_and_bitwise_not():
    np.testing.assert_array_equal(call("Not", 1, P), ~P)
    x = np.array([0, 1, 255], np.uint8)
    np.testing.assert_array_equal(call("BitwiseNot", 18, x), [255, 254, 0])


SHIFT_CASES = [  # values, shifts: in range, negative, at or past the width, overflowing
    (np.array([-8, 4, -1, 100, 3], np.int8), np.array([1, -1, 8, 1, 127], np.int8)),
    (np.array([200, 1, 7, 128], np.uint8), np.array([1, 7, 8, 9], np.uint8)),
    (np.array([-2**31, 5, -5], np.int32), np.array([31, 32, 33], np.int32)),
]


@pytest.mark.parametrize("direction", ["LEFT", "RIGHT"])
@pytest.mark.parametrize("x, y", SHIFT_CASES)
@pytest.mark.parametrize("fast", [False, True])
def test_bitshift_edges_match_reference(direction, x, y, fast):
    got = call("BitShift", 28, x, y, fast=fast, direction=direction)
    want = reference("BitShift", [x, y], 28, direction=direction)[0]
    assert got.dtype == x.dtype
    np.testing.assert_array_equal(got, want)


def test_bitshift_rejects_unknown_direction():
    with pytest.raises(UnsupportedOpError, match="direction"):
        call("BitShift", 11, A, B, direction="UP")


def test_where_broadcasts_all_three():
    x = np.arange(4, dtype=np.float32)
    y = np.array([[-1], [-2]], np.float32)
    got = call("Where", 16, Q, x, y)
    np.testing.assert_array_equal(got, reference("Where", [Q, x, y], 16)[0])
    strings = call("Where", 16, np.array([True, False]), np.array(["a", "b"], dtype=object),
                  np.array(["c", "d"], dtype=object))
    np.testing.assert_array_equal(strings, ["a", "d"])


@pytest.mark.parametrize("negative, positive", [(1, 1), (1, 0), (0, 1), (0, 0)])
def test_isinf_detection_flags(negative, positive):
    x = np.array([np.inf, -np.inf, np.nan, 1.0], np.float32)
    attrs = {"detect_negative": negative, "detect_positive": positive}
    np.testing.assert_array_equal(call("IsInf", 20, x, **attrs),
                                  reference("IsInf", [x], 20, **attrs)[0])


def test_isnan():
    x = np.array([np.inf, np.nan, 0.0], np.float16)
    np.testing.assert_array_equal(call("IsNaN", 20, x), [False, True, False])
