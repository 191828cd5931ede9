"""NonMaxSuppression against onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest

from infermux.errors import ShapeMismatchError, UnsupportedOpError
from tests.ops.op_oracle import call, oracle

RNG = np.random.default_rng(4)


def nms(inputs, attrs):
    return call("NonMaxSuppression", 11, *inputs, **attrs)


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
    np.testing.assert_array_equal(got, oracle("NonMaxSuppression", inputs, attrs, opset=11)[0])


def test_no_max_output_selects_nothing():
    boxes, scores = random_boxes(1, 5, 0), RNG.random((1, 2, 5)).astype(np.float32)
    got = nms([boxes, scores], {})
    assert got.shape == (0, 3) and got.dtype == np.int64


def test_non_max_suppression_errors():
    with pytest.raises(ShapeMismatchError, match="boxes"):
        nms([np.zeros((1, 5, 3), np.float32), np.zeros((1, 1, 5), np.float32)], {})
    with pytest.raises(UnsupportedOpError, match="center_point_box"):
        nms([np.zeros((1, 5, 4), np.float32), np.zeros((1, 1, 5), np.float32)], {"center_point_box": 2})
