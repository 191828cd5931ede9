"""IR layers of the convolution and pooling family."""

from __future__ import annotations

from typing import Any

import numpy as np

from infermux.graph.ir.layers import LayerContext, translates
from infermux.graph.types import Type

_AUTO_PAD = {"explicit": "NOTSET", "notset": "NOTSET", "same_upper": "SAME_UPPER",
             "same_lower": "SAME_LOWER", "valid": "VALID"}


def _window_attrs(cx: LayerContext, spatial: int | None = None) -> dict[str, Any]:
    auto_pad = cx.choice("auto_pad", _AUTO_PAD, "explicit")
    attrs: dict[str, Any] = {"strides": cx.ints("strides")}
    if auto_pad == "NOTSET":
        attrs["pads"] = cx.ints("pads_begin") + cx.ints("pads_end")
    else:
        attrs["auto_pad"] = auto_pad
    return attrs


def _grouped_weights(cx: LayerContext, i: int) -> tuple[str, int]:
    """IR group weights [G, O, I, k...] as ONNX's [G*O, I, k...] and the group count."""
    dims = cx.in_dims(i)
    if dims is None or any(d < 0 for d in dims):
        raise cx.unsupported("group convolution weights need a static shape")
    shape = [dims[0] * dims[1]] + dims[2:]
    return cx.b.op("Reshape", cx.ins[i], cx.b.const(shape, "shape", np.int64)), dims[0]


@translates("Convolution", "GroupConvolution")
def _convolution(cx: LayerContext) -> None:
    w, group = cx.ins[1], 1
    if cx.layer.type == "GroupConvolution":
        w, group = _grouped_weights(cx, 1)
    cx.b.op("Conv", cx.ins[0], w, dilations=cx.ints("dilations"), group=group,
            out=cx.outs[0], **_window_attrs(cx))


@translates("ConvolutionBackpropData", "GroupConvolutionBackpropData")
def _deconvolution(cx: LayerContext) -> None:
    w, group = cx.ins[1], 1
    if cx.layer.type == "GroupConvolutionBackpropData":
        w, group = _grouped_weights(cx, 1)
    attrs = _window_attrs(cx)
    attrs.update(dilations=cx.ints("dilations"), group=group,
                 output_padding=cx.ints("output_padding", []) or None)
    if cx.input(2):
        attrs = _deconv_output_shape(cx, attrs, [int(v) for v in cx.const(2, "output_shape")])
    elif "auto_pad" in attrs:  # OpenVINO pads nothing for same_*/valid without an output_shape
        attrs["pads"] = [0] * (2 * len(attrs["strides"]))
        del attrs["auto_pad"]
    cx.b.op("ConvTranspose", cx.ins[0], w, out=cx.outs[0], **attrs)


def _deconv_output_shape(cx: LayerContext, attrs: dict, out_spatial: list[int]) -> dict:
    """With an output_shape input, the pads are computed so that the output has that size."""
    xdims, wdims = cx.in_dims(0), cx.in_dims(1)
    if xdims is None or wdims is None or any(d < 0 for d in xdims[2:] + wdims):
        raise cx.unsupported("an output_shape input needs static input and weight shapes")
    ksize = wdims[-len(out_spatial):]
    strides, dil = attrs["strides"], attrs["dilations"]
    out_pad = attrs.get("output_padding") or [0] * len(out_spatial)
    lower = attrs.get("auto_pad") == "SAME_LOWER"
    begin, end = [], []
    for i, want in enumerate(out_spatial):
        full = strides[i] * (xdims[2 + i] - 1) + (ksize[i] - 1) * dil[i] + 1 + out_pad[i]
        total = max(full - want, 0)
        first = total - total // 2 if lower else total // 2
        begin.append(first)
        end.append(total - first)
    attrs = {k: v for k, v in attrs.items() if k != "auto_pad"}
    attrs["pads"] = begin + end
    return attrs


_ROUNDING = {"floor": 0, "ceil": 1, "ceil_torch": 1}


@translates("MaxPool")
def _max_pool(cx: LayerContext) -> None:
    attrs = _window_attrs(cx)
    attrs.update(kernel_shape=cx.ints("kernel"), ceil_mode=cx.choice("rounding_type", _ROUNDING, "floor"))
    if cx.version >= 8:
        attrs["dilations"] = cx.ints("dilations", [])
    if len(cx.outs) == 1 or not cx.used[1]:
        cx.b.op("MaxPool", cx.ins[0], out=cx.outs[0], **attrs)
        return
    if cx.int_("axis", 0) != 0:
        raise cx.unsupported("MaxPool indices flattened from an axis other than 0 are not supported")
    idx_type = cx.attr("index_element_type", "i64").lower()
    _, indices = cx.b.op("MaxPool", cx.ins[0], out=[cx.outs[0], cx.b.fresh(cx.outs[1] + "/i64")], **attrs)
    cx.b.op("Cast", indices, to=Type._BY_NAME[idx_type].onnx_code, out=cx.outs[1])


@translates("AvgPool")
def _avg_pool(cx: LayerContext) -> None:
    attrs = _window_attrs(cx)
    cx.b.op("AveragePool", cx.ins[0], kernel_shape=cx.ints("kernel"),
            ceil_mode=cx.choice("rounding_type", _ROUNDING, "floor"),
            count_include_pad=0 if cx.bool_("exclude-pad", False) else 1, out=cx.outs[0], **attrs)


@translates("AdaptiveAvgPool", "AdaptiveMaxPool")
def _adaptive_pool(cx: LayerContext) -> None:
    size = [int(v) for v in cx.const(1, "output_shape").reshape(-1)]
    if any(s != 1 for s in size) or len(cx.outs) > 1:
        raise cx.unsupported(f"adaptive pooling to {size} is supported only for an output of all 1s "
                             f"(global pooling) without indices")
    op = "GlobalAveragePool" if cx.layer.type == "AdaptiveAvgPool" else "GlobalMaxPool"
    cx.b.op(op, cx.ins[0], out=cx.outs[0])
