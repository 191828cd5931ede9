"""Optimizer update rules of domain ``ai.onnx.preview.training``: Adagrad, Adam and Momentum.

Each op takes a learning rate ``R`` and an update count ``T`` (both scalars), then one group of
tensors per optimized parameter, laid out by role: ``X1..Xn, G1..Gn, V1..Vn, H1..Hn`` (the
state tensors each op keeps).  It returns the new parameters, then the new states, in the same
order.  They are plain elementwise math, so an inference runtime can run a graph that applies
one update step.  Results have the parameters' dtype; the scalars are cast to it first so that
a float64 ``R`` does not promote float32 parameters.
"""

from __future__ import annotations

import numpy as np

from infermux.errors import ShapeMismatchError, UnsupportedOpError
from infermux.ops.registry import kernel

__all__ = []

TRAINING_DOMAIN = "ai.onnx.preview.training"


def _groups(op: str, tensors: tuple, roles: int) -> list[tuple]:
    """Split ``X1..Xn, G1..Gn, ...`` (``roles`` blocks of n) into one tuple per parameter."""
    if not tensors or len(tensors) % roles:
        raise ShapeMismatchError(f"{op} takes R, T and {roles} tensors per optimized parameter, "
                                 f"got {len(tensors)} tensors after R and T")
    n = len(tensors) // roles
    return [tuple(tensors[i + role * n] for role in range(roles)) for i in range(n)]


def _scalar(xp, value, dtype):
    """A 0-d input (R or a value derived from T) as a 0-d array of ``dtype``."""
    return xp.asarray(value).reshape(()).astype(dtype)


def _by_role(results: list[tuple]) -> tuple:
    """Per-parameter results ``[(x1, s1), (x2, s2)]`` as ONNX orders them: ``x1, x2, s1, s2``."""
    return tuple(r[role] for role in range(len(results[0])) for r in results)


@kernel("Adagrad", since=1, domain=TRAINING_DOMAIN)
def adagrad(xp, r, t, /, *tensors, decay_factor=0.0, epsilon=1e-6, norm_coefficient=0.0):
    """X_new = X - R / (1 + T * decay_factor) * G' / (sqrt(H_new) + epsilon), with
    G' = G + norm_coefficient * X and H_new = H + G'^2.  Inputs R, T, X..., G..., H..."""
    results = []
    for x, g, h in _groups("Adagrad", tensors, 3):
        rate = _scalar(xp, r / (1.0 + t.astype(np.float64) * decay_factor), x.dtype)
        g_reg = norm_coefficient * x + g
        h_new = h + g_reg * g_reg
        x_new = x - rate * g_reg / (xp.sqrt(h_new) + epsilon)
        results.append((x_new.astype(x.dtype), h_new.astype(h.dtype)))
    return _by_role(results)


@kernel("Adam", since=1, domain=TRAINING_DOMAIN)
def adam(xp, r, t, /, *tensors, alpha=0.9, beta=0.999, epsilon=1e-6, norm_coefficient=0.0,
         norm_coefficient_post=0.0):
    """Adam with bias correction when T > 0.  Inputs R, T, X..., G..., V..., H...; outputs
    X_new..., V_new..., H_new... (V: first moment, H: second moment)."""
    t64 = xp.asarray(t).astype(np.float64)
    steps = xp.maximum(t64, 1.0)  # T = 0 takes no correction; avoid 0/0 on the unused branch
    corrected = r * xp.sqrt(1.0 - beta ** steps) / (1.0 - alpha ** steps)
    results = []
    for x, g, v, h in _groups("Adam", tensors, 4):
        rate = _scalar(xp, xp.where(t64 > 0, corrected, r), x.dtype)
        g_reg = norm_coefficient * x + g
        v_new = alpha * v + (1.0 - alpha) * g_reg
        h_new = beta * h + (1.0 - beta) * (g_reg * g_reg)
        x_new = x - rate * (v_new / (xp.sqrt(h_new) + epsilon))
        x_final = (1.0 - norm_coefficient_post) * x_new
        results.append((x_final.astype(x.dtype), v_new.astype(v.dtype), h_new.astype(h.dtype)))
    return _by_role(results)


@kernel("Momentum", since=1, domain=TRAINING_DOMAIN)
def momentum(xp, r, t, /, *tensors, alpha=None, beta=None, mode=None, norm_coefficient=None):
    """SGD with momentum: V_new = alpha * V + beta' * G', with beta' = 1 at the first step
    (T = 0) and G' = G + norm_coefficient * X.  ``mode="standard"``: X_new = X - R * V_new;
    ``"nesterov"``: X_new = X - R * (G' + alpha * V_new).  All four attributes are required."""
    missing = [name for name, value in (("alpha", alpha), ("beta", beta), ("mode", mode),
                                        ("norm_coefficient", norm_coefficient)) if value is None]
    if missing:
        raise ValueError(f"Momentum needs the attributes {', '.join(missing)}")
    if mode not in ("standard", "nesterov"):
        raise UnsupportedOpError(f"Momentum attribute mode={mode!r} is not supported: use "
                                 f"'standard' or 'nesterov'")
    results = []
    for x, g, v in _groups("Momentum", tensors, 3):
        rate = _scalar(xp, r, x.dtype)
        beta_t = _scalar(xp, xp.where(xp.asarray(t) > 0, beta, 1.0), x.dtype)
        g_reg = norm_coefficient * x + g
        v_new = alpha * v + beta_t * g_reg
        step = v_new if mode == "standard" else g_reg + alpha * v_new
        results.append(((x - rate * step).astype(x.dtype), v_new.astype(v.dtype)))
    return _by_role(results)
