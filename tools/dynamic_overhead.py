"""Measure what a dynamic batch costs: the light ResNet-50 compiled once with input
``[?,3,224,224]`` and run at batch 1 and 8 alternately, against two static compiles (batch 1,
batch 8) fed the same arrays.

The CPU plan is shape-agnostic (kernels read shapes at run time; nothing is cached per shape), so
the only expected differences are compile-time folds that need static shapes (``Shape``/``Size``
of static tensors; ResNet-50 has none).  Rounds are interleaved so drift on a shared machine hits
every configuration alike; the report uses each configuration's median.

    .venv/bin/python tools/dynamic_overhead.py [--rounds 7] [--device CPU]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import infermux as im
from infermux.conformance.data import light_models_dir


def _compiled(core, path, shape, device):
    model = core.read_model(path)
    model.reshape(shape)
    return core.compile_model(model, device)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--device", default="CPU")
    args = parser.parse_args(argv)

    core = im.Core()
    path = light_models_dir() / "light_resnet50.onnx"
    static = {1: _compiled(core, path, [1, 3, 224, 224], args.device),
              8: _compiled(core, path, [8, 3, 224, 224], args.device)}
    dynamic = _compiled(core, path, "?,3,224,224", args.device)
    rng = np.random.default_rng(0)
    feeds = {b: rng.standard_normal((b, 3, 224, 224)).astype(np.float32) for b in (1, 8)}
    requests = {("static", b): static[b].create_infer_request() for b in (1, 8)}
    requests.update({("dynamic", b): dynamic.create_infer_request() for b in (1, 8)})
    for (kind, b), req in requests.items():  # warm-up, and the outputs must agree
        req.infer({0: feeds[b]})
    for b in (1, 8):
        a = requests[("static", b)].get_output_tensor(0).data
        d = requests[("dynamic", b)].get_output_tensor(0).data
        assert a.shape == d.shape == (b, 1000), (a.shape, d.shape)
        np.testing.assert_allclose(a, d, rtol=1e-5, atol=1e-6)
    times: dict[tuple[str, int], list[float]] = {k: [] for k in requests}
    for _ in range(args.rounds):
        for key, req in requests.items():
            t0 = time.perf_counter()
            req.infer({0: feeds[key[1]]})
            times[key].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    for (kind, b), t in sorted(med.items()):
        print(f"{kind:8s} batch {b}: median {t * 1e3:8.1f} ms  (min {min(times[(kind, b)]) * 1e3:.1f})")
    static_s = med[("static", 1)] + med[("static", 8)]
    dynamic_s = med[("dynamic", 1)] + med[("dynamic", 8)]
    overhead = dynamic_s / static_s - 1
    print(f"batch 1 + batch 8: static {static_s * 1e3:.1f} ms, dynamic {dynamic_s * 1e3:.1f} ms, "
          f"overhead {overhead * 100:+.1f}%")
    return 0 if overhead <= 0.10 else 1


if __name__ == "__main__":
    raise SystemExit(main())
