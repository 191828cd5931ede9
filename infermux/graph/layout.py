"""Tensor layouts (``Layout``) and the helpers that read them, as OpenVINO's ``ov.Layout`` and
``openvino.layout_helpers``.

A layout names a tensor's dimensions: ``"NCHW"`` (one letter a dimension), ``"NC?"`` (``?`` is an
unnamed dimension), ``"N...C"`` (``...`` stands for any number of dimensions), or the bracket form
``"[batch,channels,h,w]"`` whose names may be words.  Names are case-insensitive; ``batch``/``b``,
``channels``, ``height``, ``width`` and ``depth`` are the long spellings of N, C, H, W and D.

Layouts are set on model ports (``model.input(0).set_layout("NCHW")``, or the OpenVINO spelling
``model.get_parameters()[0].set_layout(Layout("NCHW"))`` — both are the same port object here) and
are read by ``set_batch``/``get_batch`` and by the PrePostProcessor.

>>> from infermux import Layout
>>> Layout("nchw").to_string(), Layout("...C").get_index_by_name("C")
('[N,C,H,W]', -1)
>>> batch_idx(Layout("NHWC")), height_idx(Layout("...HWC"))
(0, -3)
"""

from __future__ import annotations

import re
from typing import Any

__all__ = [
    "Layout", "get_layout", "set_layout",
    "has_batch", "batch_idx", "has_channels", "channels_idx", "has_depth", "depth_idx",
    "has_height", "height_idx", "has_width", "width_idx",
]

_ALIASES = {"BATCH": "N", "B": "N", "CHANNELS": "C", "CHANNEL": "C", "HEIGHT": "H", "WIDTH": "W",
            "DEPTH": "D"}
_NAME = re.compile(r"^[A-Za-z0-9_]+$")
_ELLIPSIS = "..."
_UNNAMED = "?"
_SCALAR = "**SCALAR**"


def _canonical(name: str) -> str:
    upper = name.strip().upper()
    return _ALIASES.get(upper, upper)


class Layout:
    """Names of a tensor's dimensions: ``Layout("NCHW")``, ``Layout("N...C")``, ``Layout("[N,?,C]")``.

    An empty layout (``Layout()``) says nothing and prints as ``[...]``.

    >>> Layout("NCHW") == "[N,C,H,W]", Layout("NC?").has_name("C")
    (True, True)
    """

    __slots__ = ("_left", "_right", "_has_ellipsis", "_scalar")

    def __init__(self, layout: str | Layout = ""):
        if isinstance(layout, Layout):
            self._left, self._right = layout._left, layout._right
            self._has_ellipsis, self._scalar = layout._has_ellipsis, layout._scalar
            return
        if not isinstance(layout, str):
            raise TypeError(f"a layout is a string like 'NCHW', got {type(layout).__name__}")
        self._scalar = layout.strip() == _SCALAR
        items = [] if self._scalar else _split(layout.strip())
        if not self._scalar and not items:
            items = [_ELLIPSIS]
        if items.count(_ELLIPSIS) > 1:
            raise ValueError(f"Multiple ... are not allowed in layout '{layout}'")
        names = [i for i in items if i not in (_ELLIPSIS, _UNNAMED)]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"Dimension ({name}) is defined multiple times in layout")
        self._has_ellipsis = _ELLIPSIS in items
        cut = items.index(_ELLIPSIS) if self._has_ellipsis else len(items)
        self._left = tuple(items[:cut])
        self._right = tuple(items[cut + 1:]) if self._has_ellipsis else ()

    @staticmethod
    def scalar() -> Layout:
        """The layout of a 0-d tensor."""
        return Layout(_SCALAR)

    @property
    def empty(self) -> bool:
        """True for the layout that says nothing (``[...]``)."""
        return self._has_ellipsis and not self._left and not self._right

    def has_name(self, name: str) -> bool:
        """True if a dimension is called ``name`` (``'N'``, ``'batch'``, ...)."""
        key = _canonical(name)
        return key in self._left or key in self._right

    def get_index_by_name(self, name: str) -> int:
        """The index of dimension ``name``: from the left, or negative when it follows ``...``."""
        key = _canonical(name)
        if key in self._left:
            return self._left.index(key)
        if key in self._right:
            return self._right.index(key) - len(self._right)
        raise ValueError(f"{key} dimension index is not defined")

    @property
    def rank(self) -> int | None:
        """The number of dimensions, or None when the layout has ``...``."""
        if self._scalar:
            return 0
        return None if self._has_ellipsis else len(self._left)

    def fits_rank(self, rank: int) -> bool:
        """True if a tensor of ``rank`` dimensions can have this layout."""
        fixed = len(self._left) + len(self._right)
        return rank == self.rank if self.rank is not None else rank >= fixed

    def index_in(self, name: str, rank: int) -> int:
        """The non-negative index of ``name`` in a tensor of ``rank`` dimensions."""
        i = self.get_index_by_name(name)
        return i + rank if i < 0 else i

    def names_for_rank(self, rank: int) -> list[str]:
        """One entry a dimension (``'?'`` where unnamed) for a tensor of ``rank`` dimensions."""
        if self.rank is not None:
            return list(self._left)
        middle = rank - len(self._left) - len(self._right)
        return list(self._left) + [_UNNAMED] * max(middle, 0) + list(self._right)

    def to_string(self) -> str:
        """The bracket form: ``'[N,C,H,W]'``, ``'[N,...,C]'``, ``'[...]'``."""
        if self._scalar:
            return _SCALAR
        items = list(self._left) + ([_ELLIPSIS] if self._has_ellipsis else []) + list(self._right)
        return "[" + ",".join(items) + "]"

    def __str__(self) -> str:
        return self.to_string()

    def __repr__(self) -> str:
        return f"<Layout: {self.to_string()}>"

    def __eq__(self, other) -> bool:
        if isinstance(other, str):
            try:
                other = Layout(other)
            except ValueError:
                return False
        if not isinstance(other, Layout):
            return NotImplemented
        return self.to_string() == other.to_string()

    def __hash__(self) -> int:
        return hash(self.to_string())

    def __deepcopy__(self, memo) -> Layout:
        return self  # immutable


def _split(text: str) -> list[str]:
    """The items of a layout string: names (canonical), '?' and '...'."""
    if text.startswith("[") and text.endswith("]"):
        raw = [t.strip() for t in text[1:-1].split(",")] if text[1:-1].strip() else []
    else:
        raw, rest = [], text
        while rest:
            if rest.startswith(_ELLIPSIS):
                raw.append(_ELLIPSIS)
                rest = rest[3:]
            elif rest[0] == ".":
                raise ValueError(f"Undefined number of dimensions shall have ... in layout '{text}'")
            else:
                raw.append(rest[0])
                rest = rest[1:]
    items = []
    for item in raw:
        if item in (_ELLIPSIS, _UNNAMED):
            items.append(item)
        elif not _NAME.match(item):
            raise ValueError(f"Layout name is invalid ({item}). Only english letters, digits and _ "
                             f"is allowed")
        else:
            items.append(_canonical(item))
    return items


def as_layout(value: Any) -> Layout:
    """A Layout from a Layout or a string."""
    return value if isinstance(value, Layout) else Layout(value)


# -- ports --------------------------------------------------------------------------------------

def get_layout(port: Any) -> Layout:
    """The layout of a model input or output port (empty if none was set)."""
    return port.get_layout()


def set_layout(port: Any, layout: Layout | str) -> None:
    """Set the layout of a model input or output port."""
    port.set_layout(layout)


# -- named dimensions -----------------------------------------------------------------------------

def _index(layout: Layout | str, name: str) -> int:
    return as_layout(layout).get_index_by_name(name)


def has_batch(layout: Layout | str) -> bool:
    """True if the layout has N."""
    return as_layout(layout).has_name("N")


def batch_idx(layout: Layout | str) -> int:
    """The index of N (negative after ``...``)."""
    return _index(layout, "N")


def has_channels(layout: Layout | str) -> bool:
    """True if the layout has C."""
    return as_layout(layout).has_name("C")


def channels_idx(layout: Layout | str) -> int:
    """The index of C (negative after ``...``)."""
    return _index(layout, "C")


def has_depth(layout: Layout | str) -> bool:
    """True if the layout has D."""
    return as_layout(layout).has_name("D")


def depth_idx(layout: Layout | str) -> int:
    """The index of D (negative after ``...``)."""
    return _index(layout, "D")


def has_height(layout: Layout | str) -> bool:
    """True if the layout has H."""
    return as_layout(layout).has_name("H")


def height_idx(layout: Layout | str) -> int:
    """The index of H (negative after ``...``)."""
    return _index(layout, "H")


def has_width(layout: Layout | str) -> bool:
    """True if the layout has W."""
    return as_layout(layout).has_name("W")


def width_idx(layout: Layout | str) -> int:
    """The index of W (negative after ``...``)."""
    return _index(layout, "W")
