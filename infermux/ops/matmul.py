"""Matrix products: MatMul, Gemm, MatMulInteger, Einsum and Det.

Products go straight to ``xp.matmul`` (BLAS / cuBLAS); transposes are views, never copies.
NumPy has no BLAS for 16-bit floats, so a NumPy-only fast path runs those in float32.
"""

from __future__ import annotations

import numpy as np

from infermux.errors import ShapeMismatchError
from infermux.ops.registry import kernel

__all__: list[str] = []


def _is_half(dtype) -> bool:
    return dtype.itemsize == 2 and (dtype.kind == "f" or dtype.name == "bfloat16")


def _matmul(xp, a, b):
    if a.ndim == 0 or b.ndim == 0:
        raise ShapeMismatchError(
            f"MatMul needs inputs of rank >= 1, got shapes {a.shape} and {b.shape}")
    try:
        out = xp.matmul(a, b)
    except ValueError as exc:
        raise ShapeMismatchError(f"MatMul of shapes {a.shape} and {b.shape}: {exc}") from None
    return out if out.dtype == a.dtype else out.astype(a.dtype)  # NumPy widens bfloat16


def _matmul_float32(xp, a, b):
    """Half-precision product computed in float32 (NumPy has no half BLAS)."""
    if not _is_half(a.dtype):
        return _matmul(xp, a, b)
    return _matmul(xp, a.astype(np.float32), b.astype(np.float32)).astype(a.dtype)


@kernel("MatMul", since=1)
def matmul(xp, a, b, /):
    """NumPy-style matrix product with broadcasting of the batch dimensions."""
    return _matmul(xp, a, b)


@kernel("MatMul", since=1, fast=True)
def matmul_fast(xp, a, b, /):
    """CPU path: as MatMul, with 16-bit floats multiplied in float32."""
    return _matmul_float32(xp, a, b)


def _gemm(xp, mm, a, b, c, alpha, beta, trans_a, trans_b):
    """alpha * A' @ B' + beta * C; works in place on the fresh product."""
    if a.ndim != 2 or b.ndim != 2:
        raise ShapeMismatchError(f"Gemm needs 2-D A and B, got shapes {a.shape} and {b.shape}")
    y = mm(xp, a.T if trans_a else a, b.T if trans_b else b)
    dt = y.dtype.type
    if alpha != 1.0:
        y *= dt(alpha)
    if c is not None and beta != 0.0:
        try:
            y += c if beta == 1.0 else c * dt(beta)
        except ValueError:
            raise ShapeMismatchError(f"Gemm: C of shape {c.shape} does not broadcast to the "
                                     f"product's shape {y.shape}") from None
    return y


@kernel("Gemm", since=1)
def gemm(xp, a, b, c=None, /, *, alpha=1.0, beta=1.0, transA=0, transB=0,  # noqa: N803
         broadcast=0):
    """General matrix multiply; ``broadcast`` (opset < 7) is accepted, broadcasting always on."""
    return _gemm(xp, _matmul, a, b, c, alpha, beta, transA, transB)


@kernel("Gemm", since=1, fast=True)
def gemm_fast(xp, a, b, c=None, /, *, alpha=1.0, beta=1.0, transA=0, transB=0,  # noqa: N803
              broadcast=0):
    """CPU path: as Gemm, with 16-bit floats multiplied in float32."""
    return _gemm(xp, _matmul_float32, a, b, c, alpha, beta, transA, transB)


def _centred(x, zero_point, per_row: bool):
    """``x - zero_point`` in float64 (exact for 8-bit data), the zero point per tensor/row/col."""
    x = x.astype(np.float64)
    if zero_point is None:
        return x
    zp = zero_point.astype(np.float64)
    if per_row and zp.ndim == 1 and zp.size > 1:
        zp = zp.reshape(-1, 1)  # one zero point per row of A
    x -= zp
    return x


@kernel("MatMulInteger", since=10)
def matmul_integer(xp, a, b, a_zero_point=None, b_zero_point=None, /):
    """(A - a_zero_point) @ (B - b_zero_point) as int32.

    The product runs in float64 BLAS: with 8-bit operands every partial sum is an integer far
    below 2**53, so the result is exact.
    """
    y = _matmul(xp, _centred(a, a_zero_point, True), _centred(b, b_zero_point, False))
    return y.astype(np.int32)


@kernel("Einsum", since=12)
def einsum(xp, *inputs, equation):
    """Einstein summation; 16-bit float operands are computed in float32."""
    equation = equation.replace(" ", "")
    dtype = inputs[0].dtype
    if _is_half(dtype):
        inputs = [x.astype(np.float32) for x in inputs]
    out = xp.einsum(equation, *inputs, optimize=len(inputs) > 1)
    return xp.asarray(out).astype(dtype, copy=False)


@kernel("Det", since=11)
def det(xp, x, /):
    """Determinant of each square matrix in the trailing two axes."""
    if x.ndim < 2 or x.shape[-1] != x.shape[-2]:
        raise ShapeMismatchError(f"Det needs [..., M, M] input, got shape {x.shape}")
    work = x.astype(np.float32) if _is_half(x.dtype) else x
    return xp.asarray(xp.linalg.det(work)).astype(x.dtype, copy=False)
