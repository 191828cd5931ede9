"""Shared fixtures: the onnxruntime oracle, the benchmark model zoo, the node-test folder.

onnxruntime is only ever the *oracle* here: infermux never runs on it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent


class Oracle:
    """Runs a model in infermux (CPU) and in onnxruntime on the same inputs and compares them.

    Tolerance, per output: same shape and dtype, and for floating outputs
    ``max|out - ref| <= rtol * max|ref| + atol`` with ``rtol = 1e-4`` and ``atol = 1e-6`` by
    default (the error is measured against the output's largest magnitude, not elementwise, so
    near-zero elements do not need to agree to 4 digits).  Integer and bool outputs must be equal.
    Inputs come from :meth:`random_feeds`: seeded, standard normal for floats, symbolic dims = 1.
    """

    RTOL = 1e-4
    ATOL = 1e-6

    def __init__(self) -> None:
        import infermux

        self.core = infermux.Core()

    @staticmethod
    def random_feeds(model, seed: int = 0, batch: int = 1) -> dict[str, np.ndarray]:
        """{input name: array} for every graph input that is not an initializer."""
        from onnx import helper

        rng = np.random.default_rng(seed)
        inits = {t.name for t in model.graph.initializer}
        feeds = {}
        for vi in model.graph.input:
            if vi.name in inits:
                continue
            tt = vi.type.tensor_type
            shape = [d.dim_value if d.HasField("dim_value") else batch for d in tt.shape.dim]
            dtype = helper.tensor_dtype_to_np_dtype(tt.elem_type)
            if dtype.kind == "f":
                feeds[vi.name] = rng.standard_normal(shape).astype(dtype)
            elif dtype.kind == "b":
                feeds[vi.name] = rng.random(shape) < 0.5
            else:
                feeds[vi.name] = rng.integers(0, 8, shape).astype(dtype)
        return feeds

    @staticmethod
    def run_reference(model, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """onnxruntime's outputs (CPU provider, one thread: the machine is shared)."""
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.log_severity_level = 3  # no warnings about unused initializers
        session = ort.InferenceSession(model.SerializeToString(), options,
                                       providers=["CPUExecutionProvider"])
        return session.run(None, feeds)

    def run_infermux(self, model, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """infermux's outputs through the public API on CPU."""
        compiled = self.core.compile_model(self.core.read_model(model), "CPU")
        return list(compiled(feeds).to_tuple())

    def compare(self, model, feeds: dict[str, np.ndarray] | None = None, *, seed: int = 0,
                rtol: float = RTOL, atol: float = ATOL) -> list[float]:
        """Assert agreement within the tolerance; return each output's max|out - ref| / max|ref|."""
        feeds = self.random_feeds(model, seed) if feeds is None else feeds
        refs = self.run_reference(model, feeds)
        outs = self.run_infermux(model, feeds)
        assert len(outs) == len(refs), f"{len(outs)} outputs, onnxruntime gives {len(refs)}"
        errors = []
        for i, (out, ref) in enumerate(zip(outs, refs)):
            name = model.graph.output[i].name
            out = np.asarray(out)
            assert out.dtype == ref.dtype, f"output {name}: dtype {out.dtype} != {ref.dtype}"
            assert out.shape == ref.shape, f"output {name}: shape {out.shape} != {ref.shape}"
            if ref.dtype.kind not in "fc":
                np.testing.assert_array_equal(out, ref, err_msg=f"output {name}")
                errors.append(0.0)
                continue
            scale = float(np.max(np.abs(ref))) if ref.size else 0.0
            err = float(np.max(np.abs(out.astype(np.float64) - ref))) if ref.size else 0.0
            assert err <= rtol * scale + atol, (
                f"output {name}: max|infermux - onnxruntime| = {err:.3g} > "
                f"{rtol:g} * max|ref| ({scale:.3g}) + {atol:g}")
            errors.append(err / scale if scale else err)
        return errors


@pytest.fixture(scope="session")
def oracle() -> Oracle:
    """The onnxruntime oracle (see :class:`Oracle` for the tolerance)."""
    pytest.importorskip("onnxruntime")
    return Oracle()


def _make_models_module():
    spec = importlib.util.spec_from_file_location("make_models", REPO / "benchmarks" / "make_models.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def make_models():
    """The ``benchmarks/make_models.py`` module (the benchmark model zoo builders)."""
    return _make_models_module()


@pytest.fixture(scope="session")
def zoo_model(make_models, tmp_path_factory):
    """``zoo_model(name)`` -> the ModelProto of a benchmark zoo model, built once per session.

    Seeds follow ``make_models.py main``: model ``i`` of ``BUILDERS`` uses seed ``1000 * i``, so
    these are the same weights as a default ``make_models.py OUT_DIR`` build.  Each model is also
    saved under a session tmp dir (``zoo_model.folder``).
    """
    import onnx

    folder = tmp_path_factory.mktemp("zoo")
    built: dict[str, onnx.ModelProto] = {}
    names = list(make_models.BUILDERS)

    def get(name: str) -> onnx.ModelProto:
        if name not in built:
            model = make_models.BUILDERS[name](np.random.default_rng(1000 * names.index(name)))
            onnx.save(model, str(folder / f"{name}.onnx"))
            built[name] = model
        return built[name]

    get.folder = folder
    return get


@pytest.fixture(scope="session")
def node_test_root() -> Path:
    """The folder of generated ONNX backend node tests (``$INFERMUX_CONFORMANCE_CACHE``)."""
    from infermux.conformance.data import ensure_node_tests

    return ensure_node_tests()
