"""The real-architecture ``light_*`` models shipped in onnx agree with onnxruntime.

The shipped files fill every weight with ``ConstantOfShape(0.02)``, so all channels and classes
are identical and the final Softmax is uniform: a weak check of the arithmetic.  Each model is
therefore also checked with its weights made distinct (each constant times a seeded uniform
factor in [0.5, 1.5]) and with the logits before the final Softmax exposed as an extra output.
Tolerance: see ``Oracle`` in tests/conftest.py (max|out - ref| <= 1e-4 * max|ref| + 1e-6).
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from infermux.conformance.data import light_models_dir

LIGHT = sorted(p.stem for p in light_models_dir().glob("light_*.onnx"))
SLOW = {"light_bvlc_alexnet", "light_vgg19", "light_zfnet512"}  # 4-25 s each: 60-140M weights


def _params():
    return [pytest.param(n, marks=[pytest.mark.slow] if n in SLOW else []) for n in LIGHT]


def _load(name: str) -> onnx.ModelProto:
    return onnx.load(str(light_models_dir() / f"{name}.onnx"))


def with_random_weights(model: onnx.ModelProto, seed: int = 0) -> onnx.ModelProto:
    """A copy whose ConstantOfShape weights become initializers of ``value * U(0.5, 1.5)``,
    and whose final Softmax input is an extra graph output."""
    rng = np.random.default_rng(seed)
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    keep = []
    for node in graph.node:
        if node.op_type == "ConstantOfShape" and node.input[0] in inits:
            value = numpy_helper.to_array(node.attribute[0].t).reshape(())
            shape = tuple(int(d) for d in inits[node.input[0]])
            weight = value * (0.5 + rng.random(shape, dtype=np.float32)).astype(value.dtype)
            graph.initializer.append(numpy_helper.from_array(weight, node.output[0]))
        else:
            keep.append(node)
    del graph.node[:]
    graph.node.extend(keep)
    last = graph.node[-1]
    if last.op_type == "Softmax":
        graph.output.append(helper.make_tensor_value_info(last.input[0], onnx.TensorProto.FLOAT, None))
    return out


def test_every_light_model_is_listed():
    assert len(LIGHT) == 9


@pytest.mark.parametrize("name", _params())
def test_light_model_matches_onnxruntime(name, oracle):
    model = _load(name)
    errors = oracle.compare(model, seed=0)
    assert len(errors) == len(model.graph.output)


@pytest.mark.parametrize("name", _params())
def test_light_model_with_random_weights_matches_onnxruntime(name, oracle):
    model = with_random_weights(_load(name), seed=1)
    feeds = oracle.random_feeds(model, seed=1)
    refs = oracle.run_reference(model, feeds)
    assert np.ptp(refs[-1]) > 0, "the randomised model should no longer give identical classes"
    oracle.compare(model, feeds)
