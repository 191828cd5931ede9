"""GridSample, AffineGrid and Col2Im against onnxruntime (and onnx.reference for 3-D cubic)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper
from onnx.reference import ReferenceEvaluator

from infermux.errors import ShapeMismatchError, UnsupportedOpError
from infermux.ops.registry import lookup


def oracle(op, inputs, attrs, *, opset, n_out=1, engine="ort"):
    """Outputs of one ``op`` node run by ORT or onnx.reference; None inputs are omitted ones."""
    names = [f"in{i}" if v is not None else "" for i, v in enumerate(inputs)]
    node = helper.make_node(op, names, [f"out{i}" for i in range(n_out)], **attrs)
    graph_inputs = [
        helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
        for n, v in zip(names, inputs) if n]
    outputs = [onnx.ValueInfoProto(name=f"out{i}") for i in range(n_out)]
    model = helper.make_model(helper.make_graph([node], "g", graph_inputs, outputs),
                              opset_imports=[helper.make_opsetid("", opset)], ir_version=10)
    model = onnx.shape_inference.infer_shapes(model)
    feeds = {n: v for n, v in zip(names, inputs) if n}
    if engine == "ort":
        session = ort.InferenceSession(model.SerializeToString(),
                                       providers=["CPUExecutionProvider"])
        return session.run(None, feeds)
    return ReferenceEvaluator(model).run(None, feeds)


def run(op, inputs, attrs=None, *, opset, n_out=1):
    k = lookup(op, opset)
    kwargs = dict(attrs or {})
    if k.wants_num_outputs:
        kwargs["_num_outputs"] = n_out
    out = k.fn(np, *inputs, **kwargs)
    return list(out) if isinstance(out, (tuple, list)) else [out]


def check(op, inputs, attrs=None, *, opset, n_out=1, engine="ort"):
    expected = oracle(op, inputs, attrs or {}, opset=opset, n_out=n_out, engine=engine)
    got = run(op, inputs, attrs, opset=opset, n_out=n_out)
    for e, g in zip(expected, got):
        assert g.dtype == e.dtype and g.shape == e.shape, (g.dtype, g.shape, e.dtype, e.shape)
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6)


def ints(*v):
    return np.array(v, dtype=np.int64)


RNG = np.random.default_rng(0)
X = RNG.normal(size=(2, 3, 4, 5)).astype(np.float32)
GRID = RNG.uniform(-1.8, 1.8, size=(2, 3, 6, 2)).astype(np.float32)


@pytest.mark.parametrize("mode", ["nearest", "linear", "cubic"])
@pytest.mark.parametrize("padding_mode", ["zeros", "border", "reflection"])
@pytest.mark.parametrize("align_corners", [0, 1])
def test_grid_sample_2d(mode, padding_mode, align_corners):
    attrs = {"mode": mode, "padding_mode": padding_mode, "align_corners": align_corners}
    check("GridSample", [X, GRID], attrs, opset=20)


@pytest.mark.parametrize("mode, engine", [("nearest", "ort"), ("linear", "ort"), ("cubic", "ref")])
def test_grid_sample_3d(mode, engine):
    x = RNG.normal(size=(1, 2, 3, 4, 5)).astype(np.float32)
    grid = RNG.uniform(-1.3, 1.3, size=(1, 2, 3, 4, 3)).astype(np.float32)
    check("GridSample", [x, grid], {"mode": mode, "padding_mode": "reflection"}, opset=20,
          engine=engine)


def test_grid_sample_16_mode_names():
    check("GridSample", [X, GRID], {"mode": "bicubic"}, opset=16)
    check("GridSample", [X, GRID], {"mode": "bilinear", "padding_mode": "border"}, opset=16)


@pytest.mark.parametrize("theta_shape, size",
                         [((2, 2, 3), (2, 3, 4, 5)), ((2, 3, 4), (2, 3, 4, 5, 6))])
@pytest.mark.parametrize("align_corners", [0, 1])
def test_affine_grid(theta_shape, size, align_corners):
    theta = RNG.normal(size=theta_shape).astype(np.float32)
    check("AffineGrid", [theta, ints(*size)], {"align_corners": align_corners}, opset=20)


def test_col2im_strides_pads_dilations():
    cols = RNG.normal(size=(2, 3 * 2 * 3, 9)).astype(np.float32)
    attrs = {"strides": [2, 1], "pads": [1, 0, 0, 1]}
    check("Col2Im", [cols, ints(5, 4), ints(2, 3)], attrs, opset=18)
    cols = RNG.normal(size=(1, 2 * 2 * 2, 6)).astype(np.float32)
    check("Col2Im", [cols, ints(5, 5), ints(2, 2)], {"dilations": [2, 3]}, opset=18)


def test_spatial_errors():
    with pytest.raises(ShapeMismatchError, match="sliding"):
        run("Col2Im", [np.zeros((1, 8, 4), np.float32), ints(5, 5), ints(2, 2)], opset=18)
    with pytest.raises(UnsupportedOpError, match="padding_mode 'wrap'"):
        run("GridSample", [X, GRID], {"padding_mode": "wrap"}, opset=20)
