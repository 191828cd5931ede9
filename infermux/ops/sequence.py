"""Sequence and Optional ops.  A sequence is a Python list of arrays; an empty optional is None."""

from __future__ import annotations

from infermux.ops._dtypes import onnx_to_numpy
from infermux.ops.registry import kernel


def _position(xp, pos, length: int, *, insert: bool = False) -> int:
    p = int(pos.reshape(-1)[0]) if hasattr(pos, "reshape") else int(pos)
    limit = length + (1 if insert else 0)
    if not -length <= p < limit:
        raise IndexError(f"sequence position {p} is out of range for a sequence of length {length}")
    return p + length if p < 0 else p


@kernel("SequenceEmpty", since=11)
def sequence_empty(xp, /, *, dtype=1):
    """An empty sequence."""
    return []


@kernel("SequenceConstruct", since=11)
def sequence_construct(xp, *tensors):
    """A sequence of the inputs."""
    return list(tensors)


@kernel("SequenceInsert", since=11)
def sequence_insert(xp, seq, tensor, position=None, /):
    """A copy of ``seq`` with ``tensor`` inserted (appended by default)."""
    out = list(seq)
    if position is None:
        out.append(tensor)
    else:
        out.insert(_position(xp, position, len(seq), insert=True), tensor)
    return out


@kernel("SequenceAt", since=11)
def sequence_at(xp, seq, position, /):
    """One element."""
    return seq[_position(xp, position, len(seq))]


@kernel("SequenceErase", since=11)
def sequence_erase(xp, seq, position=None, /):
    """A copy of ``seq`` without one element (the last by default)."""
    out = list(seq)
    del out[_position(xp, position, len(seq)) if position is not None else -1]
    return out


@kernel("SequenceLength", since=11)
def sequence_length(xp, seq, /):
    """The length as an int64 scalar."""
    import numpy as np

    return xp.asarray(np.array(len(seq), dtype=np.int64))


@kernel("SplitToSequence", since=11)
def split_to_sequence(xp, x, split=None, /, *, axis=0, keepdims=1):
    """Split along ``axis`` into a sequence (pieces of 1 squeezed unless keepdims)."""
    axis = axis + x.ndim if axis < 0 else axis
    if split is None:
        pieces = [xp.take(x, [i], axis=axis) for i in range(x.shape[axis])]
        return [xp.squeeze(p, axis=axis) if not keepdims else p for p in pieces]
    sizes = split.reshape(-1).tolist() if hasattr(split, "reshape") else [int(split)]
    if len(sizes) == 1 and (split.ndim == 0):
        step = sizes[0]
        sizes = [step] * (x.shape[axis] // step) + ([x.shape[axis] % step] if x.shape[axis] % step else [])
    bounds, start = [], 0
    for s in sizes:
        bounds.append((start, start + int(s)))
        start += int(s)
    index = [slice(None)] * x.ndim
    out = []
    for lo, hi in bounds:
        index[axis] = slice(lo, hi)
        out.append(x[tuple(index)])
    return out


@kernel("ConcatFromSequence", since=11)
def concat_from_sequence(xp, seq, /, *, axis, new_axis=0):
    """Concatenate (or stack, with ``new_axis``) the sequence's tensors."""
    if new_axis:
        return xp.stack(seq, axis=axis)
    return xp.concatenate(seq, axis=axis)


@kernel("SequenceMap", since=17)
def sequence_map(xp, seq, /, *more, body, _num_outputs):
    """Apply ``body`` to each element (and to the matching elements of other sequences)."""
    outs: list[list] = [[] for _ in range(_num_outputs)]
    for i in range(len(seq)):
        args = [seq[i]] + [m[i] if isinstance(m, list) else m for m in more]
        for k, value in enumerate(body(*args)):
            outs[k].append(value)
    return tuple(outs) if _num_outputs > 1 else (outs[0],)


@kernel("Optional", since=15)
def optional(xp, value=None, /, *, type=None):  # noqa: A002 - ONNX attribute name
    """Wrap a value (None: an empty optional)."""
    return value


@kernel("OptionalHasElement", since=15)
def optional_has_element(xp, value=None, /):
    """Whether the optional holds a value."""
    import numpy as np

    return xp.asarray(np.array(value is not None))


@kernel("OptionalGetElement", since=15)
def optional_get_element(xp, value, /):
    """The optional's value (error when empty)."""
    if value is None:
        raise ValueError("OptionalGetElement on an empty optional")
    return value


__all__ = ["onnx_to_numpy"]
