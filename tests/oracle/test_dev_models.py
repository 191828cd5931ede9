"""Real third-party ONNX models (shared/models/get_dev_models.sh) against onnxruntime.

Each must load, compile on CPU and agree within atol 1e-4, rtol 1e-3; streaming models run 20
chunks with their state fed back, once through the explicit state inputs and once made stateful
(the state kept inside the runtime).  The models are not committed: without them these tests skip.
"""

from __future__ import annotations

import numpy as np
import pytest

import infermux as im
from infermux.conformance.dev_models import load_manifest, make_input, make_inputs, models_dir

ENTRIES = [e for e in load_manifest() if e["format"] == "onnx"]
STREAMING = [e for e in ENTRIES if e.get("state")]
pytestmark = pytest.mark.skipif(
    not ENTRIES, reason=f"dev models not fetched: run shared/models/get_dev_models.sh {models_dir()}")
ATOL, RTOL = 1e-4, 1e-3


def _assert_close(ours, ref, what: str) -> None:
    ours, ref = np.asarray(ours), np.asarray(ref)
    assert ours.shape == ref.shape, f"{what}: shape {ours.shape} != {ref.shape}"
    if ref.dtype.kind in "fc":
        np.testing.assert_allclose(ours, ref, atol=ATOL, rtol=RTOL, err_msg=what)
    else:
        np.testing.assert_array_equal(ours, ref, err_msg=what)


@pytest.fixture(scope="module")
def core():
    return im.Core()


@pytest.mark.slow
@pytest.mark.parametrize("entry", ENTRIES, ids=[e["id"] for e in ENTRIES])
def test_dev_model_matches_onnxruntime(core, entry):
    import onnxruntime as ort

    path = str(models_dir() / entry["file"])
    feeds = make_inputs(entry)
    ours = core.compile_model(path, "CPU")(feeds)
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    for i, ref in enumerate(sess.run(None, feeds)):
        _assert_close(ours[i], ref, f"{entry['id']} output {i}")


def _chunks(entry, n=20):
    rng = np.random.default_rng(1)
    state_inputs = set(entry["state"].values())
    return [{name: make_input(spec, rng) for name, spec in entry["test_inputs"].items()
             if name not in state_inputs} for _ in range(n)]


@pytest.mark.slow
@pytest.mark.parametrize("entry", STREAMING, ids=[e["id"] for e in STREAMING])
def test_streaming_model_over_20_chunks_explicit_and_stateful(core, entry):
    import onnxruntime as ort

    path = str(models_dir() / entry["file"])
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    out_names = [o.name for o in sess.get_outputs()]
    wiring = entry["state"]  # output name -> input name
    initial = make_inputs(entry)
    state = {inp: initial[inp] for inp in wiring.values()}

    explicit = core.compile_model(path, "CPU")
    model = core.read_model(path)
    model.reshape({inp: list(initial[inp].shape) for inp in wiring.values()})
    im.make_stateful(model, {inp: out for out, inp in wiring.items()})
    stateful = core.compile_model(model, "CPU").create_infer_request()
    ours_state = dict(state)
    for step, chunk in enumerate(_chunks(entry)):
        ref = dict(zip(out_names, sess.run(None, {**chunk, **state})))
        mine = explicit({**chunk, **ours_state})
        kept = stateful.infer(chunk)
        for name in out_names:
            _assert_close(mine[name], ref[name], f"{entry['id']} chunk {step} {name} (explicit state)")
            if name not in wiring:
                _assert_close(kept[name], ref[name], f"{entry['id']} chunk {step} {name} (make_stateful)")
        state = {inp: ref[out] for out, inp in wiring.items()}
        ours_state = {inp: mine[out] for out, inp in wiring.items()}
