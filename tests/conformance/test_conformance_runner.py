"""The conformance harness: comparison rules, op families, time limit, exclusions and the CLI."""

from __future__ import annotations

import json
import re
import time

import numpy as np
import onnx
import pytest
from onnx import helper

from infermux.conformance import __main__ as cli
from infermux.conformance import exclusions
from infermux.conformance.runner import (
    FAILED,
    PASSED,
    SKIPPED,
    _call_with_timeout,
    compare_values,
    iter_test_dirs,
    load_data_set,
    op_family,
    run_node_test,
)

f32 = np.float32


@pytest.mark.parametrize("out, ref, expected", [
    (np.array([1.0, 2.0], f32), np.array([1.0, 2.0005], f32), None),           # within rtol 1e-3
    (np.array([1.0, 2.0], f32), np.array([1.0, 2.01], f32), "1 of 2 values differ"),
    (np.array([np.nan, np.inf], f32), np.array([np.nan, np.inf], f32), None),  # same nan/inf
    (np.array([np.nan], f32), np.array([1.0], f32), "1 of 1 values differ"),
    (np.array([1.0], np.float64), np.array([1.0], f32), "dtype float64 != expected float32"),
    (np.zeros((2, 1), f32), np.zeros((1, 2), f32), "shape (2, 1) != expected (1, 2)"),
    (np.array([3], np.int64), np.array([3], np.int64), None),
    (np.array([4], np.int64), np.array([3], np.int64), "1 of 1 values differ"),
    (np.array(["a", "b"], object), np.array(["a", "c"], object), "1 of 2 strings differ"),
    ([np.ones(2, f32)], [np.ones(2, f32)], None),
    ([np.ones(2, f32)], [np.ones(2, f32), np.ones(1, f32)], "sequence of 1 elements, expected 2"),
    ([np.ones(2, f32)], [np.zeros(2, f32)], "element 0: 2 of 2 values differ"),
    (None, None, None),
    (np.ones(1, f32), None, "expected an empty optional"),
    (None, np.ones(1, f32), "got None"),
])
def test_compare_values(out, ref, expected):
    why = compare_values(out, ref)
    if expected is None:
        assert why is None
    else:
        assert why is not None and expected in why


def test_call_with_timeout_reports_a_hang():
    start = time.perf_counter()
    finished, _, _ = _call_with_timeout(lambda: time.sleep(5), timeout_s=0.1)
    assert not finished and time.perf_counter() - start < 2


def test_call_with_timeout_hands_back_result_and_error():
    assert _call_with_timeout(lambda: 7, 5) == (True, 7, None)
    finished, _, error = _call_with_timeout(lambda: 1 / 0, 5)
    assert finished and isinstance(error, ZeroDivisionError)


@pytest.mark.parametrize("name, expected", [
    ("test_relu", "Relu"),
    ("test_softmax_axis_0_expanded", "Softmax"),            # family of the test it expands
    ("test_reduce_sum_keepdims_random", "ReduceSum"),
    ("test_sequence_insert_at_back", "SequenceInsert"),
    ("test_layer_normalization_2d_axis0_expanded_ver18", "LayerNormalization"),
])
def test_op_family(name, expected, node_test_root):
    model = onnx.load(str(node_test_root / name / "model.onnx"))
    assert op_family(name, model, node_test_root) == expected


def test_op_family_of_a_multi_node_model_prefers_the_named_op():
    nodes = [helper.make_node("Shape", ["x"], ["s"]), helper.make_node("ReduceSum", ["x", "s"], ["y"])]
    graph = helper.make_graph(nodes, "g", [], [])
    assert op_family("test_reduce_sum_custom", helper.make_model(graph)) == "ReduceSum"
    assert op_family("test_something_else", helper.make_model(graph)) == "Shape"


def test_load_data_set_reads_sequences_and_optionals(node_test_root):
    test_dir = node_test_root / "test_optional_get_element_sequence"
    model = onnx.load(str(test_dir / "model.onnx"))
    inputs, outputs = load_data_set(test_dir / "test_data_set_0", model.graph)
    (value,) = inputs.values()
    assert isinstance(value, list) and all(isinstance(v, np.ndarray) for v in value)
    assert isinstance(outputs[0], list)


def test_run_node_test_passes_and_skips(node_test_root):
    result = run_node_test(node_test_root / "test_relu")
    assert (result.status, result.op, result.reason) == (PASSED, "Relu", "")
    skipped = run_node_test(node_test_root / "test_relu", skip_reason="BUG: because")
    assert (skipped.status, skipped.reason) == (SKIPPED, "BUG: because")


def test_run_node_test_fails_with_a_reason(node_test_root, tmp_path):
    # a copy of test_relu whose expected output is wrong
    source = node_test_root / "test_relu"
    target = tmp_path / "test_relu"
    (target / "test_data_set_0").mkdir(parents=True)
    (target / "model.onnx").write_bytes((source / "model.onnx").read_bytes())
    for pb in (source / "test_data_set_0").iterdir():
        (target / "test_data_set_0" / pb.name).write_bytes(pb.read_bytes())
    bad = onnx.numpy_helper.from_array(np.full((3, 4, 5), -1.0, f32), "y")
    (target / "test_data_set_0" / "output_0.pb").write_bytes(bad.SerializeToString())
    result = run_node_test(target)
    assert result.status == FAILED
    assert result.reason.startswith("output 0 (y): ") and "values differ" in result.reason


def test_exclusions_are_well_formed_and_each_matches_a_test(node_test_root):
    names = [d.name for d in iter_test_dirs(node_test_root)]
    for entry in exclusions.EXCLUSIONS:
        assert entry.category in (exclusions.UNSUPPORTED, exclusions.BUG, exclusions.NUMERICS)
        assert entry.reason, entry.pattern
        assert any(re.search(entry.pattern, n) for n in names), f"stale exclusion {entry.pattern!r}"
    with pytest.raises(ValueError, match="category must be"):
        exclusions.Exclusion("x", "MAYBE", "why")


def test_cli_reports_per_op_and_ends_with_the_totals(capsys, tmp_path):
    report = tmp_path / "r.json"
    status = cli.main(["--filter", "^test_(relu|abs)$", "--per-op", "--no-progress", "--json", str(report)])
    lines = capsys.readouterr().out.strip().splitlines()
    assert status == 0
    assert lines[-1] == "2 passed, 0 failed, 0 skipped"
    assert any(re.match(r"Relu\s+100\.0%\s+1\s+0\s+0$", line) for line in lines)
    data = json.loads(report.read_text())
    assert (data["passed"], data["failed"]) == (2, 0)
    assert {r["name"] for r in data["results"]} == {"test_relu", "test_abs"}


def test_cli_lists_supported_ops(capsys):
    assert cli.main(["--ops"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^Relu\s+since opset ", out, re.MULTILINE)
    assert re.search(r"^\d+ ops$", out, re.MULTILINE)
