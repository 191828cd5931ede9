"""The numba layer (ops/_numba.py): where it caches, that serial and parallel builds of one
function keep separate cache entries, warm-up, and the NumPy fallback without numba."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from infermux.ops import _numba

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("env, expected", [
    ({"NUMBA_CACHE_DIR": "/x/numba"}, "/x/numba"),
    ({"INFERMUX_CACHE_DIR": "/y"}, "/y/numba"),
    ({}, os.path.join(os.path.expanduser("~"), ".cache", "infermux", "numba")),
])
def test_cache_dir_prefers_the_users_choice(monkeypatch, env, expected):
    for key in ("NUMBA_CACHE_DIR", "INFERMUX_CACHE_DIR"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert _numba.cache_dir() == expected


def _python(code: str, **env) -> str:
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, check=False,
                            env={**os.environ, "PYTHONPATH": str(REPO), **env},
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.skipif(not _numba.AVAILABLE, reason="numba not installed")
def test_serial_and_parallel_builds_cache_separately(tmp_path):
    code = """
        import numpy as np
        from infermux.ops import _numba
        from infermux.ops._numba import prange

        def bump(x):
            for i in prange(x.shape[0]):
                x[i] += 1.0

        serial, parallel = _numba.jit(bump), _numba.jit(bump, parallel=True)
        x = np.zeros(4, np.float32)
        serial(x); parallel(x)
        import numba
        print(numba.threading_layer(), x.tolist(), sum(parallel.stats.cache_hits.values()))
    """
    script = tmp_path / "bump_mod.py"
    script.write_text(textwrap.dedent(code))
    env = {"NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    run = f"import sys; sys.path.insert(0, {str(tmp_path)!r}); import bump_mod"
    cold, warm = _python(run, **env).split(), _python(run, **env).split()
    # both builds ran (the parallel one on a threading layer), and both came back from the cache
    assert cold[0] in ("omp", "tbb", "workqueue") and warm[0] == cold[0]
    assert cold[-1] == "0" and warm[-1] == "1"
    assert " ".join(cold[1:-1]) == "[2.0, 2.0, 2.0, 2.0]"
    names = sorted(p.name for p in (tmp_path / "cache").rglob("*.nbi"))
    assert any("bump__parallel" in n for n in names) and any("bump-" in n for n in names)


@pytest.mark.skipif(not _numba.AVAILABLE, reason="numba not installed")
def test_warm_up_compiles_once_per_op():
    _numba.warm_up({"Erf"})
    assert _numba.warm_up({"Erf"}) < 0.01  # already warm
    assert _numba.warm_up({"NoSuchOp"}) < 0.01


def test_fast_kernels_fall_back_to_numpy_without_numba():
    out = _python("""
        import numpy as np
        from infermux.ops import _numba
        from infermux.ops.registry import lookup
        x = np.linspace(-3, 3, 64, dtype=np.float32).reshape(8, 8)
        g = np.ones(8, np.float32)
        same = [np.array_equal(lookup(op, v, d, fast=True).fn(np, *a), lookup(op, v, d).fn(np, *a))
                for op, v, d, a in [("Erf", 9, "", (x,)), ("Gelu", 1, "infermux", (x, g)),
                                    ("LayerNorm", 1, "infermux", (x, g))]]
        print(_numba.AVAILABLE, _numba.warm_up(), all(same))
    """, INFERMUX_DISABLE_NUMBA="1")
    assert out.split() == ["False", "0.0", "True"]
