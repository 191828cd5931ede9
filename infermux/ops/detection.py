"""Detection post-processing: NonMaxSuppression.

Greedy NMS is sequential by nature, so it runs on the host: per (batch, class), candidates above
``score_threshold`` are taken by descending score (lower index first on ties) and each pick
removes, in one vectorised step, the remaining boxes whose IoU with it exceeds
``iou_threshold``.  Arithmetic is in the boxes' own dtype, as in onnxruntime, so boundary cases
(IoU exactly at the threshold) agree with it.
"""

from __future__ import annotations

import numpy as np

from infermux.errors import ShapeMismatchError, UnsupportedOpError
from infermux.ops.registry import kernel

__all__: list[str] = []


def _host(a):
    return None if a is None else np.asarray(a.get() if hasattr(a, "get") else a)


def _corners(boxes, center_point_box: int):
    """(x_min, y_min, x_max, y_max) columns of (K, 4) boxes in either ONNX box format."""
    if center_point_box == 0:  # [y1, x1, y2, x2], any two opposite corners
        y_min, y_max = np.minimum(boxes[:, 0], boxes[:, 2]), np.maximum(boxes[:, 0], boxes[:, 2])
        x_min, x_max = np.minimum(boxes[:, 1], boxes[:, 3]), np.maximum(boxes[:, 1], boxes[:, 3])
        return x_min, y_min, x_max, y_max
    half_w, half_h = boxes[:, 2] / 2, boxes[:, 3] / 2  # [x_center, y_center, width, height]
    return boxes[:, 0] - half_w, boxes[:, 1] - half_h, boxes[:, 0] + half_w, boxes[:, 1] + half_h


def _suppressed(corners, areas, pick: int, rest, iou_threshold):
    """Which boxes of ``rest`` overlap box ``pick`` by more than ``iou_threshold``."""
    x0, y0, x1, y1 = corners
    w = np.minimum(x1[pick], x1[rest]) - np.maximum(x0[pick], x0[rest])
    h = np.minimum(y1[pick], y1[rest]) - np.maximum(y0[pick], y0[rest])
    inter = w * h
    union = areas[pick] + areas[rest] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = inter / union
    valid = (w > 0) & (h > 0) & (inter > 0) & (areas[pick] > 0) & (areas[rest] > 0) & (union > 0)
    return valid & (iou > iou_threshold)


def _select(scores, corners, areas, max_boxes: int, iou_threshold, score_threshold):
    """Box indices kept for one (batch, class), in selection order."""
    candidates = np.arange(scores.shape[0])
    if score_threshold is not None:
        candidates = candidates[scores > score_threshold]
    candidates = candidates[np.argsort(-scores[candidates], kind="stable")]
    chosen = []
    while candidates.size and len(chosen) < max_boxes:
        pick, candidates = candidates[0], candidates[1:]
        chosen.append(int(pick))
        candidates = candidates[~_suppressed(corners, areas, pick, candidates, iou_threshold)]
    return chosen


def _scalar(value, default):
    value = _host(value)
    return default if value is None or value.size == 0 else value.reshape(-1)[0]


@kernel("NonMaxSuppression", since=10)
def non_max_suppression(xp, boxes, scores, max_output_boxes_per_class=None, iou_threshold=None,
                        score_threshold=None, /, *, center_point_box=0):
    """Selected boxes as (num_selected, 3) int64 rows of [batch, class, box]."""
    if center_point_box not in (0, 1):
        raise UnsupportedOpError(f"center_point_box={center_point_box} is not supported; use 0 or 1")
    b_host, s_host = _host(boxes), _host(scores)
    if b_host.ndim != 3 or b_host.shape[2] != 4 or s_host.ndim != 3 or s_host.shape[0] != b_host.shape[0] \
            or s_host.shape[2] != b_host.shape[1]:
        raise ShapeMismatchError(
            f"NonMaxSuppression needs boxes (B, N, 4) and scores (B, C, N), "
            f"got {b_host.shape} and {s_host.shape}")
    max_boxes = int(_scalar(max_output_boxes_per_class, 0))
    iou = b_host.dtype.type(_scalar(iou_threshold, 0.0))
    score_thr = _scalar(score_threshold, None)
    rows = []
    for batch in range(b_host.shape[0]):
        corners = _corners(b_host[batch], center_point_box)
        areas = (corners[2] - corners[0]) * (corners[3] - corners[1])
        for cls in range(s_host.shape[1]):
            if max_boxes <= 0:
                break
            for box in _select(s_host[batch, cls], corners, areas, max_boxes, iou, score_thr):
                rows.append((batch, cls, box))
    return xp.asarray(np.array(rows, dtype=np.int64).reshape(-1, 3))
