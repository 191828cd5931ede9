"""Classical-ML ops of domain ``ai.onnx.ml``: ArrayFeatureExtractor, Binarizer, LabelEncoder
and TreeEnsemble (opset 5, which also encodes the older TreeEnsembleRegressor/Classifier).

String tensors are NumPy object arrays of ``str`` and stay on the host; numeric lookups and the
tree walk run on ``xp``.  Tree attributes are turned into flat host tables once per call and the
walk advances every (sample, tree) pair one level per step, so it is vectorised over the batch
and the forest and needs no per-sample Python.

TreeEnsemble follows the spec where onnxruntime (1.32) departs from it: ``post_transform`` 1 is
SOFTMAX and 2 LOGISTIC (onnxruntime swaps them), and BRANCH_MEMBER tests the feature value itself
(onnxruntime truncates it to an integer first, so 1.5 is "in" {1}).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from infermux.errors import ShapeMismatchError, TypeMismatchError, UnsupportedOpError
from infermux.ops._util import acc_dtype, host_ints
from infermux.ops.registry import kernel

__all__ = []

ML_DOMAIN = "ai.onnx.ml"


def _host(a):
    return np.asarray(a.get() if hasattr(a, "get") else a)


def _is_string(a) -> bool:
    return a.dtype.kind in "OUS"


# --- ArrayFeatureExtractor, Binarizer ------------------------------------------------------

@kernel("ArrayFeatureExtractor", since=1, domain=ML_DOMAIN)
def array_feature_extractor(xp, x, y, /):
    """The columns ``y`` of the last axis of ``x``.  As in onnxruntime, a 1-D ``x`` gives a
    ``[1, len(y)]`` matrix, and ``y`` of any shape is read flat."""
    if x.ndim == 0:
        raise ShapeMismatchError("ArrayFeatureExtractor needs X of rank >= 1, got a scalar")
    columns = host_ints(y)
    bad = [i for i in columns if not 0 <= i < x.shape[-1]]
    if bad:
        raise ValueError(f"ArrayFeatureExtractor indices {bad} are out of range for the last "
                         f"axis of X (size {x.shape[-1]})")
    shape = (1, len(columns)) if x.ndim == 1 else x.shape[:-1] + (len(columns),)
    return x[..., columns].reshape(shape)


@kernel("Binarizer", since=1, domain=ML_DOMAIN)
def binarizer(xp, x, /, *, threshold=0.0):
    """1 where x > threshold, else 0, in x's dtype."""
    return (x > threshold).astype(x.dtype)


# --- LabelEncoder -------------------------------------------------------------------------

def _one_of(what: str, floats, int64s, strings, tensor=None) -> np.ndarray:
    """The one ``keys_*`` (or ``values_*``) attribute given, as a flat host array."""
    given = [(a, dt) for a, dt in ((floats, np.float32), (int64s, np.int64), (strings, object),
                                   (tensor, None)) if a is not None]
    if len(given) != 1:
        raise ValueError(f"LabelEncoder needs exactly one {what}_* attribute, got {len(given)}")
    values, dtype = given[0]
    arr = np.asarray(values, dtype=dtype).reshape(-1)
    if arr.dtype.kind in "OSU":
        arr = np.array([v.decode() if isinstance(v, bytes) else str(v) for v in arr.tolist()],
                       dtype=object)
    return arr


def _string_lookup(xp, x, keys, values, default):
    table = dict(zip(keys.tolist(), values.tolist()))  # a repeated key: the last one wins
    mapped = np.frompyfunc(lambda s: table.get(s, default), 1, 1)(np.asarray(x, dtype=object))
    out = np.asarray(mapped, dtype=values.dtype).reshape(x.shape)
    return out if values.dtype == object else xp.asarray(out)


def _numeric_lookup(xp, x, keys, values, default):
    """Sorted keys and a binary search; a NaN key maps NaN inputs (as onnxruntime does)."""
    common = np.result_type(keys.dtype, x.dtype)
    nan_keys = np.isnan(keys) if keys.dtype.kind == "f" else np.zeros(len(keys), bool)
    table = dict(zip(keys[~nan_keys].tolist(), values[~nan_keys].tolist()))
    sorted_keys = np.array(sorted(table), dtype=common)
    sorted_values = np.array([table[k] for k in sorted(table)], dtype=values.dtype)
    on_host = values.dtype == object
    mod = np if on_host else xp
    xv = (_host(x) if on_host else x).astype(common)
    fill = np.array(default, dtype=values.dtype).item()  # a Python scalar: CuPy takes no NumPy
    if len(sorted_keys) == 0:
        out = mod.full(xv.shape, fill, dtype=values.dtype)
    else:
        keys_d = mod.asarray(sorted_keys)
        pos = mod.clip(mod.searchsorted(keys_d, xv), 0, len(sorted_keys) - 1)
        hit = keys_d[pos] == xv
        out = mod.where(hit, mod.asarray(sorted_values)[pos], fill).astype(values.dtype)
    if nan_keys.any():
        nan_value = np.asarray(values[nan_keys][-1]).item()
        out = mod.where(mod.isnan(xv), nan_value, out).astype(values.dtype)
    return out


def _encode(xp, x, keys, values, default):
    if len(keys) != len(values):
        raise ValueError(f"LabelEncoder has {len(keys)} keys but {len(values)} values")
    if (keys.dtype == object) != _is_string(x):
        kind = "strings" if keys.dtype == object else "numbers"
        raise TypeMismatchError(f"LabelEncoder keys are {kind} but X has dtype {x.dtype}")
    if keys.dtype == object:
        return _string_lookup(xp, x, keys, values, default)
    return _numeric_lookup(xp, x, keys, values, default)


@kernel("LabelEncoder", since=1, domain=ML_DOMAIN)
def label_encoder_1(xp, x, /, *, classes_strings=None, default_int64=-1,
                    default_string="_Unused"):
    """Strings to their index in ``classes_strings``, or int64 indices to the strings."""
    classes = _one_of("classes", None, None, classes_strings)
    positions = np.arange(len(classes), dtype=np.int64)
    if _is_string(x):
        return _encode(xp, x, classes, positions, default_int64)
    return _encode(xp, x, positions, classes, default_string)


@kernel("LabelEncoder", since=2, domain=ML_DOMAIN)
def label_encoder_2(xp, x, /, *, default_float=-0.0, default_int64=-1, default_string="_Unused",
                    keys_floats=None, keys_int64s=None, keys_strings=None, values_floats=None,
                    values_int64s=None, values_strings=None):
    """keys_* mapped to values_*; the default_* of the values' type for anything else."""
    keys = _one_of("keys", keys_floats, keys_int64s, keys_strings)
    values = _one_of("values", values_floats, values_int64s, values_strings)
    return _encode(xp, x, keys, values,
                   _default_for(values.dtype, default_float, default_int64, default_string))


@kernel("LabelEncoder", since=4, domain=ML_DOMAIN)
def label_encoder_4(xp, x, /, *, default_float=-0.0, default_int64=-1, default_string="_Unused",
                    default_tensor=None, keys_floats=None, keys_int64s=None, keys_strings=None,
                    keys_tensor=None, values_floats=None, values_int64s=None, values_strings=None,
                    values_tensor=None):
    """Opset 2 plus keys/values/default as tensors of any of the allowed types (the output has
    the values' type); without ``default_tensor`` the default_* of the values' kind applies."""
    keys = _one_of("keys", keys_floats, keys_int64s, keys_strings, keys_tensor)
    values = _one_of("values", values_floats, values_int64s, values_strings, values_tensor)
    if default_tensor is not None:
        if np.size(default_tensor) != 1:
            raise ValueError(f"LabelEncoder default_tensor must hold one value, got shape "
                             f"{np.shape(default_tensor)}")
        default = _one_of("default", None, None, None, default_tensor)[0]
    else:
        default = _default_for(values.dtype, default_float, default_int64, default_string)
    return _encode(xp, x, keys, values, default)


def _default_for(dtype, default_float, default_int64, default_string):
    if dtype == object:
        return default_string
    return default_float if dtype.kind == "f" else default_int64


# --- TreeEnsemble -------------------------------------------------------------------------

_LEQ, _LT, _GTE, _GT, _EQ, _NEQ, _MEMBER = range(7)
_COMPARE = {_LEQ: lambda v, s: v <= s, _LT: lambda v, s: v < s, _GTE: lambda v, s: v >= s,
            _GT: lambda v, s: v > s, _EQ: lambda v, s: v == s, _NEQ: lambda v, s: v != s}
_AGGREGATES = {0: "AVERAGE", 1: "SUM", 2: "MIN", 3: "MAX"}
_TRANSFORMS = {0: "NONE", 1: "SOFTMAX", 2: "LOGISTIC", 3: "SOFTMAX_ZERO", 4: "PROBIT"}


@dataclasses.dataclass(frozen=True)
class _Forest:
    """The ``nodes_*`` and ``leaf_*`` attributes as flat host arrays, one entry per node/leaf."""

    modes: np.ndarray
    features: np.ndarray
    splits: np.ndarray
    true_ids: np.ndarray
    false_ids: np.ndarray
    true_leaf: np.ndarray
    false_leaf: np.ndarray
    nan_true: np.ndarray
    members: np.ndarray      # (nodes, width): each BRANCH_MEMBER node's set, NaN-padded
    leaf_weights: np.ndarray
    leaf_targets: np.ndarray
    roots: np.ndarray
    depth: int               # most interior nodes on any root-to-leaf path


def _member_table(modes: np.ndarray, membership_values, dtype) -> np.ndarray:
    """Split ``membership_values`` at its NaNs into one set per BRANCH_MEMBER node, in order."""
    member_nodes = np.flatnonzero(modes == _MEMBER)
    sets: list[list[float]] = [[]]
    for v in ([] if membership_values is None else np.asarray(membership_values).reshape(-1)):
        if np.isnan(v):
            sets.append([])
        else:
            sets[-1].append(float(v))
    if not sets[-1]:
        sets.pop()  # the list ends with a delimiter
    if len(sets) != len(member_nodes):
        raise ValueError(f"TreeEnsemble has {len(member_nodes)} BRANCH_MEMBER nodes but "
                         f"membership_values holds {len(sets)} NaN-delimited sets")
    width = max([len(s) for s in sets] + [1])
    table = np.full((len(modes), width), np.nan, dtype=dtype)
    for node, members in zip(member_nodes, sets):
        table[node, :len(members)] = members
    return table


def _depth(roots, true_ids, false_ids, true_leaf, false_leaf) -> int:
    """The longest chain of interior nodes below any root, found level by level (a cycle, or a
    child index out of range, is an error)."""
    n = len(true_ids)
    frontier, depth = np.asarray(roots, np.int64), 0
    while frontier.size:
        if depth >= n or frontier.min() < 0 or frontier.max() >= n:
            raise ValueError("TreeEnsemble trees have a node index out of range or a cycle")
        depth += 1
        frontier = np.unique(np.concatenate([true_ids[frontier][~true_leaf[frontier]],
                                             false_ids[frontier][~false_leaf[frontier]]]))
    return depth


def _forest(dtype, attrs: dict) -> _Forest:
    ints = {k: np.asarray(attrs[k], dtype=np.int64).reshape(-1) for k in (
        "nodes_featureids", "nodes_truenodeids", "nodes_falsenodeids", "nodes_trueleafs",
        "nodes_falseleafs", "leaf_targetids", "tree_roots")}
    modes = np.asarray(attrs["nodes_modes"]).reshape(-1).astype(np.int64)
    n = len(modes)
    nan_true = attrs["nodes_missing_value_tracks_true"]
    nan_true = np.zeros(n, bool) if nan_true is None else np.asarray(nan_true, bool).reshape(-1)
    splits = np.asarray(attrs["nodes_splits"]).reshape(-1).astype(dtype)
    lengths = {len(a) for a in (ints["nodes_featureids"], ints["nodes_truenodeids"],
                                ints["nodes_falsenodeids"], ints["nodes_trueleafs"],
                                ints["nodes_falseleafs"], nan_true, splits)}
    if lengths != {n}:
        raise ValueError(f"TreeEnsemble nodes_* attributes must all have {n} entries "
                         f"(the length of nodes_modes)")
    unknown = sorted(set(modes.tolist()) - set(range(7)))
    if unknown:
        raise UnsupportedOpError(f"TreeEnsemble nodes_modes {unknown} are not supported: use "
                                 f"0-6 (BRANCH_LEQ, LT, GTE, GT, EQ, NEQ, MEMBER)")
    leaf_weights = np.asarray(attrs["leaf_weights"]).reshape(-1)
    if len(leaf_weights) != len(ints["leaf_targetids"]):
        raise ValueError("TreeEnsemble leaf_weights and leaf_targetids differ in length")
    true_leaf = ints["nodes_trueleafs"].astype(bool)
    false_leaf = ints["nodes_falseleafs"].astype(bool)
    return _Forest(modes, ints["nodes_featureids"], splits, ints["nodes_truenodeids"],
                   ints["nodes_falsenodeids"], true_leaf, false_leaf, nan_true,
                   _member_table(modes, attrs["membership_values"], dtype), leaf_weights,
                   ints["leaf_targetids"], ints["tree_roots"],
                   _depth(ints["tree_roots"], ints["nodes_truenodeids"],
                          ints["nodes_falsenodeids"], true_leaf, false_leaf))


def _goes_true(xp, forest: _Forest, dev: dict, values, node):
    """Whether each (sample, tree) at interior ``node``, seeing feature ``values``, goes true."""
    modes = dev["modes"][node]
    splits = dev["splits"][node]
    result = xp.zeros(values.shape, dtype=bool)
    for mode in sorted(set(forest.modes.tolist())):
        if mode == _MEMBER:
            hit = (values[..., None] == dev["members"][node]).any(axis=-1)
        else:
            hit = _COMPARE[mode](values, splits)
        result = xp.where(modes == mode, hit, result)
    return result | (xp.isnan(values) & dev["nan_true"][node])


def _leaves(xp, x, forest: _Forest):
    """The leaf each sample reaches in each tree, shape (samples, trees)."""
    dev = {name: xp.asarray(getattr(forest, name)) for name in (
        "modes", "features", "splits", "true_ids", "false_ids", "true_leaf", "false_leaf",
        "nan_true", "members")}
    rows = xp.arange(x.shape[0])[:, None]
    node = xp.broadcast_to(xp.asarray(forest.roots)[None, :], (x.shape[0], len(forest.roots)))
    at_leaf = xp.zeros(node.shape, dtype=bool)
    for _ in range(forest.depth):
        right = _goes_true(xp, forest, dev, x[rows, dev["features"][node]], node)
        child = xp.where(right, dev["true_ids"][node], dev["false_ids"][node])
        child_is_leaf = xp.where(right, dev["true_leaf"][node], dev["false_leaf"][node])
        node = xp.where(at_leaf, node, child)
        at_leaf = at_leaf | child_is_leaf
    return node


def _aggregate(xp, weights, targets, n_targets: int, how: str):
    """Per-sample, per-target aggregate of the leaf weights; a target no leaf reaches is 0."""
    columns = []
    for target in range(n_targets):
        hit = targets == target
        if how in ("SUM", "AVERAGE"):
            col = xp.where(hit, weights, 0).sum(axis=1)
            columns.append(col / weights.shape[1] if how == "AVERAGE" else col)
            continue
        fill = np.inf if how == "MIN" else -np.inf
        picked = xp.where(hit, weights, fill)
        col = picked.min(axis=1) if how == "MIN" else picked.max(axis=1)
        columns.append(xp.where(hit.any(axis=1), col, 0))
    return xp.stack(columns, axis=1)


def _probit(xp, p):
    """sqrt(2) * erfinv(2p - 1) with onnxruntime's closed-form erfinv (Winitzki, a = 0.147)."""
    y = 2 * p - 1
    log = xp.log((1 - y) * (1 + y))
    v = 2 / (np.pi * 0.147) + 0.5 * log
    return math.sqrt(2) * xp.sign(y) * xp.sqrt(-v + xp.sqrt(v * v - log / 0.147))


def _post_transform(xp, scores, how: str):
    if how == "NONE":
        return scores
    if how == "LOGISTIC":
        return 1 / (1 + xp.exp(-scores))
    if how == "PROBIT":
        return _probit(xp, scores)
    e = xp.exp(scores - scores.max(axis=1, keepdims=True))
    if how == "SOFTMAX_ZERO":  # zero scores stay zero and are left out of the sum
        e = xp.where(scores == 0, 0, e)
    return e / e.sum(axis=1, keepdims=True)


@kernel("TreeEnsemble", since=5, domain=ML_DOMAIN)
def tree_ensemble(xp, x, /, *, aggregate_function=1, post_transform=0, tree_roots=None,
                  nodes_hitrates=None, nodes_missing_value_tracks_true=None, nodes_modes=None,
                  leaf_weights=None, leaf_targetids=None, nodes_falsenodeids=None,
                  n_targets=None, nodes_trueleafs=None, nodes_featureids=None,
                  nodes_splits=None, nodes_falseleafs=None, nodes_truenodeids=None,
                  membership_values=None):
    """Walk every tree for every row of X ``[N, F]`` and aggregate the reached leaves' weights
    per target: output ``[N, n_targets]``.  ``nodes_hitrates`` is a performance hint, ignored."""
    attrs = dict(locals())
    missing = [k for k in ("tree_roots", "nodes_modes", "leaf_weights", "leaf_targetids",
                           "nodes_falsenodeids", "nodes_trueleafs", "nodes_featureids",
                           "nodes_splits", "nodes_falseleafs", "nodes_truenodeids")
               if attrs[k] is None]
    if missing:
        raise ValueError(f"TreeEnsemble needs the attributes {', '.join(missing)}")
    if aggregate_function not in _AGGREGATES or post_transform not in _TRANSFORMS:
        raise UnsupportedOpError(
            f"TreeEnsemble aggregate_function={aggregate_function}, post_transform="
            f"{post_transform}: accepted are aggregate_function 0-3 (AVERAGE, SUM, MIN, MAX) "
            f"and post_transform 0-4 (NONE, SOFTMAX, LOGISTIC, SOFTMAX_ZERO, PROBIT)")
    if x.ndim != 2:
        raise ShapeMismatchError(f"TreeEnsemble takes X of shape [N, F], got {tuple(x.shape)}")
    forest = _forest(x.dtype, attrs)
    if forest.features.size and forest.features.max() >= x.shape[1]:
        raise ValueError(f"TreeEnsemble uses feature {forest.features.max()} but X has "
                         f"{x.shape[1]} features")
    targets = int(n_targets) if n_targets is not None else int(forest.leaf_targets.max()) + 1
    leaves = _leaves(xp, x, forest)
    work = acc_dtype(x.dtype)
    weights = xp.asarray(forest.leaf_weights.astype(work))[leaves]
    scores = _aggregate(xp, weights, xp.asarray(forest.leaf_targets)[leaves], targets,
                        _AGGREGATES[aggregate_function])
    return _post_transform(xp, scores.astype(work), _TRANSFORMS[post_transform]).astype(x.dtype)
