"""ONNX element types as NumPy dtypes, for kernels that take a type attribute (Cast, EyeLike, ...).

The numbering is ONNX's ``TensorProto.DataType``.  bfloat16, the float8 family and 4-bit ints
come from ``ml_dtypes`` (a dependency of ``onnx``); where it is missing those types are absent.
"""

from __future__ import annotations

import numpy as np

from infermux.errors import UnsupportedOpError

__all__ = ["ONNX_TO_NUMPY", "NUMPY_TO_ONNX", "onnx_to_numpy", "numpy_to_onnx"]

ONNX_TO_NUMPY: dict[int, np.dtype] = {
    1: np.dtype(np.float32),
    2: np.dtype(np.uint8),
    3: np.dtype(np.int8),
    4: np.dtype(np.uint16),
    5: np.dtype(np.int16),
    6: np.dtype(np.int32),
    7: np.dtype(np.int64),
    8: np.dtype(object),  # string
    9: np.dtype(np.bool_),
    10: np.dtype(np.float16),
    11: np.dtype(np.float64),
    12: np.dtype(np.uint32),
    13: np.dtype(np.uint64),
    14: np.dtype(np.complex64),
    15: np.dtype(np.complex128),
}

try:  # pragma: no branch
    import ml_dtypes

    for _code, _name in {16: "bfloat16", 17: "float8_e4m3fn", 18: "float8_e4m3fnuz",
                         19: "float8_e5m2", 20: "float8_e5m2fnuz", 21: "uint4", 22: "int4",
                         23: "float4_e2m1fn", 24: "float8_e8m0fnu", 25: "uint2", 26: "int2"}.items():
        if hasattr(ml_dtypes, _name):
            ONNX_TO_NUMPY[_code] = np.dtype(getattr(ml_dtypes, _name))
except ImportError:  # pragma: no cover
    pass

NUMPY_TO_ONNX: dict[np.dtype, int] = {dt: code for code, dt in ONNX_TO_NUMPY.items()}
NUMPY_TO_ONNX[np.dtype(np.str_)] = 8


def onnx_to_numpy(code: int) -> np.dtype:
    """The NumPy dtype of ONNX element type ``code``; raises for types infermux cannot hold."""
    try:
        return ONNX_TO_NUMPY[int(code)]
    except KeyError:
        raise UnsupportedOpError(f"ONNX element type {code} is not supported") from None


def numpy_to_onnx(dtype: np.dtype | type) -> int:
    """The ONNX element type code of a NumPy dtype."""
    dt = np.dtype(dtype)
    if dt.kind == "U":
        return 8
    try:
        return NUMPY_TO_ONNX[dt]
    except KeyError:
        raise UnsupportedOpError(f"dtype {dt} has no ONNX element type") from None
