"""The ``infermux`` command line, run in-process through ``main([...])`` on the bundled model.

Timings are never asserted (the machine is shared); counts, names, shapes, predictions, exit
codes and messages are.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

import infermux
from infermux import cli, examples
from tests.helpers import two_input_add

REPO = Path(__file__).resolve().parents[1]
LENET = examples.path("lenet")


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``infermux argv...``."""
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


# -- the bundled model -------------------------------------------------------------------------
def test_bundled_model_is_small_dynamic_batch_opset17():
    model = onnx.load(LENET)
    assert os.path.getsize(LENET) < 200_000
    assert [(o.domain, o.version) for o in model.opset_import] == [("", 17)]
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert model.graph.input[0].name == "image"
    assert [d.dim_param or d.dim_value for d in dims] == ["N", 1, 28, 28]
    assert examples.names() == ["lenet"]


def test_examples_path_names_what_exists():
    with pytest.raises(FileNotFoundError, match="bundled models are: lenet"):
        examples.path("resnet")


def test_bundled_model_rebuilds_byte_identical():
    path = REPO / "tools" / "make_example_model.py"
    spec = importlib.util.spec_from_file_location("make_example_model", path)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    data, accuracy = tool.make()
    assert data == Path(LENET).read_bytes()
    assert accuracy >= 0.98


def test_bundled_model_classifies_synthetic_digits_like_onnxruntime(oracle):
    digits = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    images = examples.synthetic_digits(digits, seed=5)
    ref = oracle.run_reference(onnx.load(LENET), {"image": images})[0]
    out = infermux.Core().compile_model(LENET, "CPU")({"image": images})[0]
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5)
    assert out.argmax(axis=1).tolist() == digits


# -- argument syntax ---------------------------------------------------------------------------
@pytest.mark.parametrize("text, expected", [
    ("image[4,1,28,28]", [("image", (4, 1, 28, 28))]),
    ("image=[4, 1, 28, 28]", [("image", (4, 1, 28, 28))]),
    ("[2,3]", [(None, (2, 3))]),
    ("a[1,2],b[3]", [("a", (1, 2)), ("b", (3,))]),
    ("x[]", [("x", ())]),
])
def test_shape_spec(text, expected):
    assert cli._shape_spec(text) == expected


@pytest.mark.parametrize("text, message", [
    ("image", "expected NAME"), ("image[1,a]", "must be integers"), ("image[-1,2]", "must not be negative"),
])
def test_shape_spec_rejects(text, message):
    with pytest.raises(argparse.ArgumentTypeError, match=message):
        cli._shape_spec(text)


def test_nearest_rank_percentiles_like_benchmark_app():
    result = cli.BenchResult(10, 1.0, tuple(float(i) for i in range(1, 11)), 1.0, 1, 2)
    assert (result.percentile(50), result.percentile(90), result.percentile(99)) == (5.0, 9.0, 10.0)
    assert result.throughput_fps == 20.0


# -- subcommands -------------------------------------------------------------------------------
def test_version(capsys):
    assert run_cli(capsys, "--version")[:2] == (0, f"infermux {infermux.__version__}\n")


def test_devices_lists_cpu_with_full_name(capsys):
    code, out, _ = run_cli(capsys, "devices")
    full_name = infermux.Core().get_property("CPU", "FULL_DEVICE_NAME")
    assert code == 0
    assert out.startswith(f"CPU: {full_name} | DEVICE_TYPE=")
    code, out, _ = run_cli(capsys, "devices", "--all")
    assert code == 0 and "    PERFORMANCE_HINT: LATENCY\n" in out


def test_run_with_input_file_prints_top5_and_writes_npz(capsys, tmp_path):
    images = examples.synthetic_digits([3, 7], seed=1)
    np.save(tmp_path / "x.npy", images)
    code, out, err = run_cli(capsys, "run", LENET, "--input", f"image={tmp_path / 'x.npy'}",
                             "--output", tmp_path / "out.npz")
    assert code == 0, err
    assert "probabilities: shape [2, 10], float32\n" in out
    assert "  [0] top-5: 3 (" in out and "  [1] top-5: 7 (" in out
    assert "random" not in err
    saved = np.load(tmp_path / "out.npz")
    expected = infermux.Core().compile_model(LENET, "CPU")({"image": images})[0]
    np.testing.assert_allclose(saved["probabilities"], expected, rtol=1e-6)


def test_run_fills_missing_inputs_with_seeded_random_data(capsys, tmp_path):
    code, out, err = run_cli(capsys, "run", LENET, "-b", "3", "--seed", "4", "-o", tmp_path / "a.npz")
    assert code == 0, err
    assert "input 'image' not given: using random float32[3,1,28,28] (seed 4)" in err
    assert "probabilities: shape [3, 10], float32" in out
    run_cli(capsys, "run", LENET, "--shape", "image[3,1,28,28]", "--seed", "4", "-o", tmp_path / "b.npz")
    np.testing.assert_array_equal(np.load(tmp_path / "a.npz")["probabilities"],
                                  np.load(tmp_path / "b.npz")["probabilities"])


def test_run_npz_keyed_by_input_name(capsys, tmp_path):
    np.savez(tmp_path / "in.npz", image=examples.synthetic_digits([8], seed=2))
    code, out, err = run_cli(capsys, "run", LENET, "-i", tmp_path / "in.npz")
    assert code == 0, err
    assert "  [0] top-5: 8 (" in out


def test_run_summarizes_non_probability_outputs(capsys, tmp_path):
    onnx.save(two_input_add(), tmp_path / "add.onnx")
    np.save(tmp_path / "a.npy", np.ones((2, 3), np.float32))
    code, out, err = run_cli(capsys, "run", tmp_path / "add.onnx", "-i", f"a={tmp_path / 'a.npy'}",
                             "-i", f"b={tmp_path / 'a.npy'}")
    assert code == 0, err
    assert "s: shape [2, 3], float32, min 2, max 2, mean 2\n" in out
    assert "p: shape [2, 3], float32, min 1, max 1, mean 1\n" in out


def test_bench_sync_niter_reports_in_benchmark_app_words(capsys, tmp_path):
    code, out, err = run_cli(capsys, "bench", LENET, "-api", "sync", "-niter", "20", "--no-progress",
                             "--json", tmp_path / "b.json")
    assert code == 0, err
    assert "[ INFO ] Start inference synchronously, limits: 20 iterations\n" in out
    assert "[ INFO ] Count:            20 iterations\n" in out
    for label in ("Duration:", "Latency:", "   Median:", "   Average:", "   Min:", "   Max:",
                  "   90 percentile:", "   99 percentile:", "Throughput:"):
        assert f"[ INFO ] {label}" in out
    stats = json.loads((tmp_path / "b.json").read_text())
    assert (stats["count"], stats["api"], stats["hint"], stats["num_requests"]) == (20, "sync", "LATENCY", 1)
    lat = stats["latency_ms"]
    assert lat["min"] <= lat["median"] <= lat["p90"] <= lat["p99"] <= lat["max"]


def test_bench_async_with_time_limit_and_progress_bar(capsys):
    code, out, err = run_cli(capsys, "bench", LENET, "-t", "0.5", "-nireq", "2", "-b", "2")
    assert code == 0, err
    assert "Start inference asynchronously, 2 inference requests, limits: 500 ms duration" in out
    assert "PERFORMANCE_HINT THROUGHPUT, batch size 2" in out
    count = int(out.split("Count:")[1].split()[0])
    assert count > 0
    assert "Benchmarking" in err  # the tqdm bar


def test_example_classifies_and_benchmarks(capsys):
    code, out, err = run_cli(capsys, "example", "-t", "0.3", "--no-progress")
    assert code == 0, err
    assert "8/8 correct" in out
    assert "  drawn 9 -> predicted 9 (probability" in out
    assert "[ INFO ] Throughput:" in out


# -- errors ------------------------------------------------------------------------------------
@pytest.mark.parametrize("argv, code, message", [
    (["run", LENET, "-d", "cpu"], 1, 'Device with "cpu" name is not registered'),
    (["run", "missing.onnx"], 1, "Cannot read model 'missing.onnx': no such file"),
    (["run", LENET, "-i", "label=x.npy"], 1,
     "Port for tensor name label was not found. The model's inputs are: image"),
    (["run", LENET, "-i", "missing.npy"], 1, "cannot read input file 'missing.npy'"),
    (["run", LENET, "--shape", "image[2,1,28]"], 1, "shape: [?,1,28,28] is incompatible with provided dimensions: [2,1,28] (input 'image')"),
    (["run", LENET, "-c", "NUM_STREAMS"], 2, "expected KEY=VALUE"),
    (["bench", LENET, "-api", "fast"], 2, "invalid choice: 'fast'"),
    (["frobnicate"], 2, "invalid choice: 'frobnicate'"),
    ([], 2, "usage: infermux"),
])
def test_errors_exit_code_and_message(capsys, tmp_path, monkeypatch, argv, code, message):
    monkeypatch.chdir(tmp_path)
    np.save(tmp_path / "x.npy", np.zeros((1, 1, 28, 28), np.float32))
    got, _, err = run_cli(capsys, *argv)
    assert got == code
    assert message in err
    assert "Traceback" not in err


def test_bare_input_file_for_a_two_input_model_asks_for_a_name(capsys, tmp_path):
    onnx.save(two_input_add(), tmp_path / "add.onnx")
    np.save(tmp_path / "a.npy", np.ones((2, 3), np.float32))
    code, _, err = run_cli(capsys, "run", tmp_path / "add.onnx", "-i", tmp_path / "a.npy")
    assert code == 1
    assert "the model has 2 inputs (a, b); write NAME=" in err


@pytest.mark.parametrize("where", ["before", "after"])
def test_verbose_shows_the_traceback(capsys, where):
    argv = ["run", LENET, "-d", "cpu"]
    argv = ["--verbose", *argv] if where == "before" else [*argv, "--verbose"]
    code, _, err = run_cli(capsys, *argv)
    assert code == 1
    assert "Traceback (most recent call last)" in err and "DeviceNotFoundError" in err


# -- a real process ----------------------------------------------------------------------------
def test_example_in_a_subprocess():
    script = shutil.which("infermux")
    argv = [script] if script else [sys.executable, "-m", "infermux.cli"]
    paths = [str(REPO), os.environ.get("PYTHONPATH")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
    proc = subprocess.run([*argv, "example", "-t", "0.5"], capture_output=True, text=True, check=False,
                          timeout=120, cwd=REPO, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "8/8 correct" in proc.stdout
    assert "[ INFO ] Count:" in proc.stdout
