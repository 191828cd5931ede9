"""The strict conformance harness: one ONNX backend node test through the public API.

A node test is a folder ``<name>/model.onnx`` + ``test_data_set_*/{input,output}_*.pb``.  The
harness reads the model with :meth:`infermux.Core.read_model`, compiles it for a device, calls it
with each data set's inputs and compares every output with the expected one:

* numbers: ``|out - ref| <= ATOL + RTOL * |ref|`` elementwise (``np.testing`` semantics, NaNs in
  the same places are equal), with the exact dtype and shape;
* strings: exact (``bytes`` and ``str`` compare by their UTF-8 text); sequences: element by
  element; optionals: ``None`` when empty.

Each test runs on a worker thread with a time limit, so one hang cannot stall a run: a test over
the limit is reported failed (the stuck thread is a daemon and dies with the process).

>>> from infermux.conformance.data import ensure_node_tests
>>> root = ensure_node_tests()                                         # doctest: +SKIP
>>> run_node_test(root / "test_relu").status                           # doctest: +SKIP
'passed'
"""

from __future__ import annotations

import dataclasses
import re
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["ATOL", "RTOL", "TestResult", "compare_values", "iter_test_dirs", "load_data_set",
           "op_family", "run_node_test", "run_node_tests"]

RTOL = 1e-3
ATOL = 1e-7
DEFAULT_TIMEOUT_S = 20.0

PASSED, FAILED, SKIPPED = "passed", "failed", "skipped"


@dataclasses.dataclass(frozen=True)
class TestResult:
    """The outcome of one node test: ``status`` is passed / failed / skipped."""

    __test__ = False  # not a pytest class, despite the name

    name: str
    op: str
    status: str
    reason: str = ""
    seconds: float = 0.0


# -- loading ---------------------------------------------------------------------------------
def _load_value(path: Path, type_proto) -> Any:
    """A ``.pb`` file as the value the public API takes: array, list of arrays, or None."""
    import onnx
    from onnx import numpy_helper

    data = path.read_bytes()
    if type_proto.HasField("sequence_type"):
        proto = onnx.SequenceProto()
        proto.ParseFromString(data)
        return numpy_helper.to_list(proto)
    if type_proto.HasField("optional_type"):
        proto = onnx.OptionalProto()
        proto.ParseFromString(data)
        return numpy_helper.to_optional(proto)
    if type_proto.HasField("map_type"):
        proto = onnx.MapProto()
        proto.ParseFromString(data)
        return numpy_helper.to_dict(proto)
    proto = onnx.TensorProto()
    proto.ParseFromString(data)
    return numpy_helper.to_array(proto)


def _numbered(folder: Path, prefix: str) -> list[Path]:
    files = folder.glob(f"{prefix}_*.pb")
    return sorted(files, key=lambda p: int(p.stem[len(prefix) + 1:]))


def load_data_set(folder: Path, graph) -> tuple[dict[str, Any], list[Any]]:
    """({input name: value}, [expected output, ...]) of one ``test_data_set_*`` folder."""
    inputs = {graph.input[i].name: _load_value(p, graph.input[i].type)
              for i, p in enumerate(_numbered(folder, "input"))}
    outputs = [_load_value(p, graph.output[i].type) for i, p in enumerate(_numbered(folder, "output"))]
    return inputs, outputs


# -- comparing -------------------------------------------------------------------------------
def _as_text(value: Any) -> Any:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def _compare_arrays(out: Any, ref: np.ndarray, rtol: float, atol: float) -> str | None:
    if not isinstance(out, np.ndarray):
        return f"got a {type(out).__name__}, expected a numpy array"
    if out.dtype != ref.dtype:
        return f"dtype {out.dtype} != expected {ref.dtype}"
    if out.shape != ref.shape:
        return f"shape {out.shape} != expected {ref.shape}"
    if ref.dtype == object:
        bad = [i for i, (a, b) in enumerate(zip(out.ravel(), ref.ravel())) if _as_text(a) != _as_text(b)]
        return f"{len(bad)} of {ref.size} strings differ (first at flat index {bad[0]})" if bad else None
    if np.array_equal(out, ref):
        return None
    a, b = out.astype(np.float64), ref.astype(np.float64)
    both_nan = np.isnan(a) & np.isnan(b)
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.abs(a - b)
        bad = ~(both_nan | (a == b) | (diff <= atol + rtol * np.abs(b)))
    if not bad.any():
        return None
    worst = np.max(diff[bad])
    return f"{int(bad.sum())} of {ref.size} values differ (max abs diff {worst:.3g})"


def compare_values(out: Any, ref: Any, *, rtol: float = RTOL, atol: float = ATOL) -> str | None:
    """None when ``out`` matches ``ref``, else a one-line reason.  Lists compare elementwise."""
    if ref is None:
        return None if out is None else f"got a {type(out).__name__}, expected an empty optional"
    if out is None:
        return "got None (empty optional), expected a value"
    if isinstance(ref, list):
        if not isinstance(out, (list, tuple)):
            return f"got a {type(out).__name__}, expected a sequence"
        if len(out) != len(ref):
            return f"sequence of {len(out)} elements, expected {len(ref)}"
        for i, (o, r) in enumerate(zip(out, ref)):
            why = compare_values(o, r, rtol=rtol, atol=atol)
            if why:
                return f"element {i}: {why}"
        return None
    if isinstance(ref, dict):
        return None if out == ref else "map differs"
    return _compare_arrays(out, np.asarray(ref), rtol, atol)


# -- op family -------------------------------------------------------------------------------
_EXPANDED = re.compile(r"_expanded(_ver\d+)?$")


def _squash(text: str) -> str:
    return text.replace("_", "").lower()


def op_family(name: str, model, root: Path | None = None) -> str:
    """The op a test exercises, from the model's node op types.

    One node type: that type.  ``*_expanded`` tests take the family of the test they expand (their
    graph is the function body).  Otherwise the node type whose name the test name starts with
    (underscores ignored: ``test_reduce_sum_*`` is ReduceSum), else the first node's type.
    """
    if root is not None and _EXPANDED.search(name):
        base = root / _EXPANDED.sub("", name)
        if (base / "model.onnx").exists():
            import onnx

            return op_family(base.name, onnx.load(str(base / "model.onnx"), load_external_data=False))
    types = list(dict.fromkeys(n.op_type for n in model.graph.node))
    if len(types) == 1:
        return types[0]
    squashed = _squash(name.removeprefix("test_"))
    matches = [t for t in types if squashed.startswith(t.lower())]
    if matches:
        return max(matches, key=len)
    return types[0] if types else "?"


# -- running ---------------------------------------------------------------------------------
def _call_with_timeout(fn, timeout_s: float) -> tuple[bool, Any, BaseException | None]:
    """(finished, result, error) of ``fn()`` run on a daemon thread for at most ``timeout_s``."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed back to the caller
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True, name="infermux-conformance")
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        return False, None, None
    return True, box.get("result"), box.get("error")


def _error_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


def _check(test_dir: Path, model, core, device: str) -> str | None:
    compiled = core.compile_model(core.read_model(str(test_dir / "model.onnx")), device)
    for data_dir in sorted(test_dir.glob("test_data_set_*")):
        inputs, expected = load_data_set(data_dir, model.graph)
        with np.errstate(all="ignore"):  # the cases feed inf and nan on purpose
            results = compiled(inputs)
        if len(results) != len(expected):
            return f"{len(results)} outputs, expected {len(expected)}"
        for i, ref in enumerate(expected):
            why = compare_values(results[i], ref)
            if why:
                return f"output {i} ({model.graph.output[i].name}): {why}"
    return None


def run_node_test(test_dir: Path, *, core=None, device: str = "CPU",
                  timeout_s: float = DEFAULT_TIMEOUT_S, skip_reason: str | None = None) -> TestResult:
    """Run one node test folder; ``skip_reason`` reports it skipped without running it."""
    import onnx

    test_dir = Path(test_dir)
    model = onnx.load(str(test_dir / "model.onnx"), load_external_data=False)
    op = op_family(test_dir.name, model, test_dir.parent)
    if skip_reason is not None:
        return TestResult(test_dir.name, op, SKIPPED, skip_reason)
    if core is None:
        import infermux

        core = infermux.Core()
    start = time.perf_counter()
    finished, why, error = _call_with_timeout(lambda: _check(test_dir, model, core, device), timeout_s)
    seconds = time.perf_counter() - start
    if not finished:
        return TestResult(test_dir.name, op, FAILED, f"timed out after {timeout_s:g} s", seconds)
    if error is not None:
        return TestResult(test_dir.name, op, FAILED, _error_line(error), seconds)
    return TestResult(test_dir.name, op, FAILED if why else PASSED, why or "", seconds)


def iter_test_dirs(root: Path, pattern: str | None = None) -> Iterator[Path]:
    """The node test folders under ``root`` whose name matches ``pattern`` (regex search), sorted."""
    regex = re.compile(pattern) if pattern else None
    for path in sorted(Path(root).iterdir()):
        if (path / "model.onnx").exists() and (regex is None or regex.search(path.name)):
            yield path


def run_node_tests(test_dirs: Iterable[Path], *, device: str = "CPU",
                   timeout_s: float = DEFAULT_TIMEOUT_S,
                   include_excluded: bool = False) -> Iterator[TestResult]:
    """Run many node tests with one :class:`infermux.Core`, skipping excluded ones."""
    import infermux
    from infermux.conformance.exclusions import exclusion_for

    core = infermux.Core()
    for test_dir in test_dirs:
        excluded = None if include_excluded else exclusion_for(Path(test_dir).name)
        yield run_node_test(test_dir, core=core, device=device, timeout_s=timeout_s,
                            skip_reason=excluded.describe() if excluded else None)
