"""What a Paddle op translation sees, and the table of translations.

A translation is a function of an :class:`OpContext` registered with ``@translates("op", ...)``
in one of the ``ops_*`` family modules; it reads inputs by parameter name (``cx.x("Y")``) and
writes outputs to fresh tensors from ``cx.out(...)``, which later ops then read.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from infermux.errors import ModelReadError, UnsupportedOpError
from infermux.graph.paddle.params import numpy_dtype, tensor_desc
from infermux.graph.paddle.proto import VAR_DTYPES

__all__ = ["OPS", "OpContext", "check_nchw", "first_output_var", "translates"]


def first_output_var(outs: dict[str, list[str]]) -> str | None:
    """The first variable an op writes (it names the op's nodes)."""
    return next((name for names in outs.values() for name in names), None)


class OpContext:
    """What an op translation sees: named inputs/outputs, decoded attributes, variable types."""

    def __init__(self, b, kind, label, ins, outs, attrs, varz, current):
        self.b, self.kind, self.label = b, kind, label
        self._ins, self._outs, self.attrs, self._varz, self._current = ins, outs, attrs, varz, current
        self.scope = first_output_var(outs) or kind
        self.first_output: str | None = None

    def unsupported(self, what: str) -> UnsupportedOpError:
        return UnsupportedOpError(f"{self.label}: {what}")

    def attr(self, name: str, default: Any = None) -> Any:
        value = self.attrs.get(name)
        return default if value is None else value

    def has(self, param: str) -> bool:
        return bool(self._ins.get(param))

    def x(self, param: str = "X") -> str:
        """The tensor holding input ``param``'s (first) variable."""
        names = self._ins.get(param) or []
        if not names:
            raise ModelReadError(f"{self.label}: input '{param}' is missing")
        return self._resolve(names[0])

    def xs(self, param: str) -> list[str]:
        return [self._resolve(n) for n in self._ins.get(param) or []]

    def _resolve(self, var: str) -> str:
        if var not in self._current:
            raise ModelReadError(f"{self.label} reads variable '{var}', which nothing produced before it")
        return self._current[var]

    def var(self, param: str, io: str = "in") -> str:
        names = (self._ins if io == "in" else self._outs).get(param) or []
        if not names:
            raise ModelReadError(f"{self.label}: {'input' if io == 'in' else 'output'} '{param}' is missing")
        return names[0]

    def dims(self, param: str = "X", io: str = "in") -> list[int] | None:
        """The variable's dims from the program (-1 unknown), or the constant's real shape."""
        name = self.var(param, io)
        value = self.b.value(self._current.get(name, "")) if io == "in" else None
        if value is not None:
            return list(value.shape)
        dims = tensor_desc(self._varz.get(name, {})).get("dims")
        return None if dims is None else [int(d) for d in dims]

    def rank(self, param: str = "X") -> int:
        dims = self.dims(param)
        if dims is None:
            raise self.unsupported(f"the rank of input '{param}' must be known")
        return len(dims)

    def dtype(self, param: str = "X", io: str = "in") -> np.dtype:
        name = self.var(param, io)
        code = tensor_desc(self._varz.get(name, {})).get("data_type", 5)
        return np.dtype(numpy_dtype(VAR_DTYPES.get(code, "float32")))

    def out(self, param: str = "Out") -> str:
        """A fresh tensor for output ``param``; later reads of the variable see it."""
        var = self.var(param, "out")
        tensor = self.b.fresh(var)
        self._current[var] = tensor
        if self.first_output is None:
            self.first_output = tensor
        return tensor

    def out_vars(self, param: str) -> list[str]:
        """All the variables of output ``param`` (ops like split write several)."""
        return list(self._outs.get(param, []))

    def bind(self, var: str, tensor: str) -> None:
        """Later reads of variable ``var`` see ``tensor``."""
        self._current[var] = tensor

    def scalar(self, value: float, param: str = "X") -> str:
        return self.b.const(np.array(value, dtype=self.dtype(param)), "scalar")

    def ints(self, values, hint: str = "ints") -> str:
        return self.b.const(np.asarray(values, dtype=np.int64).reshape(-1), hint)

    def i64(self, tensor: str) -> str:
        return self.b.op("Cast", tensor, to=7)


# Paddle op type -> its translation
OPS: dict[str, Callable[[OpContext], None]] = {}


def translates(*kinds: str):
    """Register the decorated function as the translation of these Paddle op types."""
    def register(fn):
        for k in kinds:
            OPS[k] = fn
        return fn
    return register


def check_nchw(cx: OpContext, key: str = "data_format") -> None:
    """Refuse channels-last layouts: the translations assume NCHW (NCL, NCDHW)."""
    fmt = str(cx.attr(key, "NCHW"))
    if fmt not in ("NCHW", "AnyLayout", "NCDHW", "NCL"):
        raise cx.unsupported(f"{key}='{fmt}' is not supported; only channels-first layouts")
