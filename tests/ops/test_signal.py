"""DFT, STFT, the window functions and MelWeightMatrix against onnx.reference."""

from __future__ import annotations

import numpy as np
import pytest

from tests.ops.op_oracle import check, run


RNG = np.random.default_rng(0)
REAL = RNG.standard_normal((2, 8, 6, 1)).astype(np.float32)
COMPLEX = RNG.standard_normal((2, 8, 6, 2)).astype(np.float32)


def scalar(v):
    return np.array(v, dtype=np.int64)


@pytest.mark.parametrize("signal, attrs", [(REAL, {}), (REAL, {"onesided": 1}),
                                           (COMPLEX, {}), (COMPLEX, {"inverse": 1})],
                         ids=["real", "rfft", "complex", "inverse"])
@pytest.mark.parametrize("axis", [1, -2])
def test_dft_20(signal, attrs, axis):
    check("DFT", [signal, None, scalar(axis)], attrs, opset=20, engine="ref", rtol=1e-4,
          atol=1e-5)
    check("DFT", [signal, scalar(10), scalar(axis)], attrs, opset=20, engine="ref", rtol=1e-4,
          atol=1e-5)


def test_dft_17_and_irfft():
    check("DFT", [REAL], {"axis": 2}, opset=17, engine="ref", rtol=1e-4, atol=1e-5)
    half = RNG.standard_normal((2, 5, 3, 2)).astype(np.float32)
    check("DFT", [half], {"axis": 1, "inverse": 1, "onesided": 1}, opset=17, engine="ref",
          rtol=1e-4, atol=1e-5)


def test_stft():
    signal = RNG.standard_normal((2, 64, 1)).astype(np.float32)
    window = np.hanning(16).astype(np.float32)
    check("STFT", [signal, scalar(8), window], opset=17, engine="ref", rtol=1e-4, atol=1e-5)
    check("STFT", [signal, scalar(6), None, scalar(16)], {"onesided": 0}, opset=17,
          engine="ref", rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("op", ["HannWindow", "HammingWindow", "BlackmanWindow"])
@pytest.mark.parametrize("periodic", [0, 1])
def test_windows(op, periodic):
    check(op, [np.array(10, np.int32)], {"periodic": periodic, "output_datatype": 11},
          opset=17, engine="ref", atol=1e-9)


def test_mel_weight_matrix():
    inputs = [np.array(v, np.int64) for v in (8, 64, 16000)]
    inputs += [np.array(100.0, np.float32), np.array(7000.0, np.float32)]
    check("MelWeightMatrix", inputs, opset=17, engine="ref")


def test_dft_on_the_complex_axis_raises():
    with pytest.raises(ValueError, match="not a signal axis"):
        run("DFT", [REAL, None, scalar(-1)], opset=20)
