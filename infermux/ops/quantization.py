"""Linear quantization: QuantizeLinear, DequantizeLinear, DynamicQuantizeLinear, QLinearMatMul
and QLinearConv.

Scales and zero points are per tensor (a scalar), per axis (1-D along ``axis``) or blocked (the
input's shape with ``axis`` divided into blocks of ``block_size``).  Quantization rounds half to
even and saturates to the target's range; 4- and 2-bit ints and the float8/float6/float4 types
come from ``ml_dtypes`` and so work on NumPy only.  Integer products (QLinear*) are computed
exactly in float through BLAS, then requantized as the ONNX reference does.
"""

from __future__ import annotations

import numpy as np

from infermux.errors import ShapeMismatchError, UnsupportedOpError
from infermux.ops._dtypes import onnx_to_numpy
from infermux.ops.conv import conv_integer_float, exact_float_dtype
from infermux.ops.registry import kernel

try:
    import ml_dtypes
except ImportError:  # pragma: no cover - ml_dtypes comes with onnx
    ml_dtypes = None

__all__: list[str] = []

_SUB_BYTE_INTS = ("int2", "uint2", "int4", "uint4")
# ONNX element types _dtypes does not map (yet), by ml_dtypes name.
_EXTRA_TYPES = {23: "float4_e2m1fn", 24: "float8_e8m0fnu", 25: "uint2", 26: "int2",
                27: "float6_e2m3fn", 28: "float6_e3m2fn"}


def _element_type(code: int):
    try:
        return onnx_to_numpy(code)
    except UnsupportedOpError:
        name = _EXTRA_TYPES.get(int(code))
        if name is None or ml_dtypes is None or not hasattr(ml_dtypes, name):
            raise
        return np.dtype(getattr(ml_dtypes, name))


def _int_range(dtype):
    """(min, max) of an integer quantized type, or None for float types."""
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
    elif dtype.name in _SUB_BYTE_INTS and ml_dtypes is not None:
        info = ml_dtypes.iinfo(dtype)
    else:
        return None
    return int(info.min), int(info.max)


def _is_float8(dtype) -> bool:
    return dtype.name.startswith("float8")


def _broadcast_param(xp, value, x_shape, axis: int, block_size: int, what: str):
    """A scale or zero point reshaped (and for blocks repeated) to broadcast against x."""
    if value.ndim == 0 or (value.size == 1 and not block_size):
        return value.reshape(())
    axis = axis + len(x_shape) if axis < 0 else axis
    if not 0 <= axis < len(x_shape):
        raise ShapeMismatchError(f"axis {axis} is out of range for input of rank {len(x_shape)}")
    if not block_size:
        if value.ndim != 1 or value.shape[0] != x_shape[axis]:
            raise ShapeMismatchError(
                f"per-axis {what} of shape {value.shape} must be 1-D of length {x_shape[axis]} (axis {axis})")
        return value.reshape(tuple(-1 if i == axis else 1 for i in range(len(x_shape))))
    if block_size < 0 or value.ndim != len(x_shape):
        raise ShapeMismatchError(
            f"blocked {what} of shape {value.shape} does not match input rank {len(x_shape)}")
    full = xp.repeat(value, block_size, axis=axis)
    full = full[(slice(None),) * axis + (slice(0, x_shape[axis]),)]
    if full.shape != tuple(x_shape):
        raise ShapeMismatchError(
            f"blocked {what} of shape {value.shape} with block_size={block_size} "
            f"does not cover input {tuple(x_shape)}")
    return full


def _saturate(xp, values, dtype, saturate: int):
    """Cast float ``values`` to the quantized ``dtype``: round and clip ints, saturate float8."""
    bounds = _int_range(dtype)
    if bounds is not None:
        return xp.clip(values, *bounds).astype(dtype)
    if _is_float8(dtype) and saturate:
        limit = float(ml_dtypes.finfo(dtype).max)
        values = xp.clip(values, -limit, limit)
    return values.astype(dtype)


def quantize(xp, x, scale, zero_point, axis=1, block_size=0, out_dtype=None, saturate=1, precision=None):
    """saturate(round(x / scale) + zero_point) into ``out_dtype``."""
    scale = _broadcast_param(xp, scale, x.shape, axis, block_size, "scale")
    if precision:
        dt = _element_type(precision)
        y = x.astype(dt) / scale.astype(dt)
    else:
        y = x / scale
    if _int_range(out_dtype) is not None:
        y = xp.rint(y)
    if zero_point is not None:
        y = y + _broadcast_param(xp, zero_point, x.shape, axis, block_size, "zero point").astype(y.dtype)
    return _saturate(xp, y, out_dtype, saturate)


@kernel("QuantizeLinear", since=10)
def quantize_linear(xp, x, y_scale, y_zero_point=None, /, *, axis=1, block_size=0, output_dtype=0,
                    precision=0, saturate=1):
    """Quantize per tensor, per axis or by blocks; the type comes from the zero point or output_dtype."""
    out_dtype = _element_type(output_dtype) if output_dtype else None
    if y_zero_point is not None:
        if out_dtype is not None and out_dtype != y_zero_point.dtype:
            raise ShapeMismatchError(
                f"output_dtype {out_dtype} differs from the zero point's type {y_zero_point.dtype}")
        out_dtype = y_zero_point.dtype
    out_dtype = np.dtype(np.uint8) if out_dtype is None else np.dtype(out_dtype)
    if _int_range(out_dtype) is None and not out_dtype.name.startswith(("float8", "float4", "float6")):
        raise UnsupportedOpError(f"QuantizeLinear to {out_dtype} is not supported")
    return quantize(xp, x, y_scale, y_zero_point, axis, block_size, out_dtype, saturate, precision)


@kernel("DequantizeLinear", since=10)
def dequantize_linear(xp, x, x_scale, x_zero_point=None, /, *, axis=1, block_size=0, output_dtype=0):
    """(x - zero_point) * scale, in the scale's type unless ``output_dtype`` says otherwise."""
    y = x.astype(np.float32)
    if x_zero_point is not None:
        y -= _broadcast_param(xp, x_zero_point, x.shape, axis, block_size, "zero point").astype(np.float32)
    y = y * _broadcast_param(xp, x_scale, x.shape, axis, block_size, "scale")
    out_dtype = _element_type(output_dtype) if output_dtype else x_scale.dtype
    return y.astype(out_dtype, copy=False)


@kernel("DynamicQuantizeLinear", since=11)
def dynamic_quantize_linear(xp, x, /):
    """uint8 quantization with scale and zero point chosen from x's range (which includes 0).

    An all-zero input gets scale 1, as in onnxruntime (the ONNX reference divides that 1 by 255).
    """
    hi = max(float(x.max()), 0.0) if x.size else 0.0
    lo = min(float(x.min()), 0.0) if x.size else 0.0
    scale = np.float32(1.0) if hi == lo else (np.float32(hi) - np.float32(lo)) / np.float32(255)
    zero_point = np.rint(np.clip(np.float32(0) - np.float32(lo) / scale, 0, 255))
    y = xp.clip(xp.rint(x / scale) + zero_point, 0, 255).astype(np.uint8)
    return y, xp.asarray(scale, dtype=x.dtype), xp.asarray(zero_point, dtype=np.uint8)


# ---- QLinearMatMul and QLinearConv ----------------------------------------------------------


def _requantize(xp, acc, multiplier, y_zero_point, out_dtype):
    """saturate(round(acc * multiplier) + y_zero_point) for an exact float accumulator."""
    y = acc * multiplier.astype(np.float64)
    if y_zero_point is not None:
        y += y_zero_point.astype(np.float64)
    lo, hi = _int_range(out_dtype)
    return xp.clip(xp.rint(y), lo, hi).astype(out_dtype)


def _row_param(value):
    """A scale or zero point that is per tensor or one per row: shaped to broadcast on (.., M, N)."""
    return value.reshape(()) if value.size == 1 else value.reshape(-1, 1)


@kernel("QLinearMatMul", since=10)
def qlinear_matmul(xp, a, a_scale, a_zero_point, b, b_scale, b_zero_point, y_scale, y_zero_point=None, /):
    """Quantized matmul: a per row, b per column, output per tensor (or per row)."""
    if a.ndim < 1 or b.ndim < 1:
        raise ShapeMismatchError(f"QLinearMatMul needs inputs of rank >= 1, got {a.shape} and {b.shape}")
    dt = exact_float_dtype(a.shape[-1])
    av = a.astype(dt)
    if a_zero_point is not None:
        av -= _row_param(a_zero_point).astype(dt)
    bv = b.astype(dt)
    if b_zero_point is not None:
        bv -= b_zero_point.reshape(()).astype(dt) if b_zero_point.size == 1 else b_zero_point.astype(dt)
    acc = xp.matmul(av, bv)
    a_s = _row_param(a_scale)
    b_s = b_scale.reshape(()) if b_scale.size == 1 else b_scale
    multiplier = a_s * b_s / _row_param(y_scale)
    out_dtype = a.dtype if y_zero_point is None else y_zero_point.dtype
    return _requantize(xp, acc, multiplier, y_zero_point, out_dtype)


@kernel("QLinearConv", since=10)
def qlinear_conv(xp, x, x_scale, x_zero_point, w, w_scale, w_zero_point, y_scale, y_zero_point,
                 b=None, /, *, auto_pad="NOTSET", dilations=None, group=1, kernel_shape=None,
                 pads=None, strides=None):
    """Quantized convolution; w_scale and w_zero_point may be per output channel, bias is int32."""
    acc = conv_integer_float(xp, x, w, x_zero_point, w_zero_point, auto_pad, dilations, group,
                             pads, strides)
    spatial = (1,) * (acc.ndim - 2)
    if b is not None:
        acc += b.astype(acc.dtype).reshape((1, -1) + spatial)
    w_s = w_scale.reshape(()) if w_scale.size == 1 else w_scale.reshape((1, -1) + spatial)
    if w_scale.size not in (1, w.shape[0]):
        raise ShapeMismatchError(f"w_scale has {w_scale.size} values for {w.shape[0]} output channels")
    multiplier = x_scale.reshape(()) * w_s / y_scale.reshape(())
    out_dtype = x.dtype if y_zero_point is None else y_zero_point.dtype
    zp = None if y_zero_point is None else y_zero_point.reshape(())
    return _requantize(xp, acc, multiplier, zp, out_dtype)
