"""The model suites shipped inside the onnx package (simple, pytorch-converted, pytorch-operator),
through the same strict harness as the node tests."""

from __future__ import annotations

import pytest

import infermux as im
from infermux.conformance.data import suite_dir
from infermux.conformance.runner import iter_test_dirs, run_node_test

# Gradient is a training op (automatic differentiation), outside an inference runtime.
NOT_INFERENCE = {"test_gradient_of_add", "test_gradient_of_add_and_mul"}
CASES = [d for suite in ("simple", "pytorch-converted", "pytorch-operator") for d in iter_test_dirs(suite_dir(suite))]


@pytest.fixture(scope="module")
def core():
    return im.Core()


@pytest.mark.parametrize("test_dir", CASES, ids=[f"{d.parent.name}/{d.name}" for d in CASES])
def test_model_suite_case(core, test_dir):
    if test_dir.name in NOT_INFERENCE:
        pytest.skip("Gradient is a training op (automatic differentiation), not supported")
    result = run_node_test(test_dir, core=core)
    assert result.status == "passed", result.reason
