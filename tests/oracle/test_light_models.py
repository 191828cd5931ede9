"""The real-architecture ``light_*`` models shipped in onnx agree with onnxruntime.

The shipped files fill every weight with ``ConstantOfShape(0.02)``, so all channels and classes
are identical and the final Softmax is uniform: a weak check of the arithmetic.  Each model is
therefore also checked with its weights made distinct (each constant times a seeded uniform
factor in [0.5, 1.5]) and with the logits before the final Softmax exposed as an extra output.
Tolerance: see ``Oracle`` in tests/conftest.py (max|out - ref| <= 1e-4 * max|ref| + 1e-6).
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from infermux.conformance.data import light_models_dir
from tests.helpers import with_random_weights

LIGHT = sorted(p.stem for p in light_models_dir().glob("light_*.onnx"))
SLOW = {"light_bvlc_alexnet", "light_vgg19", "light_zfnet512"}  # 4-25 s each: 60-140M weights


def _params():
    return [pytest.param(n, marks=[pytest.mark.slow] if n in SLOW else []) for n in LIGHT]


def _load(name: str) -> onnx.ModelProto:
    return onnx.load(str(light_models_dir() / f"{name}.onnx"))


def test_every_light_model_is_listed():
    assert len(LIGHT) == 9


@pytest.mark.parametrize("name", _params())
def test_light_model_matches_onnxruntime(name, oracle):
    model = _load(name)
    errors = oracle.compare(model, seed=0)
    assert len(errors) == len(model.graph.output)


@pytest.mark.parametrize("name", _params())
def test_light_model_with_random_weights_matches_onnxruntime(name, oracle):
    model = with_random_weights(_load(name), seed=1)
    feeds = oracle.random_feeds(model, seed=1)
    refs = oracle.run_reference(model, feeds)
    assert np.ptp(refs[-1]) > 0, "the randomised model should no longer give identical classes"
    oracle.compare(model, feeds)
