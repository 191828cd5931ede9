#!/usr/bin/env python
# Verbatim copy of /work/shared/bench/make_models.py (the shared benchmark model zoo), kept here so
# the repository is self-contained for CI and tests/oracle. Edit the original, then re-copy.
"""Build a small zoo of representative ONNX models with random weights.

Usage:  python make_models.py OUT_DIR [--seed 0] [--no-check]

Models (all float32, opset 17, batch dimension symbolic "N" where it makes sense):
  resnet18.onnx   ResNet-18-like CNN, input [N,3,224,224]  (Conv/BN/Relu/MaxPool/Add/GAP/Gemm)
  mobilenetv2.onnx MobileNet-V2 (width 1.0) input [N,3,224,224] (depthwise = group Conv, Clip as ReLU6)
  bert4.onnx      4 BERT-base encoder layers, hidden 768, 12 heads, seq 128, input [N,128,768]
                  (MatMul/Add/Reshape/Transpose/Div/Softmax/Erf-GELU/LayerNormalization)
  mlp.onnx        Gemm 1024->4096->4096->1024->256 with Relu, input [N,1024]
  lstm.onnx       2 stacked ONNX LSTM layers (input 256, hidden 512), seq 64, input [64,N,256],
                  + Gemm classifier on the last hidden state
  tiny.onnx       5 ops on a [N,16] tensor (MatMul/Add/Relu/Mul/Add) for per-call overhead

Weights are drawn from a fixed-seed RNG, so the files are reproducible.  After building, every
model is run once in onnxruntime (unless --no-check) and its output is checked for finiteness.
"""
import argparse
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8


class G:
    """Tiny graph builder on top of onnx.helper."""

    def __init__(self, name, rng):
        self.name = name
        self.rng = rng
        self.nodes = []
        self.inits = []
        self.inputs = []
        self.outputs = []
        self._n = 0

    def uid(self, prefix):
        self._n += 1
        return f"{prefix}_{self._n}"

    def init(self, name, arr):
        arr = np.asarray(arr)
        if arr.dtype == np.float64:
            arr = arr.astype(np.float32)
        self.inits.append(numpy_helper.from_array(arr, name))
        return name

    def node(self, op, inputs, n_out=1, name=None, out=None, **attrs):
        name = name or self.uid(op.lower())
        if out is None:
            outs = [f"{name}_out{i}" if n_out > 1 else f"{name}_out" for i in range(n_out)]
        else:
            outs = [out] if isinstance(out, str) else list(out)
        self.nodes.append(helper.make_node(op, inputs, outs, name=name, **attrs))
        return outs[0] if len(outs) == 1 else outs

    def model(self):
        graph = helper.make_graph(self.nodes, self.name, self.inputs, self.outputs, self.inits)
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="bench.make_models")
        m.ir_version = IR_VERSION
        onnx.checker.check_model(m)
        return m

    # ---- CNN helpers -------------------------------------------------------------------------
    def conv_bn(self, x, cin, cout, k, stride=1, group=1, act="relu", name=None):
        name = name or self.uid("conv")
        fan_in = (cin // group) * k * k
        w = self.rng.standard_normal((cout, cin // group, k, k)) * np.sqrt(2.0 / fan_in)
        self.init(f"{name}.w", w)
        y = self.node("Conv", [x, f"{name}.w"], name=name, kernel_shape=[k, k],
                      strides=[stride, stride], pads=[k // 2] * 4, group=group)
        self.init(f"{name}.bn.scale", self.rng.uniform(0.5, 1.5, cout))
        self.init(f"{name}.bn.bias", self.rng.normal(0.0, 0.1, cout))
        self.init(f"{name}.bn.mean", self.rng.normal(0.0, 0.1, cout))
        self.init(f"{name}.bn.var", self.rng.uniform(0.5, 1.5, cout))
        y = self.node("BatchNormalization", [y, f"{name}.bn.scale", f"{name}.bn.bias",
                                             f"{name}.bn.mean", f"{name}.bn.var"],
                      name=f"{name}.bn", epsilon=1e-5)
        if act == "relu":
            y = self.node("Relu", [y], name=f"{name}.relu")
        elif act == "relu6":
            y = self.node("Clip", [y, "c_zero", "c_six"], name=f"{name}.relu6")
        return y

    def head(self, x, cin, ncls=1000):
        y = self.node("GlobalAveragePool", [x], name="gap")
        y = self.node("Flatten", [y], name="flatten", axis=1)
        self.init("fc.w", self.rng.standard_normal((ncls, cin)) * np.sqrt(1.0 / cin))
        self.init("fc.b", self.rng.normal(0, 0.01, ncls))
        return self.node("Gemm", [y, "fc.w", "fc.b"], name="fc", out="logits", transB=1)


def f32_input(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def build_resnet18(rng):
    g = G("resnet18", rng)
    g.inputs.append(f32_input("input", ["N", 3, 224, 224]))
    x = g.conv_bn("input", 3, 64, 7, stride=2, name="conv1")
    x = g.node("MaxPool", [x], name="maxpool", kernel_shape=[3, 3], strides=[2, 2], pads=[1] * 4)
    cin = 64
    for stage, (cout, stride) in enumerate([(64, 1), (128, 2), (256, 2), (512, 2)], start=1):
        for blk in range(2):
            s = stride if blk == 0 else 1
            pre = f"layer{stage}.{blk}"
            y = g.conv_bn(x, cin, cout, 3, stride=s, name=f"{pre}.conv1")
            y = g.conv_bn(y, cout, cout, 3, stride=1, act=None, name=f"{pre}.conv2")
            if s != 1 or cin != cout:
                sc = g.conv_bn(x, cin, cout, 1, stride=s, act=None, name=f"{pre}.down")
            else:
                sc = x
            x = g.node("Add", [y, sc], name=f"{pre}.add")
            x = g.node("Relu", [x], name=f"{pre}.relu")
            cin = cout
    g.head(x, 512)
    g.outputs.append(f32_input("logits", ["N", 1000]))
    return g.model()


def build_mobilenetv2(rng):
    g = G("mobilenetv2", rng)
    g.init("c_zero", np.array(0.0, np.float32))
    g.init("c_six", np.array(6.0, np.float32))
    g.inputs.append(f32_input("input", ["N", 3, 224, 224]))
    x = g.conv_bn("input", 3, 32, 3, stride=2, act="relu6", name="stem")
    cin = 32
    cfg = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
           (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]
    bi = 0
    for t, c, n, s in cfg:
        for i in range(n):
            stride = s if i == 0 else 1
            hidden = cin * t
            pre = f"block{bi}"
            y = x
            if t != 1:
                y = g.conv_bn(y, cin, hidden, 1, act="relu6", name=f"{pre}.expand")
            y = g.conv_bn(y, hidden, hidden, 3, stride=stride, group=hidden, act="relu6",
                          name=f"{pre}.dw")
            y = g.conv_bn(y, hidden, c, 1, act=None, name=f"{pre}.project")
            if stride == 1 and cin == c:
                y = g.node("Add", [y, x], name=f"{pre}.add")
            x = y
            cin = c
            bi += 1
    x = g.conv_bn(x, cin, 1280, 1, act="relu6", name="last")
    g.head(x, 1280)
    g.outputs.append(f32_input("logits", ["N", 1000]))
    return g.model()


def build_bert(rng, layers=4, hidden=768, heads=12, seq=128, ffn=3072):
    g = G("bert4", rng)
    dh = hidden // heads
    g.inputs.append(f32_input("hidden", ["N", seq, hidden]))
    g.init("shape_split", np.array([0, 0, heads, dh], np.int64))
    g.init("shape_merge", np.array([0, 0, hidden], np.int64))
    g.init("c_sqrt_dh", np.array(np.sqrt(dh), np.float32))
    g.init("c_sqrt2", np.array(np.sqrt(2.0), np.float32))
    g.init("c_one", np.array(1.0, np.float32))
    g.init("c_half", np.array(0.5, np.float32))
    std = 0.02
    x = "hidden"
    for L in range(layers):
        p = f"L{L}"

        def lin(inp, k, n, nm):
            g.init(f"{p}.{nm}.w", rng.standard_normal((k, n)) * std)
            g.init(f"{p}.{nm}.b", rng.normal(0, 0.02, n))
            y = g.node("MatMul", [inp, f"{p}.{nm}.w"], name=f"{p}.{nm}.matmul")
            return g.node("Add", [y, f"{p}.{nm}.b"], name=f"{p}.{nm}.bias")

        def ln(inp, nm):
            g.init(f"{p}.{nm}.gamma", rng.uniform(0.8, 1.2, hidden))
            g.init(f"{p}.{nm}.beta", rng.normal(0, 0.02, hidden))
            return g.node("LayerNormalization", [inp, f"{p}.{nm}.gamma", f"{p}.{nm}.beta"],
                          name=f"{p}.{nm}", axis=-1, epsilon=1e-12)

        q = lin(x, hidden, hidden, "q")
        k = lin(x, hidden, hidden, "k")
        v = lin(x, hidden, hidden, "v")
        q = g.node("Reshape", [q, "shape_split"], name=f"{p}.q.reshape")
        q = g.node("Transpose", [q], name=f"{p}.q.transpose", perm=[0, 2, 1, 3])
        k = g.node("Reshape", [k, "shape_split"], name=f"{p}.k.reshape")
        k = g.node("Transpose", [k], name=f"{p}.k.transpose", perm=[0, 2, 3, 1])
        v = g.node("Reshape", [v, "shape_split"], name=f"{p}.v.reshape")
        v = g.node("Transpose", [v], name=f"{p}.v.transpose", perm=[0, 2, 1, 3])
        s = g.node("MatMul", [q, k], name=f"{p}.scores")
        s = g.node("Div", [s, "c_sqrt_dh"], name=f"{p}.scale")
        a = g.node("Softmax", [s], name=f"{p}.softmax", axis=-1)
        c = g.node("MatMul", [a, v], name=f"{p}.context")
        c = g.node("Transpose", [c], name=f"{p}.ctx.transpose", perm=[0, 2, 1, 3])
        c = g.node("Reshape", [c, "shape_merge"], name=f"{p}.ctx.reshape")
        o = lin(c, hidden, hidden, "o")
        o = g.node("Add", [o, x], name=f"{p}.attn.residual")
        x1 = ln(o, "ln1")
        h = lin(x1, hidden, ffn, "ffn1")
        # GELU, erf form (what torch.onnx exports at opset 17)
        e = g.node("Div", [h, "c_sqrt2"], name=f"{p}.gelu.div")
        e = g.node("Erf", [e], name=f"{p}.gelu.erf")
        e = g.node("Add", [e, "c_one"], name=f"{p}.gelu.add")
        e = g.node("Mul", [h, e], name=f"{p}.gelu.mul")
        e = g.node("Mul", [e, "c_half"], name=f"{p}.gelu.half")
        f = lin(e, ffn, hidden, "ffn2")
        f = g.node("Add", [f, x1], name=f"{p}.ffn.residual")
        x = ln(f, "ln2")
    g.nodes.append(helper.make_node("Identity", [x], ["output"], name="out"))
    g.outputs.append(f32_input("output", ["N", seq, hidden]))
    return g.model()


def build_mlp(rng, dims=(1024, 4096, 4096, 1024, 256)):
    g = G("mlp", rng)
    g.inputs.append(f32_input("input", ["N", dims[0]]))
    x = "input"
    for i in range(len(dims) - 1):
        g.init(f"fc{i}.w", rng.standard_normal((dims[i + 1], dims[i])) * np.sqrt(2.0 / dims[i]))
        g.init(f"fc{i}.b", rng.normal(0, 0.01, dims[i + 1]))
        last = i == len(dims) - 2
        x = g.node("Gemm", [x, f"fc{i}.w", f"fc{i}.b"], name=f"fc{i}", transB=1,
                   out="output" if last else None)
        if not last:
            x = g.node("Relu", [x], name=f"relu{i}")
    g.outputs.append(f32_input("output", ["N", dims[-1]]))
    return g.model()


def build_lstm(rng, seq=64, inp=256, hidden=512, layers=2, ncls=10):
    g = G("lstm", rng)
    g.inputs.append(f32_input("input", [seq, "N", inp]))
    g.init("axes1", np.array([1], np.int64))
    g.init("axes0", np.array([0], np.int64))
    x = "input"
    cin = inp
    s = 1.0 / np.sqrt(hidden)
    for L in range(layers):
        g.init(f"lstm{L}.W", rng.uniform(-s, s, (1, 4 * hidden, cin)))
        g.init(f"lstm{L}.R", rng.uniform(-s, s, (1, 4 * hidden, hidden)))
        g.init(f"lstm{L}.B", rng.uniform(-s, s, (1, 8 * hidden)))
        y, yh = g.node("LSTM", [x, f"lstm{L}.W", f"lstm{L}.R", f"lstm{L}.B"], n_out=2,
                       name=f"lstm{L}", hidden_size=hidden, direction="forward")
        x = g.node("Squeeze", [y, "axes1"], name=f"lstm{L}.squeeze")  # [seq, N, hidden]
        cin = hidden
    h = g.node("Squeeze", [yh, "axes0"], name="last_h")  # [N, hidden]
    g.init("cls.w", rng.standard_normal((ncls, hidden)) * np.sqrt(1.0 / hidden))
    g.init("cls.b", np.zeros(ncls))
    g.node("Gemm", [h, "cls.w", "cls.b"], name="cls", out="output", transB=1)
    g.outputs.append(f32_input("output", ["N", ncls]))
    return g.model()


def build_tiny(rng, d=16):
    g = G("tiny", rng)
    g.inputs.append(f32_input("input", ["N", d]))
    g.init("w", rng.standard_normal((d, d)) * 0.25)
    g.init("b", rng.normal(0, 0.1, d))
    g.init("scale", np.array(0.5, np.float32))
    g.init("shift", rng.normal(0, 0.1, d))
    y = g.node("MatMul", ["input", "w"], name="matmul")
    y = g.node("Add", [y, "b"], name="bias")
    y = g.node("Relu", [y], name="relu")
    y = g.node("Mul", [y, "scale"], name="mul")
    g.node("Add", [y, "shift"], name="shift_add", out="output")
    g.outputs.append(f32_input("output", ["N", d]))
    return g.model()


BUILDERS = {
    "resnet18": build_resnet18,
    "mobilenetv2": build_mobilenetv2,
    "bert4": build_bert,
    "mlp": build_mlp,
    "lstm": build_lstm,
    "tiny": build_tiny,
}

# Example input shapes at batch N (used by the checker here and by baseline.py).
INPUT_SHAPES = {
    "resnet18": lambda n: (n, 3, 224, 224),
    "mobilenetv2": lambda n: (n, 3, 224, 224),
    "bert4": lambda n: (n, 128, 768),
    "mlp": lambda n: (n, 1024),
    "lstm": lambda n: (64, n, 256),
    "tiny": lambda n: (n, 16),
}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out_dir")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", nargs="*", default=None, help="subset of models to build")
    ap.add_argument("--no-check", action="store_true", help="skip the onnxruntime smoke run")
    args = ap.parse_args(argv)
    os.makedirs(args.out_dir, exist_ok=True)
    names = args.only or list(BUILDERS)
    for i, name in enumerate(names):
        rng = np.random.default_rng(args.seed + 1000 * i)
        m = BUILDERS[name](rng)
        path = os.path.join(args.out_dir, f"{name}.onnx")
        onnx.save(m, path)
        msg = f"{name:12s} {len(m.graph.node):4d} nodes  {os.path.getsize(path) / 1e6:7.1f} MB"
        if not args.no_check:
            import onnxruntime as ort
            sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
            x = np.random.default_rng(1).standard_normal(INPUT_SHAPES[name](1)).astype(np.float32)
            outs = sess.run(None, {sess.get_inputs()[0].name: x})
            o = outs[0]
            ok = bool(np.all(np.isfinite(o)))
            msg += f"  ort ok={ok} out{list(o.shape)} |out|max={np.abs(o).max():.3g}"
            if not ok:
                print(msg)
                sys.exit(f"{name}: non-finite output in onnxruntime")
        print(msg)


if __name__ == "__main__":
    main()
