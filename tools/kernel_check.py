#!/usr/bin/env python
"""Run ONNX backend node tests straight through the op registry (no graph passes, no plugin).

For kernel authors: ``python tools/kernel_check.py [REGEX ...]`` runs every generated node test
whose name matches, interpreting the model node by node with the registered kernels, and prints
PASS/FAIL/ERROR per test plus a summary.  Graph attributes (If/Loop/Scan bodies) are not
supported here: use the conformance runner for those.
"""

from __future__ import annotations

import re
import sys
import traceback
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from infermux.conformance.data import ensure_node_tests  # noqa: E402
from infermux.ops import registry  # noqa: E402


def decode_attr(attr):
    value = helper.get_attribute_value(attr)
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, onnx.TensorProto):
        return numpy_helper.to_array(value)
    if isinstance(value, list) and value and isinstance(value[0], bytes):
        return [v.decode("utf-8") for v in value]
    if isinstance(value, list) and value and isinstance(value[0], onnx.TensorProto):
        return [numpy_helper.to_array(v) for v in value]
    if isinstance(value, onnx.GraphProto):
        raise NotImplementedError("graph attributes are not supported by kernel_check")
    return value


def run_model(model: onnx.ModelProto, feeds: list) -> list:
    opsets = {o.domain or "": o.version for o in model.opset_import}
    env = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    for vi, value in zip(model.graph.input, feeds):
        env[vi.name] = value
    for node in model.graph.node:
        k = registry.lookup(node.op_type, opsets.get(node.domain or "", 1), node.domain or "")
        args = [env[name] if name else None for name in node.input]
        while args and args[-1] is None:
            args.pop()
        attrs = {a.name: decode_attr(a) for a in node.attribute}
        if k.wants_num_outputs:
            attrs["_num_outputs"] = len(node.output)
        if k.wants_used_outputs:
            attrs["_used_outputs"] = tuple(bool(o) for o in node.output)
        out = k.fn(np, *args, **attrs)
        outs = list(out) if isinstance(out, (tuple, list)) else [out]
        for name, value in zip(node.output, outs):
            if name:
                env[name] = value
    return [env[o.name] for o in model.graph.output]


def load_pb(path: Path):
    t = onnx.TensorProto()
    t.ParseFromString(path.read_bytes())
    return numpy_helper.to_array(t)


def check(test_dir: Path) -> tuple[str, str]:
    model = onnx.load(str(test_dir / "model.onnx"))
    data = test_dir / "test_data_set_0"
    feeds = [load_pb(p) for p in sorted(data.glob("input_*.pb"), key=lambda p: int(p.stem[6:]))]
    refs = [load_pb(p) for p in sorted(data.glob("output_*.pb"), key=lambda p: int(p.stem[7:]))]
    try:
        outs = run_model(model, feeds)
    except Exception as exc:  # noqa: BLE001 - a tool reporting every failure
        return "ERROR", f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
    for i, (ref, out) in enumerate(zip(refs, outs)):
        out = np.asarray(out)
        if ref.dtype != out.dtype:
            return "FAIL", f"output {i}: dtype {out.dtype} != {ref.dtype}"
        if ref.shape != out.shape:
            return "FAIL", f"output {i}: shape {out.shape} != {ref.shape}"
        if ref.dtype == object:
            ok = (ref == out).all()
        else:
            ok = np.allclose(out.astype(np.float64) if out.dtype.kind in "fc" else out,
                             ref, rtol=1e-3, atol=1e-7, equal_nan=True)
        if not ok:
            return "FAIL", f"output {i}: values differ (max abs diff {np.max(np.abs(out.astype(float) - ref.astype(float)))})"
    return "PASS", ""


def main(argv: list[str]) -> int:
    patterns = [re.compile(p) for p in argv] or [re.compile(".")]
    root = ensure_node_tests()
    counts = {"PASS": 0, "FAIL": 0, "ERROR": 0}
    for test_dir in sorted(root.iterdir()):
        if not any(p.search(test_dir.name) for p in patterns):
            continue
        try:
            status, why = check(test_dir)
        except Exception:  # noqa: BLE001
            status, why = "ERROR", traceback.format_exc().splitlines()[-1]
        counts[status] += 1
        print(f"{status:5} {test_dir.name} {why}")
    print(f"{counts['PASS']} passed, {counts['FAIL'] + counts['ERROR']} failed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
