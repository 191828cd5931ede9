"""Losses: NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss.

Both take scores of shape (N, C, d1, ...) and integer targets of shape (N, d1, ...).  A target
equal to ``ignore_index`` contributes no loss and no weight; ``reduction="mean"`` divides by the
summed weights of the targets that count (their number when there are no class weights).
"""

from __future__ import annotations

from infermux.errors import UnsupportedOpError
from infermux.ops.registry import kernel

__all__: list[str] = []

_REDUCTIONS = ("none", "sum", "mean")


def _nll(xp, log_prob, target, weight, ignore_index, reduction: str):
    """-log_prob[n, target[n, ...], ...] * weight[target], reduced."""
    if reduction not in _REDUCTIONS:
        raise UnsupportedOpError(f"attribute reduction={reduction!r} is not supported; "
                                 f"use one of {', '.join(_REDUCTIONS)}")
    if log_prob.ndim < 2 or target.shape != (log_prob.shape[0],) + log_prob.shape[2:]:
        raise ValueError(f"scores of shape {log_prob.shape} do not match targets of shape "
                         f"{target.shape}: expected (N, C, d1, ...) and (N, d1, ...)")
    dtype = log_prob.dtype
    ignored = None if ignore_index is None else target == ignore_index
    safe = target if ignored is None else xp.where(ignored, 0, target)
    loss = -xp.take_along_axis(log_prob, xp.expand_dims(safe, 1), axis=1)[:, 0]
    w = None if weight is None else weight[safe]
    if ignored is not None:
        w = xp.where(ignored, dtype.type(0), dtype.type(1) if w is None else w)
    if w is not None:
        loss *= w
    if reduction == "none":
        return loss
    total = loss.sum(dtype=dtype)
    if reduction == "sum":
        return total.astype(dtype)
    count = dtype.type(loss.size) if w is None else w.sum(dtype=dtype)
    return (total / count).astype(dtype)


@kernel("NegativeLogLikelihoodLoss", since=12)
def nll_loss(xp, log_prob, target, weight=None, /, *, reduction="mean", ignore_index=None):
    """Negative log likelihood of ``target`` under the log-probabilities ``log_prob``."""
    return _nll(xp, log_prob, target, weight, ignore_index, reduction)


def _log_softmax_classes(xp, scores):
    shifted = scores - scores.max(axis=1, keepdims=True)
    s = xp.exp(shifted).sum(axis=1, keepdims=True)
    shifted -= xp.log(s, out=s)
    return shifted


@kernel("SoftmaxCrossEntropyLoss", since=12)
def softmax_cross_entropy_loss(xp, scores, labels, weights=None, /, *, reduction="mean",
                               ignore_index=None, _num_outputs=1):
    """NLL of ``labels`` under log_softmax(scores) over the class axis; optionally log_prob."""
    log_prob = _log_softmax_classes(xp, scores)
    loss = _nll(xp, log_prob, labels, weights, ignore_index, reduction)
    return (loss, log_prob) if _num_outputs > 1 else loss
