#!/usr/bin/env python
"""Run the dev models fetched by shared/models/get_dev_models.sh against onnxruntime.

``python tools/dev_models_check.py [MODELS_DIR] [--filter REGEX] [--repeats 7]`` prints, per ONNX
model: loads / matches (atol 1e-4, rtol 1e-3) / max abs diff / compile time / median latency of
infermux and onnxruntime (2 intra-op threads) over interleaved runs, and their ratio.  Not gated on
foreign load: run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import infermux as im  # noqa: E402
from infermux.conformance.dev_models import load_manifest, make_inputs  # noqa: E402


def _ort_options(threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return options


def _interleaved(ours, theirs, repeats: int) -> tuple[float, float]:
    """Median ms of ``repeats`` alternating runs of each (after one warm-up each)."""
    ours(), theirs()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for fn, bucket in ((ours, times[0]), (theirs, times[1])):
            t0 = time.perf_counter()
            fn()
            bucket.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(times[0])), float(np.median(times[1]))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("models_dir", nargs="?", default="models")
    ap.add_argument("--filter", default=".")
    ap.add_argument("--repeats", type=int, default=7, help="interleaved timed runs per runtime")
    ap.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads")
    args = ap.parse_args()
    import onnxruntime as ort

    root = Path(args.models_dir)
    core = im.Core()
    for entry in load_manifest(root):
        if entry["format"] != "onnx" or not re.search(args.filter, entry["id"]):
            continue
        path = root / entry["file"]
        feeds = make_inputs(entry)
        try:
            t0 = time.perf_counter()
            compiled = core.compile_model(str(path), "CPU")
            compile_s = time.perf_counter() - t0
            result = compiled(feeds)
            ours = [result[i] for i in range(len(result))]
        except Exception as exc:  # noqa: BLE001 - a report
            print(f"{entry['id']:30} ERROR {type(exc).__name__}: {str(exc)[:300]}")
            continue
        sess = ort.InferenceSession(str(path), _ort_options(args.threads), providers=["CPUExecutionProvider"])
        ref = sess.run(None, feeds)
        ours_ms, ort_ms = _interleaved(lambda: compiled(feeds), lambda: sess.run(None, feeds), args.repeats)
        worst, ok = 0.0, True
        for a, b in zip(ours, ref):
            a, b = np.asarray(a), np.asarray(b)
            if a.shape != b.shape:
                ok = False
                worst = float("inf")
                continue
            if a.dtype.kind in "fc":
                diff = float(np.max(np.abs(a.astype(np.float64) - b))) if a.size else 0.0
                ok &= bool(np.allclose(a, b, atol=1e-4, rtol=1e-3))
            else:
                diff = float(np.sum(a != b))
                ok &= diff == 0
            worst = max(worst, diff)
        print(f"{entry['id']:30} {'MATCH' if ok else 'DIFF '} maxdiff {worst:.2e} compile {compile_s:.2f}s "
              f"infermux {ours_ms:8.2f} ms  ort {ort_ms:8.2f} ms  ratio {ours_ms / ort_ms:5.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
