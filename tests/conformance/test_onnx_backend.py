"""ONNX's own ``BackendTest`` drives infermux through :class:`InfermuxBackend` on a few patterns.

``BackendTest`` regenerates all node cases in memory when built (~25 s); its loader is pointed at
the on-disk copy from ``ensure_node_tests`` instead, so the cases run through BackendTest's
model-directory path (``prepare`` + ``BackendRep.run`` + its own output comparison).
"""

from __future__ import annotations

from pathlib import Path
from unittest import mock

import numpy as np
import onnx.backend.test
import pytest
from onnx import helper
from onnx.backend.test.case.test_case import TestCase
from onnx.backend.test.loader import load_model_tests

from infermux.conformance import backend
from infermux.conformance.backend import InfermuxBackend
from infermux.conformance.data import ensure_node_tests

# Node tests: elementwise, broadcasting, conv, several outputs, sequences, optionals, strings,
# an expanded function; then ONNX's shipped "simple" and PyTorch-exported models.
CASES = [
    "test_relu", "test_add_bcast", "test_conv_with_strides_padding", "test_top_k",
    "test_split_equal_parts_2d_opset13", "test_sequence_insert_at_back",
    "test_optional_get_element_sequence", "test_identity_sequence",
    "test_strnormalizer_export_monday_casesensintive_lower", "test_softmax_axis_1_expanded",
    "test_sign_model", "test_single_relu_model", "test_sequence_model1", "test_expand_shape_model1",
    "test_Conv2d_depthwise_strided", "test_operator_add_broadcast", "test_LogSoftmax",
]


def _node_cases_on_disk() -> list[TestCase]:
    return [TestCase(name=d.name, model_name=d.name, url=None, model_dir=str(d), model=None,
                     data_sets=None, kind="node", rtol=1e-3, atol=1e-7)
            for d in sorted(Path(ensure_node_tests()).iterdir()) if d.name in CASES]


def _load_model_tests(data_dir=None, kind=None):
    """BackendTest's loader, restricted to CASES, with node cases read from disk."""
    if kind == "node":
        return _node_cases_on_disk()
    cases = load_model_tests(kind=kind) if data_dir is None else load_model_tests(data_dir, kind)
    return [case for case in cases if case.name in CASES]


with mock.patch("onnx.backend.test.runner.load_model_tests", _load_model_tests):
    backend_test = onnx.backend.test.BackendTest(InfermuxBackend, __name__)
backend_test.include(rf"^({'|'.join(CASES)})_cpu$")

globals().update(backend_test.test_cases)


def test_patterns_select_the_intended_cases():
    selected = {name.removesuffix("_cpu") for case in backend_test.test_cases.values()
                for name in dir(case) if name.endswith("_cpu")}
    assert selected == set(CASES)


def test_supports_device():
    assert backend.supports_device("CPU")
    assert not backend.supports_device("NOT_A_DEVICE")


def test_run_node_builds_a_one_node_model():
    node = helper.make_node("Split", ["x"], ["a", "b"], axis=0, num_outputs=2)
    a, b = backend.run_node(node, [np.arange(6, dtype=np.float32)])
    np.testing.assert_array_equal(a, [0, 1, 2])
    np.testing.assert_array_equal(b, [3, 4, 5])


def test_prepared_model_runs_with_a_list_or_a_dict():
    node = helper.make_node("Sub", ["x", "y"], ["z"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info(n, 1, [2]) for n in "xy"],
                              [helper.make_tensor_value_info("z", 1, [2])])
    rep = backend.prepare(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    x, y = np.array([5, 7], np.float32), np.array([1, 2], np.float32)
    np.testing.assert_array_equal(rep.run([x, y])[0], [4, 5])
    np.testing.assert_array_equal(rep.run({"y": x, "x": y})[0], [-4, -5])


def test_prepare_rejects_an_unknown_compile_property():
    node = helper.make_node("Relu", ["x"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", 1, [2])],
                              [helper.make_tensor_value_info("y", 1, [2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(ValueError, match="NOT_A_PROPERTY"):
        backend.prepare(model, NOT_A_PROPERTY=1)
