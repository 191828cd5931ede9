"""Comparisons, boolean logic, bitwise ops, Where, IsNaN and IsInf.

Binary ops broadcast the NumPy way; their opset-1 forms spelled broadcasting with the
``broadcast``/``axis`` attributes, handled as in :mod:`infermux.ops.elementwise`.  Equal also
compares strings (object arrays).
"""

from __future__ import annotations

import numpy as np

from infermux.errors import UnsupportedOpError
from infermux.ops.elementwise import legacy_broadcast
from infermux.ops.registry import kernel

__all__ = ["COMPARISONS", "BITWISE"]

# op type: (first opset, xp ufunc name, first opset of NumPy-style broadcasting or None)
COMPARISONS = {
    "And": (1, "logical_and", 7), "Or": (1, "logical_or", 7), "Xor": (1, "logical_xor", 7),
    "Equal": (1, "equal", 7), "Greater": (1, "greater", 7), "Less": (1, "less", 7),
    "GreaterOrEqual": (12, "greater_equal", None), "LessOrEqual": (12, "less_equal", None),
}
BITWISE = {"BitwiseAnd": "bitwise_and", "BitwiseOr": "bitwise_or", "BitwiseXor": "bitwise_xor"}


def _register_binary(op_type: str, since: int, ufunc_name: str, modern_since: int | None):
    def legacy(xp, a, b, /, *, broadcast=0, axis=None):
        return getattr(xp, ufunc_name)(a, legacy_broadcast(b, a.ndim, broadcast, axis))

    def modern(xp, a, b, /):
        return getattr(xp, ufunc_name)(a, b)

    versions = [(since, modern)] if modern_since is None else [(since, legacy),
                                                                 (modern_since, modern)]
    for first, run in versions:
        run.__name__ = run.__qualname__ = f"{op_type.lower()}_{first}"
        run.__doc__ = f"ONNX {op_type} from opset {first}: elementwise ``xp.{ufunc_name}``."
        kernel(op_type, since=first)(run)


for _op, (_since, _ufunc, _modern) in COMPARISONS.items():
    _register_binary(_op, _since, _ufunc, _modern)
for _op, _ufunc in BITWISE.items():
    _register_binary(_op, 18, _ufunc, None)


@kernel("Not", since=1)
def logical_not(xp, x, /):
    return xp.logical_not(x)


@kernel("BitwiseNot", since=18)
def bitwise_not(xp, x, /):
    return xp.invert(x)


def _check_direction(direction: str) -> None:
    if direction not in ("LEFT", "RIGHT"):
        raise UnsupportedOpError(f"BitShift attribute direction={direction!r} is not "
                                 f"supported: use 'LEFT' or 'RIGHT'")


@kernel("BitShift", since=11)
def bit_shift(xp, x, y, /, *, direction):
    """Shift x by y bits.  A shift below 0 or of the type's width or more gives 0 (left) or
    the sign fill (right), as opset 28 defines (C leaves it undefined, so mask it)."""
    _check_direction(direction)
    y = y.astype(x.dtype, copy=False)
    out_of_range = (y < 0) | (y >= x.dtype.itemsize * 8)
    y = xp.where(out_of_range, 0, y)
    if direction == "LEFT":
        return xp.where(out_of_range, 0, xp.left_shift(x, y))
    fill = xp.where(x < 0, -1, 0) if x.dtype.kind == "i" else 0
    return xp.where(out_of_range, fill, xp.right_shift(x, y)).astype(x.dtype, copy=False)


@kernel("BitShift", since=11, fast=True)
def bit_shift_fast(xp, x, y, /, *, direction):
    """BitShift on NumPy, whose shifts already give 0 / the sign fill out of range."""
    _check_direction(direction)
    shift = xp.left_shift if direction == "LEFT" else xp.right_shift
    return shift(x, y.astype(x.dtype, copy=False))


@kernel("Where", since=9)
def where(xp, condition, x, y, /):
    """x where condition holds, else y; all three broadcast."""
    return xp.where(condition, x, y)


@kernel("IsNaN", since=9)
def is_nan(xp, x, /):
    return xp.isnan(x)


@kernel("IsInf", since=10)
def is_inf(xp, x, /, *, detect_negative=1, detect_positive=1):
    """True at +inf (detect_positive) and/or -inf (detect_negative)."""
    if detect_negative and detect_positive:
        return xp.isinf(x)
    if detect_positive:
        return x == np.inf
    if detect_negative:
        return x == -np.inf
    return xp.zeros(x.shape, dtype=bool)
