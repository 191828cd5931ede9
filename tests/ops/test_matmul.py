"""MatMul, Gemm, MatMulInteger, Einsum and Det against onnxruntime."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

from infermux.errors import ShapeMismatchError
from infermux.ops.registry import lookup
from tests.ops.op_oracle import check, run


RNG = np.random.default_rng(0)


def randn(*shape, dtype=np.float32):
    return RNG.standard_normal(shape).astype(dtype)


@pytest.mark.parametrize("a_shape, b_shape", [((3, 4), (4, 5)), ((2, 1, 3, 4), (5, 4, 2)),
                                              ((4,), (2, 4, 3)), ((2, 3, 4), (4,)), ((4,), (4,))])
def test_matmul_broadcasting(a_shape, b_shape):
    check("MatMul", [randn(*a_shape), randn(*b_shape)], opset=13, rtol=1e-5)


def test_matmul_half_types_keep_their_dtype():
    for dtype in (np.float16, ml_dtypes.bfloat16):
        a, b = randn(3, 4).astype(dtype), randn(4, 2).astype(dtype)
        for fast in (False, True):
            out = lookup("MatMul", 13, fast=fast).fn(np, a, b)
            assert out.dtype == dtype
            np.testing.assert_allclose(out.astype(np.float32),
                                       a.astype(np.float32) @ b.astype(np.float32), rtol=2e-2)


@pytest.mark.parametrize("trans_a, trans_b", [(0, 0), (1, 0), (0, 1), (1, 1)])
@pytest.mark.parametrize("c_shape", [None, (5,), (3, 1), (3, 5), ()])
def test_gemm(trans_a, trans_b, c_shape):
    a = randn(*((4, 3) if trans_a else (3, 4)))
    b = randn(*((5, 4) if trans_b else (4, 5)))
    c = None if c_shape is None else randn(*c_shape)
    attrs = {"transA": trans_a, "transB": trans_b, "alpha": 0.5, "beta": 2.0}
    check("Gemm", [a, b, c], attrs, opset=13)


def test_gemm_does_not_modify_c():
    c = randn(3, 5)
    before = c.copy()
    run("Gemm", [randn(3, 4), randn(4, 5), c], opset=13)
    np.testing.assert_array_equal(c, before)


def test_gemm_bad_bias_shape_raises():
    with pytest.raises(ShapeMismatchError, match="does not broadcast"):
        run("Gemm", [randn(3, 4), randn(4, 5), randn(2, 5)], opset=13)


def test_matmul_integer_with_zero_points():
    a = RNG.integers(0, 255, (3, 6), dtype=np.uint8)
    b = RNG.integers(-128, 127, (6, 4), dtype=np.int8)
    check("MatMulInteger", [a, b], opset=10)
    check("MatMulInteger", [a, b, np.array(12, np.uint8), np.array(-3, np.int8)], opset=10)
    # one zero point per row of A (the spec's [M] form; onnxruntime accepts only scalars)
    a_zp = np.array([1, 2, 3], np.uint8)
    (out,) = run("MatMulInteger", [a, b, a_zp], opset=10)
    expected = (a.astype(np.int32) - a_zp[:, None].astype(np.int32)) @ b.astype(np.int32)
    assert out.dtype == np.int32
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("equation, shapes", [("ij, jk -> ik", [(2, 3), (3, 4)]),
                                              ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]),
                                              ("ii->i", [(3, 3)]), ("i,i", [(4,), (4,)]),
                                              ("...ij->...ji", [(2, 3, 4)])])
def test_einsum(equation, shapes):
    check("Einsum", [randn(*s) for s in shapes], {"equation": equation}, opset=12, rtol=1e-5)


def test_det():
    check("Det", [randn(2, 3, 3)], opset=11, rtol=1e-4)
    with pytest.raises(ShapeMismatchError, match="M, M"):
        run("Det", [randn(2, 3)], opset=11)
