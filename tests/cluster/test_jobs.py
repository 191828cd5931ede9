"""``infermux submit`` through Ray's job server, and ``infermux devices --address``.

The job tests start their own head (``ray start --head --block``, private ``--temp-dir``, every
port chosen free and bound to 127.0.0.1) as a child process group, and stop it by its group --
never with ``ray stop``.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from infermux import cli

pytestmark = pytest.mark.cluster
REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def job_head():
    """A one-node head with a job server: yields its URL; stopped by process group."""
    pytest.importorskip("ray.job_submission")
    from ray.job_submission import JobSubmissionClient

    ray_bin = Path(sys.executable).with_name("ray")
    if not ray_bin.exists():
        pytest.skip("the ray command is not installed next to this Python")
    temp = tempfile.mkdtemp(prefix="imj", dir=os.environ.get("RAY_TMPDIR") or "/tmp")
    dashboard = _free_port()
    env = dict(os.environ, PATH=f"{ray_bin.parent}{os.pathsep}{os.environ.get('PATH', '')}",
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    command = [str(ray_bin), "start", "--head", "--block", "--node-ip-address=127.0.0.1",
               f"--port={_free_port()}", "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}",
               "--include-dashboard=true", f"--ray-client-server-port={_free_port()}",
               f"--dashboard-agent-listen-port={_free_port()}", f"--dashboard-agent-grpc-port={_free_port()}",
               f"--runtime-env-agent-port={_free_port()}", f"--metrics-export-port={_free_port()}",
               "--num-cpus=2", f"--temp-dir={temp}", "--disable-usage-stats",
               "--labels", "infermux-node=jobhead"]
    head = subprocess.Popen(command, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{dashboard}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                JobSubmissionClient(url).list_jobs()
                break
            except Exception:  # noqa: BLE001 - not up yet
                if head.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"the Ray head did not come up (exit code {head.poll()})")
                time.sleep(0.5)
        yield url
    finally:
        from infermux.cluster.shm import sweep_stale_segments

        _stop_group(head)
        shutil.rmtree(temp, ignore_errors=True)
        sweep_stale_segments()


def _stop_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        pass
    try:
        os.killpg(process.pid, signal.SIGKILL)  # whatever of ours is left in the group
    except ProcessLookupError:
        pass


def _chain_model(path: Path, layers: int = 1, width: int = 16) -> np.ndarray:
    """x[8,width] -> (MatMul -> Relu) x layers; returns the weights' product's reference fn input."""
    rng = np.random.default_rng(0)
    weights, nodes, name = [], [], "x"
    for k in range(layers):
        w = (rng.standard_normal((width, width)) / np.sqrt(width)).astype(np.float32)
        weights.append(w)
        nodes += [helper.make_node("MatMul", [name, f"w{k}"], [f"m{k}"], name=f"mm{k}"),
                  helper.make_node("Relu", [f"m{k}"], [f"r{k}"], name=f"relu{k}")]
        name = f"r{k}"
    nodes[-1].output[0] = "y"
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [8, width])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [8, width])],
                              [numpy_helper.from_array(w, f"w{k}") for k, w in enumerate(weights)])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    path.write_bytes(proto.SerializeToString())
    return weights


def _reference(weights, x):
    for w in weights:
        x = np.maximum(x @ w, 0)
    return x


def _inputs(folder: Path, n: int, width: int = 16) -> dict[str, np.ndarray]:
    folder.mkdir()
    rng = np.random.default_rng(1)
    data = {f"item{i:03d}": rng.standard_normal((8, width)).astype(np.float32) for i in range(n)}
    for stem, x in data.items():
        np.save(folder / f"{stem}.npy", x)
    return data


def test_submit_writes_every_output_and_a_rerun_resumes(job_head, tmp_path, capsys):
    weights = _chain_model(tmp_path / "m.onnx")
    data = _inputs(tmp_path / "in", 6)
    args = ["submit", str(tmp_path / "m.onnx"), "--address", job_head, "-d", "MULTI:CPU,CPU@jobhead",
            "--inputs", str(tmp_path / "in"), "--output", str(tmp_path / "out")]
    assert cli.main(args) == 0
    for stem, x in data.items():
        with np.load(tmp_path / "out" / f"{stem}.npz") as out:
            np.testing.assert_allclose(out["y"], _reference(weights, x), rtol=1e-5, atol=1e-6)
    err = capsys.readouterr().err
    job_id = re.search(r"job (\S+) submitted", err).group(1)
    assert "succeeded" in err

    (tmp_path / "out" / "item002.npz").unlink()
    assert cli.main(args) == 0
    assert "6 inputs, 5 already done, 1 to run" in capsys.readouterr().err
    assert (tmp_path / "out" / "item002.npz").exists()

    assert cli.main(["submit", "--logs", job_id, "--address", job_head]) == 0
    assert "infermux job: done" in capsys.readouterr().out


def test_submit_into_one_file(job_head, tmp_path):
    weights = _chain_model(tmp_path / "m.onnx")
    data = _inputs(tmp_path / "in", 3)
    target = tmp_path / "results.npz"
    assert cli.main(["submit", str(tmp_path / "m.onnx"), "--address", job_head, "-d", "CPU@jobhead", "-q",
                     "--inputs", str(tmp_path / "in"), "--output", str(target)]) == 0
    with np.load(target) as out:
        assert sorted(out.files) == [f"{stem}/y" for stem in sorted(data)]
        np.testing.assert_allclose(out["item001/y"], _reference(weights, data["item001"]), rtol=1e-5, atol=1e-6)
    assert not Path(f"{target}.parts").exists()


def test_a_failing_job_reports_its_error(job_head, tmp_path, capsys):
    _chain_model(tmp_path / "m.onnx")
    _inputs(tmp_path / "in", 2)
    code = cli.main(["submit", str(tmp_path / "m.onnx"), "--address", job_head, "-d", "GPU@jobhead",
                     "--inputs", str(tmp_path / "in"), "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 1 and "failed" in err and "no device GPU@jobhead" in err


def test_ctrl_c_stops_the_job_and_the_next_submit_finishes_it(job_head, tmp_path):
    from ray.job_submission import JobSubmissionClient

    # enough work (~600 inferences of 24 layers) that the job cannot finish between the third
    # output appearing and the SIGINT landing, however idle the machine is
    weights = _chain_model(tmp_path / "m.onnx", layers=24, width=512)
    data = _inputs(tmp_path / "in", 600, width=512)
    out = tmp_path / "out"
    args = [sys.executable, "-m", "infermux.cli", "submit", str(tmp_path / "m.onnx"), "--address", job_head,
            "-d", "CPU@jobhead", "-q", "--inputs", str(tmp_path / "in"), "--output", str(out)]
    # A user's terminal delivers Ctrl-C; restore SIGINT's default disposition in the child, since
    # a test run started as a background job (CI's `setsid ... &`) passes SIGINT on as ignored.
    client = subprocess.Popen(args, stderr=subprocess.PIPE, text=True, cwd=REPO,
                              env=dict(os.environ, PYTHONPATH=str(REPO)),
                              preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        job_id = re.search(r"job (\S+) submitted", client.stderr.readline()).group(1)
        deadline = time.monotonic() + 120
        while not (out.exists() and len(list(out.glob("*.npz"))) >= 3):
            assert client.poll() is None and time.monotonic() < deadline, "the job finished too soon"
            time.sleep(0.05)
        client.send_signal(signal.SIGINT)
        assert client.wait(timeout=60) == 130
    finally:
        if client.poll() is None:
            client.kill()
        client.stderr.close()
    assert str(JobSubmissionClient(job_head).get_job_status(job_id).value) == "STOPPED"
    written = len(list(out.glob("*.npz")))
    assert 3 <= written < len(data)

    assert cli.main(args[3:]) == 0  # the same command again: resumes
    assert len(list(out.glob("*.npz"))) == len(data)
    with np.load(out / "item599.npz") as result:
        np.testing.assert_allclose(result["y"], _reference(weights, data["item599"]), rtol=1e-4, atol=1e-5)


def test_devices_address_lists_nodes_kinds_memory_and_load(ray_cluster, resolver, capsys):
    assert cli.main(["devices", "--address", ray_cluster.address]) == 0
    lines = capsys.readouterr().out.splitlines()
    by_device = {line.split(":")[0]: line for line in lines}
    assert {"CPU@head", "CPU@node-b", "CPU@node-c"} <= set(by_device)
    assert re.search(r"node=node-b \(127\.0\.0\.1\) kind=CPU memory=\d+\.\d \w+B load=CPU [\d.]+/1 in use",
                     by_device["CPU@node-b"])
    assert "head)" in by_device["CPU@head"]
