"""Generate the ONNX backend node tests with the ``onnx`` package's own case generators.

The ``onnx`` wheel ships the generators but not the data; this writes each case as
``<cache>/node/<test name>/model.onnx`` plus ``test_data_set_0/input_*.pb``/``output_*.pb``, the
layout of ``onnx/backend/test/data``.  A marker file keyed by the onnx version makes later calls free.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

__all__ = ["default_cache_dir", "ensure_node_tests", "light_models_dir", "suite_dir"]


def default_cache_dir() -> Path:
    """``$INFERMUX_CONFORMANCE_CACHE`` or a folder under the system temp dir."""
    env = os.environ.get("INFERMUX_CONFORMANCE_CACHE")
    return Path(env) if env else Path(tempfile.gettempdir()) / "infermux-onnx-node-tests"


def light_models_dir() -> Path:
    """The folder of the real-architecture ``light_*.onnx`` models shipped inside ``onnx``."""
    import onnx

    return Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"


def suite_dir(suite: str) -> Path:
    """The folder of a test suite: ``node`` (generated), or a model suite shipped inside ``onnx``
    (``simple``, ``pytorch-converted``, ``pytorch-operator``)."""
    if suite == "node":
        return ensure_node_tests()
    return light_models_dir().parent / suite


def _write_value(path: Path, value, type_proto, name: str) -> None:
    from onnx import TensorProto, numpy_helper

    if type_proto.HasField("sequence_type"):
        proto = numpy_helper.from_list(value, name)
    elif type_proto.HasField("optional_type"):
        proto = numpy_helper.from_optional(value, name)
    elif type_proto.HasField("map_type"):
        proto = numpy_helper.from_dict(value, name)
    elif isinstance(value, TensorProto):
        proto = value
    else:
        proto = numpy_helper.from_array(value, name)
    path.write_bytes(proto.SerializeToString())


def ensure_node_tests(cache_dir: Path | None = None) -> Path:
    """Write the node test cases under ``cache_dir`` (once per onnx version); return ``.../node``."""
    import onnx
    from onnx.backend.test.case.node import collect_testcases

    root = Path(cache_dir or default_cache_dir())
    node_dir = root / "node"
    marker = root / f".generated-onnx-{onnx.__version__}"
    if marker.exists():
        return node_dir
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cases = collect_testcases(None)
    for case in cases:
        out = node_dir / case.name
        data_dir = out / "test_data_set_0"
        data_dir.mkdir(parents=True, exist_ok=True)
        (out / "model.onnx").write_bytes(case.model.SerializeToString())
        for i, (inputs, outputs) in enumerate(case.data_sets):
            data_dir = out / f"test_data_set_{i}"
            data_dir.mkdir(parents=True, exist_ok=True)
            graph = case.model.graph
            for j, value in enumerate(inputs):
                _write_value(data_dir / f"input_{j}.pb", value, graph.input[j].type,
                             graph.input[j].name)
            for j, value in enumerate(outputs):
                _write_value(data_dir / f"output_{j}.pb", value, graph.output[j].type,
                             graph.output[j].name)
    marker.write_text(str(len(cases)))
    return node_dir
