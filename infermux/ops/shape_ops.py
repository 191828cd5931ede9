"""Shape and tensor-manipulation ops: reshaping, slicing, joining, generating and reordering.

Reshape, Flatten, Squeeze, Unsqueeze, Transpose, Slice, Split and Expand return views of their
input whenever NumPy/CuPy can express the result as one (the runner never mutates inputs, so a
view is always safe); the others build new arrays.  Small integer inputs that describe a shape
(``shape``, ``starts``, ``axes``, ``repeats`` ...) are read back to the host as Python ints.

Opset history that changes semantics, each registered separately:

* Reshape-1, Squeeze-1/Unsqueeze-1, Slice-1 and Split-1/2 take as attributes what later
  versions take as inputs (Reshape-5, Squeeze/Unsqueeze-13, Slice-10, Split-13).
* Split-18 adds ``num_outputs``: chunks of ``ceil(dim / num_outputs)`` with a smaller last one.
* Shape-15 adds ``start``/``end``; Reshape-14 adds ``allowzero``.
* Concat-1 defaults ``axis`` to 1; from Concat-4 it is required.
* Tile-1 takes ``(input, tiles, axis)``; Tile-6 takes a ``repeats`` vector.
"""

from __future__ import annotations

import math

import numpy as np

from infermux.errors import ShapeMismatchError
from infermux.ops._dtypes import onnx_to_numpy
from infermux.ops.registry import kernel

__all__: list[str] = []


def _host_ints(a) -> list[int]:
    """A small integer tensor or list as Python ints (CuPy arrays are copied to the host)."""
    if a is None:
        return []
    if hasattr(a, "reshape"):
        return [int(v) for v in a.reshape(-1).tolist()]
    return [int(v) for v in a]


def _axis(axis: int, rank: int, op: str) -> int:
    """``axis`` in [0, rank), accepting ONNX's negative axes."""
    if not -rank <= axis < rank:
        raise ValueError(f"{op}: axis {axis} is out of range for rank {rank}")
    return axis % rank


# --- Reshape, Flatten, Squeeze, Unsqueeze, Transpose --------------------------------------


def _reshape_target(in_shape: tuple[int, ...], shape: list[int], allowzero: int) -> tuple:
    """Resolve ONNX's 0 (copy the input dim, unless ``allowzero``) and -1 (infer) entries."""
    out = list(shape)
    if out.count(-1) > 1:
        raise ShapeMismatchError(f"Reshape: at most one -1 is allowed in shape {shape}")
    if allowzero and 0 in out and -1 in out:
        raise ShapeMismatchError(f"Reshape: shape {shape} has both 0 and -1 with allowzero=1")
    for i, d in enumerate(out):
        if d < -1:
            raise ShapeMismatchError(f"Reshape: invalid dimension {d} in shape {shape}")
        if d == 0 and not allowzero:
            if i >= len(in_shape):
                raise ShapeMismatchError(
                    f"Reshape: shape {shape} copies dimension {i} of an input of rank "
                    f"{len(in_shape)}")
            out[i] = in_shape[i]
    total = math.prod(in_shape)
    if -1 in out:
        known = math.prod(d for d in out if d != -1)
        if known == 0 or total % known:
            raise ShapeMismatchError(f"Reshape: cannot infer -1 reshaping {in_shape} to {shape}")
        out[out.index(-1)] = total // known
    if math.prod(out) != total:
        raise ShapeMismatchError(
            f"Reshape: cannot reshape {in_shape} ({total} elements) to {shape}")
    return tuple(out)


@kernel("Reshape", since=1)
def reshape_v1(xp, data, /, *, shape=(), consumed_inputs=None):
    """Reshape-1: the target shape is an attribute."""
    return data.reshape(_reshape_target(data.shape, list(shape), 0))


@kernel("Reshape", since=5)
def reshape(xp, data, shape, /, *, allowzero=0):
    return data.reshape(_reshape_target(data.shape, _host_ints(shape), allowzero))


@kernel("Flatten", since=1)
def flatten(xp, x, /, *, axis=1):
    if not -x.ndim <= axis <= x.ndim:
        raise ValueError(f"Flatten: axis {axis} is out of range for rank {x.ndim}")
    axis = axis + x.ndim if axis < 0 else axis
    return x.reshape(math.prod(x.shape[:axis]), math.prod(x.shape[axis:]))


def _squeeze(data, axes):
    if axes is None:
        return data.reshape(tuple(d for d in data.shape if d != 1))
    drop = {_axis(a, data.ndim, "Squeeze") for a in axes}
    for a in drop:
        if data.shape[a] != 1:
            raise ShapeMismatchError(f"Squeeze: dimension {a} of shape {data.shape} is not 1")
    return data.reshape(tuple(d for i, d in enumerate(data.shape) if i not in drop))


def _unsqueeze(data, axes):
    rank = data.ndim + len(axes)
    new = sorted(_axis(a, rank, "Unsqueeze") for a in axes)
    if len(set(new)) != len(new):
        raise ValueError(f"Unsqueeze: repeated axis in {axes}")
    dims = iter(data.shape)
    return data.reshape(tuple(1 if i in new else next(dims) for i in range(rank)))


@kernel("Squeeze", since=1)
def squeeze_v1(xp, data, /, *, axes=None):
    return _squeeze(data, axes)


@kernel("Squeeze", since=13)
def squeeze(xp, data, axes=None, /):
    return _squeeze(data, None if axes is None else _host_ints(axes))


@kernel("Unsqueeze", since=1)
def unsqueeze_v1(xp, data, /, *, axes=()):
    return _unsqueeze(data, list(axes))


@kernel("Unsqueeze", since=13)
def unsqueeze(xp, data, axes, /):
    return _unsqueeze(data, _host_ints(axes))


@kernel("Transpose", since=1)
def transpose(xp, data, /, *, perm=None):
    return xp.transpose(data, None if perm is None else tuple(perm))


# --- Concat, Split, Slice ------------------------------------------------------------------


@kernel("Concat", since=1)
def concat_v1(xp, *inputs, axis=1):
    """Concat-1: ``axis`` defaults to 1."""
    return xp.concatenate(inputs, axis=axis)


@kernel("Concat", since=4)
def concat(xp, *inputs, axis=None):
    if axis is None:
        raise ValueError("Concat: attribute 'axis' is required from opset 4")
    return xp.concatenate(inputs, axis=_axis(axis, inputs[0].ndim, "Concat"))


def _split(x, axis: int, sizes: list[int]):
    """Views of ``x`` cut along ``axis`` into pieces of ``sizes``."""
    axis = _axis(axis, x.ndim, "Split")
    if any(s < 0 for s in sizes) or sum(sizes) != x.shape[axis]:
        raise ShapeMismatchError(
            f"Split: sizes {sizes} do not add up to dimension {axis} of shape {x.shape}")
    lead = (slice(None),) * axis
    bounds = np.cumsum([0, *sizes]).tolist()
    return tuple(x[(*lead, slice(a, b))] for a, b in zip(bounds[:-1], bounds[1:]))


def _equal_sizes(dim: int, parts: int) -> list[int]:
    if parts <= 0 or dim % parts:
        raise ShapeMismatchError(f"Split: dimension {dim} does not split into {parts} equal parts")
    return [dim // parts] * parts


@kernel("Split", since=1)
def split_v1(xp, x, split=None, /, *, axis=0, _num_outputs=1, **legacy):
    """Split-1: ``split`` is an optional input or (``legacy['split']``) an attribute."""
    sizes = _host_ints(split) if split is not None else list(legacy.get("split") or [])
    return _split(x, axis, sizes or _equal_sizes(x.shape[axis], _num_outputs))


@kernel("Split", since=2)
def split_v2(xp, x, /, *, axis=0, split=None, _num_outputs=1):
    return _split(x, axis, list(split) if split else _equal_sizes(x.shape[axis], _num_outputs))


@kernel("Split", since=13)
def split_v13(xp, x, split=None, /, *, axis=0, _num_outputs=1):
    if split is not None and split.size:
        return _split(x, axis, _host_ints(split))
    return _split(x, axis, _equal_sizes(x.shape[_axis(axis, x.ndim, "Split")], _num_outputs))


@kernel("Split", since=18)
def split(xp, x, split=None, /, *, axis=0, num_outputs=None, _num_outputs=1):
    """Split-18: ``num_outputs`` chunks of ceil(dim / n), the last one possibly smaller."""
    if split is not None and split.size:
        return _split(x, axis, _host_ints(split))
    dim = x.shape[_axis(axis, x.ndim, "Split")]
    n = num_outputs or _num_outputs
    chunk = -(-dim // n)
    sizes = [chunk] * (n - 1) + [dim - chunk * (n - 1)]
    if sizes[-1] < 0:
        raise ShapeMismatchError(f"Split: dimension {dim} cannot be cut into {n} chunks of {chunk}")
    return _split(x, axis, sizes)


def _onnx_slice(start: int, end: int, step: int, dim: int) -> slice:
    """ONNX's clamping of one axis' start/end, as a Python slice (which clamps differently)."""
    if step == 0:
        raise ValueError("Slice: steps must not be 0")
    start = start + dim if start < 0 else start
    end = end + dim if end < 0 else end
    if step > 0:
        return slice(min(max(start, 0), dim), min(max(end, 0), dim), step)
    start, end = min(max(start, -1), dim - 1), min(max(end, -1), dim - 1)
    if start < 0:
        return slice(0, 0)
    return slice(start, None if end < 0 else end, step)  # end -1 means "through index 0"


def _slice(data, starts, ends, axes, steps):
    if len(starts) != len(ends):
        raise ValueError(f"Slice: {len(starts)} starts but {len(ends)} ends")
    axes = list(range(len(starts))) if not axes else axes
    steps = [1] * len(starts) if not steps else steps
    index = [slice(None)] * data.ndim
    for s, e, a, st in zip(starts, ends, axes, steps):
        a = _axis(a, data.ndim, "Slice")
        index[a] = _onnx_slice(s, e, st, data.shape[a])
    return data[tuple(index)]


@kernel("Slice", since=1)
def slice_v1(xp, data, /, *, starts=(), ends=(), axes=None):
    return _slice(data, list(starts), list(ends), list(axes or []), None)


@kernel("Slice", since=10)
def slice_(xp, data, starts, ends, axes=None, steps=None, /):
    return _slice(data, _host_ints(starts), _host_ints(ends), _host_ints(axes), _host_ints(steps))


# --- Expand, Tile, CenterCropPad -----------------------------------------------------------


def _broadcast_shape(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    """Multidirectional (NumPy) broadcasting of two shapes."""
    n = max(len(a), len(b))
    a, b = (1,) * (n - len(a)) + tuple(a), (1,) * (n - len(b)) + tuple(b)
    out = []
    for x, y in zip(a, b):
        if x != y and 1 not in (x, y):
            raise ShapeMismatchError(f"shapes {a} and {b} cannot be broadcast together")
        out.append(y if x == 1 else x)
    return tuple(out)


@kernel("Expand", since=8)
def expand(xp, x, shape, /):
    """A read-only broadcast view: no copy of the data."""
    return xp.broadcast_to(x, _broadcast_shape(x.shape, tuple(_host_ints(shape))))


@kernel("Tile", since=1)
def tile_v1(xp, x, tiles, axis, /):
    reps = [1] * x.ndim
    reps[_axis(_host_ints(axis)[0], x.ndim, "Tile")] = _host_ints(tiles)[0]
    return xp.tile(x, reps)


@kernel("Tile", since=6)
def tile(xp, x, repeats, /):
    reps = _host_ints(repeats)
    if len(reps) != x.ndim:
        raise ShapeMismatchError(f"Tile: {len(reps)} repeats for an input of rank {x.ndim}")
    return xp.tile(x, reps)


@kernel("CenterCropPad", since=18)
def center_crop_pad(xp, x, shape, /, *, axes=None):
    """Crop (start rounded down) or zero-pad (extra element at the end) each axis to ``shape``."""
    target = _host_ints(shape)
    if axes is None:
        axes = list(range(x.ndim))
    axes = [_axis(a, x.ndim, "CenterCropPad") for a in axes]
    if len(axes) != len(target):
        raise ShapeMismatchError(f"CenterCropPad: {len(target)} sizes for {len(axes)} axes")
    crop = [slice(None)] * x.ndim
    place = [slice(None)] * x.ndim
    out_shape = list(x.shape)
    for a, size in zip(axes, target):
        dim = x.shape[a]
        out_shape[a] = size
        if size < dim:
            crop[a] = slice((dim - size) // 2, (dim - size) // 2 + size)
        elif size > dim:
            place[a] = slice((size - dim) // 2, (size - dim) // 2 + dim)
    cropped = x[tuple(crop)]
    if tuple(out_shape) == cropped.shape:
        return cropped
    out = xp.zeros(out_shape, dtype=x.dtype)
    out[tuple(place)] = cropped
    return out


# --- Shape, Size, ConstantOfShape, Range, EyeLike ------------------------------------------


@kernel("Shape", since=1)
def shape(xp, data, /, *, start=0, end=None):
    """Shape-15's ``start``/``end`` clamp exactly like a Python slice of the shape tuple."""
    return xp.asarray(data.shape[start:end], dtype=xp.int64)


@kernel("Size", since=1)
def size(xp, data, /):
    return xp.asarray(data.size, dtype=xp.int64)


@kernel("ConstantOfShape", since=9)
def constant_of_shape(xp, shape, /, *, value=None):
    if value is None:
        value = np.zeros(1, dtype=np.float32)
    value = np.asarray(value)
    return xp.full(tuple(_host_ints(shape)), value.reshape(-1)[0], dtype=value.dtype)


@kernel("Range", since=11)
def range_(xp, start, limit, delta, /, *, stash_type=1):
    """start + i * delta for i < ceil((limit - start) / delta); floats are computed in float64."""
    dtype = start.dtype
    # scalars by the spec, but function bodies (AffineGrid) pass 1-element tensors
    start, limit, delta = (v.reshape(-1)[0] for v in (start, limit, delta))
    if dtype.kind in "iu":
        s, lim, d = int(start), int(limit), int(delta)
        if d == 0:
            raise ValueError("Range: delta must not be 0")
        n = max(-((s - lim) // d), 0)
        return (xp.arange(n, dtype=xp.int64) * d + s).astype(dtype)
    s, lim, d = float(start), float(limit), float(delta)
    if d == 0:
        raise ValueError("Range: delta must not be 0")
    n = max(math.ceil((lim - s) / d), 0)
    return (xp.arange(n, dtype=xp.float64) * d + s).astype(dtype)


@kernel("EyeLike", since=9)
def eye_like(xp, x, /, *, dtype=None, k=0):
    if x.ndim != 2:
        raise ShapeMismatchError(f"EyeLike: input must be 2-D, got shape {x.shape}")
    out_dtype = x.dtype if dtype is None else onnx_to_numpy(dtype)
    return xp.eye(x.shape[0], x.shape[1], k=k, dtype=out_dtype)


# --- OneHot, NonZero, Compress, Trilu -----------------------------------------------------


@kernel("OneHot", since=9)
def one_hot(xp, indices, depth, values, /, *, axis=-1):
    """``values[1]`` where index == class, else ``values[0]``.

    Negative indices count from ``depth``; non-integer indices are truncated (as onnxruntime).
    """
    d = int(float(depth.reshape(-1)[0]))
    axis = _axis(axis, indices.ndim + 1, "OneHot")
    idx = indices.astype(xp.int64)
    idx = xp.where(idx < 0, idx + d, idx)
    classes = xp.arange(d, dtype=xp.int64).reshape((d,) + (1,) * (indices.ndim - axis))
    hot = xp.expand_dims(idx, axis) == classes
    return xp.where(hot, values[1], values[0])


@kernel("NonZero", since=9)
def non_zero(xp, x, /):
    if x.ndim == 0:
        return xp.zeros((0, int(bool(x))), dtype=xp.int64)
    return xp.stack(xp.nonzero(x)).astype(xp.int64, copy=False)


@kernel("Compress", since=9)
def compress(xp, x, condition, /, *, axis=None):
    """Keep the slices where ``condition`` is true; a short condition drops the tail."""
    if axis is None:
        x, axis = x.reshape(-1), 0
    axis = _axis(axis, x.ndim, "Compress")
    keep = xp.nonzero(condition.reshape(-1)[: x.shape[axis]])[0]
    return xp.take(x, keep, axis=axis)


@kernel("Trilu", since=14)
def trilu(xp, x, k=None, /, *, upper=1):
    diagonal = 0 if k is None else _host_ints(k)[0]
    return xp.triu(x, diagonal) if upper else xp.tril(x, diagonal)


# --- DepthToSpace, SpaceToDepth, ReverseSequence -------------------------------------------


def _check_blocks(x, blocksize: int, op: str) -> None:
    if x.ndim != 4:
        raise ShapeMismatchError(f"{op}: input must be 4-D (N, C, H, W), got shape {x.shape}")
    if blocksize <= 0:
        raise ValueError(f"{op}: blocksize must be positive, got {blocksize}")


@kernel("DepthToSpace", since=1)
def depth_to_space(xp, x, /, *, blocksize=0, mode="DCR"):
    """DCR: channels ordered (depth, column, row) of the block; CRD: (column, row, depth)."""
    _check_blocks(x, blocksize, "DepthToSpace")
    n, c, h, w = x.shape
    b = blocksize
    if c % (b * b):
        raise ShapeMismatchError(f"DepthToSpace: {c} channels are not divisible by {b * b}")
    if mode == "DCR":
        y = x.reshape(n, b, b, c // (b * b), h, w).transpose(0, 3, 4, 1, 5, 2)
    elif mode == "CRD":
        y = x.reshape(n, c // (b * b), b, b, h, w).transpose(0, 1, 4, 2, 5, 3)
    else:
        raise ValueError(f"DepthToSpace: mode must be 'DCR' or 'CRD', got {mode!r}")
    return y.reshape(n, c // (b * b), h * b, w * b)


@kernel("SpaceToDepth", since=1)
def space_to_depth(xp, x, /, *, blocksize=0, mode="DCR"):
    _check_blocks(x, blocksize, "SpaceToDepth")
    n, c, h, w = x.shape
    b = blocksize
    if h % b or w % b:
        raise ShapeMismatchError(f"SpaceToDepth: spatial shape {(h, w)} is not divisible by {b}")
    y = x.reshape(n, c, h // b, b, w // b, b)
    if mode == "DCR":
        y = y.transpose(0, 3, 5, 1, 2, 4)
    elif mode == "CRD":
        y = y.transpose(0, 1, 3, 5, 2, 4)
    else:
        raise ValueError(f"SpaceToDepth: mode must be 'DCR' or 'CRD', got {mode!r}")
    return y.reshape(n, c * b * b, h // b, w // b)


@kernel("ReverseSequence", since=10)
def reverse_sequence(xp, x, sequence_lens, /, *, batch_axis=1, time_axis=0):
    """Reverse the first ``sequence_lens[b]`` steps along ``time_axis`` of each batch entry."""
    if {batch_axis, time_axis} != {0, 1}:
        raise ValueError(f"ReverseSequence: batch_axis/time_axis must be 0 and 1, "
                         f"got {batch_axis} and {time_axis}")
    if sequence_lens.shape != (x.shape[batch_axis],):
        raise ShapeMismatchError(f"ReverseSequence: sequence_lens {sequence_lens.shape} must be "
                                 f"({x.shape[batch_axis]},), one length per batch entry")
    steps = x.shape[time_axis]
    t = xp.arange(steps, dtype=xp.int64)[:, None]
    lens = sequence_lens.astype(xp.int64)[None, :]
    src = xp.where(t < lens, lens - 1 - t, t)  # (time, batch)
    if time_axis == 1:
        src = src.T
    src = src.reshape(src.shape + (1,) * (x.ndim - 2))
    return xp.take_along_axis(x, xp.broadcast_to(src, x.shape), axis=time_axis)


# --- Unique -------------------------------------------------------------------------------


def _sorted_groups(xp, rows):
    """Stable lexicographic sort of the rows of a 2-D array, and where each equal run starts."""
    if rows.shape[1] == 0:  # empty sub-tensors are all equal
        order = xp.arange(rows.shape[0])
    elif rows.shape[1] == 1:
        order = xp.argsort(rows[:, 0], kind="stable")
    else:  # lexsort's last key is the primary one
        order = xp.lexsort(rows.T[::-1])
    ranked = rows[order]
    starts = xp.ones(rows.shape[0], dtype=bool)
    starts[1:] = (ranked[1:] != ranked[:-1]).any(axis=1)
    return order, starts


@kernel("Unique", since=11)
def unique(xp, x, /, *, axis=None, sorted=1):  # noqa: A002 - ONNX's attribute name
    """Unique values (``axis`` None, over the flattened input) or sub-tensors along ``axis``.

    Outputs: the unique values, the index of each one's first occurrence, the index into them of
    every input slice, and their counts, either sorted ascending or in order of first occurrence.
    """
    if axis is None:
        flat, axis = x.reshape(-1), 0
    else:
        axis = _axis(axis, x.ndim, "Unique")
        flat = x
    n = flat.shape[axis]
    rows = xp.moveaxis(flat, axis, 0).reshape(n, math.prod(flat.shape) // max(n, 1))
    order, starts = _sorted_groups(xp, rows)
    first_pos = xp.nonzero(starts)[0]
    group = xp.cumsum(starts) - 1  # group of each sorted row
    indices = order[first_pos].astype(xp.int64)
    counts = xp.diff(xp.concatenate([first_pos, xp.asarray([n])])).astype(xp.int64)
    inverse = xp.empty(n, dtype=xp.int64)
    inverse[order] = group
    if not sorted:
        by_first = xp.argsort(indices)
        rank = xp.empty_like(by_first)
        rank[by_first] = xp.arange(by_first.shape[0])
        indices, counts = indices[by_first], counts[by_first]
        inverse = rank[inverse].astype(xp.int64)
    return xp.take(flat, indices, axis=axis), indices, inverse, counts
