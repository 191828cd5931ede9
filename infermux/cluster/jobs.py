"""Batch inference on a cluster through Ray's job submission: ``infermux submit``.

::

    infermux submit model.onnx --address http://head:8265 -d MULTI:CPU@a,CPU@b \\
        --inputs data/ --output out/            # one out/<name>.npz per data/<name>.npy|.npz
    infermux submit model.onnx --address ... --inputs data/ --output results.npz   # one file
    infermux submit --logs JOB_ID --address ...                                    # a job's log

Two halves, in two processes:

* **the client** (:func:`submit`, this process): talks HTTP to the cluster's job server
  (:class:`ray.job_submission.JobSubmissionClient`; it never joins the cluster itself), submits
  the entry point below, and follows the job's log: progress lines drive a progress bar with the
  throughput, other lines go to stderr.  Ctrl-C stops the job (``stop_job``) and exits 130.
* **the job** (:func:`run_job`, ``python -m infermux.cluster.jobs run ...``): a driver of its own
  on the cluster that uses the public API only -- ``Core(cluster="auto")``, ``compile_model``, an
  ``AsyncInferQueue`` -- and writes each input's outputs as soon as they are ready, atomically
  (a temporary file renamed into place).  So a rerun skips every input whose output exists: the
  job is resumable after a failure or a Ctrl-C.

Inputs: every ``.npy`` (the model's only input) and ``.npz`` (arrays keyed by input name) file in
the folder, in name order.  The model and the folders are read and written by the job on the
cluster: give paths the head node sees (one machine, or a shared filesystem).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["PROGRESS_TAG", "job_logs", "plan_work", "print_cluster_devices", "run_job", "submit"]

PROGRESS_TAG = "[infermux-progress]"
_POLL_S = 0.5
_INPUT_SUFFIXES = (".npy", ".npz")


# -- the work: which inputs still need an output ----------------------------------------------

def _single_file(output: str | os.PathLike) -> bool:
    return str(output).endswith(".npz")


def plan_work(inputs: str | os.PathLike, output: str | os.PathLike) -> tuple[list[tuple[Path, Path]], int]:
    """``([(input file, output file) still to do], number already done)``.

    With a folder ``output`` each input ``x.npy`` has ``output/x.npz``; with an ``.npz`` output
    the per-input results wait in ``<output>.parts/`` until all exist and are merged."""
    folder = Path(inputs)
    if not folder.is_dir():
        raise FileNotFoundError(f"the input folder {folder} does not exist")
    files = sorted(p for p in folder.iterdir() if p.suffix in _INPUT_SUFFIXES and p.is_file())
    if not files:
        raise FileNotFoundError(f"{folder} holds no .npy or .npz input files")
    if _single_file(output) and Path(output).exists():
        return [], len(files)
    out_dir = Path(f"{output}.parts") if _single_file(output) else Path(output)
    todo = [(p, out_dir / f"{p.stem}.npz") for p in files]
    remaining = [(src, dst) for src, dst in todo if not dst.exists()]
    return remaining, len(todo) - len(remaining)


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write atomically: a reader (or a resumed job) never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".npz.tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _merge_parts(output: Path) -> None:
    parts = Path(f"{output}.parts")
    merged = {}
    for part in sorted(parts.glob("*.npz")):
        with np.load(part) as data:
            merged.update({f"{part.stem}/{key}": data[key] for key in data.files})
    _write_npz(output, merged)
    shutil.rmtree(parts)


def _load_input(path: Path, input_names: list[str]) -> dict[str, np.ndarray]:
    if path.suffix == ".npy":
        if len(input_names) != 1:
            raise ValueError(f"{path.name}: a .npy file feeds a model with one input; this model "
                             f"has {len(input_names)} ({', '.join(input_names)}): use .npz files")
        return {input_names[0]: np.load(path)}
    with np.load(path) as data:
        return {key: data[key] for key in data.files}


# -- the job (runs on the cluster) -------------------------------------------------------------

def _progress(done: int, total: int, skipped: int, failed: int = 0) -> None:
    print(f"{PROGRESS_TAG} " + json.dumps({"done": done, "total": total, "skipped": skipped,
                                            "failed": failed}), flush=True)


def run_job(model: str, device: str, inputs: str, output: str, config: dict[str, Any],
            address: str = "auto") -> int:
    """The job's entry point: infer every input without an output; 0 when all have one."""
    import infermux as im

    todo, skipped = plan_work(inputs, output)
    total = len(todo) + skipped
    print(f"infermux job: {total} inputs, {skipped} already done, {len(todo)} to run on {device}",
          flush=True)
    _progress(0, total, skipped)
    if todo:
        core = im.Core(cluster=address)
        compiled = core.compile_model(model, device, config)
        print(f"infermux job: compiled on {', '.join(compiled.get_property('EXECUTION_DEVICES'))}",
              flush=True)
        names = [p.any_name for p in compiled.inputs]
        out_names = [p.any_name for p in compiled.outputs]
        queue = im.AsyncInferQueue(compiled)
        done = [0]
        last = [time.monotonic()]

        def finished(request, target: Path) -> None:
            _write_npz(target, {n: request.get_output_tensor(i).data for i, n in enumerate(out_names)})
            done[0] += 1
            if time.monotonic() - last[0] >= _POLL_S / 2:
                last[0] = time.monotonic()
                _progress(done[0], total, skipped)

        queue.set_callback(finished)
        failure = None
        for source, target in todo:
            queue.start_async(_load_input(source, names), target)
        try:
            queue.wait_all()
        except Exception as exc:  # noqa: BLE001 - reported; the rerun retries what failed
            failure = exc
        failed = len(todo) - done[0]
        _progress(done[0], total, skipped, failed)
        if failure is not None:
            print(f"infermux job: {failed} of {len(todo)} inputs failed; first error: {failure}. "
                  f"Submit again to retry them (finished outputs are kept).", flush=True)
            return 1
    if _single_file(output) and not Path(output).exists():
        _merge_parts(Path(output))
    print(f"infermux job: done, outputs in {output}", flush=True)
    return 0


# -- the client --------------------------------------------------------------------------------

def _job_address(address: str | None) -> str:
    address = address or os.environ.get("RAY_API_SERVER_ADDRESS") or os.environ.get("RAY_ADDRESS") or ""
    if not address:
        raise ValueError("give the cluster's job server with --address (e.g. http://head:8265)")
    return address if "://" in address else f"http://{address}"


def _client(address: str | None):
    from ray.job_submission import JobSubmissionClient

    return JobSubmissionClient(_job_address(address))


def _entrypoint(model: str, device: str, inputs: str, output: str, config: dict[str, Any]) -> str:
    import shlex

    args = ["python", "-m", "infermux.cluster.jobs", "run", "--model", model, "--device", device,
            "--inputs", inputs, "--output", output, "--config", json.dumps(config)]
    return " ".join(shlex.quote(a) for a in args)


def submit(model: str, *, address: str | None, device: str, inputs: str, output: str,
           config: dict[str, Any] | None = None, wait: bool = True, quiet: bool = False) -> int:
    """Submit a batch-inference job and follow it (see the module docstring); the exit code."""
    from tqdm import tqdm

    paths = [str(Path(p).resolve()) for p in (model, inputs, output)]
    client = _client(address)
    job_id = client.submit_job(entrypoint=_entrypoint(paths[0], device, paths[1], paths[2], config or {}),
                               metadata={"infermux": "batch-inference"})
    print(f"infermux submit: job {job_id} submitted (logs: infermux submit --logs {job_id} "
          f"--address {_job_address(address)})", file=sys.stderr, flush=True)
    if not wait:
        return 0
    bar = tqdm(desc="inputs", unit="input", file=sys.stderr, dynamic_ncols=True, disable=quiet)
    seen = 0
    try:
        while True:
            status = str(client.get_job_status(job_id).value)
            text = client.get_job_logs(job_id)
            seen = _follow(text, seen, bar, quiet)
            if status in ("SUCCEEDED", "FAILED", "STOPPED"):
                break
            time.sleep(_POLL_S)
    except KeyboardInterrupt:
        bar.close()
        print(f"infermux submit: stopping job {job_id} ...", file=sys.stderr, flush=True)
        _stop(client, job_id)
        return 130
    bar.close()
    print(f"infermux submit: job {job_id} {status.lower()}", file=sys.stderr, flush=True)
    return 0 if status == "SUCCEEDED" else 1


def _follow(text: str, seen: int, bar: Any, quiet: bool) -> int:
    """Show the log lines after offset ``seen``; progress lines move the bar.  The new offset."""
    fresh = text[seen:]
    complete = fresh.rfind("\n") + 1
    for line in fresh[:complete].splitlines():
        if line.startswith(PROGRESS_TAG):
            state = json.loads(line[len(PROGRESS_TAG):])
            bar.total = state["total"]
            bar.n = state["done"] + state["skipped"]
            bar.set_postfix(skipped=state["skipped"], failed=state["failed"], refresh=False)
            bar.refresh()
        elif not quiet:
            bar.write(line, file=sys.stderr)
    return seen + complete


def _stop(client: Any, job_id: str, timeout_s: float = 30.0) -> None:
    """Stop the job and wait until Ray says it stopped (Ctrl-C again gives up waiting)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        client.stop_job(job_id)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if str(client.get_job_status(job_id).value) in ("STOPPED", "FAILED", "SUCCEEDED"):
                print(f"infermux submit: job {job_id} stopped; submit again to resume", file=sys.stderr)
                return
            time.sleep(0.2)
        print(f"infermux submit: job {job_id} did not stop within {timeout_s:.0f} s", file=sys.stderr)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGINT, previous)


def job_logs(job_id: str, address: str | None) -> str:
    """The whole log of a job (its driver's stdout and stderr)."""
    return _client(address).get_job_logs(job_id)


# -- cluster devices (``infermux devices --address``) --------------------------------------------

def _size(value: float | None) -> str:
    if value is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{int(value)} B"
        value /= 1024
    return "-"


def print_cluster_devices(address: str, show_all: bool = False) -> int:
    """One line per cluster device: name, node (and address), kind, memory and current load
    (the device's resource in use on its node: held by device actors, tasks or other drivers)."""
    from infermux.cluster import connect
    from infermux.cluster.discovery import list_nodes, resource_usage

    resolver = connect(address)
    nodes = {n.node_id: n for n in list_nodes()}
    usage = resource_usage()
    for device in resolver.devices():
        node = nodes.get(device.node_id)
        used, total = usage.get(device.node_id, {}).get(device.kind, (0.0, 0.0))
        load = f"{device.kind} {used:g}/{total:g} in use"
        where = f"{device.node} ({node.address}{', head' if node and node.is_head else ''})" if node else device.node
        print(f"{device.name}: node={where} kind={device.kind} memory={_size(device.memory_bytes)} load={load}")
        if show_all and node is not None:
            print(f"    resources: {json.dumps(dict(sorted(node.resources.items())))}")
            print(f"    labels: {json.dumps(dict(node.labels))}")
    return 0


# -- ``python -m infermux.cluster.jobs run ...`` (the job's entry point) ---------------------------

def main(argv: Sequence[str] | None = None) -> int:
    """The entry point the client submits."""
    parser = argparse.ArgumentParser(prog="python -m infermux.cluster.jobs")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a batch-inference job (on the cluster)")
    run.add_argument("--model", required=True)
    run.add_argument("--device", required=True)
    run.add_argument("--inputs", required=True)
    run.add_argument("--output", required=True)
    run.add_argument("--config", default="{}", help="compile config as JSON")
    run.add_argument("--address", default="auto", help="the cluster (default: the job's own)")
    args = parser.parse_args(argv)
    return run_job(args.model, args.device, args.inputs, args.output, json.loads(args.config), args.address)


if __name__ == "__main__":
    sys.exit(main())
