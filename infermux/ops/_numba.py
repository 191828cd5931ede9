"""Numba support for the CPU fast kernels: one place that imports numba, configures it and
compiles kernels, so the rest of ``infermux.ops`` never depends on numba being installed.

* :data:`AVAILABLE` says whether numba imported.  Fast kernels check it and otherwise run their
  NumPy version, so a missing or broken numba costs speed, never correctness.
* :func:`jit` compiles with ``cache=True`` (machine code is kept on disk and reused by later
  processes), ``nogil=True`` and never ``fastmath``: results must match the reference kernels
  to about one rounding, and fastmath re-associates sums.  The cache lives in
  ``$NUMBA_CACHE_DIR`` when the user set it, else ``$INFERMUX_CACHE_DIR/numba``, else
  ``~/.cache/infermux/numba``.
* Parallel kernels (``parallel=True``, ``prange``) run on numba's thread pool, whose size per
  calling thread :func:`set_num_threads` sets (numba keeps it thread-locally), e.g. one thread
  per stream in THROUGHPUT mode.  Parallel rarely pays between BLAS calls on a 2-core machine:
  OpenBLAS's idle worker keeps spinning on the other core for a while after each GEMM, so the
  pool's second thread gets half a core.  A 0.8 ms Gelu took 0.42 ms on two threads alone but
  0.88 ms right after a GEMM (passive wait) -- no better than one thread -- while spin-waiting
  OpenMP workers slowed the next GEMM 2x (see :func:`_configure_threads`).  The transformer
  kernels are therefore serial; a kernel with long stretches of its own (depthwise chains)
  may still gain.
* :func:`warm_up` compiles (or loads from the cache) the kernels of the ops a plan uses, on
  tiny inputs, so the first inference does not pay for it; ``devices/compile.py`` calls it when
  it lowers a model for the CPU.  Inputs a kernel only reads go through :func:`readonly`, so one
  compiled specialisation serves writable and read-only (weight) arrays alike.

Example::

    from infermux.ops import _numba

    @_numba.jit(parallel=True)
    def scale(x, a):
        for i in _numba.prange(x.shape[0]):
            x[i] *= a

    _numba.register_warm_up("Scale", lambda: scale(np.ones(4, np.float32), np.float32(2)))
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import types
from collections.abc import Callable
from typing import Any

__all__ = [
    "AVAILABLE",
    "PARALLEL_MIN_SIZE",
    "cache_dir",
    "get_num_threads",
    "jit",
    "prange",
    "readonly",
    "register_warm_up",
    "set_num_threads",
    "warm_up",
]

log = logging.getLogger(__name__)

# below this many elements a kernel runs serially: waking the pool costs ~5-10 us
PARALLEL_MIN_SIZE = 32768


def cache_dir() -> str:
    """Where compiled kernels are cached: ``$NUMBA_CACHE_DIR`` if the user set it, else
    ``$INFERMUX_CACHE_DIR/numba``, else ``~/.cache/infermux/numba``."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return os.environ["NUMBA_CACHE_DIR"]
    base = os.environ.get("INFERMUX_CACHE_DIR") or os.path.join(
        os.path.expanduser("~"), ".cache", "infermux")
    return os.path.join(base, "numba")


def _configure_cache() -> None:
    """Point numba's cache at :func:`cache_dir` unless the user chose one."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return
    path = cache_dir()
    os.environ["NUMBA_CACHE_DIR"] = path
    config = sys.modules.get("numba.core.config")
    if config is not None and not getattr(config, "CACHE_DIR", ""):
        config.CACHE_DIR = path  # numba was imported first: its config is already read


def _configure_threads() -> None:
    """Let idle OpenMP workers sleep instead of spinning (unless the user chose otherwise).

    OpenBLAS's idle workers already spin (yielding) for a while after every GEMM.  With
    libgomp's default spin-wait on top, the two pools fight over the 2 cores: a 3.5 ms GEMM
    followed by a 0.4 ms parallel kernel took 8.0 ms per pair, against 4.4 ms with passive
    waiting.  libgomp reads this when numba first loads it (the first parallel kernel call).
    """
    if not any(k in os.environ for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")):
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"


def _import_numba():
    _configure_cache()
    _configure_threads()
    try:
        import numba
    except Exception as exc:  # noqa: BLE001 - ImportError, or a numba/llvmlite/NumPy mismatch
        log.debug("numba not usable, fast kernels fall back to NumPy: %s", exc)
        return None
    return numba


_numba = None if os.environ.get("INFERMUX_DISABLE_NUMBA") else _import_numba()
AVAILABLE = _numba is not None
prange = _numba.prange if AVAILABLE else range


def jit(fn: Callable | None = None, *, parallel: bool = False) -> Any:
    """``numba.njit(cache=True, nogil=True, parallel=...)``; None when numba is unavailable.

    Usable bare (``@jit``) or with arguments (``@jit(parallel=True)``); one function may be
    compiled both ways.  ``error_model='numpy'``: a float division by zero gives inf/NaN as in
    NumPy instead of a Python exception, whose check would stop LLVM vectorising the loop
    (3-8x slower on the Erf polynomial).  Kernels must test :data:`AVAILABLE` (or the
    returned value) before calling.
    """
    def wrap(f: Callable) -> Any:
        if not AVAILABLE:
            return None
        if parallel:
            # numba's on-disk cache is keyed by the function's qualified name, not its flags: the
            # parallel build needs its own name or it would load the serial one (or vice versa)
            f = _renamed(f, "__parallel")
        return _numba.njit(cache=True, nogil=True, parallel=parallel, fastmath=False,
                           error_model="numpy")(f)

    return wrap(fn) if fn is not None else wrap


def _renamed(f: Callable, suffix: str) -> Callable:
    g = types.FunctionType(f.__code__, f.__globals__, f.__name__ + suffix, f.__defaults__,
                           f.__closure__)
    g.__qualname__ = f.__qualname__ + suffix
    g.__module__ = f.__module__
    g.__doc__ = f.__doc__
    return g


def readonly(a):
    """A read-only view of ``a``, for the arrays a kernel only reads.

    numba compiles one specialisation per argument type, and read-only arrays (weights loaded
    from a model file, for one) are a type of their own; passing every input as read-only keeps
    it to one specialisation, the one warm-up compiled, instead of a compile on first use.
    """
    if a is None or not a.flags.writeable:
        return a
    view = a.view()
    view.flags.writeable = False
    return view


def set_num_threads(n: int) -> None:
    """Threads the calling thread's parallel kernels may use (at most numba's pool size)."""
    if AVAILABLE:
        _numba.set_num_threads(max(1, min(int(n), _numba.config.NUMBA_NUM_THREADS)))


def get_num_threads() -> int:
    """Threads the calling thread's parallel kernels use (1 without numba)."""
    return _numba.get_num_threads() if AVAILABLE else 1


_WARM_UPS: dict[str, list[Callable[[], Any]]] = {}
_warmed: set[str] = set()
_warm_lock = threading.Lock()


def register_warm_up(op_types: str | tuple[str, ...], fn: Callable[[], Any]) -> None:
    """Make :func:`warm_up` of any of ``op_types`` call ``fn``, which runs some kernels on tiny
    inputs of every dtype they are used with (so they compile, or load from the cache)."""
    for op in (op_types,) if isinstance(op_types, str) else op_types:
        _WARM_UPS.setdefault(op, []).append(fn)


def warm_up(op_types=None) -> float:
    """Compile, or load from the on-disk cache, the kernels of ``op_types`` (None: all);
    returns the seconds spent.

    Each op is warmed once per process.  A failure is logged; the kernel then compiles on first
    use, where the error names the node.
    """
    if not AVAILABLE:
        return 0.0
    from infermux.ops.registry import registered_ops

    registered_ops()  # import every op module, so every kernel has registered its warm-up
    t0 = time.perf_counter()
    with _warm_lock:
        wanted = set(_WARM_UPS) if op_types is None else set(op_types) & set(_WARM_UPS)
        for op in sorted(wanted - _warmed):
            for fn in _WARM_UPS[op]:
                try:
                    fn()
                except Exception as exc:  # noqa: BLE001 - reported again, per node, at run time
                    log.warning("numba warm-up for %s failed: %s", op, exc)
            _warmed.add(op)
    seconds = time.perf_counter() - t0
    if seconds > 0.001:
        log.debug("numba kernels for %s ready in %.3f s (cache %s)", sorted(wanted), seconds,
                  cache_dir())
    return seconds
