"""``Tensor``: an array with an element type, as OpenVINO's ``ov.Tensor``.

>>> import numpy as np, infermux as im
>>> t = im.Tensor(np.ones((2, 3), np.float32))        # copies by default
>>> t.shape, t.element_type
(<Shape: [2,3]>, <Type: 'float32'>)
>>> a = np.zeros(4, np.float32); s = im.Tensor(a, shared_memory=True); a[0] = 1; float(s.data[0])
1.0
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from infermux.graph.shape import PartialShape, Shape
from infermux.graph.types import Type

__all__ = ["Tensor"]


class Tensor:
    """A host tensor: ``Tensor(array, shared_memory=False)`` or ``Tensor(Type.f32, [1, 3])``."""

    __slots__ = ("_data",)

    def __init__(self, array_or_type=None, shape: Sequence[int] | None = None, *,
                 shared_memory: bool = False):
        if isinstance(array_or_type, Tensor):
            self._data = array_or_type._data if shared_memory else array_or_type._data.copy()
        elif isinstance(array_or_type, Type) or (shape is not None and not isinstance(array_or_type, np.ndarray)):
            etype = Type(array_or_type) if array_or_type is not None else Type.f32
            dims = list(shape.to_shape() if isinstance(shape, PartialShape) else (shape or []))
            self._data = np.zeros(dims, dtype=etype.to_dtype())
        else:
            arr = np.asarray(array_or_type)
            if arr.dtype.kind == "U":
                arr = arr.astype(object)
            self._data = arr if shared_memory else np.array(arr, copy=True)

    @property
    def data(self) -> np.ndarray:
        """The NumPy array (a view, writes go to the tensor)."""
        return self._data

    @data.setter
    def data(self, value) -> None:
        self._data[...] = value

    @property
    def shape(self) -> Shape:
        """The static shape."""
        return Shape(self._data.shape)

    @shape.setter
    def shape(self, dims: Sequence[int]) -> None:
        self._data = np.resize(self._data, tuple(dims))

    def get_shape(self) -> Shape:
        """The static shape."""
        return self.shape

    def set_shape(self, dims: Sequence[int]) -> None:
        """Reallocate to ``dims`` (contents are not kept)."""
        self._data = np.zeros(tuple(dims), dtype=self._data.dtype)

    @property
    def element_type(self) -> Type:
        """The element type."""
        return Type.from_numpy(self._data.dtype)

    def get_element_type(self) -> Type:
        """The element type."""
        return self.element_type

    @property
    def size(self) -> int:
        """Number of elements."""
        return int(self._data.size)

    def get_size(self) -> int:
        """Number of elements."""
        return self.size

    @property
    def byte_size(self) -> int:
        """Bytes of data."""
        return int(self._data.nbytes)

    def get_byte_size(self) -> int:
        """Bytes of data."""
        return self.byte_size

    @property
    def strides(self) -> tuple[int, ...]:
        """Strides in bytes."""
        return self._data.strides

    def copy_to(self, other: Tensor) -> None:
        """Copy the contents into ``other`` (reshaping it if needed)."""
        if other._data.shape != self._data.shape:
            other._data = np.empty_like(self._data)
        np.copyto(other._data, self._data)

    def __array__(self, dtype=None, copy=None):
        if dtype is not None:
            return self._data.astype(dtype)
        return self._data

    def __repr__(self) -> str:
        return f"<Tensor: shape{self.shape} type: {self.element_type.name}>"
