"""Pad (opsets 2, 11, 18, 19) against onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest

from infermux.errors import ShapeMismatchError, UnsupportedOpError
from tests.ops.op_oracle import check, run


def ints(*v):
    return np.array(v, dtype=np.int64)


X = np.arange(60, dtype=np.float32).reshape(3, 5, 4)


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge", "wrap"])
@pytest.mark.parametrize("pads", [(1, -1, 1, 1, 1, -1), (0, 2, 1, -1, 0, 0), (-1, 2, -1, 1, -2, -1)])
def test_pad_modes_with_negative_pads(mode, pads):
    check("Pad", [X, ints(*pads)], {"mode": mode}, opset=19)


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge", "wrap"])
def test_pad_18_axes_and_constant_value(mode):
    check("Pad", [X, ints(1, 2, 3, 0), np.array(2.5, np.float32), ints(-1, 0)], {"mode": mode},
          opset=19)


def test_pad_int_data_and_opset_2_attributes():
    check("Pad", [X.astype(np.int32), ints(0, 1, 0, 0, 2, 0), np.array(-7, np.int32)], opset=13)
    check("Pad", [X], {"mode": "constant", "pads": [1, 0, 0, 0, 1, 2], "value": 1.5}, opset=2)


def test_pad_errors():
    with pytest.raises(ShapeMismatchError, match="pads for 3 axes"):
        run("Pad", [X, ints(1, 1)], opset=13)
    with pytest.raises(UnsupportedOpError, match="mode 'symmetric'"):
        run("Pad", [X, ints(0, 0, 0, 0, 0, 0)], {"mode": "symmetric"}, opset=13)
