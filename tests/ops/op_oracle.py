"""The one oracle the op tests share: a one-node ONNX model run by onnxruntime or onnx.reference,
and our kernel called through the registry the way the runner calls it.

    check("Softmax", [x], {"axis": 1}, opset=13)                      # against onnxruntime
    check("DFT", [x], {"axis": 1}, opset=17, engine="reference", rtol=1e-4)

:func:`oracle` and :func:`run` return lists (one array per node output) and :func:`check`
compares them: as many outputs, the same dtypes and shapes, values within ``rtol``/``atol``
(compared as float64).  ``None`` in ``inputs`` is an omitted optional input.
:func:`reference` and :func:`call` are the shorthands of the elementwise-style tests: attributes
as keywords, the kernel's raw result.

onnxruntime and onnx.reference are oracles only: infermux never runs on them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper
from onnx.reference import ReferenceEvaluator

from infermux.ops.registry import lookup

ENGINES = ("ort", "reference", "ref")  # "ref" is short for "reference"


def node_model(op: str, inputs: Sequence, attrs: dict | None = None, *, opset: int,
               n_out: int = 1) -> onnx.ModelProto:
    """A model of one ``op`` node: inputs ``in0, in1, ...`` typed from ``inputs`` (a None is left
    out of the node), untyped outputs ``out0, ...``."""
    names = [f"in{i}" if v is not None else "" for i, v in enumerate(inputs)]
    node = helper.make_node(op, names, [f"out{i}" for i in range(n_out)], **(attrs or {}))
    graph_inputs = [
        helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
        for n, v in zip(names, inputs) if n]
    outputs = [onnx.ValueInfoProto(name=f"out{i}") for i in range(n_out)]
    return helper.make_model(helper.make_graph([node], "g", graph_inputs, outputs),
                             opset_imports=[helper.make_opsetid("", opset)], ir_version=10)


def oracle(op: str, inputs: Sequence, attrs: dict | None = None, *, opset: int, n_out: int = 1,
           engine: str = "ort") -> list[np.ndarray]:
    """The outputs of one ``op`` node run by onnxruntime (``engine="ort"``) or onnx.reference."""
    if engine not in ENGINES:
        raise ValueError(f"engine {engine!r}: expected one of {ENGINES}")
    model = node_model(op, inputs, attrs, opset=opset, n_out=n_out)
    feeds = {f"in{i}": v for i, v in enumerate(inputs) if v is not None}
    if engine == "ort":
        session = ort.InferenceSession(model.SerializeToString(),
                                       providers=["CPUExecutionProvider"])
        return session.run(None, feeds)
    return ReferenceEvaluator(model).run(None, feeds)


def run(op: str, inputs: Sequence, attrs: dict | None = None, *, opset: int, n_out: int = 1,
        fast: bool = False) -> list:
    """Our kernel's first ``n_out`` outputs, called as the runner calls it: ``_num_outputs`` and
    ``_used_outputs`` (all used) passed when the kernel asks for them."""
    k = lookup(op, opset, fast=fast)
    kwargs = dict(attrs or {})
    if k.wants_num_outputs:
        kwargs["_num_outputs"] = n_out
    if k.wants_used_outputs:
        kwargs["_used_outputs"] = (True,) * n_out
    out = k.fn(np, *inputs, **kwargs)
    return (list(out) if isinstance(out, (tuple, list)) else [out])[:n_out]


def assert_outputs_match(got: Sequence, expected: Sequence, *, rtol: float, atol: float,
                         compare: Callable | None = None) -> None:
    """As many outputs, each with the expected dtype and shape, and values within tolerance
    (or passing ``compare(got, expected)`` where given)."""
    assert len(got) == len(expected), f"{len(got)} outputs, expected {len(expected)}"
    for g, e in zip(got, expected):
        assert (g.dtype, g.shape) == (e.dtype, e.shape), (g.dtype, g.shape, e.dtype, e.shape)
        if compare is not None:
            compare(g, e)
        else:
            np.testing.assert_allclose(g.astype(np.float64), e.astype(np.float64), rtol=rtol,
                                       atol=atol)


def check(op: str, inputs: Sequence, attrs: dict | None = None, *, opset: int, n_out: int = 1,
          engine: str = "ort", rtol: float = 1e-5, atol: float = 1e-6, fast: bool = False,
          compare: Callable | None = None) -> None:
    """Our kernel's outputs equal the oracle's (see :func:`assert_outputs_match`)."""
    expected = oracle(op, inputs, attrs, opset=opset, n_out=n_out, engine=engine)
    got = run(op, inputs, attrs, opset=opset, n_out=n_out, fast=fast)
    assert_outputs_match(got, expected, rtol=rtol, atol=atol, compare=compare)


def reference(op: str, inputs: Sequence, opset: int, n_out: int = 1, **attrs) -> list[np.ndarray]:
    """:func:`oracle` on onnx.reference, attributes given as keywords."""
    return oracle(op, inputs, attrs, opset=opset, n_out=n_out, engine="reference")


def call(op: str, opset: int, *inputs, fast: bool = False, **attrs):
    """Our kernel called directly, attributes (and any ``_num_outputs``) as keywords: its raw
    result, a tuple or list as returned and anything else as an array."""
    out = lookup(op, opset, fast=fast).fn(np, *inputs, **attrs)
    return out if isinstance(out, (tuple, list)) else np.asarray(out)
