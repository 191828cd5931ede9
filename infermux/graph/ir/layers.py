"""What an IR layer translation sees, and the table of translations.

A translation is a function of a :class:`LayerContext` registered with ``@translates("Type", ...)``
in one of the ``layers_*`` family modules; it adds ONNX nodes through ``cx.b`` (a
:class:`GraphBuilder`) writing ``cx.outs``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np

from infermux.errors import ModelReadError, UnsupportedOpError
from infermux.graph.builder import GraphBuilder
from infermux.graph.ir.parse import IR_ELEMENT_TYPES, Layer, parse_ints
from infermux.graph.types import Type

__all__ = ["LAYERS", "LayerContext", "is_int", "scalar_like", "translates"]


class LayerContext:
    """What a layer translation sees: the builder, the layer, input and output tensor names."""

    def __init__(self, b: GraphBuilder, layer: Layer, ins: list[str], outs: list[str], used: list[bool]):
        self.b, self.layer, self.ins, self.outs, self.used = b, layer, ins, outs, used
        m = re.fullmatch(r"opset(\d+)", layer.version or "opset1")
        self.version = int(m.group(1)) if m else 0

    # attributes
    def attr(self, name: str, default: str | None = None) -> str:
        value = self.layer.data.get(name, default)
        if value is None:
            raise ModelReadError(f"{self.layer.where()}: the required attribute '{name}' is missing")
        return value

    def ints(self, name: str, default: list[int] | None = None) -> list[int]:
        text = self.layer.data.get(name)
        if text is None:
            if default is None:
                raise ModelReadError(f"{self.layer.where()}: the required attribute '{name}' is missing")
            return list(default)
        try:
            return parse_ints(text)
        except ValueError:
            raise ModelReadError(f"{self.layer.where()}: attribute {name}='{text}' is not a list of "
                                 f"integers") from None

    def int_(self, name: str, default: int | None = None) -> int:
        text = self.attr(name, None if default is None else str(default))
        try:
            return int(text)
        except ValueError:
            raise ModelReadError(f"{self.layer.where()}: attribute {name}='{text}' is not an integer") from None

    def float_(self, name: str, default: float | None = None) -> float:
        text = self.attr(name, None if default is None else repr(default))
        try:
            return float(text)
        except ValueError:
            raise ModelReadError(f"{self.layer.where()}: attribute {name}='{text}' is not a number") from None

    def bool_(self, name: str, default: bool = False) -> bool:
        text = self.layer.data.get(name)
        if text is None:
            return default
        low = text.strip().lower()
        if low in ("true", "1"):
            return True
        if low in ("false", "0"):
            return False
        raise ModelReadError(f"{self.layer.where()}: attribute {name}='{text}' is not true/false")

    def choice(self, name: str, accepted: dict[str, Any], default: str | None = None) -> Any:
        text = self.attr(name, default).lower()
        if text not in accepted:
            raise UnsupportedOpError(f"{self.layer.where()}: {name}='{text}' is not supported; "
                                     f"accepted: {', '.join(accepted)}")
        return accepted[text]

    def unsupported(self, what: str) -> UnsupportedOpError:
        return UnsupportedOpError(f"{self.layer.where()}: {what}")

    # inputs
    def n_in(self) -> int:
        return len(self.ins)

    def input(self, i: int) -> str | None:
        return self.ins[i] if i < len(self.ins) else None

    def const(self, i: int, what: str = "") -> np.ndarray:
        """Input ``i`` as a constant; the layer is unsupported if it is computed at run time."""
        value = self.b.value(self.ins[i]) if i < len(self.ins) else None
        if value is None:
            raise self.unsupported(f"input {i}{' (' + what + ')' if what else ''} must be a constant "
                                   f"for infermux to translate this layer")
        return value

    def in_dims(self, i: int) -> list[int] | None:
        """Input ``i``'s shape from the IR (-1 for a dynamic dimension), or None if unknown."""
        dims = self.layer.inputs[i].dims if i < len(self.layer.inputs) else None
        value = self.b.value(self.ins[i]) if i < len(self.ins) else None
        if value is not None:
            return list(value.shape)
        return None if dims is None else [d.get_length() if d.is_static else -1 for d in dims]

    def rank(self, i: int) -> int:
        dims = self.in_dims(i)
        if dims is None:
            raise self.unsupported(f"the rank of input {i} must be known")
        return len(dims)

    def in_type(self, i: int) -> str:
        value = self.b.value(self.ins[i])
        if value is not None:
            return Type.from_numpy(value.dtype).name
        return self.layer.inputs[i].precision

    def out_type(self, i: int = 0) -> str:
        return self.layer.outputs[i].precision

    def i64(self, i: int) -> str:
        """Input ``i`` as an int64 tensor (ONNX wants int64 shapes, axes and pads)."""
        if self.in_type(i) == "i64":
            return self.ins[i]
        return self.b.op("Cast", self.ins[i], to=7)

    def vec(self, i: int) -> str:
        """Input ``i`` as a 1-D int64 tensor (IR allows scalars where ONNX wants vectors)."""
        return self.b.op("Reshape", self.i64(i), self.b.const([-1], "minus1", np.int64))


# IR layer type -> its translation
LAYERS: dict[str, Callable[[LayerContext], None]] = {}


def translates(*types: str):
    """Register the decorated function as the translation of these IR layer types."""
    def register(fn):
        for t in types:
            LAYERS[t] = fn
        return fn
    return register


def is_int(type_name: str) -> bool:
    """Whether an IR element-type name ('i32', 'u8'...) is an integer type."""
    return bool(type_name) and type_name[0] in "iu"


def scalar_like(cx: LayerContext, value: float, i: int = 0) -> str:
    """A scalar constant of input ``i``'s element type (f32 when unknown)."""
    dtype = IR_ELEMENT_TYPES.get(cx.in_type(i), (np.float32, 32))[0]
    return cx.b.const(np.array(value, dtype=dtype), "scalar")
