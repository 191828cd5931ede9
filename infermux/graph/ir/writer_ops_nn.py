"""ONNX nodes written as IR: convolution, pooling, normalisation and linear algebra."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from infermux.graph.ir.writer_ops import np_type, translates
from infermux.graph.model import Node

if TYPE_CHECKING:
    from infermux.graph.ir.writer import Writer


def _conv_attrs(w: Writer, n: Node, spatial: int) -> dict[str, Any]:
    a = n.attrs
    auto = a.get("auto_pad", "NOTSET")
    pads = list(a.get("pads", [0] * 2 * spatial))
    out = {"strides": list(a.get("strides", [1] * spatial)), "dilations": list(a.get("dilations", [1] * spatial)),
           "pads_begin": pads[:spatial], "pads_end": pads[spatial:]}
    modes = {"NOTSET": "explicit", "SAME_UPPER": "same_upper", "SAME_LOWER": "same_lower", "VALID": "valid"}
    if auto not in modes:
        raise w.unsupported(f"auto_pad={auto}")
    out["auto_pad"] = modes[auto]
    return out


def _with_bias(w: Writer, n: Node, y: str, rank: int) -> None:
    if len(n.inputs) > 2 and n.inputs[2]:
        bias = w.layer("Reshape", "opset1", [n.inputs[2], w.ints([1, -1] + [1] * (rank - 2))],
                       {"special_zero": False})
        y = w.layer("Add", "opset1", [y, bias], {"auto_broadcast": "numpy"})
    w.alias(n.outputs[0], y)


def _group_weights(w: Writer, weights: str, group: int) -> str:
    """ONNX weights [A, B, k...] split into OpenVINO's [G, A/G, B, k...] (Conv and ConvTranspose)."""
    dims = w.dims(weights)
    if dims is None or any(d < 0 for d in dims):
        raise w.unsupported("grouped convolution weights need a static shape")
    shape = [group, dims[0] // group] + dims[1:]
    return w.layer("Reshape", "opset1", [weights, w.ints(shape)], {"special_zero": False})


@translates("Conv")
def _conv(w: Writer, n: Node) -> None:
    rank = w.rank(n.inputs[1])
    attrs = _conv_attrs(w, n, rank - 2)
    group = int(n.attrs.get("group", 1))
    if group == 1:
        y = w.layer("Convolution", "opset1", n.inputs[:2], attrs)
    else:
        y = w.layer("GroupConvolution", "opset1", [n.inputs[0], _group_weights(w, n.inputs[1], group)],
                    attrs)
    _with_bias(w, n, y, rank)


@translates("ConvTranspose")
def _conv_transpose(w: Writer, n: Node) -> None:
    rank = w.rank(n.inputs[1])
    spatial = rank - 2
    attrs = _conv_attrs(w, n, spatial)
    if n.attrs.get("output_padding"):
        attrs["output_padding"] = list(n.attrs["output_padding"])
    if "output_shape" in n.attrs or attrs["auto_pad"] in ("same_upper", "same_lower"):
        attrs.update(_explicit_deconv_pads(w, n, attrs, spatial))
    group = int(n.attrs.get("group", 1))
    if group == 1:
        y = w.layer("ConvolutionBackpropData", "opset1", n.inputs[:2], attrs)
    else:
        y = w.layer("GroupConvolutionBackpropData", "opset1",
                    [n.inputs[0], _group_weights(w, n.inputs[1], group)], attrs)
    _with_bias(w, n, y, rank)


def _explicit_deconv_pads(w: Writer, n: Node, attrs: dict, spatial: int) -> dict:
    """ONNX's output_shape / SAME_* padding for ConvTranspose, as explicit pads."""
    xd, wd = w.dims(n.inputs[0]), w.dims(n.inputs[1])
    if xd is None or wd is None or any(d < 0 for d in xd[2:] + wd[2:]):
        raise w.unsupported("output_shape or SAME padding needs static input and weight shapes")
    strides, dil = attrs["strides"], attrs["dilations"]
    out_pad = attrs.get("output_padding", [0] * spatial)
    begin, end = [], []
    for i in range(spatial):
        full = strides[i] * (xd[2 + i] - 1) + out_pad[i] + (wd[2 + i] - 1) * dil[i] + 1
        want = n.attrs["output_shape"][-spatial:][i] if "output_shape" in n.attrs else xd[2 + i] * strides[i]
        total = full - want
        upper = n.attrs.get("auto_pad", "NOTSET") == "SAME_UPPER"
        first = total // 2 if upper else total - total // 2
        begin.append(first)
        end.append(total - first)
    return {"pads_begin": begin, "pads_end": end, "auto_pad": "explicit"}


def _pool_attrs(w: Writer, n: Node) -> dict[str, Any]:
    spatial = len(n.attrs["kernel_shape"])
    attrs = _conv_attrs(w, n, spatial)
    attrs.pop("dilations")
    attrs["kernel"] = list(n.attrs["kernel_shape"])
    attrs["rounding_type"] = "ceil" if n.attrs.get("ceil_mode", 0) else "floor"
    return attrs


@translates("MaxPool")
def _max_pool(w: Writer, n: Node) -> None:
    if n.attrs.get("storage_order", 0):
        raise w.unsupported("storage_order=1 is not supported")
    attrs = _pool_attrs(w, n)
    attrs["dilations"] = list(n.attrs.get("dilations", [1] * len(attrs["kernel"])))
    attrs.update(index_element_type="i64", axis=0)
    outs = [n.outputs[0], n.outputs[1] if len(n.outputs) > 1 and n.outputs[1] else w.fresh("indices")]
    w.layer("MaxPool", "opset8", [n.inputs[0]], attrs, outputs=outs)


@translates("AveragePool")
def _avg_pool(w: Writer, n: Node) -> None:
    if any(d != 1 for d in n.attrs.get("dilations", [])):
        raise w.unsupported("dilated AveragePool is not supported")
    attrs = _pool_attrs(w, n)
    attrs["exclude-pad"] = not n.attrs.get("count_include_pad", 0)
    w.layer("AvgPool", "opset1", [n.inputs[0]], attrs, outputs=n.outputs[0])


@translates("GlobalAveragePool", "GlobalMaxPool")
def _global_pool(w: Writer, n: Node) -> None:
    kind = "ReduceMean" if n.op_type == "GlobalAveragePool" else "ReduceMax"
    axes = w.ints(range(2, w.rank(n.inputs[0])))
    w.layer(kind, "opset1", [n.inputs[0], axes], {"keep_dims": True}, outputs=n.outputs[0])


@translates("BatchNormalization")
def _batch_norm(w: Writer, n: Node) -> None:
    if len([o for o in n.outputs if o]) > 1:
        raise w.unsupported("training-mode BatchNormalization is not supported")
    w.layer("BatchNormInference", "opset5", n.inputs[:5], {"epsilon": float(n.attrs.get("epsilon", 1e-5))},
            outputs=n.outputs[0])


def _mvn(w: Writer, x: str, axes: list[int], eps: float) -> str:
    return w.layer("MVN", "opset6", [x, w.ints(axes)],
                   {"eps": eps, "normalize_variance": True, "eps_mode": "inside_sqrt"})


@translates("InstanceNormalization")
def _instance_norm(w: Writer, n: Node) -> None:
    rank = w.rank(n.inputs[0])
    y = _mvn(w, n.inputs[0], list(range(2, rank)), float(n.attrs.get("epsilon", 1e-5)))
    shape = w.ints([-1] + [1] * (rank - 2))
    scale = w.layer("Reshape", "opset1", [n.inputs[1], shape], {"special_zero": False})
    bias = w.layer("Reshape", "opset1", [n.inputs[2], shape], {"special_zero": False})
    y = w.layer("Multiply", "opset1", [y, scale], {"auto_broadcast": "numpy"})
    w.layer("Add", "opset1", [y, bias], {"auto_broadcast": "numpy"}, outputs=n.outputs[0])


@translates("LayerNormalization")
def _layer_norm(w: Writer, n: Node) -> None:
    if len([o for o in n.outputs if o]) > 1 and any(o in w.consumers for o in n.outputs[1:] if o):
        raise w.unsupported("the Mean/InvStdDev outputs are not supported")
    rank = w.rank(n.inputs[0])
    axis = n.attrs.get("axis", -1) % rank
    y = _mvn(w, n.inputs[0], list(range(axis, rank)), float(n.attrs.get("epsilon", 1e-5)))
    y = w.layer("Multiply", "opset1", [y, n.inputs[1]], {"auto_broadcast": "numpy"})
    if len(n.inputs) > 2 and n.inputs[2]:
        y = w.layer("Add", "opset1", [y, n.inputs[2]], {"auto_broadcast": "numpy"})
    w.alias(n.outputs[0], y)


@translates("LRN")
def _lrn(w: Writer, n: Node) -> None:
    a = n.attrs
    w.layer("LRN", "opset1", [n.inputs[0], w.ints([1])],
            {"alpha": float(a.get("alpha", 1e-4)), "beta": float(a.get("beta", 0.75)),
             "bias": float(a.get("bias", 1.0)), "size": int(a["size"])}, outputs=n.outputs[0])


@translates("LpNormalization")
def _lp_norm(w: Writer, n: Node) -> None:
    if n.attrs.get("p", 2) != 2:
        raise w.unsupported("only p=2 is supported")
    w.layer("NormalizeL2", "opset1", [n.inputs[0], w.ints([n.attrs.get("axis", -1)])],
            {"eps": 0.0, "eps_mode": "add"}, outputs=n.outputs[0])


# -- linear algebra -------------------------------------------------------------------------------

@translates("MatMul")
def _matmul(w: Writer, n: Node) -> None:
    w.layer("MatMul", "opset1", n.inputs[:2], {"transpose_a": False, "transpose_b": False}, outputs=n.outputs[0])


@translates("Gemm")
def _gemm(w: Writer, n: Node) -> None:
    a = n.attrs
    y = w.layer("MatMul", "opset1", n.inputs[:2],
                {"transpose_a": bool(a.get("transA", 0)), "transpose_b": bool(a.get("transB", 0))})
    dt = np_type(w, n.inputs[0])
    if a.get("alpha", 1.0) != 1.0:
        y = w.layer("Multiply", "opset1", [y, w.const(np.array(a["alpha"], dt))], {"auto_broadcast": "numpy"})
    if len(n.inputs) > 2 and n.inputs[2]:
        c = n.inputs[2]
        if a.get("beta", 1.0) != 1.0:
            c = w.layer("Multiply", "opset1", [c, w.const(np.array(a["beta"], dt))], {"auto_broadcast": "numpy"})
        y = w.layer("Add", "opset1", [y, c], {"auto_broadcast": "numpy"})
    w.alias(n.outputs[0], y)


@translates("Einsum")
def _einsum(w: Writer, n: Node) -> None:
    w.layer("Einsum", "opset7", list(n.inputs), {"equation": n.attrs["equation"]}, outputs=n.outputs[0])
