"""Type and value plumbing: Cast, CastLike, BitCast, Identity, Constant, Dropout and Clip.

Element types beyond NumPy's own (bfloat16, the float8 family, 4- and 2-bit ints, float4)
come from ``ml_dtypes`` through :mod:`infermux.ops._dtypes`; casts to them are ``astype``
except where ONNX adds rules: float8 ``saturate`` clamps to the largest finite value before
rounding, and float8e8m0 rounds the exponent up, down or to nearest (``round_mode``).
Strings are NumPy object arrays of ``str``.  Dropout runs in inference mode; its training
mode is supported only with a ``seed`` (reproducing ONNX's reference sampling).
"""

from __future__ import annotations

import numpy as np

from infermux.errors import TypeMismatchError, UnsupportedOpError
from infermux.ops._dtypes import ONNX_TO_NUMPY, onnx_to_numpy
from infermux.ops.registry import kernel

__all__ = ["cast_to"]

_STRING = np.dtype(object)
# Opset 1 spelled Cast's `to` as a type name.
_TYPE_NAMES = {"FLOAT": 1, "UINT8": 2, "INT8": 3, "UINT16": 4, "INT16": 5, "INT32": 6,
               "INT64": 7, "STRING": 8, "BOOL": 9, "FLOAT16": 10, "DOUBLE": 11, "UINT32": 12,
               "UINT64": 13, "COMPLEX64": 14, "COMPLEX128": 15, "BFLOAT16": 16}
_FLOAT8_CODES = (17, 18, 19, 20)  # E4M3FN, E4M3FNUZ, E5M2, E5M2FNUZ
_FLOAT8E8M0_CODE = 24


def _float8_max() -> dict[np.dtype, float]:
    """Largest finite value of each float8 type that saturates (none without ml_dtypes)."""
    try:
        import ml_dtypes
    except ImportError:  # pragma: no cover - onnx depends on it
        return {}
    return {ONNX_TO_NUMPY[code]: float(ml_dtypes.finfo(ONNX_TO_NUMPY[code]).max)
            for code in _FLOAT8_CODES if code in ONNX_TO_NUMPY}


_SATURATING = _float8_max()


def _is_string(dtype: np.dtype) -> bool:
    return dtype.kind in "OUS"


def _to_string(xp, x):
    """Numbers to str; NaN and infinities spelled as ONNX reserves them ("NaN", "INF")."""
    out = np.asarray(x).astype(np.str_).astype(object)
    if x.dtype.kind == "f" or x.dtype.kind == "V":
        host = np.asarray(x).astype(np.float64)
        out[np.isnan(host)] = "NaN"
        out[np.isposinf(host)] = "INF"
        out[np.isneginf(host)] = "-INF"
    return out


def _from_string(x, dtype: np.dtype):
    """Parse str numbers ("3.14", "1e-5", "INF", "-inf", "NaN") into ``dtype``."""
    x = np.asarray(x, dtype=object)
    if dtype.kind in "iu":
        try:
            return x.astype(dtype)
        except (ValueError, OverflowError):
            pass  # "2.5" -> int: go through float like onnxruntime
    return x.astype(np.float64)


def _to_float8e8m0(xp, x, saturate: int, round_mode: str):
    """Round |x| to a power of two stored as a bare exponent byte (ml_dtypes float8_e8m0fnu)."""
    bits = x.astype(np.float32).reshape(x.shape or (1,)).view(np.uint32)
    exponent = ((bits >> 23) & 0xFF).astype(np.uint16)
    special = exponent == 0xFF  # inf and NaN both become NaN (0xFF)
    if round_mode == "up":
        round_up = (bits & 0x7FFFFF) != 0
    elif round_mode == "nearest":
        guard = (bits & 0x400000) != 0
        rest = (bits & 0x3FFFFF) != 0  # round and sticky bits
        round_up = guard & (rest | (exponent > 0))  # as ONNX's reference rounds ties
    elif round_mode == "down":
        round_up = xp.zeros(x.shape, dtype=bool)
    else:
        raise UnsupportedOpError(f"Cast attribute round_mode={round_mode!r} is not supported: "
                                 f"use 'up', 'down' or 'nearest'")
    if saturate:
        round_up &= exponent != 0xFE
    exponent = xp.where(special, 0xFF, exponent + round_up)  # 0xFF: NaN, also when rounded up
    return exponent.astype(np.uint8).view(ONNX_TO_NUMPY[_FLOAT8E8M0_CODE])


@np.errstate(invalid="ignore", over="ignore")  # NaN or out of range to int: undefined, no error
def cast_to(xp, x, dtype: np.dtype, *, saturate: int = 1, round_mode: str = "up"):
    """``x`` as ``dtype`` (a NumPy dtype; object for strings) by ONNX Cast's rules."""
    if x.dtype == dtype:
        return x
    if _is_string(dtype):
        return _to_string(xp, x)
    if _is_string(x.dtype):
        x = _from_string(x, dtype)
        if x.dtype == dtype:
            return x
    if dtype in _SATURATING and saturate:
        limit = _SATURATING[dtype]
        if x.dtype.kind in "fV":
            x = x.astype(np.float32, copy=False) if x.dtype.itemsize < 4 else x
            x = xp.clip(x, -limit, limit)
        else:
            x = xp.clip(x.astype(np.float32), -limit, limit)
    elif _FLOAT8E8M0_CODE in ONNX_TO_NUMPY and dtype == ONNX_TO_NUMPY[_FLOAT8E8M0_CODE]:
        return _to_float8e8m0(xp, x, saturate, round_mode).reshape(x.shape)
    return x.astype(dtype)


def _code(to) -> int:
    if isinstance(to, str):
        try:
            return _TYPE_NAMES[to.upper()]
        except KeyError:
            raise UnsupportedOpError(f"Cast attribute to={to!r} is not a type name infermux "
                                     f"knows: use one of {sorted(_TYPE_NAMES)}") from None
    return int(to)


@kernel("Cast", since=1)
def cast(xp, x, /, *, to, saturate=1, round_mode="up"):
    """ONNX Cast; ``to`` is an element type code (or, in opset 1, its name)."""
    code = _code(to)
    dtype = _STRING if code == 8 else onnx_to_numpy(code)
    return cast_to(xp, x, dtype, saturate=saturate, round_mode=round_mode)


@kernel("CastLike", since=15)
def cast_like(xp, x, like, /, *, saturate=1, round_mode="up"):
    """Cast ``x`` to the element type of ``like``."""
    dtype = _STRING if _is_string(like.dtype) else like.dtype
    return cast_to(xp, x, dtype, saturate=saturate, round_mode=round_mode)


@kernel("BitCast", since=26)
def bitcast(xp, x, /, *, to):
    """Reinterpret the bits of ``x`` as another type of the same width."""
    dtype = onnx_to_numpy(to)
    if _is_string(dtype) or _is_string(x.dtype):
        raise TypeMismatchError("BitCast does not take or give strings")
    if dtype.itemsize != x.dtype.itemsize:
        raise TypeMismatchError(f"BitCast needs types of one width: {x.dtype} is "
                                f"{x.dtype.itemsize * 8} bits, {dtype} is {dtype.itemsize * 8}")
    return x.view(dtype)


@kernel("Identity", since=1)
def identity(xp, x, /):
    """The input itself (tensor, sequence or optional), as the node's one output."""
    return (x,)


@kernel("Constant", since=1)
def constant(xp, /, *, value=None, value_float=None, value_floats=None, value_int=None,
             value_ints=None, value_string=None, value_strings=None, sparse_value=None):
    """The value of whichever one ``value*`` attribute the node sets."""
    if sparse_value is not None:
        raise UnsupportedOpError("Constant attribute sparse_value is not supported: "
                                 "store the constant densely in 'value'")
    if value is not None:
        return value if _is_string(value.dtype) else xp.asarray(value)
    for given, dtype in ((value_float, np.float32), (value_floats, np.float32),
                         (value_int, np.int64), (value_ints, np.int64)):
        if given is not None:
            return xp.asarray(np.array(given, dtype=dtype))
    for given in (value_string, value_strings):
        if given is not None:
            return np.array(given, dtype=object)
    raise ValueError("Constant sets none of value, value_float(s), value_int(s), "
                     "value_string(s)")


# --- Dropout ---------------------------------------------------------------------------------

def _dropout_inference(xp, x, num_outputs: int, mask_dtype):
    if num_outputs < 2:
        return (x,)
    return x, xp.ones(x.shape, dtype=mask_dtype)


@kernel("Dropout", since=1)
def dropout_1(xp, x, /, *, ratio=0.5, is_test=0, consumed_inputs=None, _num_outputs=1):
    """Opsets 1-6: always run as in inference; the mask has x's type."""
    return _dropout_inference(xp, x, _num_outputs, x.dtype)


@kernel("Dropout", since=7)
def dropout_7(xp, x, /, *, ratio=0.5, _num_outputs=1):
    """Opsets 7-9: identity; the mask has x's type."""
    return _dropout_inference(xp, x, _num_outputs, x.dtype)


@kernel("Dropout", since=10)
def dropout_10(xp, x, /, *, ratio=0.5, _num_outputs=1):
    """Opsets 10-11: identity with a boolean all-True mask."""
    return _dropout_inference(xp, x, _num_outputs, bool)


@kernel("Dropout", since=12)
def dropout(xp, x, ratio=None, training_mode=None, /, *, seed=None, _num_outputs=1):
    """Identity unless ``training_mode`` is true; training needs ``seed`` to be reproducible.

    Training mode draws the keep-mask as ONNX's reference does (NumPy ``RandomState(seed)``,
    uniform >= ratio) and scales kept values by 1 / (1 - ratio).
    """
    drop = 0.5 if ratio is None else float(ratio)
    if training_mode is None or not bool(training_mode) or drop == 0:
        return _dropout_inference(xp, x, _num_outputs, bool)
    if seed is None:
        raise UnsupportedOpError("Dropout in training mode (training_mode=True, ratio > 0) "
                                 "needs the 'seed' attribute: infermux runs inference")
    if not 0 <= drop < 1:
        raise ValueError(f"Dropout ratio must be in [0, 1), got {drop}")
    keep = np.random.RandomState(seed).uniform(0.0, 1.0, x.shape) >= drop
    mask = xp.asarray(keep)
    y = (x * mask) * (1.0 / (1.0 - drop))
    y = y.astype(x.dtype, copy=False)
    return (y, mask) if _num_outputs > 1 else (y,)


# --- Clip ------------------------------------------------------------------------------------

def _clip(xp, x, low, high):
    if low is None and high is None:
        return x
    if low is not None and high is not None:
        out = xp.clip(x, low, high)
    else:
        out = xp.maximum(x, low) if high is None else xp.minimum(x, high)
    return out.astype(x.dtype, copy=False)  # bfloat16 with bounds comes back as float32


def _attr_bound(x, value, unbounded_sign: int):
    """An opset-6 float bound as x's type; None where it bounds nothing (default +-FLT_MAX)."""
    if value is None or x.dtype.kind != "f":
        return value
    largest = float(np.finfo(x.dtype).max)
    if value * unbounded_sign >= largest:
        return None
    return x.dtype.type(min(max(value, -largest), largest))  # float16 cannot hold 1e5


@kernel("Clip", since=1)
def clip_6(xp, x, /, *, min=None, max=None, consumed_inputs=None):  # noqa: A002 - ONNX names
    """Opsets 1-10: bounds are float attributes."""
    return _clip(xp, x, _attr_bound(x, min, -1), _attr_bound(x, max, 1))


@kernel("Clip", since=11)
def clip(xp, x, low=None, high=None, /):
    """Opset 11 on: optional 0-d bound tensors; min > max gives max everywhere."""
    return _clip(xp, x, low, high)
