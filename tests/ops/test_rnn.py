"""LSTM, GRU and RNN against onnxruntime (directions, sequence lengths, states, layout, activations)."""

from __future__ import annotations

import numpy as np
import pytest

from infermux.errors import ShapeMismatchError, UnsupportedOpError
from infermux.ops.registry import lookup
from tests.ops import op_oracle

RNG = np.random.default_rng(2)
GATES = {"RNN": 1, "GRU": 3, "LSTM": 4}


def check(op, inputs, attrs):
    """All outputs (Y, Y_h[, Y_c]) agree with onnxruntime."""
    while inputs and inputs[-1] is None:
        inputs = inputs[:-1]
    op_oracle.check(op, inputs, attrs, opset=14, n_out=3 if op == "LSTM" else 2, rtol=1e-5,
                    atol=1e-5)


def layer(op, *, steps=5, batch=3, width=4, hidden=6, directions=1, layout=0, lengths=None,
          initial=False, peepholes=False):
    """Random inputs for one recurrent node, in ONNX input order."""
    gates = GATES[op]
    x_shape = (batch, steps, width) if layout else (steps, batch, width)
    state_shape = (batch, directions, hidden) if layout else (directions, batch, hidden)
    scale = 1 / np.sqrt(hidden)
    inputs = [RNG.standard_normal(x_shape).astype(np.float32),
              (RNG.standard_normal((directions, gates * hidden, width)) * scale).astype(np.float32),
              (RNG.standard_normal((directions, gates * hidden, hidden)) * scale).astype(np.float32),
              RNG.standard_normal((directions, 2 * gates * hidden)).astype(np.float32),
              None if lengths is None else np.array(lengths, np.int32),
              RNG.standard_normal(state_shape).astype(np.float32) if initial else None]
    if op == "LSTM":
        inputs.append(RNG.standard_normal(state_shape).astype(np.float32) if initial else None)
        inputs.append(RNG.standard_normal((directions, 3 * hidden)).astype(np.float32) if peepholes else None)
    return inputs


@pytest.mark.parametrize("op", ["RNN", "GRU", "LSTM"])
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
def test_directions_with_sequence_lengths_and_initial_state(op, direction):
    dirs = 2 if direction == "bidirectional" else 1
    inputs = layer(op, directions=dirs, lengths=[5, 2, 4], initial=True, peepholes=True)
    check(op, inputs, {"hidden_size": 6, "direction": direction})


@pytest.mark.parametrize("op", ["RNN", "GRU", "LSTM"])
def test_batch_major_layout_is_the_transposed_sequence_major_layer(op):
    """onnxruntime has no layout=1, so compare with layout=0 on transposed tensors."""
    inputs = layer(op, directions=2, layout=1, lengths=[5, 3, 1], initial=True)
    attrs = {"hidden_size": 6, "direction": "bidirectional"}
    k = lookup(op, 14).fn
    batch_major = k(np, *inputs, **attrs, layout=1)
    swapped = [v if v is None or i in (1, 2, 3, 4, 7) else np.swapaxes(v, 0, 1)
               for i, v in enumerate(inputs)]
    seq_major = k(np, *swapped, **attrs)
    np.testing.assert_allclose(batch_major[0], seq_major[0].transpose(2, 0, 1, 3), rtol=1e-6, atol=1e-6)
    for b, s in zip(batch_major[1:], seq_major[1:], strict=True):
        np.testing.assert_allclose(b, np.swapaxes(s, 0, 1), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("linear_before_reset", [0, 1])
def test_gru_linear_before_reset_and_clip(linear_before_reset):
    inputs = layer("GRU", initial=True)
    check("GRU", inputs, {"hidden_size": 6, "linear_before_reset": linear_before_reset, "clip": 0.7})


def test_lstm_activations_with_alpha_beta_and_input_forget():
    inputs = layer("LSTM", peepholes=True, initial=True)
    attrs = {"hidden_size": 6, "activations": ["HardSigmoid", "LeakyRelu", "ScaledTanh"],
             "activation_alpha": [0.3, 0.1, 0.9], "activation_beta": [0.4, 1.2],
             "input_forget": 1}
    check("LSTM", inputs, attrs)


@pytest.mark.parametrize("activation, alpha, beta", [
    ("Relu", None, None), ("Sigmoid", None, None), ("Elu", None, None), ("Softsign", None, None),
    ("Softplus", None, None), ("LeakyRelu", None, None), ("HardSigmoid", None, None),
    # onnxruntime's defaults for these differ from the ONNX operators' (which infermux follows)
    ("Affine", [0.5], [0.3]), ("ThresholdedRelu", [0.4], None), ("ScaledTanh", [1.5], [0.7]),
])
def test_rnn_activation_functions(activation, alpha, beta):
    attrs = {"hidden_size": 6, "activations": [activation]}
    if alpha:
        attrs["activation_alpha"] = alpha
    if beta:
        attrs["activation_beta"] = beta
    check("RNN", layer("RNN"), attrs)


def test_recurrent_errors_name_the_attribute():
    inputs = layer("RNN")[:4]
    with pytest.raises(UnsupportedOpError, match="direction"):
        lookup("RNN", 14).fn(np, *inputs, direction="sideways")
    with pytest.raises(UnsupportedOpError, match="activation 'Swish'"):
        lookup("RNN", 14).fn(np, *inputs, activations=["Swish"])
    with pytest.raises(ShapeMismatchError, match="hidden_size"):
        lookup("RNN", 14).fn(np, *inputs, hidden_size=5)
