"""Build ``infermux/examples/lenet.onnx``: a small LeNet-shaped digit classifier.

    python tools/make_example_model.py            # rewrite the bundled model
    python tools/make_example_model.py --check    # fail if a rebuild would change its bytes

The graph is Conv(4@5x5) - Relu - MaxPool - Conv(8@5x5) - Relu - MaxPool - Flatten -
Gemm(200->20) - Relu - Gemm(20->10) - Softmax, opset 17, input ``image`` [N,1,28,28].  The conv
weights are fixed-seed random features.  Both Gemms are fitted in closed form (ridge regression)
to the seven-segment digits of ``infermux.examples.synthetic_digits``, so the quick-start example
prints sensible answers without any training framework: fc1 holds a linear readout of the conv
features and its negation (so that the Relu keeps the sign), fc2 a second readout on top of it.

The output is byte-identical from one run to the next: everything is seeded, features are
computed in float64 without BLAS reductions of unspecified order, and weights are rounded to a
1/4096 grid before they are stored as float32.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import numpy as np
import onnx
from numpy.lib.stride_tricks import sliding_window_view
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from infermux.examples import synthetic_digits

OUT = Path(__file__).resolve().parents[1] / "infermux" / "examples" / "lenet.onnx"
SEED = 20240601
RIDGE = 1e-1
TEMPERATURE = 10.0  # scales the fitted logits so that softmax is confident on clean digits
GRID = 4096.0


def _quantize(w: np.ndarray) -> np.ndarray:
    """Round to the grid, so that last-bit differences between machines do not reach the file."""
    return (np.round(w * GRID) / GRID).astype(np.float32)


def conv_weights(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """He-initialised conv weights: the fixed random features."""
    def he(shape, fan_in):
        return _quantize(rng.normal(0.0, np.sqrt(2.0 / fan_in), shape))

    return {"conv1.weight": he((4, 1, 5, 5), 25), "conv1.bias": _quantize(rng.normal(0, 0.05, 4)),
            "conv2.weight": he((8, 4, 5, 5), 100), "conv2.bias": _quantize(rng.normal(0, 0.05, 8))}


def _conv_relu_pool(x: np.ndarray, w: np.ndarray, b: np.ndarray, pad: int) -> np.ndarray:
    x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    windows = sliding_window_view(x, w.shape[2:], axis=(2, 3))  # N,C,H,W,kh,kw
    y = np.einsum("nchwij,ocij->nohw", windows, w.astype(np.float64)) + b[None, :, None, None]
    y = np.maximum(y, 0.0)
    n, c, h, wd = y.shape
    return y.reshape(n, c, h // 2, 2, wd // 2, 2).max(axis=(3, 5))


def conv_features(images: np.ndarray, weights: dict[str, np.ndarray]) -> np.ndarray:
    """The model up to Flatten, in float64 NumPy: [N, 200]."""
    x = images.astype(np.float64)
    x = _conv_relu_pool(x, weights["conv1.weight"], weights["conv1.bias"], pad=2)
    x = _conv_relu_pool(x, weights["conv2.weight"], weights["conv2.bias"], pad=0)
    return x.reshape(len(x), -1)


def _gemm(x: np.ndarray, weights: dict[str, np.ndarray], name: str) -> np.ndarray:
    w = weights[f"{name}.weight"].astype(np.float64)
    return np.einsum("nk,jk->nj", x, w) + weights[f"{name}.bias"]


def ridge(features: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least squares of one-hot labels on the features: (weight [10, K], bias [10]) in float64."""
    h = np.concatenate([features, np.ones((len(features), 1))], axis=1)
    gram = np.einsum("ni,nj->ij", h, h) + RIDGE * np.eye(h.shape[1])
    coef = np.linalg.solve(gram, np.einsum("ni,nk->ik", h, np.eye(10)[labels]))
    return coef[:-1].T, coef[-1]


def fit_weights(images: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """Every weight of the model: random convs, then the two Gemms fitted in turn."""
    weights = conv_weights(np.random.default_rng(SEED))
    features = conv_features(images, weights)
    w, b = ridge(features, labels)
    weights["fc1.weight"], weights["fc1.bias"] = _quantize(np.concatenate([w, -w])), _quantize(np.r_[b, -b])
    hidden = np.maximum(_gemm(features, weights, "fc1"), 0.0)
    w, b = ridge(hidden, labels)
    weights["fc2.weight"], weights["fc2.bias"] = _quantize(TEMPERATURE * w), _quantize(TEMPERATURE * b)
    return weights


def predict(images: np.ndarray, weights: dict[str, np.ndarray]) -> np.ndarray:
    """The model's logits, in float64 NumPy."""
    hidden = np.maximum(_gemm(conv_features(images, weights), weights, "fc1"), 0.0)
    return _gemm(hidden, weights, "fc2")


def build_model(weights: dict[str, np.ndarray]) -> onnx.ModelProto:
    """The ONNX graph around ``weights``."""
    nodes = [
        helper.make_node("Conv", ["image", "conv1.weight", "conv1.bias"], ["conv1"], name="conv1",
                         kernel_shape=[5, 5], pads=[2, 2, 2, 2]),
        helper.make_node("Relu", ["conv1"], ["relu1"], name="relu1"),
        helper.make_node("MaxPool", ["relu1"], ["pool1"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["pool1", "conv2.weight", "conv2.bias"], ["conv2"], name="conv2",
                         kernel_shape=[5, 5]),
        helper.make_node("Relu", ["conv2"], ["relu2"], name="relu2"),
        helper.make_node("MaxPool", ["relu2"], ["pool2"], name="pool2", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["pool2"], ["flat"], name="flatten", axis=1),
        helper.make_node("Gemm", ["flat", "fc1.weight", "fc1.bias"], ["fc1"], name="fc1", transB=1),
        helper.make_node("Relu", ["fc1"], ["relu3"], name="relu3"),
        helper.make_node("Gemm", ["relu3", "fc2.weight", "fc2.bias"], ["logits"], name="fc2", transB=1),
        helper.make_node("Softmax", ["logits"], ["probabilities"], name="softmax", axis=1),
    ]
    graph = helper.make_graph(
        nodes, "lenet",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 1, 28, 28])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 10])],
        [numpy_helper.from_array(w, name) for name, w in weights.items()],
        doc_string="Digit classifier for infermux's quick start (seven-segment synthetic digits).")
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="infermux tools/make_example_model.py")
    model.ir_version = 8
    helper.set_model_props(model, {"labels": ",".join(str(d) for d in range(10))})
    onnx.checker.check_model(model, full_check=True)
    return model


def make() -> tuple[bytes, float]:
    """(serialized model, accuracy on held-out synthetic digits)."""
    train_labels = np.tile(np.arange(10), 300)
    weights = fit_weights(synthetic_digits(train_labels, seed=SEED), train_labels)
    test_labels = np.tile(np.arange(10), 50)
    logits = predict(synthetic_digits(test_labels, seed=SEED + 1), weights)
    accuracy = float((logits.argmax(axis=1) == test_labels).mean())
    return build_model(weights).SerializeToString(), accuracy


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help=f"where to write (default {OUT})")
    parser.add_argument("--check", action="store_true", help="compare with --out instead of writing")
    args = parser.parse_args(argv)
    data, accuracy = make()
    digest = hashlib.sha256(data).hexdigest()[:16]
    print(f"lenet: {len(data)} bytes, sha256 {digest}, held-out accuracy {accuracy:.3f}")
    if args.check:
        same = args.out.is_file() and args.out.read_bytes() == data
        print(f"{args.out}: {'identical' if same else 'DIFFERS'}")
        return 0 if same else 1
    args.out.write_bytes(data)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
