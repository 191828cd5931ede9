"""Element types, named and behaving as OpenVINO's ``ov.Type``.

>>> from infermux import Type
>>> Type.f32.get_type_name(), Type.f32.to_dtype()
('f32', dtype('float32'))
>>> Type(np.int64) == Type.i64
True
"""

from __future__ import annotations

import numpy as np

from infermux.ops._dtypes import ONNX_TO_NUMPY

__all__ = ["Type"]

# (OpenVINO short name, ONNX element-type code)
_TYPES = [
    ("f32", 1), ("u8", 2), ("i8", 3), ("u16", 4), ("i16", 5), ("i32", 6), ("i64", 7),
    ("string", 8), ("boolean", 9), ("f16", 10), ("f64", 11), ("u32", 12), ("u64", 13),
    ("bf16", 16), ("f8e4m3", 17), ("f8e5m2", 19), ("u4", 21), ("i4", 22),
]


class _TypeMeta(type):
    def __call__(cls, value=None):
        if value is None:
            return cls.dynamic
        if isinstance(value, Type):
            return value
        return Type.from_numpy(value)


class Type(metaclass=_TypeMeta):
    """An element type: ``Type.f32``, ``Type.i64``, ... (also ``Type(np.float32)``)."""

    __slots__ = ("name", "onnx_code", "_dtype")
    _BY_NAME: dict[str, Type] = {}
    _BY_CODE: dict[int, Type] = {}
    _BY_DTYPE: dict[np.dtype, Type] = {}

    f32: Type
    f16: Type
    bf16: Type
    f64: Type
    i4: Type
    i8: Type
    i16: Type
    i32: Type
    i64: Type
    u4: Type
    u8: Type
    u16: Type
    u32: Type
    u64: Type
    boolean: Type
    string: Type
    f8e4m3: Type
    f8e5m2: Type
    dynamic: Type

    @classmethod
    def _make(cls, name: str, onnx_code: int, dtype: np.dtype | None) -> Type:
        self = object.__new__(cls)
        self.name, self.onnx_code, self._dtype = name, onnx_code, dtype
        return self

    @staticmethod
    def from_numpy(dtype) -> Type:
        """The element type of a NumPy dtype (or scalar type)."""
        dt = np.dtype(dtype)
        if dt.kind == "U":
            return Type.string
        try:
            return Type._BY_DTYPE[dt]
        except KeyError:
            raise TypeError(f"NumPy dtype {dt} has no infermux element type") from None

    @staticmethod
    def from_onnx(code: int) -> Type:
        """The element type of an ONNX ``TensorProto.DataType`` code."""
        try:
            return Type._BY_CODE[int(code)]
        except KeyError:
            raise TypeError(f"ONNX element type {code} is not supported by infermux") from None

    def to_dtype(self) -> np.dtype:
        """The NumPy dtype that holds this type."""
        if self._dtype is None:
            raise TypeError(f"element type {self.name} has no NumPy dtype")
        return self._dtype

    def get_type_name(self) -> str:
        """The short OpenVINO name: ``'f32'``."""
        return self.name

    @property
    def type_name(self) -> str:
        """The short OpenVINO name: ``'f32'``."""
        return self.name

    def is_dynamic(self) -> bool:
        """True for the undetermined type."""
        return self is Type.dynamic

    def is_static(self) -> bool:
        """True for every concrete type."""
        return self is not Type.dynamic

    def is_real(self) -> bool:
        """True for floating-point types."""
        return self.name.startswith(("f", "bf"))

    def is_integral(self) -> bool:
        """True for integer and boolean types."""
        return self.name[0] in "iu" or self.name == "boolean"

    def is_signed(self) -> bool:
        """True for signed integers and floating-point types."""
        return self.name[0] == "i" or self.is_real()

    @property
    def bitwidth(self) -> int:
        """Bits per element (0 for string/dynamic)."""
        if self._dtype is None or self._dtype == np.dtype(object):
            return 0
        return {"u4": 4, "i4": 4}.get(self.name, self._dtype.itemsize * 8)

    @property
    def size(self) -> int:
        """Bytes per element, rounded up."""
        return (self.bitwidth + 7) // 8

    def compatible(self, other: Type) -> bool:
        """True if the types are equal or either is dynamic."""
        return self is other or self.is_dynamic() or other.is_dynamic()

    def __repr__(self) -> str:
        full = str(self._dtype) if self._dtype is not None and self.name != "string" else self.name
        return f"<Type: '{full}'>"

    __str__ = __repr__

    def __reduce__(self):
        return (Type._from_name, (self.name,))

    @staticmethod
    def _from_name(name: str) -> Type:
        return Type._BY_NAME[name]


for _name, _code in _TYPES:
    _dt = ONNX_TO_NUMPY.get(_code)
    _t = Type._make(_name, _code, _dt)
    setattr(Type, _name, _t)
    Type._BY_NAME[_name] = _t
    Type._BY_CODE[_code] = _t
    if _dt is not None and _dt != np.dtype(object):
        Type._BY_DTYPE[_dt] = _t
Type.dynamic = Type._make("dynamic", 0, None)
Type._BY_NAME["dynamic"] = Type.dynamic
Type._BY_CODE[0] = Type.dynamic
Type._BY_DTYPE[np.dtype(object)] = Type.string
for _code, _dt in ONNX_TO_NUMPY.items():  # float8 fnuz variants etc. without an OpenVINO name
    if _code not in Type._BY_CODE:
        _t = Type._make(str(_dt), _code, _dt)
        Type._BY_CODE[_code] = _t
        Type._BY_DTYPE.setdefault(_dt, _t)
