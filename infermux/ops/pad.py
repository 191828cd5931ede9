"""Pad: add (or, with negative amounts, remove) elements at both ends of chosen axes.

Versions: Pad-1 takes ``paddings`` and ``value`` attributes, Pad-2 ``pads`` and ``value``;
from Pad-11 ``pads`` and ``constant_value`` are inputs, Pad-18 adds the optional ``axes`` input
and Pad-19 the ``wrap`` mode.  ``pads`` lists every begin amount, then every end amount.

Modes: ``constant`` (fill with the value), ``reflect`` (mirror without repeating the edge),
``edge`` (repeat the edge) and ``wrap`` (continue from the other end).  Negative amounts crop
the input first; the remaining positive amounts are then padded from the cropped tensor.
"""

from __future__ import annotations

from infermux.errors import ShapeMismatchError, UnsupportedOpError
from infermux.ops.registry import kernel

__all__: list[str] = []

_MODES = {"constant", "reflect", "edge", "wrap"}


def _host_ints(a) -> list[int]:
    if a is None:
        return []
    if hasattr(a, "reshape"):
        return [int(v) for v in a.reshape(-1).tolist()]
    return [int(v) for v in a]


def _pad_widths(rank: int, pads: list[int], axes: list[int] | None) -> list[tuple[int, int]]:
    """Per-axis (begin, end) amounts from ONNX's flat [begins..., ends...] layout."""
    if axes is None:
        axes = list(range(rank))
    if len(pads) != 2 * len(axes):
        raise ShapeMismatchError(f"Pad: {len(pads)} pads for {len(axes)} axes (need twice as many)")
    widths = [(0, 0)] * rank
    for i, a in enumerate(axes):
        if not -rank <= a < rank:
            raise ValueError(f"Pad: axis {a} is out of range for rank {rank}")
        widths[a % rank] = (pads[i], pads[len(axes) + i])
    return widths


def _pad(xp, x, widths: list[tuple[int, int]], mode: str, value):
    if mode not in _MODES:
        raise UnsupportedOpError(
            f"Pad: mode {mode!r} is not supported; use one of {sorted(_MODES)}")
    crop = tuple(slice(max(-b, 0), x.shape[i] - max(-e, 0)) for i, (b, e) in enumerate(widths))
    x = x[crop]
    grow = [(max(b, 0), max(e, 0)) for b, e in widths]
    if not any(b or e for b, e in grow):
        return x
    if mode == "constant":
        return xp.pad(x, grow, mode="constant", constant_values=value)
    if mode in ("reflect", "wrap", "edge") and any(
            (b or e) and d == 0 for (b, e), d in zip(grow, x.shape)):
        raise ShapeMismatchError(f"Pad: mode {mode!r} cannot pad an empty axis of shape {x.shape}")
    return xp.pad(x, grow, mode=mode)


def _scalar(value, x):
    """The constant to pad with, as a Python scalar of ``x``'s kind (0 when absent)."""
    if value is None or getattr(value, "size", 1) == 0:
        return 0
    v = value.reshape(-1)[0] if hasattr(value, "reshape") else value
    return bool(v) if x.dtype.kind == "b" else v.item() if hasattr(v, "item") else v


@kernel("Pad", since=1)
def pad_v1(xp, x, /, *, paddings=(), mode="constant", value=0.0):
    return _pad(xp, x, _pad_widths(x.ndim, list(paddings), None), mode, value)


@kernel("Pad", since=2)
def pad_v2(xp, x, /, *, pads=(), mode="constant", value=0.0):
    return _pad(xp, x, _pad_widths(x.ndim, list(pads), None), mode, value)


@kernel("Pad", since=11)
def pad(xp, x, pads, constant_value=None, axes=None, /, *, mode="constant"):
    widths = _pad_widths(x.ndim, _host_ints(pads), None if axes is None else _host_ints(axes))
    return _pad(xp, x, widths, mode, _scalar(constant_value, x))
