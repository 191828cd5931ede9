"""Softmax, LogSoftmax and Hardmax (opset < 13 flattening vs opset 13 per-axis) against onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest

from tests.ops.op_oracle import check, run


X = np.random.default_rng(0).standard_normal((2, 3, 4)).astype(np.float32) * 5


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax", "Hardmax"])
@pytest.mark.parametrize("opset, axis", [(11, 1), (11, -1), (11, 0), (13, 1), (13, -1), (13, 0)])
def test_against_onnxruntime(op, opset, axis):
    check(op, [X], {"axis": axis}, opset=opset)


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
def test_large_logits_do_not_overflow(op):
    x = np.array([[1000.0, 1001.0, 1002.0], [-1e4, 0.0, 1e4]], dtype=np.float32)
    (out,) = run(op, [x], opset=13)
    assert np.isfinite(out).all()
    check(op, [x], opset=13)


def test_softmax_keeps_float16_and_leaves_input_alone():
    x = X.astype(np.float16)
    before = x.copy()
    (out,) = run("Softmax", [x], {"axis": 1}, opset=13)
    assert out.dtype == np.float16
    np.testing.assert_array_equal(x, before)
    np.testing.assert_allclose(out.sum(axis=1), 1, rtol=2e-3)


def test_hardmax_ties_pick_the_first():
    x = np.array([[1, 3, 3, 0]], dtype=np.float32)
    (out,) = run("Hardmax", [x], opset=13)
    assert out.tolist() == [[0, 1, 0, 0]]


def test_axis_out_of_range_raises():
    with pytest.raises(ValueError, match="axis 3"):
        run("Softmax", [X], {"axis": 3}, opset=13)
