"""NonMaxSuppression against onnxruntime."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper

from infermux.errors import ShapeMismatchError, UnsupportedOpError
from infermux.ops.registry import lookup

RNG = np.random.default_rng(4)


def oracle(inputs, attrs):
    """One NonMaxSuppression node run by onnxruntime (None: an omitted optional input)."""
    names = [f"in{i}" if v is not None else "" for i, v in enumerate(inputs)]
    node = helper.make_node("NonMaxSuppression", names, ["out"], **attrs)
    graph_inputs = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
                    for n, v in zip(names, inputs) if n]
    model = helper.make_model(helper.make_graph([node], "g", graph_inputs, [onnx.ValueInfoProto(name="out")]),
                              opset_imports=[helper.make_opsetid("", 11)], ir_version=10)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {n: v for n, v in zip(names, inputs) if n})[0]


def nms(inputs, attrs):
    return lookup("NonMaxSuppression", 11).fn(np, *inputs, **attrs)


def random_boxes(batches, count, center):
    centre = RNG.random((batches, count, 2)) * 10
    size = RNG.random((batches, count, 2)) * 4 + 0.1
    if center:
        return np.concatenate([centre, size], axis=-1).astype(np.float32)
    corners = np.concatenate([centre - size / 2, centre + size / 2], axis=-1)[..., [1, 0, 3, 2]]
    flip = RNG.random((batches, count)) < 0.3  # some boxes given by the other two corners
    corners[flip] = corners[flip][:, [2, 3, 0, 1]]
    return corners.astype(np.float32)


@pytest.mark.parametrize("center_point_box", [0, 1])
@pytest.mark.parametrize("iou, score", [(0.5, None), (0.3, 0.4), (0.0, 0.2)])
def test_non_max_suppression_matches_onnxruntime(center_point_box, iou, score):
    boxes = random_boxes(2, 40, center_point_box)
    scores = RNG.random((2, 3, 40)).astype(np.float32)
    scores[0, 1, :10] = 0.75  # ties keep the lower index first
    inputs = [boxes, scores, np.array([7], np.int64), np.array([iou], np.float32),
              None if score is None else np.array([score], np.float32)]
    if score is None:
        inputs = inputs[:4]
    attrs = {"center_point_box": center_point_box}
    got = nms(inputs, attrs)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, oracle(inputs, attrs))


def test_no_max_output_selects_nothing():
    boxes, scores = random_boxes(1, 5, 0), RNG.random((1, 2, 5)).astype(np.float32)
    got = nms([boxes, scores], {})
    assert got.shape == (0, 3) and got.dtype == np.int64


def test_non_max_suppression_errors():
    with pytest.raises(ShapeMismatchError, match="boxes"):
        nms([np.zeros((1, 5, 3), np.float32), np.zeros((1, 1, 5), np.float32)], {})
    with pytest.raises(UnsupportedOpError, match="center_point_box"):
        nms([np.zeros((1, 5, 4), np.float32), np.zeros((1, 1, 5), np.float32)], {"center_point_box": 2})
