"""DFT, STFT, the window functions and MelWeightMatrix against onnx.reference."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper
from onnx.reference import ReferenceEvaluator

from infermux.ops.registry import lookup


def oracle(op, inputs, attrs=None, *, opset, n_out=1, engine="ort"):
    """Run one ``op`` node (None: an omitted optional input) with onnxruntime or onnx.reference."""
    names = [f"in{i}" if v is not None else "" for i, v in enumerate(inputs)]
    node = helper.make_node(op, names, [f"out{i}" for i in range(n_out)], **(attrs or {}))
    graph_inputs = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
                    for n, v in zip(names, inputs) if n]
    outputs = [onnx.ValueInfoProto(name=f"out{i}") for i in range(n_out)]
    model = helper.make_model(helper.make_graph([node], "g", graph_inputs, outputs),
                              opset_imports=[helper.make_opsetid("", opset)], ir_version=10)
    feeds = {n: v for n, v in zip(names, inputs) if n}
    if engine == "ort":
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        return session.run(None, feeds)
    return ReferenceEvaluator(model).run(None, feeds)


def run(op, inputs, attrs=None, *, opset, n_out=1):
    """Call the registered kernel the way the runner does."""
    k = lookup(op, opset)
    kwargs = dict(attrs or {})
    if k.wants_num_outputs:
        kwargs["_num_outputs"] = n_out
    if k.wants_used_outputs:
        kwargs["_used_outputs"] = (True,) * n_out
    out = k.fn(np, *inputs, **kwargs)
    return (list(out) if isinstance(out, (tuple, list)) else [out])[:n_out]


def check(op, inputs, attrs=None, *, opset, n_out=1, engine="ort", rtol=1e-5, atol=1e-6):
    """Kernel outputs equal the oracle's: same dtype, shape and values within tolerance."""
    expected = oracle(op, inputs, attrs, opset=opset, n_out=n_out, engine=engine)
    got = run(op, inputs, attrs, opset=opset, n_out=n_out)
    assert len(got) == len(expected)
    for e, g in zip(expected, got):
        assert (g.dtype, g.shape) == (e.dtype, e.shape)
        np.testing.assert_allclose(g.astype(np.float64), e.astype(np.float64), rtol=rtol, atol=atol)


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
