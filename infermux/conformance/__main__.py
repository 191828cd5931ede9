"""``python -m infermux.conformance``: run the ONNX backend node tests and report pass rates.

    python -m infermux.conformance                       # every node test on CPU
    python -m infermux.conformance --filter '^test_conv' --per-op
    python -m infermux.conformance --json report.json    # every result, machine-readable
    python -m infermux.conformance --include-excluded    # also run excluded tests (do they pass now?)
    python -m infermux.conformance --ops                 # the ops infermux implements

The tests are generated once into ``$INFERMUX_CONFORMANCE_CACHE`` (see ``data.py``).  Failed tests
are listed with a one-line reason, then the pass rate overall and per op (ops with a failure or
skip; ``--per-op`` lists every op), and the last line is ``N passed, M failed, K skipped``.
Exit status: 0 when nothing failed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import time

from infermux.conformance.runner import (
    DEFAULT_TIMEOUT_S,
    FAILED,
    PASSED,
    SKIPPED,
    TestResult,
    iter_test_dirs,
    run_node_tests,
)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m infermux.conformance",
                                 description="Run the ONNX backend node tests through infermux.")
    ap.add_argument("--suite", default="node", choices=SUITES,
                    help="node: the generated node tests (default); simple, pytorch-converted, "
                         "pytorch-operator: the model suites shipped inside the onnx package")
    ap.add_argument("--filter", metavar="REGEX", help="only tests whose name matches (re.search)")
    ap.add_argument("--device", default="CPU", help="device to compile for (default CPU)")
    ap.add_argument("--json", metavar="FILE", help="write every result and the totals as JSON")
    ap.add_argument("--per-op", action="store_true", help="list the pass rate of every op")
    ap.add_argument("--ops", action="store_true", help="list the supported ops and exit")
    ap.add_argument("--include-excluded", action="store_true",
                    help="run the tests in exclusions.py too instead of skipping them")
    ap.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, metavar="SECONDS",
                    help=f"per-test time limit (default {DEFAULT_TIMEOUT_S:g})")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    return ap.parse_args(argv)


def _print_ops() -> None:
    from infermux.ops.registry import registered_ops

    ops = registered_ops()
    for (domain, op_type), versions in ops.items():
        name = f"{domain}::{op_type}" if domain else op_type
        print(f"{name:40s} since opset {', '.join(map(str, versions))}")
    print(f"{len(ops)} ops")


SUITES = ("node", "simple", "pytorch-converted", "pytorch-operator")


def _run(args: argparse.Namespace) -> list[TestResult]:
    from tqdm import tqdm

    from infermux.conformance.data import suite_dir

    dirs = list(iter_test_dirs(suite_dir(args.suite), args.filter))
    results = []
    bar = tqdm(total=len(dirs), file=sys.stderr, unit="test", disable=args.no_progress,
               dynamic_ncols=True)
    with bar:
        # the exclusion list is about the node tests; the model suites run in full
        for result in run_node_tests(dirs, device=args.device, timeout_s=args.timeout,
                                     include_excluded=args.include_excluded or args.suite != "node"):
            results.append(result)
            bar.set_postfix_str(result.name, refresh=False)
            bar.update()
    return results


def _rate(passed: int, total: int) -> str:
    return f"{100.0 * passed / total:5.1f}%" if total else "  n/a"


def _report(results: list[TestResult], all_ops: bool) -> str:
    counts = collections.Counter(r.status for r in results)
    per_op: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for r in results:
        per_op[r.op][r.status] += 1
    lines = [f"FAILED  {r.name} [{r.op}]: {r.reason}" for r in results if r.status == FAILED]
    shown = sorted(op for op, c in per_op.items() if all_ops or c[FAILED] or c[SKIPPED])
    if shown:
        lines.append("")
        lines.append(f"{'op':32s} {'pass rate':>9s} {'passed':>6s} {'failed':>6s} {'skipped':>7s}")
    for op in shown:
        c = per_op[op]
        total = sum(c.values())
        lines.append(f"{op:32s} {_rate(c[PASSED], total):>9s} {c[PASSED]:6d} {c[FAILED]:6d} {c[SKIPPED]:7d}")
    ops_full = sum(1 for c in per_op.values() if c[PASSED] == sum(c.values()))
    total, ran = len(results), counts[PASSED] + counts[FAILED]
    rates = (f"pass rate {_rate(counts[PASSED], total).strip()} of {total} tests "
             f"({_rate(counts[PASSED], ran).strip()} of the {ran} run); "
             f"{ops_full} of {len(per_op)} ops pass every test")
    lines += ["", rates,
              f"{counts[PASSED]} passed, {counts[FAILED]} failed, {counts[SKIPPED]} skipped"]
    return "\n".join(lines)


def _write_json(path: str, results: list[TestResult], seconds: float) -> None:
    counts = collections.Counter(r.status for r in results)
    payload = {"passed": counts[PASSED], "failed": counts[FAILED], "skipped": counts[SKIPPED],
               "seconds": round(seconds, 3),
               "results": [{"name": r.name, "op": r.op, "status": r.status, "reason": r.reason,
                            "seconds": round(r.seconds, 4)} for r in results]}
    with open(path, "w") as f:
        json.dump(payload, f, indent=1)


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = _parse_args(argv)
    if args.ops:
        _print_ops()
        return 0
    start = time.perf_counter()
    results = _run(args)
    seconds = time.perf_counter() - start
    if args.json:
        _write_json(args.json, results, seconds)
    print(_report(results, args.per_op))
    print(f"({seconds:.1f} s)", file=sys.stderr)
    return 1 if any(r.status == FAILED for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
