"""Paddle variables' tensor descriptors and the ``.pdiparams`` stream.

The ``.pdiparams`` holds the persistable variables, sorted by name, each as ``uint32 version,
uint64 lod levels (+ their data), uint32 version, int32 desc size, TensorDesc, raw data``.  Every
length is checked against the file.
"""

from __future__ import annotations

import math
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np

from infermux.errors import ModelReadError
from infermux.graph.paddle.proto import VAR_DTYPES, ProtoError, decode

__all__ = ["numpy_dtype", "params_bytes", "persistable_names", "read_params", "tensor_desc"]

_FEED, _FETCH = 9, 10  # VarType codes of the feed/fetch lists


def params_bytes(params: Any, model_path: Path | None) -> bytes | None:
    """The ``.pdiparams`` bytes: ``params`` (a path or bytes), else the file beside the model."""
    if params is None:
        if model_path is None:
            return None
        params = model_path.with_suffix(".pdiparams")
        if not params.is_file():
            return None
    if isinstance(params, (str, os.PathLike)):
        p = Path(params)
        if not p.is_file():
            raise ModelReadError(f"Cannot read Paddle parameters '{p}': no such file")
        return p.read_bytes()
    return bytes(params)


def persistable_names(varz: dict[str, dict]) -> list[str]:
    """The names stored in .pdiparams: persistable variables except feed/fetch, sorted."""
    return sorted(name for name, v in varz.items()
                  if v.get("persistable") and v.get("type", {}).get("type") not in (_FEED, _FETCH))


def tensor_desc(var: dict) -> dict:
    """A VarDesc's TensorDesc (data_type, dims), or {} when it has none."""
    t = var.get("type", {})
    return (t.get("lod_tensor") or {}).get("tensor") or t.get("selected_rows") or {}


def read_params(blob: bytes | None, names: list[str], where: str) -> dict[str, np.ndarray]:
    """Parse the combined parameter stream, checking every length against the buffer."""
    if not names:
        return {}
    if blob is None:
        raise ModelReadError(f"Paddle model '{where}' has {len(names)} parameters but no .pdiparams "
                             f"file was found beside it; pass params=")
    view, pos, out = memoryview(blob), 0, {}

    def take(n: int, what: str, name: str) -> memoryview:
        nonlocal pos
        if n < 0 or pos + n > len(view):
            raise ModelReadError(f"Paddle parameters: the {what} of '{name}' runs past the end of the "
                                 f"file ({pos} + {n} > {len(view)} bytes)")
        pos += n
        return view[pos - n:pos]

    for name in names:
        (version,) = struct.unpack("<I", take(4, "version", name))
        (lod_levels,) = struct.unpack("<Q", take(8, "LoD header", name))
        if version != 0 or lod_levels > 16:
            raise ModelReadError(f"Paddle parameters: tensor '{name}' has version {version} / "
                                 f"{lod_levels} LoD levels; expected version 0 (is the file a .pdiparams?)")
        for _ in range(lod_levels):
            (size,) = struct.unpack("<Q", take(8, "LoD size", name))
            take(size, "LoD data", name)
        struct.unpack("<I", take(4, "tensor version", name))
        (desc_size,) = struct.unpack("<i", take(4, "TensorDesc size", name))
        try:
            desc = decode(take(desc_size, "TensorDesc", name), "TensorDesc")
        except ProtoError as exc:
            raise ModelReadError(f"Paddle parameters: the TensorDesc of '{name}' is malformed ({exc})") from None
        code = desc.get("data_type", -1)
        if code not in VAR_DTYPES:
            raise ModelReadError(f"Paddle parameters: '{name}' has data type {code}; supported: "
                                 f"{sorted(VAR_DTYPES)}")
        dims = [int(d) for d in desc.get("dims", [])]
        if any(d < 0 for d in dims):
            raise ModelReadError(f"Paddle parameters: '{name}' has a negative dimension {dims}")
        dtype = np.dtype(numpy_dtype(VAR_DTYPES[code]))
        raw = take(math.prod(dims) * dtype.itemsize, "data", name)
        out[name] = np.frombuffer(raw, dtype).reshape(dims).copy()
    if pos != len(view):
        raise ModelReadError(f"Paddle parameters: {len(view) - pos} bytes are left after the "
                             f"{len(names)} persistable variables of the program; the .pdiparams "
                             f"does not belong to this .pdmodel")
    return out


def numpy_dtype(name: str):
    """A ``VAR_DTYPES`` name as something ``np.dtype`` accepts (bfloat16 from ml_dtypes)."""
    if name == "bfloat16":
        import ml_dtypes

        return ml_dtypes.bfloat16
    return name
