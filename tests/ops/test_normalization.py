"""Normalisations against onnxruntime / onnx.reference."""

from __future__ import annotations

import numpy as np
import pytest

from infermux.errors import UnsupportedOpError
from tests.ops.op_oracle import check, run


RNG = np.random.default_rng(0)
X = RNG.standard_normal((2, 4, 3, 5)).astype(np.float32)
C = X.shape[1]


def per_channel(low=0.5, high=1.5):
    return RNG.uniform(low, high, C).astype(np.float32)


def test_batch_norm_inference_opsets():
    params = [per_channel(), per_channel(-1, 1), per_channel(-1, 1), per_channel()]
    check("BatchNormalization", [X, *params], {"epsilon": 1e-3}, opset=15)
    check("BatchNormalization", [X, *params], opset=9)


def test_batch_norm_training_mode_outputs():
    params = [per_channel(), per_channel(-1, 1), per_channel(-1, 1), per_channel()]
    check("BatchNormalization", [X, *params], {"training_mode": 1, "momentum": 0.8},
          opset=15, n_out=3, engine="ref")


@pytest.mark.parametrize("axis", [-1, 1, 0])
def test_layer_norm_with_mean_and_inv_std_dev(axis):
    shape = X.shape[axis:]
    scale = RNG.standard_normal(shape).astype(np.float32)
    bias = RNG.standard_normal(shape).astype(np.float32)
    check("LayerNormalization", [X, scale, bias], {"axis": axis}, opset=17, n_out=3, rtol=1e-4)
    check("LayerNormalization", [X, scale], {"axis": axis, "epsilon": 1e-2}, opset=17, rtol=1e-4)


def test_layer_norm_does_not_modify_its_input():
    x = X.copy()
    run("LayerNormalization", [x, np.ones(5, np.float32), np.zeros(5, np.float32)], opset=17)
    np.testing.assert_array_equal(x, X)


def test_layer_norm_float16_statistics_are_float32():
    out = run("LayerNormalization", [X.astype(np.float16), np.ones(5, np.float16)], opset=17,
              n_out=3)
    assert [o.dtype for o in out] == [np.float16, np.float32, np.float32]


def test_instance_and_group_normalization():
    check("InstanceNormalization", [X, per_channel(), per_channel(-1, 1)], opset=6, rtol=1e-4)
    check("GroupNormalization", [X, per_channel(), per_channel(-1, 1)], {"num_groups": 2},
          opset=21, engine="ref", rtol=1e-4)
    groups = [RNG.uniform(0.5, 1.5, 2).astype(np.float32) for _ in range(2)]
    check("GroupNormalization", [X, *groups], {"num_groups": 2}, opset=18, engine="ref",
          rtol=1e-4)


@pytest.mark.parametrize("axis", [-1, 2])
def test_rms_normalization(axis):
    scale = RNG.standard_normal(X.shape[axis:]).astype(np.float32)
    check("RMSNormalization", [X, scale], {"axis": axis}, opset=23, engine="ref", rtol=1e-4)


def test_lrn_mvn_lp_norm():
    check("LRN", [X], {"size": 3, "alpha": 0.01, "beta": 0.5, "bias": 2.0}, opset=13, rtol=1e-4)
    check("MeanVarianceNormalization", [X], opset=13, rtol=1e-4)
    check("MeanVarianceNormalization", [X], {"axes": [2, 3]}, opset=13, rtol=1e-4)
    x = np.array([[3, -4, 0], [0, 0, 0]], dtype=np.float32)
    check("LpNormalization", [x], {"p": 2}, opset=1)
    (out,) = run("LpNormalization", [x], {"p": 1}, opset=1)  # abs, not the signed sum
    np.testing.assert_allclose(out, [[3 / 7, -4 / 7, 0], [0, 0, 0]], rtol=1e-6)


def test_unsupported_attribute_values_raise():
    with pytest.raises(UnsupportedOpError, match="p=3"):
        run("LpNormalization", [X], {"p": 3}, opset=1)
    with pytest.raises(UnsupportedOpError, match="stash_type=0"):
        run("LayerNormalization", [X, np.ones(5, np.float32)], {"stash_type": 0}, opset=17)
