"""Static, dynamic and bounded shapes: ``Dimension``, ``PartialShape`` and ``Shape`` as in OpenVINO.

>>> from infermux import PartialShape, Dimension
>>> str(PartialShape("?,3,1..16,8..32"))
'[?,3,1..16,8..32]'
>>> str(Dimension(2, -1))
'2..'
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Union

__all__ = ["Dimension", "PartialShape", "Shape"]

_INF = -1  # OpenVINO spells an open upper bound as -1


class Dimension:
    """One dimension: static (``Dimension(4)``), dynamic (``Dimension()``/``-1``), or a range."""

    __slots__ = ("min_length", "max_length", "symbol")

    def __init__(self, min_or_value: int | str | Dimension | None = None, max_length: int | None = None,
                 *, symbol: str | None = None):
        if isinstance(min_or_value, Dimension):
            self.min_length, self.max_length, self.symbol = (
                min_or_value.min_length, min_or_value.max_length, min_or_value.symbol)
            return
        if isinstance(min_or_value, str):
            parsed = Dimension.parse(min_or_value)
            self.min_length, self.max_length, self.symbol = parsed.min_length, parsed.max_length, None
            return
        self.symbol = symbol
        if min_or_value is None or (max_length is None and min_or_value == -1):
            self.min_length, self.max_length = 0, _INF
        elif max_length is None:
            if int(min_or_value) < 0:
                raise ValueError(f"a dimension cannot be {min_or_value}; use -1 or '?' for dynamic")
            self.min_length = self.max_length = int(min_or_value)
        else:
            lo, hi = int(min_or_value), int(max_length)
            lo = max(lo, 0)
            if hi != _INF and hi < lo:
                raise ValueError(f"dimension range {lo}..{hi} is empty")
            self.min_length, self.max_length = lo, hi

    @staticmethod
    def parse(text: str) -> Dimension:
        """``'4'``, ``'?'``, ``'-1'``, ``'1..8'``, ``'..5'``, ``'8..'``."""
        t = text.strip()
        if t in ("?", "-1", ""):
            return Dimension()
        if ".." in t:
            lo, hi = t.split("..", 1)
            return Dimension(int(lo) if lo else 0, int(hi) if hi else _INF)
        try:
            return Dimension(int(t))
        except ValueError:
            raise ValueError(f"cannot parse dimension '{text}': expected N, ?, -1, lo..hi, ..hi or lo..")

    @property
    def is_static(self) -> bool:
        """True when min == max."""
        return self.min_length == self.max_length

    @property
    def is_dynamic(self) -> bool:
        """True unless static."""
        return not self.is_static

    def get_length(self) -> int:
        """The value of a static dimension."""
        if not self.is_static:
            raise ValueError(f"dimension {self} is dynamic and has no single length")
        return self.min_length

    def get_min_length(self) -> int:
        """The lower bound."""
        return self.min_length

    def get_max_length(self) -> int:
        """The upper bound, -1 when unbounded."""
        return self.max_length

    def contains(self, value: int) -> bool:
        """True if ``value`` lies within the bounds."""
        return value >= self.min_length and (self.max_length == _INF or value <= self.max_length)

    def compatible(self, other: Dimension | int) -> bool:
        """True if the two dimensions' ranges overlap."""
        o = Dimension(other) if not isinstance(other, Dimension) else other
        hi = min(self.max_length if self.max_length != _INF else 1 << 62,
                 o.max_length if o.max_length != _INF else 1 << 62)
        return max(self.min_length, o.min_length) <= hi

    def __eq__(self, other) -> bool:
        if isinstance(other, int):
            return self.is_static and self.min_length == other
        if isinstance(other, Dimension):
            return (self.min_length, self.max_length) == (other.min_length, other.max_length)
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self.min_length, self.max_length))

    def __str__(self) -> str:
        if self.is_static:
            return str(self.min_length)
        if self.min_length == 0 and self.max_length == _INF:
            return "?"
        lo = str(self.min_length) if self.min_length else ""
        hi = str(self.max_length) if self.max_length != _INF else ""
        return f"{lo}..{hi}"

    def __repr__(self) -> str:
        return f"<Dimension: {self}>"

    def __int__(self) -> int:
        return self.get_length()

    def __index__(self) -> int:
        return self.get_length()


DimLike = Union[int, str, Dimension, None]


class PartialShape:
    """A shape whose dimensions may be dynamic or bounded; rank is always known here."""

    __slots__ = ("_dims",)

    def __init__(self, dims: Iterable[DimLike] | str | PartialShape = ()):
        if isinstance(dims, PartialShape):
            self._dims = list(dims._dims)
        elif isinstance(dims, str):
            body = dims.strip().strip("[]{}()")
            self._dims = [Dimension.parse(d) for d in body.split(",")] if body.strip() else []
        else:
            self._dims = [d if isinstance(d, Dimension) else Dimension(d) for d in dims]

    @property
    def rank(self) -> Dimension:
        """The rank as a static Dimension."""
        return Dimension(len(self._dims))

    @property
    def is_dynamic(self) -> bool:
        """True if any dimension is dynamic."""
        return any(d.is_dynamic for d in self._dims)

    @property
    def is_static(self) -> bool:
        """True if every dimension is static."""
        return not self.is_dynamic

    def to_shape(self) -> Shape:
        """The static Shape; raises if dynamic."""
        if self.is_dynamic:
            raise ValueError(f"shape {self} is dynamic and cannot be made static")
        return Shape([d.min_length for d in self._dims])

    get_shape = to_shape

    def get_min_shape(self) -> Shape:
        """Each dimension's lower bound."""
        return Shape([d.min_length for d in self._dims])

    def get_max_shape(self) -> Shape:
        """Each dimension's upper bound (-1 when unbounded)."""
        return Shape([d.max_length for d in self._dims])

    def compatible(self, shape: Sequence[int] | PartialShape) -> bool:
        """True if ``shape`` has the same rank and every dimension is within bounds."""
        other = shape if isinstance(shape, PartialShape) else PartialShape(list(shape))
        return len(other) == len(self) and all(a.compatible(b) for a, b in zip(self._dims, other._dims))

    def accepts(self, shape: Sequence[int]) -> bool:
        """True if the concrete ``shape`` fits these bounds."""
        return len(shape) == len(self._dims) and all(d.contains(int(v)) for d, v in zip(self._dims, shape))

    def __len__(self) -> int:
        return len(self._dims)

    def __iter__(self):
        return iter(self._dims)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return PartialShape(self._dims[i])
        return self._dims[i]

    def __setitem__(self, i: int, value: DimLike) -> None:
        self._dims[i] = value if isinstance(value, Dimension) else Dimension(value)

    def __eq__(self, other) -> bool:
        if isinstance(other, PartialShape):
            return self._dims == other._dims
        if isinstance(other, (list, tuple, Shape)):
            return self == PartialShape(list(other))
        if isinstance(other, str):
            return self == PartialShape(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(self._dims))

    def __str__(self) -> str:
        return "[" + ",".join(str(d) for d in self._dims) + "]"

    def __repr__(self) -> str:
        return f"<PartialShape: {self}>"

    def to_string(self) -> str:
        """The shape as ``'[?,3,224,224]'``."""
        return str(self)


class Shape(tuple):
    """A static shape (a tuple of ints)."""

    def __new__(cls, dims: Iterable[int] = ()):
        return super().__new__(cls, (int(d) for d in dims))

    def __str__(self) -> str:
        return "[" + ",".join(str(d) for d in self) + "]"

    def __repr__(self) -> str:
        return f"<Shape: {self}>"

    def to_string(self) -> str:
        """The shape as ``'[1,3,224,224]'``."""
        return str(self)
