"""The op registry: one kernel per (domain, op type, first opset), found by opset.

A kernel is a plain function of the array module ``xp`` (NumPy or CuPy), its positional inputs
and its ONNX attributes as keyword arguments with ONNX's defaults::

    @kernel("Softmax", since=13)
    def softmax(xp, x, /, *, axis=-1):
        e = xp.exp(x - x.max(axis=axis, keepdims=True))
        return e / e.sum(axis=axis, keepdims=True)

Conventions the runner relies on:

* A missing optional input (an empty name in ONNX) arrives as ``None``; variadic inputs arrive
  as ``*args``.
* A kernel returns one array, or a tuple/list with one entry per output.  The runner keeps as
  many as the node declares; an optional output the node does not use may be returned as ``None``.
* A kernel that must know how many outputs the node asks for declares a keyword ``_num_outputs``;
  one that must know which of its optional outputs are consumed declares ``_used_outputs``
  (a tuple of bools).  Both are filled in by the runner, never by a model attribute.
* Attributes arrive decoded: ints, floats, ``str`` (not bytes), lists, ``numpy.ndarray`` for
  tensor attributes, and a callable for graph attributes (subgraphs; see ``devices/plan.py``).
* A kernel never imports numpy itself for array work; it uses ``xp``.  A fast path that only
  works on NumPy is registered with ``fast=True`` under the same key and is chosen by the CPU
  plugin only; the plain kernel stays the reference and the GPU path.

The highest ``since`` that is not above the model's opset for the domain wins.  Registering the
same (domain, op, since) twice fails at import.
"""

from __future__ import annotations

import bisect
import dataclasses
import inspect
import threading
from collections.abc import Callable
from typing import Any

from infermux.errors import UnsupportedOpError

__all__ = ["Kernel", "kernel", "lookup", "lookup_or_none", "registered_ops", "DEFAULT_DOMAIN"]

DEFAULT_DOMAIN = ""
_DOMAIN_ALIASES = {"ai.onnx": DEFAULT_DOMAIN}


@dataclasses.dataclass(frozen=True)
class Kernel:
    """One registered implementation of an op from one opset version on."""

    op_type: str
    domain: str
    since: int
    fn: Callable[..., Any]
    wants_num_outputs: bool
    wants_used_outputs: bool
    attribute_names: frozenset[str] | None  # None: the kernel takes **kwargs
    fast: bool = False


# (domain, op_type) -> sorted list of `since`, and (domain, op_type, since, fast) -> Kernel
_VERSIONS: dict[tuple[str, str], list[int]] = {}
_KERNELS: dict[tuple[str, str, int, bool], Kernel] = {}


def _normalise_domain(domain: str) -> str:
    return _DOMAIN_ALIASES.get(domain, domain)


def _describe(fn: Callable[..., Any]) -> tuple[bool, bool, frozenset[str] | None]:
    params = inspect.signature(fn).parameters.values()
    names = {p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}
    var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
    wants_n = "_num_outputs" in names
    wants_used = "_used_outputs" in names
    attrs = None if var_kw else frozenset(n for n in names if not n.startswith("_"))
    return wants_n, wants_used, attrs


def kernel(op_type: str | tuple[str, ...], *, since: int = 1, domain: str = DEFAULT_DOMAIN,
           fast: bool = False) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register the decorated function as the kernel of ``op_type`` from opset ``since`` on.

    ``op_type`` may be a tuple of names sharing one implementation.
    """
    names = (op_type,) if isinstance(op_type, str) else tuple(op_type)
    dom = _normalise_domain(domain)

    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        wants_n, wants_used, attrs = _describe(fn)
        for name in names:
            key = (dom, name, since, fast)
            if key in _KERNELS:
                raise RuntimeError(
                    f"kernel {dom or 'ai.onnx'}::{name} since opset {since}"
                    f"{' (fast)' if fast else ''} is registered twice "
                    f"({_KERNELS[key].fn.__module__} and {fn.__module__})")
            _KERNELS[key] = Kernel(name, dom, since, fn, wants_n, wants_used, attrs, fast)
            versions = _VERSIONS.setdefault((dom, name), [])
            if since not in versions:
                bisect.insort(versions, since)
        return fn

    return register


def lookup_or_none(op_type: str, opset: int, domain: str = DEFAULT_DOMAIN, *,
                   fast: bool = False) -> Kernel | None:
    """The kernel for ``op_type`` at ``opset``, or None.  ``fast`` prefers a NumPy fast path."""
    _ensure_loaded()
    dom = _normalise_domain(domain)
    versions = _VERSIONS.get((dom, op_type))
    if not versions:
        return None
    i = bisect.bisect_right(versions, opset)
    for since in reversed(versions[:i]):
        if fast and (dom, op_type, since, True) in _KERNELS:
            return _KERNELS[(dom, op_type, since, True)]
        if (dom, op_type, since, False) in _KERNELS:
            return _KERNELS[(dom, op_type, since, False)]
    return None


def lookup(op_type: str, opset: int, domain: str = DEFAULT_DOMAIN, *,
           node_name: str = "", fast: bool = False) -> Kernel:
    """The kernel for ``op_type`` at ``opset``; raises :class:`UnsupportedOpError` if none."""
    found = lookup_or_none(op_type, opset, domain, fast=fast)
    if found is not None:
        return found
    dom = _normalise_domain(domain)
    where = f" (node '{node_name}')" if node_name else ""
    versions = _VERSIONS.get((dom, op_type))
    if versions:
        raise UnsupportedOpError(
            f"{op_type}{where} at opset {opset} of domain '{dom or 'ai.onnx'}' is not supported: "
            f"infermux implements it from opset {versions[0]} on")
    raise UnsupportedOpError(
        f"op {dom + '::' if dom else ''}{op_type}{where} is not supported by infermux; "
        f"see `python -m infermux.conformance --ops` for the supported list")


def registered_ops() -> dict[tuple[str, str], list[int]]:
    """{(domain, op_type): [since, ...]} for every registered op."""
    _ensure_loaded()
    return {k: list(v) for k, v in sorted(_VERSIONS.items())}


_loaded = False
_load_lock = threading.RLock()


def _ensure_loaded() -> None:
    """Import every module of ``infermux.ops`` once, so adding an op is adding a file.

    Thread-safe: a second thread compiling meanwhile waits for the whole registry, and the flag
    is set only after every import (the lock is re-entrant for lookups made during imports)."""
    global _loaded
    if _loaded:
        return
    with _load_lock:
        if _loaded:
            return
        import importlib
        import pkgutil

        import infermux.ops as package

        for info in pkgutil.iter_modules(package.__path__):
            if not info.name.startswith("_") and info.name != "registry":
                importlib.import_module(f"{package.__name__}.{info.name}")
        _loaded = True
