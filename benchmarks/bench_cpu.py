#!/usr/bin/env python
"""Batch-1 f32 CPU latency of infermux against onnxruntime and OpenVINO (f32), same thread count.

    python benchmarks/bench_cpu.py                          # the make_models.py zoo, gated
    python benchmarks/bench_cpu.py --models tiny,mlp --quick
    python benchmarks/bench_cpu.py --models all --out results.md --json results.json
    python benchmarks/bench_cpu.py --profile resnet18       # infermux's slowest ops on one model

Model names: the zoo (tiny mlp lstm resnet18 mobilenetv2 bert4), the light_* models shipped in
onnx (light_resnet50, ...; the prefix may be left out), the groups ``zoo``, ``light``, ``all``,
or paths to other ``.onnx`` files.
Each runtime runs in its own worker process; bursts of the runtimes are interleaved and only
bursts taken while the machine was otherwise idle count (see benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib.util
import json
import math
import multiprocessing
import os
import platform
import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent
sys.path[:0] = [str(HERE), str(REPO_ROOT)]

# Only the standard library above and in _harness: spawned workers re-import this file before
# they set their thread environment, so NumPy must not load here.
import _harness as H

ZOO = ("tiny", "mlp", "lstm", "resnet18", "mobilenetv2", "bert4")
LIGHT = ("light_bvlc_alexnet", "light_densenet121", "light_inception_v1", "light_inception_v2",
         "light_resnet50", "light_shufflenet", "light_squeezenet", "light_vgg19", "light_zfnet512")
_TINY_OPS = 5
_LABELS = {"infermux": "infermux", "ort": "ORT", "ov-f32": "OV-f32"}


# -- models and inputs -------------------------------------------------------------------------

def resolve_models(spec: str) -> list[str]:
    """``"tiny,zoo,resnet50"`` -> model names, in order, without repeats."""
    names: list[str] = []
    for item in (s.strip() for s in spec.split(",") if s.strip()):
        if item.endswith(".onnx"):
            names.append(item)
            continue
        group = {"zoo": ZOO, "light": LIGHT, "all": ZOO + LIGHT}.get(item)
        for name in group or [item if item in ZOO or item in LIGHT else f"light_{item}"]:
            if name not in ZOO and name not in LIGHT:
                raise SystemExit(f"unknown model '{item}': expected one of {', '.join(ZOO + LIGHT)}, "
                                 f"or zoo, light, all")
            if name not in names:
                names.append(name)
    return names


def _make_models_module():
    """benchmarks/make_models.py, or the shared copy it was taken from."""
    for path in (HERE / "make_models.py", Path("/work/shared/bench/make_models.py")):
        if path.exists():
            spec = importlib.util.spec_from_file_location("make_models", path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return module
    raise SystemExit("make_models.py not found beside bench_cpu.py")


def model_path(name: str, cache_dir: Path, seed: int) -> Path:
    """The model file, building a zoo model into ``cache_dir`` the first time."""
    if name.endswith(".onnx"):
        return Path(name)
    if name in LIGHT:
        from infermux.conformance.data import light_models_dir

        return light_models_dir() / f"{name}.onnx"
    path = cache_dir / f"{name}-seed{seed}.onnx"
    if not path.exists():
        import numpy as np
        import onnx

        mm = _make_models_module()
        # The seed make_models.py itself gives the model in a full build, so the files match.
        rng = np.random.default_rng(seed + 1000 * list(mm.BUILDERS).index(name))
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        onnx.save(mm.BUILDERS[name](rng), tmp)
        os.replace(tmp, path)
    return path


def make_feeds(path: Path, batch: int, seed: int) -> tuple[dict, dict]:
    """Random inputs at ``batch`` and {symbolic dim: size}; raises ValueError for a static batch."""
    import numpy as np
    import onnx
    from onnx.helper import tensor_dtype_to_np_dtype

    graph = onnx.load(str(path), load_external_data=False).graph
    inits = {i.name for i in graph.initializer}
    rng = np.random.default_rng(seed)
    feeds, free_dims = {}, {}
    for value in graph.input:
        if value.name in inits:
            continue
        tt = value.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else d.dim_param for d in tt.shape.dim]
        if batch != 1 and not any(isinstance(d, str) for d in dims):
            raise ValueError(f"input '{value.name}' has the static shape {dims}; only --batch 1")
        free_dims.update({d: batch for d in dims if isinstance(d, str)})
        shape = [batch if isinstance(d, str) else d for d in dims]
        feeds[value.name] = rng.standard_normal(shape).astype(tensor_dtype_to_np_dtype(tt.elem_type))
    return feeds, free_dims


def max_rel_diff(outputs, reference) -> float:
    """max |a - b| / max |b| over all outputs (inf when shapes differ)."""
    import numpy as np

    worst = 0.0
    for a, b in zip(outputs, reference, strict=True):
        a, b = np.asarray(a), np.asarray(b)
        if a.shape != b.shape:
            return math.inf
        if a.size == 0:
            continue
        a64, b64 = a.astype(np.float64), b.astype(np.float64)
        scale = max(float(np.abs(b64).max()), 1e-30)
        worst = max(worst, float(np.abs(a64 - b64).max()) / scale)
    return worst


# -- one model ---------------------------------------------------------------------------------

def bench_model(name: str, args, plan: H.GatePlan, ctx, progress_cls) -> dict:
    """Load every runtime on ``name`` in its worker, time them interleaved; a plain-data record."""
    record: dict = {"model": Path(name).stem, "status": "ok", "runtimes": {}}
    try:
        path = model_path(name, args.cache_dir, args.seed)
        feeds, free_dims = make_feeds(path, args.batch, args.seed)
    except Exception as exc:  # noqa: BLE001 - a model that cannot be built is reported
        return {**record, "status": "failed", "error": f"{type(exc).__name__}: {exc}"[:400]}
    warmup_s = 0.05 if args.quick else 0.3
    workers = [H.Worker(ctx, rt, str(path), feeds, args.threads, free_dims, warmup_s,
                        str(REPO_ROOT)) for rt in args.runtimes]
    try:
        ready = _wait_ready(workers, record, args.load_timeout_s)
        if "infermux" in args.runtimes and "infermux" not in ready:
            return {**record, "status": "failed", "error": record["runtimes"]["infermux"]["error"]}
        _accuracy(record, ready)
        with progress_cls(total=len(ready) * plan.min_quiet, desc=f"{record['model']:>18}",
                          unit="burst", file=sys.stderr, leave=True, disable=args.no_progress) as bar:
            bursts = H.measure_model(list(ready.values()), plan, bar,
                                     random.Random(f"{args.seed}-{record['model']}"))
    finally:
        for w in workers:
            w.close()
    _store_bursts(record, bursts, plan)
    if "infermux" in args.runtimes and "median_s" not in record["runtimes"]["infermux"]:
        return {**record, "status": "failed", "error": record["runtimes"]["infermux"].get("error", "no bursts")}
    return record


def _wait_ready(workers, record: dict, timeout_s: float) -> dict:
    """{runtime: worker} of the workers that loaded; the others' errors go into ``record``."""
    ready = {}
    for w in workers:
        try:
            report = w.wait_ready(timeout_s)
        except H.WorkerError as exc:
            record["runtimes"][w.runtime] = {"error": str(exc), "traceback": exc.details}
            continue
        record["runtimes"][w.runtime] = {k: report[k] for k in ("load_s", "first_call_s", "info")}
        ready[w.runtime] = w
    return ready


def _store_bursts(record: dict, bursts: dict, plan: H.GatePlan) -> None:
    for rt, entry in record["runtimes"].items():
        if rt + ":error" in bursts:
            entry["error"] = bursts[rt + ":error"][0]
        if bursts.get(rt):
            entry.update(H.summarize(bursts[rt], plan).to_dict())
            entry["bursts"] = [{"per_call_s": b.per_call_s, "calls": b.calls,
                                "foreign_cores": round(b.foreign_cores, 3)} for b in bursts[rt]]


def _accuracy(record: dict, ready: dict) -> None:
    """Each runtime's max relative difference from ORT on the first call's outputs."""
    by_rt = {rt: w.ready["outputs"] for rt, w in ready.items()}
    if "ort" not in by_rt:
        return
    import numpy as np

    # The light_* models have constant weights; their outputs are often one repeated value.
    record["constant_output"] = all(np.ptp(o) == 0 for o in by_rt["ort"] if np.size(o))
    for rt, outputs in by_rt.items():
        if rt != "ort":
            try:
                record["runtimes"][rt]["max_rel_diff_vs_ort"] = max_rel_diff(outputs, by_rt["ort"])
            except ValueError as exc:  # different number of outputs
                record["runtimes"][rt]["max_rel_diff_vs_ort"] = math.inf
                record["runtimes"][rt]["accuracy_error"] = str(exc)


# -- report ------------------------------------------------------------------------------------

def _ms(record: dict, rt: str) -> float | None:
    return record["runtimes"].get(rt, {}).get("median_s")


def _fmt_ms(seconds: float | None, flag: str = "") -> str:
    if seconds is None:
        return "-"
    ms = seconds * 1e3
    text = f"{ms:.2f}" if ms >= 10 else f"{ms:.3g}" if ms >= 0.01 else f"{ms:.4f}"
    return text + flag


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def ratios(records: list[dict]) -> dict:
    """im/ORT per model, their geometric mean and the worst (largest) one."""
    per_model = {r["model"]: _ratio(_ms(r, "infermux"), _ms(r, "ort")) for r in records if r["status"] == "ok"}
    per_model = {k: v for k, v in per_model.items() if v}
    if not per_model:
        return {"per_model": {}, "geomean": None, "worst": None}
    geo = math.exp(sum(math.log(v) for v in per_model.values()) / len(per_model))
    worst = max(per_model, key=per_model.get)
    return {"per_model": per_model, "geomean": geo, "worst": [worst, per_model[worst]]}


def render_markdown(records: list[dict], meta: dict) -> str:
    """The results as markdown: settings, one row per model, ratio summary, overhead, failures."""
    lines = [f"## infermux CPU benchmark ({meta['date']})", "",
             (f"batch {meta['batch']}, f32, {meta['threads']} threads; {meta['cpu']}; "
              f"{meta['method']}"), "",
             "| model | infermux ms | ORT ms | OV-f32 ms | im/ORT | im/OV | max rel diff | quiet bursts im/ORT/OV |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    failed = []
    for r in records:
        if r["status"] != "ok":
            lines.append(f"| {r['model']} | failed | - | - | - | - | - | - |")
            failed.append(f"- **{r['model']}**: {r['error']}")
            continue
        rts = r["runtimes"]
        cells = [_fmt_ms(_ms(r, rt), rts.get(rt, {}).get("flag", "")) for rt in H.RUNTIMES]
        im_ort, im_ov = _ratio(_ms(r, "infermux"), _ms(r, "ort")), _ratio(_ms(r, "infermux"), _ms(r, "ov-f32"))
        diff = rts.get("infermux", {}).get("max_rel_diff_vs_ort")
        quiet = "/".join(str(rts.get(rt, {}).get("n_quiet", "-")) for rt in H.RUNTIMES)
        lines.append(f"| {r['model']} | " + " | ".join(cells) +
                     f" | {_fmt_ratio(im_ort)} | {_fmt_ratio(im_ov)} | "
                     f"{_fmt_diff(diff, r.get('constant_output'))} | {quiet} |")
        failed += [f"- {r['model']} / {rt}: {e['error']}" for rt, e in rts.items() if "error" in e]
    summary = ratios(records)
    lines.append("")
    if summary["geomean"] is None:
        lines.append("im/ORT geometric mean: n/a (no model measured on both)")
    else:
        worst_name, worst = summary["worst"]
        lines.append(f"im/ORT geometric mean: {summary['geomean']:.2f}x over {len(summary['per_model'])} "
                     f"model{'s' if len(summary['per_model']) != 1 else ''}; worst: {worst_name} {worst:.2f}x")
    tiny = next((r for r in records if r["model"] == "tiny" and r["status"] == "ok"), None)
    if tiny:
        us = {rt: _ms(tiny, rt) * 1e6 for rt in H.RUNTIMES if _ms(tiny, rt)}
        parts = [f"{label} {us[rt]:.1f} us" for rt, label in _LABELS.items() if rt in us]
        if "infermux" in us:
            parts[0] += f" ({us['infermux'] / _TINY_OPS:.2f} us/op)"
        lines.append(f"Per-call overhead (tiny, {_TINY_OPS} ops): " + ", ".join(parts))
    lines += ["", ("Flags: `*` fewer quiet bursts than asked; `!` no quiet burst, median of all bursts; "
                   "`(const out)` ORT's output is one repeated value, so the diff says little.")]
    if failed:
        lines += ["", "Failures:"] + failed
    return "\n".join(lines) + "\n"


def _fmt_diff(diff: float | None, constant_output: bool) -> str:
    if diff is None:
        return "-"
    return f"{diff:.1e}" + (" (const out)" if constant_output else "")


def _fmt_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def _meta(args, plan: H.GatePlan) -> dict:
    if plan.quiet_cores is None:
        method = f"QUICK: {plan.min_quiet} ungated bursts of ~{plan.burst_s} s per runtime (noisy numbers)"
    else:
        method = (f"medians over >= {plan.min_quiet} quiet ~{plan.burst_s} s bursts "
                  f"(foreign load <= {plan.quiet_cores} cores), runtimes interleaved")
    return {"date": datetime.datetime.now().isoformat(timespec="seconds"), "batch": args.batch,
            "threads": args.threads, "cpu": _cpu_name(), "python": platform.python_version(),
            "method": method, "gate": dataclasses.asdict(plan)}


# -- profile -----------------------------------------------------------------------------------

def profile(name: str, args) -> str:
    """Run infermux with PERF_COUNT on ``name``; markdown tables of the slowest op types and nodes."""
    import statistics
    import time

    import infermux as im

    path = model_path(name, args.cache_dir, args.seed)
    feeds, _ = make_feeds(path, args.batch, args.seed)
    core = im.Core()
    compiled = core.compile_model(core.read_model(str(path)), "CPU",
                                  {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": args.threads,
                                   "PERF_COUNT": True})
    request = compiled.create_infer_request()
    request.infer(feeds)
    if not args.quick:
        H.wait_until_quiet(args.quiet_cores, args.max_wait_s)
    idle0, cpu0, t_start = H.read_idle(), time.process_time(), time.perf_counter()
    per_node: dict[tuple[str, str], list[float]] = {}
    walls = []
    t_end = time.perf_counter() + args.profile_s
    while len(walls) < 3 or time.perf_counter() < t_end:
        t0 = time.perf_counter()
        request.infer(feeds)
        walls.append(time.perf_counter() - t0)
        for p in request.profiling_info:
            per_node.setdefault((p.node_name, p.node_type), []).append(p.real_time.total_seconds())
    load = H.Burst(len(walls), time.perf_counter() - t_start, time.process_time() - cpu0,
                   H.busy_since(idle0, time.perf_counter() - t_start)).foreign_cores
    node_ms = {k: statistics.median(v) * 1e3 for k, v in per_node.items()}
    total = sum(node_ms.values())
    by_type: dict[str, list[float]] = {}
    for (_, op), ms in node_ms.items():
        by_type.setdefault(op, []).append(ms)
    lines = [f"## infermux profile: {name}, batch {args.batch}, {args.threads} threads, {len(walls)} runs", "",
             (f"median call {statistics.median(walls) * 1e3:.4g} ms (profiled); sum of node medians "
              f"{total:.4g} ms over {len(node_ms)} nodes; other processes used {load:.2f} cores "
              f"meanwhile{' (noisy: compare shares, not times)' if load > args.quiet_cores else ''}"), "",
             "| op type | ms/call | % | nodes |", "|---|---:|---:|---:|"]
    for op, ms in sorted(by_type.items(), key=lambda kv: -sum(kv[1]))[:args.top]:
        lines.append(f"| {op} | {sum(ms):.4g} | {100 * sum(ms) / total:.1f} | {len(ms)} |")
    lines += ["", "| node | op type | ms/call | % |", "|---|---|---:|---:|"]
    for (node, op), ms in sorted(node_ms.items(), key=lambda kv: -kv[1])[:args.top]:
        lines.append(f"| {node} | {op} | {ms:.4g} | {100 * ms / total:.1f} |")
    return "\n".join(lines) + "\n"


# -- main --------------------------------------------------------------------------------------

def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="zoo", help="comma list of models or zoo/light/all (default zoo)")
    ap.add_argument("--runtimes", default=",".join(H.RUNTIMES), help="comma subset of " + ",".join(H.RUNTIMES))
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--min-quiet-bursts", type=int, default=5)
    ap.add_argument("--quiet-cores", type=float, default=0.1,
                    help="a burst is quiet when other processes used at most this many cores")
    ap.add_argument("--burst-s", type=float, default=0.4)
    ap.add_argument("--max-wait-s", type=float, default=5.0, help="wait for an idle machine before a burst")
    ap.add_argument("--max-model-s", type=float, default=300.0, help="time limit for a model's bursts")
    ap.add_argument("--load-timeout-s", type=float, default=900.0, help="limit for loading + first calls")
    ap.add_argument("--quick", action="store_true", help="3 short ungated bursts per runtime")
    ap.add_argument("--out", type=Path, help="also write the markdown here")
    ap.add_argument("--json", type=Path, help="write every measurement here")
    ap.add_argument("--cache-dir", type=Path,
                    default=Path(os.environ.get("INFERMUX_BENCH_CACHE", Path.home() / ".cache" / "infermux-bench")))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--profile", metavar="MODEL", help="profile infermux on MODEL instead of comparing")
    ap.add_argument("--profile-s", type=float, default=3.0, help="seconds of profiled runs")
    ap.add_argument("--top", type=int, default=15, help="rows in the profile tables")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    args.runtimes = [r for r in H.RUNTIMES if r in args.runtimes.split(",")]
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    H.set_thread_env(args.threads)  # before numpy is imported here, for --profile
    if args.profile:
        print(profile(resolve_models(args.profile)[0], args))
        return 0
    from tqdm import tqdm

    if args.quick:
        plan = H.GatePlan(burst_s=0.1, min_quiet=3, quiet_cores=None, max_model_s=60.0)
    else:
        plan = H.GatePlan(burst_s=args.burst_s, min_quiet=args.min_quiet_bursts,
                          quiet_cores=args.quiet_cores, max_wait_s=args.max_wait_s,
                          max_model_s=args.max_model_s)
    ctx = multiprocessing.get_context("spawn")
    records = []
    for name in resolve_models(args.models):
        records.append(bench_model(name, args, plan, ctx, tqdm))
        if records[-1]["status"] != "ok":
            tqdm.write(f"{name}: FAILED {records[-1]['error']}", file=sys.stderr)
    meta = _meta(args, plan)
    text = render_markdown(records, meta)
    print(text)
    if args.out:
        args.out.write_text(text)
    if args.json:
        args.json.write_text(json.dumps({"meta": meta, "ratios": ratios(records), "models": records},
                                        indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
