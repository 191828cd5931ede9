"""The benchmark zoo (benchmarks/make_models.py) agrees with onnxruntime at batch 1.

Tolerance: see ``Oracle`` in tests/conftest.py (max|out - ref| <= 1e-4 * max|ref| + 1e-6).
"""

from __future__ import annotations

import pytest

ZOO = ["tiny", "mlp", "lstm", "resnet18", "mobilenetv2", "bert4"]
SLOW = {"bert4"}  # ~5 s: building 28M weights and running them twice


def test_zoo_lists_every_builder(make_models):
    assert sorted(make_models.BUILDERS) == sorted(ZOO)


@pytest.mark.parametrize("name", [pytest.param(n, marks=[pytest.mark.slow] if n in SLOW else [])
                                  for n in ZOO])
def test_zoo_model_matches_onnxruntime(name, zoo_model, oracle):
    model = zoo_model(name)
    errors = oracle.compare(model, seed=1)
    assert len(errors) == len(model.graph.output)


def test_zoo_model_batch_4_matches_onnxruntime(zoo_model, oracle, make_models):
    # the symbolic batch dimension "N" is honoured, not fixed at the first size seen
    model = zoo_model("resnet18")
    feeds = oracle.random_feeds(model, seed=2, batch=4)
    assert feeds["input"].shape == make_models.INPUT_SHAPES["resnet18"](4)
    oracle.compare(model, feeds)
