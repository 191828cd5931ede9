#!/usr/bin/env python
"""Peak resident memory while running a model: infermux vs onnxruntime, each in its own process.

``python benchmarks/bench_memory.py [MODEL.onnx] [--runs 10]`` (default: the light ResNet-50
shipped inside onnx).  Each runtime loads the model in a fresh process, runs it ``--runs`` times at
batch 1, and reports its peak RSS (``ru_maxrss``), from which the baseline of the bare interpreter
with NumPy imported is not subtracted (both pay it).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

_CHILD = r"""
import json, resource, sys
import numpy as np
runtime, path, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
if runtime == "infermux":
    import infermux as im
    compiled = im.Core().compile_model(path, "CPU")
    port = compiled.inputs[0]
    x = np.random.default_rng(0).random([d.get_length() if d.is_static else 1 for d in port.partial_shape], np.float32)
    run = lambda: compiled([x])
else:
    import onnxruntime as ort
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    x = np.random.default_rng(0).random([d if isinstance(d, int) else 1 for d in inp.shape], np.float32)
    run = lambda: sess.run(None, {inp.name: x})
for _ in range(runs):
    run()
print(json.dumps({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def peak_rss_mb(runtime: str, path: str, runs: int) -> float:
    """Peak RSS in MiB of a fresh process running ``path`` with ``runtime``."""
    out = subprocess.run([sys.executable, "-c", _CHILD, runtime, path, str(runs)], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])["peak_rss_mb"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", nargs="?")
    ap.add_argument("--runs", type=int, default=10)
    args = ap.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from infermux.conformance.data import light_models_dir

    path = args.model or str(light_models_dir() / "light_resnet50.onnx")
    ours, theirs = peak_rss_mb("infermux", path, args.runs), peak_rss_mb("onnxruntime", path, args.runs)
    print(f"{Path(path).name}: peak RSS infermux {ours:.0f} MiB, onnxruntime {theirs:.0f} MiB, "
          f"ratio {ours / theirs:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
