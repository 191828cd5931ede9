"""Smoke tests of benchmarks/bench_cpu.py: it runs end to end and its report has the promised
shape. Timing values are never asserted (they depend on the machine's load); accuracy is."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks" / "bench_cpu.py"
HEADER = "| model | infermux ms | ORT ms | OV-f32 ms | im/ORT | im/OV | max rel diff |"


def _run_bench(tmp_path: Path, models: str) -> tuple[subprocess.CompletedProcess, dict]:
    out_json = tmp_path / "results.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--models", models, "--quick", "--no-progress",
         "--cache-dir", str(tmp_path / "models"), "--json", str(out_json), "--out", str(tmp_path / "r.md")],
        check=False, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc, json.loads(out_json.read_text())


def test_quick_run_on_tiny_prints_the_table_and_the_ratio_line(tmp_path):
    proc, data = _run_bench(tmp_path, "tiny")
    out = proc.stdout
    assert HEADER in out
    assert re.search(r"^\| tiny \| [0-9.]+ \| [0-9.]+ \| [0-9.]+ \| [0-9.]+x \| [0-9.]+x \| [0-9.e+-]+ \|",
                     out, re.MULTILINE), out
    assert re.search(r"^im/ORT geometric mean: [0-9.]+x over 1 model; worst: tiny [0-9.]+x$", out, re.MULTILINE), out
    assert re.search(r"^Per-call overhead \(tiny, 5 ops\): infermux [0-9.]+ us", out, re.MULTILINE), out
    assert (tmp_path / "r.md").read_text() in out
    tiny = data["models"][0]
    assert tiny["status"] == "ok"
    assert tiny["runtimes"]["infermux"]["max_rel_diff_vs_ort"] < 1e-5
    assert tiny["runtimes"]["ov-f32"]["info"]["precision"] == "f32"
    assert all(tiny["runtimes"][rt]["n_bursts"] == 3 for rt in ("infermux", "ort", "ov-f32"))


def test_a_model_infermux_cannot_run_is_reported_failed_and_the_run_goes_on(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    node = helper.make_node("Frobnicate", ["x"], ["y"], domain="com.example", name="frob")
    graph = helper.make_graph([node], "frob", [x], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("com.example", 1)])
    onnx.save(model, tmp_path / "frob.onnx")
    proc, data = _run_bench(tmp_path, f"{tmp_path / 'frob.onnx'},tiny")
    assert re.search(r"^\| frob \| failed \|", proc.stdout, re.MULTILINE), proc.stdout
    assert re.search(r"^- \*\*frob\*\*: \w+Error: .*Frobnicate", proc.stdout, re.MULTILINE), proc.stdout
    assert [m["status"] for m in data["models"]] == ["failed", "ok"]


def _harness(monkeypatch):
    spec = importlib.util.spec_from_file_location("bench_harness", REPO / "benchmarks" / "_harness.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_only_quiet_bursts_enter_the_median(monkeypatch):
    H = _harness(monkeypatch)
    plan = H.GatePlan(min_quiet=2, quiet_cores=0.1)
    # per-call 1 ms quiet, 10 ms under load (0.8 foreign cores)
    quiet = [H.Burst(100, 0.1, 0.2, 0.2 + 0.1 * f) for f in (0.0, 0.05)]
    loaded = [H.Burst(10, 0.1, 0.2, 0.2 + 0.1 * 0.8)] * 3
    s = H.summarize(quiet + loaded, plan)
    assert (s.n_quiet, s.n_bursts, s.flag) == (2, 5, "")
    assert s.median_s == pytest.approx(1e-3)
    assert H.summarize(quiet[:1] + loaded, plan).flag == "*"
    noisy = H.summarize(loaded, plan)
    assert (noisy.n_quiet, noisy.flag) == (0, "!")
    assert H.summarize(loaded, H.GatePlan(quiet_cores=None, min_quiet=3)).flag == ""
