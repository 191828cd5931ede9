"""Recurrent layers: LSTM, GRU and RNN (forward, reverse, bidirectional; layout 0 and 1).

Each direction runs the same loop: the input projection of every time step is one matmul
(``X @ W^T`` plus the biases that do not depend on the state), then each step is one matmul with
``R^T`` (two for GRU with ``linear_before_reset=0``) and in-place gate math.  Sigmoid is
``0.5 * tanh(0.5 x) + 0.5``, computed in place.

``sequence_lens`` follows onnxruntime: past its length a batch entry's state stops changing and
its ``Y`` rows are zero; the reverse direction starts at each entry's own last step.
``activations`` lists the cell's functions per direction (f, g[, h]); ``activation_alpha`` and
``activation_beta`` are consumed in order by the functions that take them.  Missing values take
the ONNX operators' defaults, as the spec says (onnxruntime instead uses 0 for Affine,
ThresholdedRelu and ScaledTanh).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from infermux.errors import ShapeMismatchError, UnsupportedOpError
from infermux.ops.conv import compute_dtype
from infermux.ops.registry import kernel

__all__: list[str] = []


# ---- activation functions (in place on a fresh temporary) ----------------------------------


def _sigmoid(xp, a, alpha, beta):
    a *= 0.5
    xp.tanh(a, out=a)
    a *= 0.5
    a += 0.5
    return a


def _tanh(xp, a, alpha, beta):
    return xp.tanh(a, out=a)


def _relu(xp, a, alpha, beta):
    return xp.maximum(a, 0, out=a)


def _affine(xp, a, alpha, beta):
    a *= alpha
    a += beta
    return a


def _leaky_relu(xp, a, alpha, beta):
    return xp.where(a >= 0, a, a * alpha)


def _thresholded_relu(xp, a, alpha, beta):
    return xp.where(a > alpha, a, 0).astype(a.dtype, copy=False)


def _scaled_tanh(xp, a, alpha, beta):
    a *= beta
    xp.tanh(a, out=a)
    a *= alpha
    return a


def _hard_sigmoid(xp, a, alpha, beta):
    a *= alpha
    a += beta
    return xp.clip(a, 0, 1, out=a)


def _elu(xp, a, alpha, beta):
    return xp.where(a >= 0, a, (xp.exp(xp.minimum(a, 0)) - 1) * alpha)


def _softsign(xp, a, alpha, beta):
    return a / (1 + xp.abs(a))


def _softplus(xp, a, alpha, beta):
    return xp.logaddexp(a, 0).astype(a.dtype, copy=False)


# name -> (function, default alpha or None if it takes none, default beta or None)
_ACTIVATIONS: dict[str, tuple[Callable, float | None, float | None]] = {
    "sigmoid": (_sigmoid, None, None),
    "tanh": (_tanh, None, None),
    "relu": (_relu, None, None),
    "affine": (_affine, 1.0, 0.0),
    "leakyrelu": (_leaky_relu, 0.01, None),
    "thresholdedrelu": (_thresholded_relu, 1.0, None),
    "scaledtanh": (_scaled_tanh, 1.0, 1.0),
    "hardsigmoid": (_hard_sigmoid, 0.2, 0.5),
    "elu": (_elu, 1.0, None),
    "softsign": (_softsign, None, None),
    "softplus": (_softplus, None, None),
}


@dataclasses.dataclass(frozen=True)
class Activation:
    """One activation function with its alpha and beta bound."""

    fn: Callable
    alpha: float
    beta: float

    def __call__(self, xp, a):
        return self.fn(xp, a, self.alpha, self.beta)


def parse_activations(activations, alphas, betas, defaults: tuple[str, ...], num_directions: int):
    """Per direction, the cell's activation functions (len(defaults) of them)."""
    names = list(activations) if activations else list(defaults) * num_directions
    if len(names) == len(defaults) and num_directions == 2:
        names = names * 2
    if len(names) != len(defaults) * num_directions:
        raise ShapeMismatchError(
            f"'activations' has {len(names)} entries; expected {len(defaults)} per direction "
            f"x {num_directions} directions")
    alphas, betas = list(alphas or []), list(betas or [])
    bound = []
    for name in names:
        try:
            fn, alpha, beta = _ACTIVATIONS[name.lower()]
        except KeyError:
            raise UnsupportedOpError(
                f"activation '{name}' is not supported; use one of {sorted(_ACTIVATIONS)}") from None
        if alpha is not None and alphas:
            alpha = float(alphas.pop(0))
        if beta is not None and betas:
            beta = float(betas.pop(0))
        bound.append(Activation(fn, alpha or 0.0, beta or 0.0))
    n = len(defaults)
    return [bound[d * n:(d + 1) * n] for d in range(num_directions)]


# ---- shared driver ------------------------------------------------------------------------


@dataclasses.dataclass
class _Sequence:
    """The time-major input of one layer and what masking its sequence lengths need."""

    x: object              # (T, B, I)
    lengths: object | None  # (B,) int64 when some entry is shorter than T, else None
    reverse_index: object | None  # (T, B, 1) gather index reversing each entry within its length


def _prepare_sequence(xp, x, sequence_lens, layout: int, reverse: bool) -> _Sequence:
    if x.ndim != 3:
        raise ShapeMismatchError(f"recurrent input X must be rank 3, got shape {x.shape}")
    x = x.transpose(1, 0, 2) if layout else x
    steps, batch = x.shape[:2]
    lengths = None
    if sequence_lens is not None:
        lens = sequence_lens.astype(np.int64).reshape(-1)
        if lens.shape[0] != batch:
            raise ShapeMismatchError(f"sequence_lens has {lens.shape[0]} entries for batch {batch}")
        if bool((lens < steps).any()):
            lengths = lens
    reverse_index = None
    if reverse and lengths is not None:
        t = xp.arange(steps, dtype=np.int64)[:, None]
        reverse_index = xp.where(t < lengths, lengths - 1 - t, t)[:, :, None]
    return _Sequence(x, lengths, reverse_index)


def _in_direction(xp, seq: _Sequence, values, reverse: bool):
    """``values`` (T, B, ...) in processing order for one direction (an involution)."""
    if not reverse:
        return values
    if seq.reverse_index is None:
        return values[::-1]
    return xp.take_along_axis(values, seq.reverse_index, axis=0)


def _run_direction(xp, seq: _Sequence, xw, states, step, reverse: bool):
    """Run ``step(xw_t, states) -> (h, states)`` over time; return Y (T, B, H) and final states."""
    xw = _in_direction(xp, seq, xw, reverse)
    steps = xw.shape[0]
    y = xp.zeros((steps,) + states[0].shape, dtype=states[0].dtype)
    for t in range(steps):
        h, new_states = step(xw[t], states)
        if seq.lengths is None:
            states = new_states
            y[t] = h
            continue
        alive = (t < seq.lengths)[:, None]
        states = tuple(xp.where(alive, new, old) for new, old in zip(new_states, states))
        y[t] = xp.where(alive, h, 0)
    return _in_direction(xp, seq, y, reverse), states


def _directions(direction: str):
    if direction == "forward":
        return (False,)
    if direction == "reverse":
        return (True,)
    if direction == "bidirectional":
        return (False, True)
    raise UnsupportedOpError(
        f"direction '{direction}' is not supported; use forward, reverse or bidirectional")


def _initial(xp, value, layout: int, shape, dtype):
    """An initial state as (D, B, H) in the compute dtype (zeros when absent)."""
    if value is None:
        return xp.zeros(shape, dtype=dtype)
    value = value.transpose(1, 0, 2) if layout else value
    if value.shape != shape:
        raise ShapeMismatchError(f"initial state has shape {value.shape}, expected {shape}")
    return value.astype(dtype)


def _outputs(xp, ys, finals, layout: int, dtype):
    """Stack per-direction results into ONNX's Y (T, D, B, H) and state outputs (D, B, H)."""
    y = xp.stack(ys, axis=1)
    states = [xp.stack(f, axis=0) for f in finals]
    if layout:
        y = y.transpose(2, 0, 1, 3)
        states = [s.transpose(1, 0, 2) for s in states]
    return tuple(xp.ascontiguousarray(a).astype(dtype, copy=False) for a in [y, *states])


def _check_weights(w, r, gates: int, hidden_size):
    hidden = r.shape[-1]
    if w.ndim != 3 or r.ndim != 3 or w.shape[1] != gates * hidden or r.shape[1] != gates * hidden:
        raise ShapeMismatchError(
            f"weights W {w.shape} and R {r.shape} must be (D, {gates}*hidden, ...) with hidden = R.shape[2]")
    if hidden_size is not None and int(hidden_size) != hidden:
        raise ShapeMismatchError(f"hidden_size={hidden_size} but R has hidden size {hidden}")
    return hidden


def _project(xp, x, w, bias):
    """X @ W^T + bias for all time steps at once: (T, B, gates*H)."""
    steps, batch, width = x.shape
    xw = xp.matmul(x.reshape(steps * batch, width), w.T)
    xw += bias
    return xw.reshape(steps, batch, -1)


def _clip(xp, a, clip):
    if clip is not None:
        xp.clip(a, -clip, clip, out=a)
    return a


# ---- RNN ------------------------------------------------------------------------------------


@kernel("RNN", since=1)
def rnn(xp, x, w, r, b=None, sequence_lens=None, initial_h=None, /, *, activation_alpha=None,
        activation_beta=None, activations=None, clip=None, direction="forward", hidden_size=None,
        layout=0):
    """Simple recurrent layer: H = f(X W^T + H R^T + Wb + Rb); outputs Y and Y_h."""
    dirs = _directions(direction)
    hidden = _check_weights(w, r, 1, hidden_size)
    acts = parse_activations(activations, activation_alpha, activation_beta, ("Tanh",), len(dirs))
    dt = compute_dtype(x.dtype)
    batch = x.shape[0 if layout else 1]
    h0 = _initial(xp, initial_h, layout, (len(dirs), batch, hidden), dt)
    ys, finals = [], []
    for d, reverse in enumerate(dirs):
        seq = _prepare_sequence(xp, x.astype(dt, copy=False), sequence_lens, layout, reverse)
        bias = 0 if b is None else b[d, :hidden].astype(dt) + b[d, hidden:].astype(dt)
        xw = _project(xp, seq.x, w[d].astype(dt, copy=False), bias)
        rt = r[d].astype(dt, copy=False).T  # a transposed view: BLAS takes it as is
        f = acts[d][0]

        def step(xw_t, states, rt=rt, f=f):
            h = f(xp, _clip(xp, xw_t + xp.matmul(states[0], rt), clip))
            return h, (h,)

        y, (h,) = _run_direction(xp, seq, xw, (h0[d],), step, reverse)
        ys.append(y)
        finals.append(h)
    return _outputs(xp, ys, [finals], layout, x.dtype)


# ---- GRU ------------------------------------------------------------------------------------


def _gru_step(xp, rt, rb_h, acts, clip, linear_before_reset: int, hidden: int):
    """One GRU step (gate order z, r, h) as a closure over the direction's weights."""
    f, g = acts
    rt_zr, rt_h = rt[:, :2 * hidden], rt[:, 2 * hidden:]

    def step(xw_t, states):
        (h,) = states
        if linear_before_reset:
            hr = xp.matmul(h, rt)
            zr = xw_t[:, :2 * hidden] + hr[:, :2 * hidden]
        else:
            zr = xw_t[:, :2 * hidden] + xp.matmul(h, rt_zr)
        zr = f(xp, _clip(xp, zr, clip))
        z, reset = zr[:, :hidden], zr[:, hidden:]
        if linear_before_reset:
            cand = hr[:, 2 * hidden:]
            cand += rb_h
            cand *= reset
        else:
            cand = xp.matmul(reset * h, rt_h)
            cand += rb_h
        cand += xw_t[:, 2 * hidden:]
        n = g(xp, _clip(xp, cand, clip))
        h_new = h - n  # n + z * (h - n) == (1 - z) * n + z * h
        h_new *= z
        h_new += n
        return h_new, (h_new,)

    return step


@kernel("GRU", since=1)
def gru(xp, x, w, r, b=None, sequence_lens=None, initial_h=None, /, *, activation_alpha=None,
        activation_beta=None, activations=None, clip=None, direction="forward", hidden_size=None,
        layout=0, linear_before_reset=0):
    """Gated recurrent unit (gates z, r, h); outputs Y and Y_h."""
    dirs = _directions(direction)
    hidden = _check_weights(w, r, 3, hidden_size)
    acts = parse_activations(activations, activation_alpha, activation_beta, ("Sigmoid", "Tanh"), len(dirs))
    dt = compute_dtype(x.dtype)
    batch = x.shape[0 if layout else 1]
    h0 = _initial(xp, initial_h, layout, (len(dirs), batch, hidden), dt)
    ys, finals = [], []
    for d, reverse in enumerate(dirs):
        seq = _prepare_sequence(xp, x.astype(dt, copy=False), sequence_lens, layout, reverse)
        wb = xp.zeros(3 * hidden, dtype=dt) if b is None else b[d, :3 * hidden].astype(dt)
        rb = xp.zeros(3 * hidden, dtype=dt) if b is None else b[d, 3 * hidden:].astype(dt)
        bias = xp.concatenate([wb[:2 * hidden] + rb[:2 * hidden], wb[2 * hidden:]])
        xw = _project(xp, seq.x, w[d].astype(dt, copy=False), bias)
        rt = r[d].astype(dt, copy=False).T  # a transposed view: BLAS takes it as is
        step = _gru_step(xp, rt, rb[2 * hidden:], acts[d], clip, linear_before_reset, hidden)
        y, (h,) = _run_direction(xp, seq, xw, (h0[d],), step, reverse)
        ys.append(y)
        finals.append(h)
    return _outputs(xp, ys, [finals], layout, x.dtype)


# ---- LSTM -----------------------------------------------------------------------------------


def _lstm_step(xp, rt, peep, acts, clip, input_forget: int, hidden: int):
    """One LSTM step (gate order i, o, f, c) as a closure over the direction's weights."""
    f, g, h_act = acts

    def gate_activations(gates, c):
        """(i, o, f, candidate); without peepholes i, o and f take one sigmoid, in place."""
        if peep is None:
            iof = f(xp, _clip(xp, gates[:, :3 * hidden], clip))
            i_g, o_g, f_g = iof[:, :hidden], iof[:, hidden:2 * hidden], iof[:, 2 * hidden:]
        else:
            i_g, f_g = gates[:, :hidden], gates[:, 2 * hidden:3 * hidden]
            i_g += peep[0] * c
            f_g += peep[2] * c
            i_g, f_g, o_g = f(xp, _clip(xp, i_g, clip)), f(xp, _clip(xp, f_g, clip)), None
        if input_forget:
            f_g = 1 - i_g
        return i_g, o_g, f_g, g(xp, _clip(xp, gates[:, 3 * hidden:], clip))

    def step(xw_t, states):
        h, c = states
        gates = xp.matmul(h, rt)
        gates += xw_t
        i_g, o_g, f_g, cand = gate_activations(gates, c)
        c_new = f_g * c
        cand *= i_g
        c_new += cand
        if o_g is None:  # peepholes: the output gate sees the new cell state
            o_g = gates[:, hidden:2 * hidden]
            o_g += peep[1] * c_new
            o_g = f(xp, _clip(xp, o_g, clip))
        h_new = h_act(xp, c_new.copy())
        h_new *= o_g
        return h_new, (h_new, c_new)

    return step


@kernel("LSTM", since=1)
def lstm(xp, x, w, r, b=None, sequence_lens=None, initial_h=None, initial_c=None, p=None, /, *,
         activation_alpha=None, activation_beta=None, activations=None, clip=None,
         direction="forward", hidden_size=None, input_forget=0, layout=0):
    """Long short-term memory (gates i, o, f, c; peepholes P); outputs Y, Y_h and Y_c."""
    dirs = _directions(direction)
    hidden = _check_weights(w, r, 4, hidden_size)
    acts = parse_activations(activations, activation_alpha, activation_beta,
                             ("Sigmoid", "Tanh", "Tanh"), len(dirs))
    dt = compute_dtype(x.dtype)
    batch = x.shape[0 if layout else 1]
    shape = (len(dirs), batch, hidden)
    h0, c0 = _initial(xp, initial_h, layout, shape, dt), _initial(xp, initial_c, layout, shape, dt)
    ys, final_h, final_c = [], [], []
    for d, reverse in enumerate(dirs):
        seq = _prepare_sequence(xp, x.astype(dt, copy=False), sequence_lens, layout, reverse)
        bias = 0 if b is None else b[d, :4 * hidden].astype(dt) + b[d, 4 * hidden:].astype(dt)
        xw = _project(xp, seq.x, w[d].astype(dt, copy=False), bias)
        rt = r[d].astype(dt, copy=False).T  # a transposed view: BLAS takes it as is
        peep = None if p is None else p[d].astype(dt).reshape(3, hidden)
        step = _lstm_step(xp, rt, peep, acts[d], clip, input_forget, hidden)
        y, (h, c) = _run_direction(xp, seq, xw, (h0[d], c0[d]), step, reverse)
        ys.append(y)
        final_h.append(h)
        final_c.append(c)
    return _outputs(xp, ys, [final_h, final_c], layout, x.dtype)
