"""ai.onnx.ml kernels (ArrayFeatureExtractor, Binarizer, LabelEncoder, TreeEnsemble) against
onnxruntime, which implements the ml domain."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from infermux.errors import ShapeMismatchError, TypeMismatchError
from infermux.ops.registry import lookup

ML = "ai.onnx.ml"


def _tensor_attr(name, array):
    return numpy_helper.from_array(np.asarray(array), name)


def oracle(op, inputs, attrs, *, opset, engine="ort"):
    """One ``ai.onnx.ml`` node run by onnxruntime or (``engine="reference"``) onnx.reference."""
    names = [f"in{i}" for i in range(len(inputs))]
    node = helper.make_node(op, names, ["out"], domain=ML, **attrs)
    graph_inputs = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(v.dtype),
                                                  v.shape) for n, v in zip(names, inputs)]
    model = helper.make_model(
        helper.make_graph([node], "g", graph_inputs, [onnx.ValueInfoProto(name="out")]),
        opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid(ML, opset)], ir_version=10)
    if engine == "reference":
        return ReferenceEvaluator(model).run(None, dict(zip(names, inputs)))[0]
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, dict(zip(names, inputs)))[0]


def ours(op, inputs, attrs, *, opset):
    """Our kernel, with tensor attributes decoded as the runner decodes them."""
    decoded = {k: numpy_helper.to_array(v) if isinstance(v, onnx.TensorProto) else v
               for k, v in attrs.items()}
    return lookup(op, opset, ML).fn(np, *inputs, **decoded)


def check(op, inputs, attrs, *, opset, rtol=1e-6, engine="ort"):
    want = oracle(op, inputs, attrs, opset=opset, engine=engine)
    got = ours(op, inputs, attrs, opset=opset)
    assert (got.dtype, got.shape) == (want.dtype, want.shape)
    if want.dtype == object:
        assert got.tolist() == want.tolist()
    else:
        np.testing.assert_allclose(got, want, rtol=rtol, atol=1e-6)


# --- ArrayFeatureExtractor, Binarizer -------------------------------------------------------

@pytest.mark.parametrize("x, y", [
    (np.arange(24, dtype=np.float32).reshape(2, 3, 4), np.array([3, 0, 3], np.int64)),
    (np.arange(5, dtype=np.int64), np.array([[4, 1]], np.int64)),
    (np.array([["a", "b", "c"], ["d", "e", "f"]], dtype=object), np.array([2], np.int64)),
])
def test_array_feature_extractor(x, y):
    check("ArrayFeatureExtractor", [x, y], {}, opset=1)


def test_array_feature_extractor_rejects_out_of_range_columns():
    with pytest.raises(ValueError, match=r"\[4\] are out of range"):
        ours("ArrayFeatureExtractor", [np.zeros((2, 4), np.float32), np.array([1, 4])], {},
             opset=1)


@pytest.mark.parametrize("dtype, engine", [(np.float32, "ort"), (np.float64, "reference"),
                                           (np.int64, "reference")])  # ort: float32 only
def test_binarizer(dtype, engine):
    x = (np.random.default_rng(0).standard_normal((3, 5)) * 3).astype(dtype)
    check("Binarizer", [x], {"threshold": 0.5}, opset=1, engine=engine)


# --- LabelEncoder ---------------------------------------------------------------------------

STRINGS = np.array([["a", "b"], ["zz", "c"]], dtype=object)


@pytest.mark.parametrize("x, attrs, opset", [
    (STRINGS, {"keys_strings": ["a", "b", "c"], "values_int64s": [7, 8, 9]}, 2),
    (STRINGS, {"keys_strings": ["a", "c"], "values_floats": [0.5, 2.5], "default_float": 9.0}, 2),
    (np.array([1, 5, -3, 1], np.int64), {"keys_int64s": [1, -3], "values_strings": ["one", "m3"],
                                         "default_string": "?"}, 2),
    (np.array([0.5, 1.5, 2.0], np.float32), {"keys_floats": [1.5, 0.5], "values_int64s": [1, 2]},
     2),
    (np.array([3, 1, 2], np.int64), {"keys_tensor": _tensor_attr("k", np.array([1, 2], np.int64)),
                                     "values_tensor": _tensor_attr("v", np.array([0.25, 4.0])),
                                     "default_tensor": _tensor_attr("d", np.array([-7.0]))}, 4),
    (np.array([np.nan, 1.0, 3.0], np.float32),
     {"keys_tensor": _tensor_attr("k", np.array([1.0, np.nan], np.float32)),
      "values_tensor": _tensor_attr("v", np.array([10, 20], np.int64)),
      "default_tensor": _tensor_attr("d", np.array([0], np.int64))}, 4),
    (STRINGS, {"keys_strings": ["a", "b"],
               "values_tensor": _tensor_attr("v", np.array([3, 4], np.int16))}, 4),
    (STRINGS, {"classes_strings": ["b", "c"]}, 1),
    (np.array([1, 0, 5], np.int64), {"classes_strings": ["b", "c"], "default_string": "none"}, 1),
])
def test_label_encoder(x, attrs, opset):
    check("LabelEncoder", [x], attrs, opset=opset)


def test_label_encoder_errors():
    with pytest.raises(TypeMismatchError, match="keys are strings"):
        ours("LabelEncoder", [np.array([1, 2], np.int64)],
             {"keys_strings": ["a"], "values_int64s": [1]}, opset=2)
    with pytest.raises(ValueError, match="exactly one values"):
        ours("LabelEncoder", [STRINGS], {"keys_strings": ["a"]}, opset=2)


# --- TreeEnsemble ---------------------------------------------------------------------------

def random_forest(rng, *, n_trees, depth, n_features, n_targets, dtype,
                  modes=(0, 1, 2, 3, 4, 5)):
    """Complete trees of ``depth`` levels with nodes of random ``modes``, as TreeEnsemble
    attributes.  BRANCH_MEMBER (6) sets hold integers from 1 to 4."""
    choices = list(modes)
    node_modes, features, splits, true_ids, false_ids = [], [], [], [], []
    true_leaf, false_leaf, nan_true, members, leaf_w, leaf_t, roots = ([] for _ in range(7))

    def leaf():
        leaf_w.append(rng.normal())
        leaf_t.append(int(rng.integers(n_targets)))
        return len(leaf_w) - 1

    def build(level):
        index = len(node_modes)
        mode = int(rng.choice(choices))
        node_modes.append(mode)
        features.append(int(rng.integers(n_features)))
        nan_true.append(int(rng.integers(2)))
        if mode == 6:
            members.extend([float(v) for v in rng.integers(1, 5, size=3)] + [np.nan])
            splits.append(np.nan)
        else:
            splits.append(float(rng.integers(-2, 3)) if mode in (4, 5) else rng.normal())
        for ids, leaves in ((true_ids, true_leaf), (false_ids, false_leaf)):
            ids.append(0)
            leaves.append(0)
        for ids, leaves in ((true_ids, true_leaf), (false_ids, false_leaf)):
            if level + 1 == depth:
                ids[index], leaves[index] = leaf(), 1
            else:
                ids[index] = build(level + 1)
        return index

    for _ in range(n_trees):
        roots.append(build(0))
    return {
        "n_targets": n_targets, "tree_roots": roots, "nodes_featureids": features,
        "nodes_modes": _tensor_attr("modes", np.array(node_modes, np.uint8)),
        "nodes_splits": _tensor_attr("splits", np.array(splits, dtype)),
        "nodes_truenodeids": true_ids, "nodes_falsenodeids": false_ids,
        "nodes_trueleafs": true_leaf, "nodes_falseleafs": false_leaf,
        "nodes_missing_value_tracks_true": nan_true,
        **({"membership_values": _tensor_attr("members", np.array(members, dtype))}
           if members else {}),
        "leaf_weights": _tensor_attr("weights", np.array(leaf_w, dtype)), "leaf_targetids": leaf_t,
    }


def tree_input(rng, dtype):
    """Rows mixing small integers (hit EQ/NEQ/MEMBER splits), normals and NaNs."""
    x = np.where(rng.random((40, 4)) < 0.5, rng.integers(-2, 3, (40, 4)), rng.normal(size=(40, 4)))
    x[rng.random(x.shape) < 0.1] = np.nan
    return x.astype(dtype)


@pytest.mark.parametrize("aggregate", [0, 1, 2, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tree_ensemble_aggregates(aggregate, dtype):
    rng = np.random.default_rng(aggregate)
    attrs = random_forest(rng, n_trees=5, depth=4, n_features=4, n_targets=3, dtype=dtype)
    check("TreeEnsemble", [tree_input(rng, dtype)], {**attrs, "aggregate_function": aggregate},
          opset=5, rtol=1e-5)


# onnxruntime 1.2x reads post_transform with its own enum order (1 LOGISTIC, 2 SOFTMAX); the
# spec (and infermux) has 1 SOFTMAX, 2 LOGISTIC, so the oracle is asked for the swapped code.
ORT_TRANSFORM = {1: 2, 2: 1, 3: 3, 4: 4}


@pytest.mark.parametrize("transform", [1, 2, 3, 4])
def test_tree_ensemble_post_transforms(transform):
    rng = np.random.default_rng(10 + transform)
    targets = 1 if transform == 4 else 3  # PROBIT maps a probability: one target in [0, 1]
    attrs = random_forest(rng, n_trees=3, depth=3, n_features=4, n_targets=targets,
                          dtype=np.float32)
    if transform == 4:
        weights = np.abs(numpy_helper.to_array(attrs["leaf_weights"])) % 0.3
        attrs["leaf_weights"] = _tensor_attr("weights", weights.astype(np.float32))
    x = tree_input(rng, np.float32)
    want = oracle("TreeEnsemble", [x], {**attrs, "post_transform": ORT_TRANSFORM[transform]},
                  opset=5)
    got = ours("TreeEnsemble", [x], {**attrs, "post_transform": transform}, opset=5)
    assert (got.dtype, got.shape) == (want.dtype, want.shape)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    if transform == 1:
        raw = ours("TreeEnsemble", [x], attrs, opset=5)
        np.testing.assert_allclose(got, np.exp(raw) / np.exp(raw).sum(1, keepdims=True),
                                   rtol=1e-5)


def test_tree_ensemble_set_membership():
    # onnxruntime truncates inputs to integers before a BRANCH_MEMBER test (1.5 is in {1, 3});
    # the spec and onnx.reference test the value itself, as infermux does
    rng = np.random.default_rng(7)
    attrs = random_forest(rng, n_trees=4, depth=3, n_features=4, n_targets=2, dtype=np.float32,
                          modes=(0, 3, 6))
    x = tree_input(rng, np.float32) + 2  # integers 0..4 meet the sets of 1..4
    check("TreeEnsemble", [x], attrs, opset=5, engine="reference", rtol=1e-5)


def test_tree_ensemble_single_leaf_tree():
    # a tree that is one leaf: both branches of its only node name the same leaf
    attrs = {"n_targets": 1, "tree_roots": [0], "nodes_featureids": [0],
             "nodes_modes": _tensor_attr("m", np.array([0], np.uint8)),
             "nodes_splits": _tensor_attr("s", np.array([0.0], np.float32)),
             "nodes_truenodeids": [0], "nodes_falsenodeids": [0], "nodes_trueleafs": [1],
             "nodes_falseleafs": [1], "leaf_targetids": [0],
             "leaf_weights": _tensor_attr("w", np.array([2.5], np.float32))}
    check("TreeEnsemble", [np.array([[1.0], [-1.0]], np.float32)], attrs, opset=5)


def test_tree_ensemble_errors():
    rng = np.random.default_rng(0)
    attrs = random_forest(rng, n_trees=1, depth=2, n_features=4, n_targets=1, dtype=np.float32)
    with pytest.raises(ShapeMismatchError, match=r"\[N, F\]"):
        ours("TreeEnsemble", [np.zeros(4, np.float32)], attrs, opset=5)
    with pytest.raises(ValueError, match="feature"):
        ours("TreeEnsemble", [np.zeros((2, 1), np.float32)],
             {**attrs, "nodes_featureids": [3] * len(attrs["nodes_featureids"])}, opset=5)
    bad_members = {**attrs, "nodes_modes": _tensor_attr("m", np.full(3, 6, np.uint8)),
                   "membership_values": _tensor_attr("v", np.array([1.0, np.nan], np.float32))}
    with pytest.raises(ValueError, match="3 BRANCH_MEMBER nodes"):
        ours("TreeEnsemble", [np.zeros((2, 4), np.float32)], bad_members, opset=5)
    cycle = {**attrs, "nodes_trueleafs": [0, 0, 0], "nodes_truenodeids": [1, 2, 0]}
    with pytest.raises(ValueError, match="cycle"):
        ours("TreeEnsemble", [np.zeros((2, 4), np.float32)], cycle, opset=5)
