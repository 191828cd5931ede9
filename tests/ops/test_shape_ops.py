"""Shape and tensor-manipulation kernels against onnxruntime (onnx.reference where ORT lacks one)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper

from infermux.errors import ShapeMismatchError
from tests.ops.op_oracle import check, oracle, run


def ints(*v):
    return np.array(v, dtype=np.int64)


X = np.arange(60, dtype=np.float32).reshape(3, 5, 4)


@pytest.mark.parametrize("shape, allowzero",
                         [((0, -1), 0), ((4, 0, 3), 0), ((-1,), 0), ((2, 2, 15), 1)])
def test_reshape(shape, allowzero):
    check("Reshape", [X, ints(*shape)], {"allowzero": allowzero}, opset=14)


def test_view_ops_share_memory_with_their_input():
    views = [run("Reshape", [X, ints(15, 4)], opset=14)[0],
             run("Flatten", [X], {"axis": 2}, opset=13)[0],
             run("Squeeze", [X[None], ints(0)], opset=13)[0],
             run("Unsqueeze", [X, ints(0, -1)], opset=13)[0],
             run("Transpose", [X], {"perm": [2, 0, 1]}, opset=13)[0],
             run("Slice", [X, ints(1), ints(3), ints(1)], opset=13)[0],
             run("Expand", [X, ints(2, 1, 1, 1)], opset=13)[0],
             *run("Split", [X, ints(2, 3)], {"axis": 1}, opset=13, n_out=2)]
    assert all(np.shares_memory(v, X) for v in views)


def test_reshape_errors_name_the_problem():
    with pytest.raises(ShapeMismatchError, match="cannot infer -1"):
        run("Reshape", [X, ints(7, -1, 2)], opset=14)
    with pytest.raises(ShapeMismatchError, match="cannot reshape"):
        run("Reshape", [X, ints(7, 2)], opset=14)
    with pytest.raises(ShapeMismatchError, match="both 0 and -1"):
        run("Reshape", [X, ints(0, -1)], {"allowzero": 1}, opset=14)


@pytest.mark.parametrize("starts, ends, axes, steps", [
    ((0,), (9,), (1,), (2,)), ((-1,), (-100,), (1,), (-1,)), ((10,), (-10,), (2,), (-2,)),
    ((2, -2), (0, 0), (1, 2), (-1, -1)), ((0,), (-1,), (-1,), (1,)), ((5,), (1,), (1,), (1,))])
def test_slice_clamping_and_negative_steps(starts, ends, axes, steps):
    check("Slice", [X, ints(*starts), ints(*ends), ints(*axes), ints(*steps)], opset=13)


def test_slice_v1_attributes():
    check("Slice", [X], {"starts": [1, -2], "ends": [100, -1], "axes": [0, 2]}, opset=1)


@pytest.mark.parametrize("attrs, opset, n_out, split", [
    ({"axis": 1, "split": [2, 3]}, 11, 2, None), ({"axis": 0}, 11, 3, None),
    ({"axis": 1}, 13, 3, ints(1, 3, 1)), ({"axis": -1}, 13, 2, None),
    ({"axis": 1, "num_outputs": 2}, 18, 2, None)])
def test_split(attrs, opset, n_out, split):
    inputs = [X] if split is None else [X, split]
    check("Split", inputs, attrs, opset=opset, n_out=n_out)


def test_split_18_uneven_last_chunk():
    parts = run("Split", [np.arange(7, dtype=np.float32)], {"num_outputs": 3}, opset=18, n_out=3)
    assert [p.tolist() for p in parts] == [[0, 1, 2], [3, 4, 5], [6]]


def test_squeeze_unsqueeze_flatten():
    check("Squeeze", [X[:1, :, None]], opset=13)
    check("Squeeze", [X[:, :, :, None]], {"axes": [-1]}, opset=11)
    check("Unsqueeze", [X, ints(-1, 0)], opset=13)
    check("Unsqueeze", [X], {"axes": [1]}, opset=11)
    check("Flatten", [X], {"axis": 0}, opset=13)
    check("Flatten", [X], {"axis": -1}, opset=13)


def test_squeeze_of_a_non_unit_axis_fails():
    with pytest.raises(ShapeMismatchError, match="is not 1"):
        run("Squeeze", [X, ints(1)], opset=13)


def test_concat_expand_tile():
    check("Concat", [X, X[:, :2]], {"axis": 1}, opset=13)
    check("Expand", [X[:, :1], ints(2, 1, 1, 1)], opset=13)
    check("Tile", [X, ints(2, 1, 3)], opset=13)


@pytest.mark.parametrize("attrs", [{}, {"start": -2}, {"end": -5}, {"start": 1, "end": 10}])
def test_shape_start_end(attrs):
    check("Shape", [X], attrs, opset=15)


def test_size_constant_of_shape_eye_like():
    check("Size", [X], opset=13)
    value = helper.make_tensor("value", onnx.TensorProto.INT32, [1], [7])
    expected = oracle("ConstantOfShape", [ints(2, 3)], {"value": value}, opset=20)[0]
    got = run("ConstantOfShape", [ints(2, 3)], {"value": np.array([7], np.int32)}, opset=20)[0]
    assert got.dtype == expected.dtype and (got == expected).all()
    check("EyeLike", [X[0]], {"k": 1, "dtype": onnx.TensorProto.INT64}, opset=9)


@pytest.mark.parametrize("start, limit, delta",
                         [(1.5, -3.0, -0.7), (10, 3, -3), (0, 5, 1), (3, 1, 1)])
def test_range(start, limit, delta):
    dtype = np.float32 if isinstance(start, float) else np.int32
    check("Range", [np.array(start, dtype), np.array(limit, dtype), np.array(delta, dtype)], opset=11)


def test_one_hot_negative_and_out_of_range_indices():
    check("OneHot", [ints(1, -1, 5, 0).reshape(2, 2), ints(4), np.array([0.0, 3.0], np.float32)],
          {"axis": 1}, opset=11)


def test_nonzero_compress_trilu():
    u = np.array([[1, 0, 3], [2, 2, 2], [0, 0, 0]], np.float32)
    check("NonZero", [u], opset=13)
    check("Compress", [u, np.array([0, 1, 1], bool)], {"axis": 0}, opset=11)
    check("Compress", [u, np.array([0, 1, 1, 0, 0, 1], bool)], opset=11)
    check("Trilu", [X, ints(-1)], {"upper": 0}, opset=14)
    check("Trilu", [X, ints(1)], opset=14)


@pytest.mark.parametrize("op, mode", [("DepthToSpace", "DCR"), ("DepthToSpace", "CRD"),
                                      ("SpaceToDepth", "DCR")])
def test_depth_space(op, mode):
    x = np.arange(48, dtype=np.float32).reshape(1, 8, 2, 3) if op == "DepthToSpace" else \
        np.arange(48, dtype=np.float32).reshape(1, 2, 4, 6)
    attrs = {"blocksize": 2, "mode": mode} if op == "DepthToSpace" else {"blocksize": 2}
    check(op, [x], attrs, opset=13)


def test_reverse_sequence_both_layouts():
    check("ReverseSequence", [X, ints(5, 1, 3)], {"batch_axis": 0, "time_axis": 1}, opset=10)
    check("ReverseSequence", [X, ints(1, 3, 2, 0, 3)], {"batch_axis": 1, "time_axis": 0}, opset=10)


@pytest.mark.parametrize("axis", [None, 0, 1])
@pytest.mark.parametrize("sort", [0, 1])
def test_unique_all_outputs(axis, sort):
    u = np.array([[1, 0, 3], [2, 2, 2], [1, 0, 3], [0, 0, 0]], np.float32)
    attrs = {"sorted": sort} if axis is None else {"sorted": sort, "axis": axis}
    check("Unique", [u], attrs, opset=11, n_out=4)


def test_center_crop_pad():
    check("CenterCropPad", [X, ints(5, 3)], {"axes": [1, -1]}, opset=18, engine="ref")
    check("CenterCropPad", [X, ints(2, 8, 1)], opset=18, engine="ref")
