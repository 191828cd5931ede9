"""NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss against onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest

from infermux.errors import UnsupportedOpError
from tests.ops.op_oracle import check, run


RNG = np.random.default_rng(0)
SCORES = RNG.standard_normal((3, 5, 2, 4)).astype(np.float32)
TARGET = RNG.integers(0, 5, (3, 2, 4)).astype(np.int64)
TARGET[0, 0, :2] = 1  # some entries equal ignore_index
WEIGHT = RNG.uniform(0.2, 2.0, 5).astype(np.float32)


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("weight", [None, WEIGHT])
@pytest.mark.parametrize("ignore_index", [None, 1])
def test_nll_loss(reduction, weight, ignore_index):
    attrs = {"reduction": reduction}
    if ignore_index is not None:
        attrs["ignore_index"] = ignore_index
    check("NegativeLogLikelihoodLoss", [SCORES, TARGET, weight], attrs, opset=13)


@pytest.mark.parametrize("reduction", ["none", "mean"])
def test_softmax_cross_entropy_with_log_prob(reduction):
    attrs = {"reduction": reduction, "ignore_index": 1}
    check("SoftmaxCrossEntropyLoss", [SCORES, TARGET, WEIGHT], attrs, opset=13, n_out=2,
          rtol=1e-5)
    check("SoftmaxCrossEntropyLoss", [SCORES[:, :, 0, 0], TARGET[:, 0, 0]], opset=13)


def test_bad_reduction_and_shapes_raise():
    with pytest.raises(UnsupportedOpError, match="reduction='avg'"):
        run("NegativeLogLikelihoodLoss", [SCORES, TARGET], {"reduction": "avg"}, opset=13)
    with pytest.raises(ValueError, match="do not match"):
        run("NegativeLogLikelihoodLoss", [SCORES, TARGET[:, 0]], opset=13)
