"""Stateful models: variables per infer request, query_state/reset_state, make_stateful."""

import numpy as np
import pytest
from onnx import TensorProto, helper

import infermux as im
from infermux.graph.stateful import make_stateful
from tests.helpers import accumulator_model, make_model


@pytest.fixture
def compiled():
    core = im.Core()
    return core.compile_model(core.read_model(accumulator_model()), "CPU")


def test_state_accumulates_per_call_and_resets(compiled):
    ones = np.ones(1, np.float32)
    assert [float(compiled(ones)[0][0]) for _ in range(3)] == [1.0, 2.0, 3.0]
    compiled.reset_state()
    assert float(compiled(ones)[0][0]) == 1.0


def test_state_is_per_request_and_settable(compiled):
    ones = np.ones(1, np.float32)
    a, b = compiled.create_infer_request(), compiled.create_infer_request()
    a.infer(ones), a.infer(ones)
    b.infer(ones)
    [state] = a.query_state()
    assert state.name == "acc" and float(state.state.data[0]) == 2.0
    state.state = im.Tensor(np.array([100], np.float32))
    assert float(a.infer(ones)[0][0]) == 101.0
    state.reset()
    assert float(a.infer(ones)[0][0]) == 1.0
    assert float(b.infer(ones)[0][0]) == 2.0
    assert float(compiled.create_infer_request().query_state()[0].state.data[0]) == 0.0


def test_a_failed_inference_does_not_commit_state(compiled):
    req = compiled.create_infer_request()
    req.infer(np.ones(1, np.float32))
    with pytest.raises(im.ShapeMismatchError):
        req.infer(np.ones(2, np.float32))
    assert float(req.query_state()[0].state.data[0]) == 1.0


def _rnn_like():
    """out = tanh(x + h_in); h_out = out (an explicit state pair)."""
    nodes = [helper.make_node("Add", ["x", "h_in"], ["z"]), helper.make_node("Tanh", ["z"], ["out"]),
             helper.make_node("Identity", ["out"], ["h_out"])]
    vi = lambda n: helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 4])  # noqa: E731
    return make_model(nodes, [vi("x"), vi("h_in")], [vi("out"), vi("h_out")])


def test_make_stateful_keeps_the_state_inside_the_runtime():
    core = im.Core()
    explicit = core.compile_model(core.read_model(_rnn_like()), "CPU")
    model = make_stateful(core.read_model(_rnn_like()), {"h_in": "h_out"})
    assert [i.any_name for i in model.inputs] == ["x"] and [o.any_name for o in model.outputs] == ["out"]
    stateful = core.compile_model(model, "CPU")
    assert [s.name for s in stateful.query_state()] == ["h_inh_out"]
    rng = np.random.default_rng(0)
    h = np.zeros((1, 4), np.float32)
    for _ in range(5):
        x = rng.standard_normal((1, 4)).astype(np.float32)
        ref = explicit({"x": x, "h_in": h})
        h = ref["h_out"]
        np.testing.assert_allclose(stateful({"x": x})["out"], ref["out"], rtol=1e-6)


def test_make_stateful_names_what_is_missing():
    model = im.Core().read_model(_rnn_like())
    with pytest.raises(im.TensorNameError, match="no input 'nope'"):
        make_stateful(model, {"nope": "h_out"})
