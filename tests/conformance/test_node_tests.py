"""Every ONNX backend node test through the public API: excluded ones skip with their reason.

The cases are generated once into ``$INFERMUX_CONFORMANCE_CACHE`` (see infermux/conformance/data.py);
the comparison is the strict harness of infermux/conformance/runner.py (rtol 1e-3, atol 1e-7,
exact dtype and shape).
"""

from __future__ import annotations

import pytest

import infermux
from infermux.conformance.data import ensure_node_tests
from infermux.conformance.exclusions import exclusion_for
from infermux.conformance.runner import PASSED, iter_test_dirs, run_node_test

TEST_DIRS = list(iter_test_dirs(ensure_node_tests()))


@pytest.fixture(scope="module")
def core():
    return infermux.Core()


@pytest.mark.parametrize("test_dir", TEST_DIRS, ids=[d.name for d in TEST_DIRS])
def test_node(test_dir, core):
    excluded = exclusion_for(test_dir.name)
    if excluded is not None:
        pytest.skip(excluded.describe())
    result = run_node_test(test_dir, core=core)
    assert result.status == PASSED, f"{result.name} [{result.op}]: {result.reason}"


EXCLUDED_DIRS = [d for d in TEST_DIRS if exclusion_for(d.name) is not None]


def test_every_excluded_test_still_fails(core):
    # the exclusion list only shrinks: an excluded test that passes must lose its entry
    now_passing = [d.name for d in EXCLUDED_DIRS if run_node_test(d, core=core).status == PASSED]
    assert not now_passing, f"these now pass; remove their exclusions: {now_passing}"
