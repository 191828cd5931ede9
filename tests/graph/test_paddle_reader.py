"""Paddle inference models: the real PP-OCR models against onnxruntime on their ONNX twins, small
hand-encoded programs against NumPy, and malformed files against clear errors.

Programs are written with a tiny protobuf encoder mirroring ``infermux.graph.paddle.proto.SCHEMAS``, so no
paddlepaddle is needed here either.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

import infermux as im
from infermux.errors import ModelReadError, UnsupportedOpError
from infermux.graph.paddle.proto import SCHEMAS, ProtoError, decode
from infermux.graph.paddle import read_paddle

try:  # OpenVINO's own Paddle front end is a test-only oracle for a few op semantics
    import openvino as ov
except ImportError:  # pragma: no cover
    ov = None

MODELS = Path(__file__).resolve().parents[2] / "models"
ATOL, RTOL = 1e-4, 1e-3
_DTYPE_CODES = {np.dtype(np.bool_): 0, np.dtype(np.int32): 2, np.dtype(np.int64): 3,
                np.dtype(np.float32): 5}


# -- a protobuf encoder for the test programs ---------------------------------------------------

def _varint(v: int) -> bytes:
    v &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


def encode(msg: dict, kind: str) -> bytes:
    """The inverse of ``proto.decode`` for the declared fields."""
    fields = {name: (num, k, rep) for num, (name, k, rep) in SCHEMAS[kind].items()}
    out = bytearray()
    for name, value in msg.items():
        num, k, rep = fields[name]
        for v in (value if rep else [value]):
            if k in SCHEMAS or k in ("string", "bytes"):
                data = encode(v, k) if k in SCHEMAS else (v.encode() if isinstance(v, str) else v)
                out += _varint(num << 3 | 2) + _varint(len(data)) + data
            elif k == "float":
                out += _varint(num << 3 | 5) + struct.pack("<f", v)
            elif k == "double":
                out += _varint(num << 3 | 1) + struct.pack("<d", v)
            else:
                out += _varint(num << 3) + _varint(int(v))
    return bytes(out)


def _var(name, dims, dtype=np.float32, persistable=False):
    tensor = {"data_type": _DTYPE_CODES[np.dtype(dtype)], "dims": list(dims)}
    return {"name": name, "type": {"type": 7, "lod_tensor": {"tensor": tensor}}, "persistable": int(persistable)}


_ATTR_KIND = {int: (0, "i"), float: (1, "f"), str: (2, "s"), bool: (6, "b")}


def _attr(name, value):
    if isinstance(value, bool):
        return {"name": name, "type": 6, "b": int(value)}
    if isinstance(value, (list, tuple)):
        if value and isinstance(value[0], float):
            return {"name": name, "type": 4, "floats": list(value)}
        return {"name": name, "type": 3, "ints": list(value)}
    code, field = _ATTR_KIND[type(value)]
    return {"name": name, "type": code, field: value}


def _op(kind, inputs, outputs, **attrs):
    return {"type": kind,
            "inputs": [{"parameter": k, "arguments": v if isinstance(v, list) else [v]} for k, v in inputs.items()],
            "outputs": [{"parameter": k, "arguments": v if isinstance(v, list) else [v]} for k, v in outputs.items()],
            "attrs": [_attr(k, v) for k, v in attrs.items()]}


def program(ops, feeds: dict, fetches: list, params: dict, extra_vars=()) -> tuple[bytes, bytes]:
    """(.pdmodel bytes, .pdiparams bytes) for a single-block program."""
    varz = [{"name": "feed", "type": {"type": 9}, "persistable": 1},
            {"name": "fetch", "type": {"type": 10}, "persistable": 1}]
    varz += [_var(n, shape, dtype) for n, (shape, dtype) in feeds.items()]
    varz += [_var(n, a.shape, a.dtype, persistable=True) for n, a in params.items()]
    varz += list(extra_vars)
    all_ops = [_op("feed", {"X": "feed"}, {"Out": n}, col=i) for i, n in enumerate(feeds)]
    all_ops += ops + [_op("fetch", {"X": n}, {"Out": "fetch"}, col=i) for i, n in enumerate(fetches)]
    model = encode({"blocks": [{"idx": 0, "parent_idx": -1, "vars": varz, "ops": all_ops}],
                    "version": {"version": 2004001}}, "ProgramDesc")
    blob = bytearray()
    for name in sorted(params):
        a = np.ascontiguousarray(params[name])
        desc = encode({"data_type": _DTYPE_CODES[a.dtype], "dims": list(a.shape)}, "TensorDesc")
        blob += struct.pack("<IQIi", 0, 0, 0, len(desc)) + desc + a.tobytes()
    return model, bytes(blob)


def _run(model_bytes, params_bytes, feeds):
    model = read_paddle(model_bytes, params_bytes)
    out = im.Core().compile_model(model, "CPU")(feeds)
    return model, [np.asarray(out[i]) for i in range(len(model.outputs))]


# -- the decoder ---------------------------------------------------------------------------------

def test_decoder_reads_packed_and_unpacked_fields_and_negative_ints():
    packed = _varint(2 << 3 | 2) + _varint(3) + _varint(4) + _varint(1) + _varint(5)
    unpacked = _varint(2 << 3) + _varint(-1) + _varint(1 << 3) + _varint(5)
    assert decode(packed + unpacked, "TensorDesc") == {"dims": [4, 1, 5, -1], "data_type": 5}


@pytest.mark.parametrize("data, match", [
    (b"\x0a\x05ab", "runs past the end"),
    (b"\x08\xff\xff", "truncated varint"),
    (b"\x0b", "unsupported wire type 3"),
    (b"\x08" + b"\xff" * 11, "longer than 10 bytes"),
])
def test_decoder_rejects_malformed_bytes(data, match):
    with pytest.raises(ProtoError, match=match):
        decode(data, "VarDesc")


# -- small programs against NumPy ---------------------------------------------------------------

def test_conv_bias_batchnorm_pool_program():
    r = np.random.default_rng(0)
    w = r.standard_normal((4, 3, 3, 3)).astype(np.float32)
    bias = r.standard_normal(4).astype(np.float32)
    scale, shift = np.float32(1.5), np.float32(0.25)
    params = {"w": w, "bias": bias, "bn_s": np.full(4, scale), "bn_b": np.full(4, shift),
              "bn_m": np.zeros(4, np.float32), "bn_v": np.ones(4, np.float32)}
    ops = [_op("conv2d", {"Input": "x", "Filter": "w"}, {"Output": "c"}, strides=[1, 1], paddings=[1, 1],
               dilations=[1, 1], groups=1, padding_algorithm="EXPLICIT", data_format="NCHW"),
           _op("elementwise_add", {"X": "c", "Y": "bias"}, {"Out": "cb"}, axis=1),
           _op("batch_norm", {"X": "cb", "Scale": "bn_s", "Bias": "bn_b", "Mean": "bn_m", "Variance": "bn_v"},
               {"Y": "bn", "MeanOut": "bn_m", "VarianceOut": "bn_v"}, epsilon=0.0, data_layout="NCHW"),
           _op("relu6", {"X": "bn"}, {"Out": "r"}, threshold=6.0),
           _op("pool2d", {"X": "r"}, {"Out": "p"}, pooling_type="max", ksize=[2, 2], strides=[2, 2],
               paddings=[0, 0], global_pooling=False, adaptive=False, ceil_mode=False, exclusive=True,
               padding_algorithm="EXPLICIT", data_format="NCHW"),
           _op("pool2d", {"X": "r"}, {"Out": "g"}, pooling_type="avg", ksize=[1, 1], adaptive=True)]
    model_bytes, blob = program(ops, {"x": ([-1, 3, 6, 6], np.float32)}, ["p", "g"], params,
                                [_var("c", [-1, 4, 6, 6])])
    x = r.standard_normal((2, 3, 6, 6)).astype(np.float32)
    _, (p, g) = _run(model_bytes, blob, {"x": x})
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    conv = np.einsum("nchwij,ocij->nohw", np.lib.stride_tricks.sliding_window_view(padded, (3, 3), (2, 3)), w)
    r6 = np.clip((conv + bias[:, None, None]) * scale + shift, 0, 6)
    np.testing.assert_allclose(p, r6.reshape(2, 4, 3, 2, 3, 2).max(axis=(3, 5)), atol=ATOL, rtol=RTOL)
    np.testing.assert_allclose(g, r6.mean(axis=(2, 3), keepdims=True), atol=ATOL, rtol=RTOL)


def test_shape_ops_program():
    """shape -> slice(decrease_axis) -> reshape2(ShapeTensor) as in PP-OCR's classifier head."""
    r = np.random.default_rng(1)
    fc = r.standard_normal((12, 2)).astype(np.float32)
    ops = [_op("shape", {"Input": "x"}, {"Out": "s"}),
           _op("slice", {"Input": "s"}, {"Out": "n"}, axes=[0], starts=[0], ends=[1], decrease_axis=[0]),
           _op("fill_constant", {}, {"Out": "k"}, shape=[1], dtype=2, value=12.0, str_value="12"),
           _op("reshape2", {"X": "x", "ShapeTensor": ["n", "k"]}, {"Out": "flat", "XShape": "xs"}),
           _op("matmul_v2", {"X": "flat", "Y": "fc"}, {"Out": "mm"}, trans_x=False, trans_y=False),
           _op("scale", {"X": "mm"}, {"Out": "sc"}, scale=2.0, bias=1.0, bias_after_scale=True),
           _op("softmax", {"X": "sc"}, {"Out": "y"}, axis=-1),
           _op("transpose2", {"X": "x"}, {"Out": "t", "XShape": "ts"}, axis=[0, 2, 3, 1]),
           _op("flatten_contiguous_range", {"X": "t"}, {"Out": "f", "XShape": "fs"}, start_axis=1, stop_axis=2),
           _op("nearest_interp_v2", {"X": "x"}, {"Out": "up"}, interp_method="nearest", scale=[2.0, 2.0],
               align_corners=False, align_mode=1, out_h=-1, out_w=-1, data_layout="NCHW"),
           _op("split", {"X": "x"}, {"Out": ["s1", "s2"]}, axis=1, sections=[1, -1], num=0)]
    extra = [_var("s", [4], np.int32), _var("n", [1], np.int32), _var("k", [1], np.int32),
             _var("t", [-1, 2, 2, 3])]
    model_bytes, blob = program(ops, {"x": ([-1, 3, 2, 2], np.float32)}, ["y", "f", "up", "s2"], {"fc": fc}, extra)
    x = r.standard_normal((2, 3, 2, 2)).astype(np.float32)
    model, (y, f, up, s2) = _run(model_bytes, blob, {"x": x})
    logits = x.reshape(2, 12) @ fc * 2 + 1
    ref = np.exp(logits - logits.max(-1, keepdims=True))
    np.testing.assert_allclose(y, ref / ref.sum(-1, keepdims=True), atol=ATOL, rtol=RTOL)
    np.testing.assert_array_equal(f, x.transpose(0, 2, 3, 1).reshape(2, 4, 3))
    np.testing.assert_array_equal(up, x.repeat(2, axis=2).repeat(2, axis=3))
    np.testing.assert_array_equal(s2, x[:, 1:])
    assert [o.any_name for o in model.outputs] == ["y", "f", "up", "s2"]


def test_elementwise_broadcast_follows_paddle_axis():
    a = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    ops = [_op("elementwise_mul", {"X": "x", "Y": "c"}, {"Out": "m"}, axis=1),
           _op("elementwise_sub", {"X": "x", "Y": "d"}, {"Out": "s"}, axis=-1),
           _op("hard_swish", {"X": "s"}, {"Out": "h"}, threshold=6.0, scale=6.0, offset=3.0),
           _op("hard_sigmoid", {"X": "s"}, {"Out": "hs"}, slope=0.2, offset=0.5)]
    params = {"c": np.array([1, 2, 3], np.float32), "d": np.full(4, 10, np.float32)}
    model_bytes, blob = program(ops, {"x": ([2, 3, 4], np.float32)}, ["m", "h", "hs"], params)
    _, (m, h, hs) = _run(model_bytes, blob, {"x": a})
    np.testing.assert_array_equal(m, a * np.array([1, 2, 3], np.float32)[:, None])
    s = a - 10
    np.testing.assert_allclose(h, s * np.clip(s + 3, 0, 6) / 6, atol=ATOL, rtol=RTOL)
    np.testing.assert_allclose(hs, np.clip(0.2 * s + 0.5, 0, 1), atol=ATOL, rtol=RTOL)


# -- malformed input ---------------------------------------------------------------------------

def _relu_program(param=None):
    param = np.ones(3, np.float32) if param is None else param
    ops = [_op("elementwise_add", {"X": "x", "Y": "p"}, {"Out": "a"}, axis=-1), _op("relu", {"X": "a"}, {"Out": "y"})]
    return program(ops, {"x": ([3], np.float32)}, ["y"], {"p": param})


def test_relu_program_runs():
    model_bytes, blob = _relu_program(np.array([1, -5, 0], np.float32))
    _, (y,) = _run(model_bytes, blob, {"x": np.array([1, 2, -3], np.float32)})
    np.testing.assert_array_equal(y, [2, 0, 0])


@pytest.mark.parametrize("mutate, error, match", [
    (lambda m, b: (m, b[:-4]), ModelReadError, r"the data of 'p' runs past the end"),
    (lambda m, b: (m, b + b"\0"), ModelReadError, r"1 bytes are left"),
    (lambda m, b: (m, None), ModelReadError, r"no \.pdiparams"),
    (lambda m, b: (_relu_program(np.ones(4, np.float32))[0], b), ModelReadError,
     r"parameter 'p' has shape \[3\] in the \.pdiparams but \[4\] in the \.pdmodel"),
    (lambda m, b: (m, b"\x07" + b[1:]), ModelReadError, r"tensor 'p' has version 7 / 0 LoD levels"),
    (lambda m, b: (m, b[:4] + b"\xff" * 8 + b[12:]), ModelReadError, r"'p' has version 0 / \d+ LoD levels"),
    (lambda m, b: (m[:-7], b), ModelReadError, r"not a ProgramDesc"),
    (lambda m, b: (m.replace(b"\x04relu", b"\x04relx"), b), UnsupportedOpError, r"Paddle op 'relx'.*not supported"),
])
def test_malformed_paddle_files_are_rejected_clearly(mutate, error, match):
    model_bytes, blob = mutate(*_relu_program())
    with pytest.raises(error, match=match):
        read_paddle(model_bytes, blob)


# -- the real PP-OCR models against onnxruntime on their ONNX twins -----------------------------

def _entry(model_id):
    manifest = json.loads((MODELS / "manifest.json").read_text())
    return next(e for e in manifest["models"] if e["id"] == model_id)


@pytest.mark.parametrize("paddle_id, onnx_id", [("ppocr_mobile_v2_cls_paddle", "ppocr_mobile_v2_cls"),
                                                ("ppocrv4_det_paddle", "ppocrv4_det")])
def test_ppocr_paddle_models_match_their_onnx_twins(paddle_id, onnx_id):
    if not (MODELS / paddle_id).is_dir() or not (MODELS / onnx_id).is_dir():
        pytest.skip("dev models not fetched (shared/models/get_dev_models.sh puts them in models/)")
    import onnxruntime as ort

    paddle, twin = _entry(paddle_id), _entry(onnx_id)
    spec = paddle["test_inputs"]["x"]
    x = np.random.default_rng(0).uniform(-1, 1, spec["shape"]).astype(spec["dtype"])
    model = read_paddle(MODELS / paddle["file"])
    assert [o.any_name for o in model.outputs] == [o["name"] for o in paddle["outputs"]]
    ours = np.asarray(im.Core().compile_model(model, "CPU")({"x": x})[0])
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(MODELS / twin["file"]), options, providers=["CPUExecutionProvider"])
    ref = session.run(None, {session.get_inputs()[0].name: x})[0]
    assert ours.shape == ref.shape and ours.dtype == ref.dtype
    np.testing.assert_allclose(ours, ref, atol=ATOL, rtol=RTOL)


# -- more ops, against OpenVINO's own Paddle front end --------------------------------------------

def _interp(kind, out, **attrs):
    base = {"interp_method": "bilinear" if kind.startswith("bilinear") else "nearest", "align_corners": False,
            "align_mode": 1, "out_d": -1, "out_h": -1, "out_w": -1, "scale": [0.0, 0.0], "data_layout": "NCHW"}
    return _op(kind, {"X": "x"}, {"Out": out}, **{**base, **attrs})


def _pool(out, **attrs):
    base = {"pooling_type": "avg", "ksize": [3, 3], "strides": [2, 2], "paddings": [1, 1], "global_pooling": False,
            "adaptive": False, "ceil_mode": False, "exclusive": True, "padding_algorithm": "EXPLICIT",
            "data_format": "NCHW"}
    return _op("pool2d", {"X": "x"}, {"Out": out}, **{**base, **attrs})


_MORE_OPS = [
    _interp("bilinear_interp_v2", "b0", scale=[1.5, 2.0], align_mode=0),
    _interp("bilinear_interp_v2", "b1", out_h=5, out_w=7),
    _interp("bilinear_interp_v2", "b2", out_h=5, out_w=7, align_corners=True),
    _pool("p1", ceil_mode=True, exclusive=False),
    _pool("p2", pooling_type="max", paddings=[0, 1, 1, 0], ceil_mode=True),
    _pool("p3", ksize=[2, 3], strides=[2, 3], paddings=[0, 0], adaptive=True),
    _op("swish", {"X": "x"}, {"Out": "sw"}, beta=1.0),
    _op("leaky_relu", {"X": "x"}, {"Out": "lr"}, alpha=0.1),
    _op("gelu", {"X": "x"}, {"Out": "ge"}, approximate=False),
    _op("layer_norm", {"X": "x", "Scale": "ls", "Bias": "lb"}, {"Y": "ln"}, begin_norm_axis=3, epsilon=1e-5),
    _op("pad3d", {"X": "x5"}, {"Out": "pd"}, paddings=[1, 0, 2, 1, 0, 1], mode="reflect", value=0.0,
        data_format="NCDHW"),
    _op("arg_max", {"X": "x"}, {"Out": "am"}, axis=1, keepdims=False, flatten=False, dtype=3),
    _op("dropout", {"X": "x"}, {"Out": "dr"}, dropout_prob=0.3, dropout_implementation="downgrade_in_infer",
        is_test=True),
    _op("matmul", {"X": "x", "Y": "x"}, {"Out": "mm"}, transpose_X=False, transpose_Y=True, alpha=0.5),
    _op("concat", {"X": ["x", "x"]}, {"Out": "cc"}, axis=1),
    _op("squeeze2", {"X": "am"}, {"Out": "sq", "XShape": "sqs"}, axes=[]),
    _op("unsqueeze2", {"X": "am"}, {"Out": "us", "XShape": "uss"}, axes=[1]),
    _op("reduce_mean", {"X": "x"}, {"Out": "rm"}, dim=[2, 3], keep_dim=True, reduce_all=False),
    _op("cast", {"X": "am"}, {"Out": "ca"}, in_dtype=3, out_dtype=5),
    _op("clip", {"X": "x"}, {"Out": "cl"}, min=-0.5, max=0.5),
    _op("stack", {"X": ["x", "x"]}, {"Y": "st"}, axis=1),
    _op("gather", {"X": "x", "Index": "gi"}, {"Out": "ga"}, axis=0),
    _op("expand_v2", {"X": "x"}, {"Out": "ex"}, shape=[3, -1, -1, -1]),
    _op("tile", {"X": "x"}, {"Out": "ti"}, repeat_times=[1, 2, 1]),
    _op("top_k_v2", {"X": "x"}, {"Out": "tk", "Indices": "tki"}, k=2, axis=-1, largest=True, sorted=True),
    _op("strided_slice", {"Input": "x"}, {"Out": "ss"}, axes=[2, 3], starts=[0, 5], ends=[4, 0], strides=[2, -2],
        infer_flags=[1, 1], decrease_axis=[]),
    _op("sigmoid", {"X": "x"}, {"Out": "sg"}),
    _op("depthwise_conv2d", {"Input": "x", "Filter": "dw"}, {"Output": "dc"}, strides=[1, 2], paddings=[1, 1, 0, 0],
        dilations=[1, 1], groups=2, padding_algorithm="EXPLICIT", data_format="NCHW"),
    _op("reduce_sum", {"X": "x"}, {"Out": "rs"}, dim=[1], keep_dim=False, reduce_all=False),
    _op("softplus", {"X": "x"}, {"Out": "sp"}, beta=1.0, threshold=20.0),
]
_MORE_VARS = {"am": ([-1, 4, 6], np.int64), "sq": ([-1, 4, 6], np.int64), "us": ([-1, 1, 4, 6], np.int64),
              "ca": ([-1, 4, 6], np.float32), "pd": ([-1] * 5, np.float32), "st": ([-1] * 5, np.float32),
              "tki": ([-1, 2, 4, 2], np.int64), "rs": ([-1, 4, 6], np.float32)}


@pytest.mark.skipif(ov is None, reason="OpenVINO's Paddle front end is the oracle here")
def test_more_ops_match_openvino_paddle_frontend(tmp_path):
    r = np.random.default_rng(0)
    params = {"ls": r.standard_normal(6).astype(np.float32), "lb": r.standard_normal(6).astype(np.float32),
              "gi": np.array([0, 0], np.int64), "dw": r.standard_normal((2, 1, 3, 3)).astype(np.float32)}
    fetches = [v for op in _MORE_OPS for o in op["outputs"] if o["parameter"] in ("Out", "Y", "Output", "Indices")
               for v in o["arguments"]]
    declared = [_var(n, *_MORE_VARS.get(n, ([-1, -1, -1, -1], np.float32)))
                for op in _MORE_OPS for o in op["outputs"] for n in o["arguments"]]
    model_bytes, blob = program(_MORE_OPS, {"x": ([1, 2, 4, 6], np.float32), "x5": ([1, 2, 3, 4, 5], np.float32)},
                                fetches, params, declared)
    (tmp_path / "inference.pdmodel").write_bytes(model_bytes)
    (tmp_path / "inference.pdiparams").write_bytes(blob)
    feeds = {"x": r.standard_normal((1, 2, 4, 6)).astype(np.float32),
             "x5": r.standard_normal((1, 2, 3, 4, 5)).astype(np.float32)}
    ours = im.Core().compile_model(read_paddle(tmp_path), "CPU")(feeds)
    core = ov.Core()
    ref = core.compile_model(core.read_model(str(tmp_path / "inference.pdmodel")), "CPU",
                             {"INFERENCE_PRECISION_HINT": "f32"})(feeds)
    for i, name in enumerate(fetches):
        got, want = np.asarray(ours[i]), ref[i]
        assert got.shape == want.shape and got.dtype == want.dtype, name
        np.testing.assert_allclose(got, want, atol=ATOL, rtol=RTOL, err_msg=name)


def test_ops_where_openvino_departs_from_paddle():
    """Where OpenVINO's Paddle front end departs from Paddle's kernels (or lacks the op), Paddle's
    formulas rule: nearest picks int(k * ratio) (int(k * ratio + 0.5) with align_corners),
    conv2d_transpose adds output_padding to the output size, float floordiv floors, and ``mul``
    multiplies X and Y flattened at x/y_num_col_dims."""
    r = np.random.default_rng(3)
    x = r.standard_normal((1, 2, 4, 6)).astype(np.float32)
    w = r.standard_normal((2, 3, 3, 3)).astype(np.float32)
    ops = [_interp("nearest_interp_v2", "n1", out_h=3, out_w=7, align_corners=True),
           _interp("nearest_interp_v2", "n2", out_h=3, out_w=7),
           _op("conv2d_transpose", {"Input": "x", "Filter": "w"}, {"Output": "ct"}, strides=[2, 2], paddings=[1, 1],
               dilations=[1, 1], groups=1, output_padding=[1, 1], padding_algorithm="EXPLICIT", data_format="NCHW"),
           _op("elementwise_floordiv", {"X": "x", "Y": "half"}, {"Out": "fd"}, axis=-1),
           _op("mul", {"X": "x", "Y": "wm"}, {"Out": "mu"}, x_num_col_dims=3, y_num_col_dims=1)]
    params = {"w": w, "half": np.array([0.5], np.float32), "wm": r.standard_normal((6, 3)).astype(np.float32)}
    model_bytes, blob = program(ops, {"x": ([1, 2, 4, 6], np.float32)}, ["n1", "n2", "ct", "fd", "mu"], params)
    _, (n1, n2, ct, fd, mu) = _run(model_bytes, blob, {"x": x})
    np.testing.assert_array_equal(fd, np.floor(x / np.float32(0.5)))
    np.testing.assert_allclose(mu, x @ params["wm"], atol=ATOL, rtol=RTOL)
    rows = lambda align, n, size: [int(k * (size - 1) / (n - 1) + 0.5) if align else int(k * size / n)
                                   for k in range(n)]
    np.testing.assert_array_equal(n1, x[:, :, rows(True, 3, 4)][:, :, :, rows(True, 7, 6)])
    np.testing.assert_array_equal(n2, x[:, :, rows(False, 3, 4)][:, :, :, rows(False, 7, 6)])
    full = np.zeros((1, 3, 9 + 1, 13 + 1), np.float32)  # stride-2 scatter of 3x3 kernels, + output_padding
    for i in range(4):
        for j in range(6):
            full[0, :, 2 * i:2 * i + 3, 2 * j:2 * j + 3] += np.einsum("c,cokl->okl", x[0, :, i, j], w)
    assert ct.shape == (1, 3, 8, 12)
    np.testing.assert_allclose(ct, full[:, :, 1:9, 1:13], atol=ATOL, rtol=RTOL)
