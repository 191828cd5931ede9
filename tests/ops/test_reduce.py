"""Reductions, ArgMax/ArgMin, CumSum/CumProd and TopK against onnxruntime / onnx.reference."""

from __future__ import annotations

import numpy as np
import pytest

from infermux.ops.reduce import REDUCTIONS
from tests.ops.op_oracle import check, run


RNG = np.random.default_rng(0)
X = RNG.uniform(0.5, 2.0, (3, 4, 5)).astype(np.float32)
AXES = np.array([0, -1], dtype=np.int64)


@pytest.mark.parametrize("op", sorted(REDUCTIONS))
@pytest.mark.parametrize("keepdims", [0, 1])
def test_reduce_axes_input(op, keepdims):
    opset = 18
    check(op, [X, AXES], {"keepdims": keepdims}, opset=opset)


@pytest.mark.parametrize("op", ["ReduceMean", "ReduceLogSumExp", "ReduceSum"])
def test_reduce_axes_attribute_and_last_axis(op):
    check(op, [X], {"axes": [2], "keepdims": 0}, opset=11)
    check(op, [X], {"axes": [1, 2]}, opset=11)


def test_reduce_all_axes_and_noop_with_empty_axes():
    empty = np.array([], dtype=np.int64)
    check("ReduceSumSquare", [X, empty], {"keepdims": 0}, opset=18)
    # noop_with_empty_axes keeps every element but still applies the element-wise part
    check("ReduceL1", [-X, empty], {"noop_with_empty_axes": 1}, opset=18, engine="ref")


def test_reduce_int_keeps_dtype():
    x = np.arange(24, dtype=np.int32).reshape(4, 6)
    check("ReduceSum", [x, np.array([1], dtype=np.int64)], opset=13)
    check("ReduceMean", [x, np.array([0], dtype=np.int64)], opset=18)


@pytest.mark.parametrize("op, identity", [("ReduceMax", -np.inf), ("ReduceMin", np.inf),
                                          ("ReduceProd", 1.0), ("ReduceSum", 0.0),
                                          ("ReduceLogSumExp", -np.inf), ("ReduceLogSum", -np.inf)])
def test_reduce_empty_set_gives_identity(op, identity):
    x = np.zeros((2, 0, 4), dtype=np.float32)
    (out,) = run(op, [x, np.array([1], dtype=np.int64)], opset=18)
    assert out.shape == (2, 1, 4) and out.dtype == np.float32
    assert np.all(out == identity)


def test_reduce_axis_out_of_range_raises():
    with pytest.raises(ValueError, match="out of range"):
        run("ReduceSum", [X, np.array([3], dtype=np.int64)], opset=13)


@pytest.mark.parametrize("op", ["ArgMax", "ArgMin"])
@pytest.mark.parametrize("select_last_index", [0, 1])
def test_arg_reduce_with_ties(op, select_last_index):
    x = np.array([[2, 2, 1, 1], [0, 3, 3, 0]], dtype=np.float32)
    check(op, [x], {"axis": 1, "keepdims": 0, "select_last_index": select_last_index}, opset=13)
    check(op, [x], {"axis": 0, "select_last_index": select_last_index}, opset=13)


@pytest.mark.parametrize("exclusive", [0, 1])
@pytest.mark.parametrize("reverse", [0, 1])
def test_cumsum_and_cumprod(exclusive, reverse):
    attrs = {"exclusive": exclusive, "reverse": reverse}
    x = np.arange(1, 13, dtype=np.int32).reshape(3, 4)
    check("CumSum", [x, np.array(-1, dtype=np.int64)], attrs, opset=14)
    check("CumProd", [x.astype(np.float32), np.array(0, dtype=np.int32)], attrs, opset=26,
          engine="ref")


@pytest.mark.parametrize("largest", [0, 1])
def test_topk_ties_keep_lower_index_first(largest):
    x = np.array([[3, 1, 3, 2, 1, 3], [0, 0, 0, 0, 0, 0]], dtype=np.float32)
    k = np.array([4], dtype=np.int64)
    check("TopK", [x, k], {"largest": largest}, opset=11, n_out=2)
    values, indices = run("TopK", [x, k], {"largest": largest}, opset=11, n_out=2)
    expected_first_row = [0, 2, 5, 3] if largest else [1, 4, 3, 0]
    assert indices[0].tolist() == expected_first_row and indices.dtype == np.int64


def test_topk_unsigned_and_attribute_form():
    x = np.array([5, 2**63, 7, 1], dtype=np.uint64)
    check("TopK", [x, np.array([2], dtype=np.int64)], opset=11, n_out=2, engine="ref")
    check("TopK", [X], {"k": 2, "axis": 1}, opset=1, n_out=2, engine="ref")


def test_topk_k_too_large_raises():
    with pytest.raises(ValueError, match="k=9"):
        run("TopK", [X, np.array([9], dtype=np.int64)], opset=11, n_out=2)
