#!/usr/bin/env python
"""Run the dev models fetched by shared/models/get_dev_models.sh against onnxruntime.

``python tools/dev_models_check.py [MODELS_DIR] [--filter REGEX]`` prints, per ONNX model: loads /
matches (atol 1e-4, rtol 1e-3) / max abs diff / infermux and onnxruntime latency.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import infermux as im  # noqa: E402


def make_input(spec: dict, rng: np.random.Generator) -> np.ndarray:
    shape, dtype, fill = spec["shape"], np.dtype(spec["dtype"]), spec.get("fill", "normal")
    if fill == "img":
        x = rng.uniform(-1, 1, shape)
    elif fill == "u01":
        x = rng.uniform(0, 1, shape)
    elif fill == "u255":
        x = rng.uniform(0, 255, shape)
    elif fill == "audio":
        x = rng.normal(0, 0.1, shape)
    elif fill == "zeros":
        x = np.zeros(shape)
    elif fill == "sr16k":
        x = np.array(16000)
    else:
        x = rng.normal(0, 1, shape)
    return np.asarray(x).astype(dtype)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("models_dir", nargs="?", default="models")
    ap.add_argument("--filter", default=".")
    args = ap.parse_args()
    import onnxruntime as ort

    root = Path(args.models_dir)
    manifest = json.loads((root / "manifest.json").read_text())
    core = im.Core()
    for entry in manifest["models"]:
        if entry["format"] != "onnx" or not re.search(args.filter, entry["id"]):
            continue
        path = root / entry["file"]
        rng = np.random.default_rng(0)
        feeds = {name: make_input(spec, rng) for name, spec in entry["test_inputs"].items()}
        try:
            t0 = time.perf_counter()
            compiled = core.compile_model(str(path), "CPU")
            compile_s = time.perf_counter() - t0
            ours = compiled(feeds)
            t0 = time.perf_counter()
            ours = compiled(feeds)
            ours_ms = (time.perf_counter() - t0) * 1e3
            ours = [ours[i] for i in range(len(ours))]
        except Exception as exc:  # noqa: BLE001 - a report
            print(f"{entry['id']:30} ERROR {type(exc).__name__}: {str(exc)[:300]}")
            continue
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        ref = sess.run(None, feeds)
        t0 = time.perf_counter()
        ref = sess.run(None, feeds)
        ort_ms = (time.perf_counter() - t0) * 1e3
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
