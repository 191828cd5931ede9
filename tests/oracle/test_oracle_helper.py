"""The oracle helper itself: its tolerance rejects what it should and accepts what it should."""

from __future__ import annotations

import numpy as np
import pytest


def _oracle_with_reference(oracle, shift_of_max: float):
    """An oracle whose onnxruntime outputs are moved by ``shift_of_max * max|ref|`` at one element."""
    fake = type(oracle)()
    real = fake.run_reference

    def shifted(model, feeds):
        refs = real(model, feeds)
        ref = refs[0].copy()
        ref.flat[0] += shift_of_max * np.max(np.abs(ref))
        return [ref, *refs[1:]]

    fake.run_reference = shifted
    return fake


def test_oracle_accepts_identical_outputs(zoo_model, oracle):
    errors = oracle.compare(zoo_model("tiny"), seed=3)
    assert errors[0] < 1e-6


def test_oracle_rejects_an_error_over_its_tolerance(zoo_model, oracle):
    with pytest.raises(AssertionError, match="max\\|infermux - onnxruntime\\|"):
        _oracle_with_reference(oracle, 1e-3).compare(zoo_model("tiny"), seed=3)


def test_oracle_accepts_an_error_under_its_tolerance(zoo_model, oracle):
    errors = _oracle_with_reference(oracle, 5e-5).compare(zoo_model("tiny"), seed=3)
    assert 2e-5 < errors[0] < 1e-4


def test_random_feeds_are_seeded_and_use_batch(zoo_model, oracle):
    model = zoo_model("tiny")
    a, b = oracle.random_feeds(model, seed=5, batch=3), oracle.random_feeds(model, seed=5, batch=3)
    assert a["input"].shape == (3, 16) and a["input"].dtype == np.float32
    np.testing.assert_array_equal(a["input"], b["input"])
