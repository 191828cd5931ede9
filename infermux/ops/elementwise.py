"""Elementwise math: unary functions, binary arithmetic and the variadic Max/Min/Sum/Mean.

Trivial unary ops are one NumPy/CuPy ufunc each and live in the ``UNARY`` table.  The binary
ops broadcast the NumPy way (opset 7 on); opsets 1-6 spelled broadcasting with the
``broadcast``/``axis`` attributes, which ``legacy_broadcast`` honours.  Results keep the
input element type: integer Div truncates toward zero as C does, Pow keeps the base's type.

Erf has no ufunc in NumPy, so ``erf`` evaluates rational/polynomial approximations fitted for
this module (see its docstring for their accuracy).
"""

from __future__ import annotations

import numpy as np

from infermux.ops.registry import kernel

__all__ = ["UNARY", "BINARY", "erf", "erf_float64", "blockwise", "legacy_broadcast"]

# op type: (first opset, name of the xp ufunc).  Ops whose opset-1 form carried the
# optimisation hint ``consumed_inputs`` accept and ignore it (see _register_unary).
UNARY = {
    "Abs": (1, "abs"), "Neg": (1, "negative"), "Ceil": (1, "ceil"), "Floor": (1, "floor"),
    "Exp": (1, "exp"), "Log": (1, "log"), "Sqrt": (1, "sqrt"), "Reciprocal": (1, "reciprocal"),
    "Tanh": (1, "tanh"),
    "Sin": (7, "sin"), "Cos": (7, "cos"), "Tan": (7, "tan"),
    "Asin": (7, "arcsin"), "Acos": (7, "arccos"), "Atan": (7, "arctan"),
    "Sinh": (9, "sinh"), "Cosh": (9, "cosh"),
    "Asinh": (9, "arcsinh"), "Acosh": (9, "arccosh"), "Atanh": (9, "arctanh"),
    "Sign": (9, "sign"),
    "Round": (11, "rint"),  # ONNX rounds half to even, as rint does
}


def _register_unary(op_type: str, since: int, ufunc_name: str) -> None:
    # Out-of-domain inputs (log(-1), sqrt(-1), 1/0) give NaN/inf as ONNX says; no warnings.
    if since == 1:
        @np.errstate(all="ignore")
        def run(xp, x, /, *, consumed_inputs=None):
            return getattr(xp, ufunc_name)(x)
    else:
        @np.errstate(all="ignore")
        def run(xp, x, /):
            return getattr(xp, ufunc_name)(x)
    run.__name__ = run.__qualname__ = op_type.lower()
    run.__doc__ = f"ONNX {op_type}: elementwise ``xp.{ufunc_name}``."
    kernel(op_type, since=since)(run)


for _op, (_since, _ufunc) in UNARY.items():
    _register_unary(_op, _since, _ufunc)


# --- Erf -------------------------------------------------------------------------------------
# Coefficients fitted for infermux (Chebyshev interpolation / iteratively reweighted rational
# least squares against math.erf), lowest degree first.

# erf(x) = x * P(x^2) / Q(x^2) on |x| <= 4, evaluated in float64; past 4, erf rounds to +-1 in
# float32.  Max relative error 1.6e-8 before rounding to float32, 6.1e-8 after (correct
# rounding alone is 6.0e-8).
_ERF32_P = (1.1283791681383946, 0.16689923807057305, 0.05093738005701846,
            0.002955765952832038, 0.0003057260881061718, -2.9044868693328187e-07,
            -4.484723950924529e-08)
_ERF32_Q = (1.0, 0.48124397060597257, 0.10555646964840477, 0.013490811181993528,
            0.0010397731854528422, 4.09904599276446e-05, -6.202644411143358e-07)

# float64, |x| < 1.5: erf(x) = x * P(x^2), max relative error 9e-16.
_ERF64_SMALL = (1.128379167095513, -0.37612638903186213, 0.11283791670981257,
                -0.026866170645173992, 0.005223977615135479, -0.0008548326403793252,
                0.00012055314374927185, -1.49253051492797e-05, 1.6457847713967853e-06,
                -1.632954072813779e-07, 1.4592319528291584e-08, -1.1412315909237128e-09,
                7.007574437605475e-11, -2.458125493799691e-12)
# float64, 1.5 <= |x| <= 6: erfc(|x|) = exp(-x^2) * P(u) / Q(u) with u = (2|x| - 7.5) / 4.5;
# erf error below 3e-16 absolute.  Past 6, erf is +-1 in float64.
_ERFC64_P = (0.1455897213903558, -0.08002908907211662, 0.038618006251379663,
             -0.01530200713920632, 0.019011737536842693, -0.01586339891250697,
             -0.0089093408258077, 0.007228571731021597, 0.0031206041221018567,
             -2.906824940054755e-05)
_ERFC64_Q = (1.0, 0.013719976422512204, -0.035753266809747594, 0.035386295785816216,
             0.07788310427304379, -0.03924932014704447, -0.11960676078809396,
             0.013145863853430566, 0.050119032616380364, 0.01232775904023845)


def _horner(xp, t, coefs):
    """sum(coefs[i] * t**i), in place on one fresh array."""
    acc = xp.full_like(t, coefs[-1])
    for c in coefs[-2::-1]:
        acc *= t
        acc += c
    return acc


def _erf_rational(xp, x):
    """erf for float32-accurate use; ``x`` (float32 or float64, overwritten) gives the dtype."""
    xc = xp.clip(x, -4.0, 4.0, out=x)
    s = xc * xc
    p = _horner(xp, s, _ERF32_P)
    p /= _horner(xp, s, _ERF32_Q)
    p *= xc
    return p


@np.errstate(all="ignore")  # x * x overflows to inf for huge x on the unused branch
def erf_float64(xp, x):
    """erf of a float64 array to about 1 ulp: a polynomial near 0, erfc through exp(-x^2) beyond.

    1 + erf(x) keeps its relative accuracy for negative x down to about -5 (Gelu relies on it).
    """
    if x.ndim == 0:  # NumPy ufuncs give scalars for 0-d arrays, and out= needs arrays
        return erf_float64(xp, x.reshape(1)).reshape(())
    ax = xp.abs(x)
    small = _horner(xp, x * x, _ERF64_SMALL)
    small *= x
    at = xp.clip(ax, 1.5, 6.0)  # both branches are evaluated everywhere; keep each in range
    u = at * (2 / 4.5)
    u -= 7.5 / 4.5
    tail = _horner(xp, u, _ERFC64_P)
    tail /= _horner(xp, u, _ERFC64_Q)
    xp.multiply(at, at, out=at)
    xp.negative(at, out=at)
    xp.exp(at, out=at)
    tail *= at
    xp.subtract(1.0, tail, out=tail)
    xp.copysign(tail, x, out=tail)
    return xp.where(ax < 1.5, small, tail)


def erf(xp, x):
    """The error function of a float array, in its own dtype.

    float32 is evaluated in float64 (max relative error 6.1e-8 after rounding, i.e. at most
    one ulp off a correctly rounded result), float64 to about one ulp, 16-bit floats in
    float32.  NaN propagates; +-inf give +-1.
    """
    if x.ndim == 0:
        return erf(xp, x.reshape(1)).reshape(())
    if x.dtype == np.float64:
        return erf_float64(xp, x)
    work = np.float64 if x.dtype == np.float32 else np.float32
    return _erf_rational(xp, x.astype(work, copy=True)).astype(x.dtype, copy=False)


@kernel("Erf", since=9)
def erf_kernel(xp, x, /):
    """ONNX Erf."""
    return erf(xp, x)


def blockwise(fn, x, block: int = 65536):
    """``fn(x)`` computed on cache-sized slices of a NumPy array (for multi-pass formulas).

    A formula of many elementwise passes is bound by memory traffic on big arrays; slicing keeps
    its temporaries in cache (Erf on 1M float32: 15 ms whole, 6.5 ms in blocks).
    """
    if x.size <= 2 * block:
        return fn(x)
    flat = np.ascontiguousarray(x).reshape(-1)
    first = fn(flat[:block])
    out = np.empty(flat.shape, dtype=first.dtype)
    out[:block] = first
    for start in range(block, flat.size, block):
        out[start:start + block] = fn(flat[start:start + block])
    return out.reshape(x.shape)


# --- binary arithmetic -----------------------------------------------------------------------

def legacy_broadcast(b, a_ndim: int, broadcast: int, axis: int | None):
    """Opset < 7 broadcasting: with ``axis``, B's dims line up with A's from ``axis`` on."""
    if not broadcast or axis is None or b.ndim == 0:
        return b
    axis = axis % a_ndim if a_ndim else 0
    trailing = a_ndim - axis - b.ndim
    if trailing < 0:
        raise ValueError(f"broadcast axis={axis} does not fit B of rank {b.ndim} "
                         f"into A of rank {a_ndim}")
    return b.reshape(b.shape + (1,) * trailing)


def _int_div(xp, a, b):
    """Integer division truncating toward zero (C semantics); x / 0 gives 0."""
    if a.dtype.kind == "u":
        return xp.floor_divide(a, b)
    # a - fmod(a, b) is an exact multiple of b, so floor division of it is exact.
    return xp.floor_divide(a - xp.fmod(a, b), b)


@np.errstate(all="ignore")
def _div(xp, a, b):
    if a.dtype.kind in "iu":
        return _int_div(xp, a, b)
    return xp.divide(a, b)


@np.errstate(all="ignore")
def _pow(xp, a, b):
    """Pow with the base's element type, for any numeric exponent type."""
    if a.dtype.kind in "iu" and b.dtype.kind == "f":
        return xp.power(a.astype(np.float64), b).astype(a.dtype)
    if a.dtype.kind == "f" and b.dtype.kind == "f" and b.dtype.itemsize > a.dtype.itemsize:
        return xp.power(a, b).astype(a.dtype)
    if a.dtype.kind in "iu" and b.dtype.kind == "i":
        if bool((b < 0).any()):  # NumPy refuses negative integer powers; C++ pow() does not
            return xp.power(a.astype(np.float64), b).astype(a.dtype)
    return xp.power(a, b.astype(a.dtype, copy=False))


BINARY = {  # op type: function of (xp, a, b)
    "Add": lambda xp, a, b: xp.add(a, b),
    "Sub": lambda xp, a, b: xp.subtract(a, b),
    "Mul": lambda xp, a, b: xp.multiply(a, b),
    "Div": _div,
    "Pow": _pow,
}


def _register_binary(op_type: str, fn) -> None:
    def legacy(xp, a, b, /, *, broadcast=0, axis=None, consumed_inputs=None):
        return fn(xp, a, legacy_broadcast(b, a.ndim, broadcast, axis))

    def modern(xp, a, b, /):
        return fn(xp, a, b)

    for since, run in ((1, legacy), (7, modern)):
        run.__name__ = run.__qualname__ = f"{op_type.lower()}_{since}"
        run.__doc__ = f"ONNX {op_type} from opset {since}."
        kernel(op_type, since=since)(run)


for _op, _fn in BINARY.items():
    _register_binary(_op, _fn)


@kernel("Mod", since=10)
@np.errstate(all="ignore")
def mod(xp, a, b, /, *, fmod=0):
    """ONNX Mod: the sign of the divisor (Python ``%``) or, with ``fmod=1``, of the dividend."""
    return xp.fmod(a, b) if fmod else xp.mod(a, b)


# --- variadic --------------------------------------------------------------------------------

def _fold(xp, ufunc, args):
    """ufunc over all args with broadcasting, accumulating in place once we own the result."""
    if not args:
        raise ValueError("expected at least one input")
    acc = args[0]
    for i, arg in enumerate(args[1:]):
        owned = (i > 0 and acc.ndim > 0
                 and acc.shape == np.broadcast_shapes(acc.shape, arg.shape))
        acc = ufunc(acc, arg, out=acc) if owned else ufunc(acc, arg)
    return acc


def _variadic(op_type: str, ufunc_name: str, mean: bool = False) -> None:
    def run(xp, *args, consumed_inputs=None):
        acc = _fold(xp, getattr(xp, ufunc_name), args)
        if mean and len(args) > 1:
            acc = (acc / len(args)).astype(acc.dtype, copy=False)
        return acc

    run.__name__ = run.__qualname__ = op_type.lower()
    run.__doc__ = f"ONNX {op_type} over any number of broadcast inputs."
    kernel(op_type, since=1)(run)


_variadic("Max", "maximum")
_variadic("Min", "minimum")
_variadic("Sum", "add")
_variadic("Mean", "add", mean=True)
