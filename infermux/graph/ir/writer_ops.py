"""The table of ONNX-node-to-IR translations the writer uses, and helpers they share.

A translation is a function of the :class:`~infermux.graph.ir.writer.Writer` and the
:class:`Node`, registered with ``@translates("OpType", ...)`` in one of the ``writer_ops_*``
family modules; it adds IR layers with ``w.layer(...)`` (or aliases the output with ``w.alias``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from infermux.graph.model import Node
from infermux.graph.types import Type

if TYPE_CHECKING:
    from infermux.graph.ir.writer import Writer

__all__ = ["NODES", "np_type", "translates"]

# ONNX op type -> its IR translation
NODES: dict[str, Callable[[Writer, Node], None]] = {}


def translates(*types: str):
    """Register the decorated function as the IR translation of these ONNX op types."""
    def register(fn):
        for t in types:
            NODES[t] = fn
        return fn
    return register


def np_type(w: Writer, tensor: str):
    """The NumPy dtype of ``tensor`` (float32 when unknown), for constants that go with it."""
    et = w.etype(tensor)
    return Type._BY_NAME[et].to_dtype() if et else np.float32
