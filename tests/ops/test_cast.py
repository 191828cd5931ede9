"""Cast, CastLike, BitCast, Identity, Constant, Dropout and Clip against onnx.reference."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
from onnx import TensorProto

from infermux.errors import TypeMismatchError, UnsupportedOpError
from infermux.ops._dtypes import ONNX_TO_NUMPY
from tests.ops.op_oracle import call, reference


def assert_identical(got, want):
    got = np.asarray(got)
    assert got.dtype == want.dtype and got.shape == want.shape
    if got.dtype != object:  # ml_dtypes types compare reliably (NaN included) as float64
        got, want = got.astype(np.float64), want.astype(np.float64)
    np.testing.assert_array_equal(got, want)


F32 = np.array([0.47892547, -1e6, 1e-7, np.nan, np.inf, -np.inf, 200.7, -3.5], np.float32)


@pytest.mark.parametrize("x, to", [
    (F32[:3], TensorProto.INT32), (F32, TensorProto.FLOAT16), (F32, TensorProto.BFLOAT16),
    (F32, TensorProto.DOUBLE), (F32, TensorProto.BOOL), (np.array([200, 3], np.int16),
                                                         TensorProto.INT8),
    (np.array([True, False]), TensorProto.FLOAT), (np.array([2**40, -1], np.int64),
                                                   TensorProto.FLOAT)])
def test_numeric_casts_match_reference(x, to):
    with np.errstate(over="ignore"):  # the reference warns where float16 overflows to inf
        want = reference("Cast", [x], 21, to=to)[0]
    assert_identical(call("Cast", 21, x, to=to), want)


@pytest.mark.parametrize("to", [TensorProto.FLOAT8E4M3FN, TensorProto.FLOAT8E4M3FNUZ,
                                TensorProto.FLOAT8E5M2, TensorProto.FLOAT8E5M2FNUZ])
@pytest.mark.parametrize("saturate", [0, 1])
@pytest.mark.parametrize("source", [np.float32, np.float16])
def test_float8_casts_saturate_or_not(to, saturate, source):
    with np.errstate(over="ignore"):  # -1e6 is -inf in float16
        x = F32.astype(source)
    want = reference("Cast", [x], 19, to=to, saturate=saturate)[0]
    assert_identical(call("Cast", 19, x, to=to, saturate=saturate), want)


@pytest.mark.skipif(24 not in ONNX_TO_NUMPY, reason="float8e8m0 missing from _dtypes")
@pytest.mark.parametrize("round_mode", ["up", "down", "nearest"])
@pytest.mark.parametrize("saturate", [0, 1])
def test_float8e8m0_rounding(round_mode, saturate):
    x = np.array([0, 0.124, 0.75, 1.5, 3.0, 2.0**127 * 1.5, np.nan, np.inf], np.float32)
    attrs = {"to": 24, "saturate": saturate, "round_mode": round_mode}
    assert_identical(call("Cast", 25, x, **attrs), reference("Cast", [x], 25, **attrs)[0])


def test_cast_rejects_unknown_round_mode():
    if 24 not in ONNX_TO_NUMPY:
        pytest.skip("float8e8m0 missing from _dtypes")
    with pytest.raises(UnsupportedOpError, match="round_mode"):
        call("Cast", 25, F32, to=24, round_mode="sideways")


def test_opset1_cast_takes_a_type_name():
    assert call("Cast", 1, F32[:3], to="DOUBLE").dtype == np.float64
    with pytest.raises(UnsupportedOpError, match="to='QUAD'"):
        call("Cast", 1, F32, to="QUAD")


def test_strings_to_numbers_and_back():
    s = np.array(["1.5", "1e-5", "INF", "-inf", "NaN", "+INF", "-2"], dtype=object)
    got = call("Cast", 21, s, to=TensorProto.FLOAT)
    np.testing.assert_array_equal(got, np.array([1.5, 1e-5, np.inf, -np.inf, np.nan, np.inf, -2],
                                                np.float32))
    np.testing.assert_array_equal(call("Cast", 21, np.array(["7", "-3"], dtype=object),
                                      to=TensorProto.INT64), [7, -3])
    back = call("Cast", 21, np.array([1.5, np.nan, -np.inf], np.float32), to=TensorProto.STRING)
    assert back.dtype == object and list(back) == ["1.5", "NaN", "-INF"]


def test_castlike_takes_the_type_of_its_second_input():
    like = np.zeros(1, ml_dtypes.bfloat16)
    want = reference("CastLike", [F32, like], 19)[0]
    assert_identical(call("CastLike", 19, F32, like), want)


def test_bitcast_reinterprets_bits_and_checks_width():
    got = call("BitCast", 26, np.array([1.0, -2.0], np.float32), to=TensorProto.INT32)
    np.testing.assert_array_equal(got, np.array([1.0, -2.0], np.float32).view(np.int32))
    with pytest.raises(TypeMismatchError, match="one width"):
        call("BitCast", 26, F32, to=TensorProto.INT64)


def test_identity_is_one_output():
    x = np.arange(3)
    (out,) = call("Identity", 21, x)
    assert out is x


@pytest.mark.parametrize("attrs, want", [
    ({"value_float": 1.5}, np.array(1.5, np.float32)),
    ({"value_floats": [1.0, 2.0]}, np.array([1.0, 2.0], np.float32)),
    ({"value_int": 3}, np.array(3, np.int64)),
    ({"value_ints": [1, 2]}, np.array([1, 2], np.int64)),
    ({"value_strings": ["a", "b"]}, np.array(["a", "b"], dtype=object)),
    ({"value": np.ones((2, 2), np.float16)}, np.ones((2, 2), np.float16))])
def test_constant_attributes(attrs, want):
    assert_identical(call("Constant", 13, **attrs), want)


def test_constant_errors():
    with pytest.raises(ValueError, match="none of"):
        call("Constant", 13)
    with pytest.raises(UnsupportedOpError, match="sparse_value"):
        call("Constant", 13, sparse_value=object())


def test_dropout_inference_returns_input_and_mask():
    x = F32[:3]
    y, mask = call("Dropout", 13, x, np.array(0.5, np.float32), _num_outputs=2)
    assert y is x and mask.dtype == bool and mask.all()
    y7, mask7 = call("Dropout", 7, x, ratio=0.3, _num_outputs=2)
    assert mask7.dtype == np.float32 and (mask7 == 1).all()


def test_dropout_training_with_seed_matches_reference():
    x = np.random.default_rng(0).standard_normal((3, 4, 5)).astype(np.float32)
    ratio, train = np.array(0.75, np.float32), np.array(True)
    y, mask = call("Dropout", 22, x, ratio, train, seed=0, _num_outputs=2)
    want_y, want_mask = reference("Dropout", [x, ratio, train], 22, n_out=2, seed=0)
    np.testing.assert_allclose(y, want_y, rtol=1e-6)
    np.testing.assert_array_equal(mask, want_mask)


def test_dropout_training_without_seed_is_unsupported():
    with pytest.raises(UnsupportedOpError, match="seed"):
        call("Dropout", 22, F32, np.array(0.5, np.float32), np.array(True))


def test_clip_forms():
    x = np.array([-5.0, 0.5, 5.0], np.float32)
    np.testing.assert_array_equal(call("Clip", 6, x, min=-1.0, max=1.0), [-1, 0.5, 1])
    np.testing.assert_array_equal(call("Clip", 6, x), x)  # default bounds are +-FLT_MAX
    lo, hi = np.array(-1, np.int8), np.array(2, np.int8)
    got = call("Clip", 13, np.array([-7, 1, 9], np.int8), lo, hi)
    assert got.dtype == np.int8 and got.tolist() == [-1, 1, 2]
    np.testing.assert_array_equal(call("Clip", 13, x, None, np.array(0, np.float32)), [-5, 0, 0])
    inverted = call("Clip", 13, x, np.array(2, np.float32), np.array(1, np.float32))
    np.testing.assert_array_equal(inverted, reference("Clip", [x, np.array(2, np.float32),
                                                              np.array(1, np.float32)], 13)[0])
