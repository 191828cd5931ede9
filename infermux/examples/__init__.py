"""Bundled example models and the synthetic inputs that go with them.

``lenet`` is a small MNIST-shaped digit classifier (input ``image`` [N,1,28,28] float32 in [0, 1],
output ``probabilities`` [N,10]); ``tools/make_example_model.py`` builds it and fits its last
layer to the seven-segment digits that :func:`synthetic_digits` draws, so it classifies them.

>>> import infermux as im
>>> from infermux import examples
>>> compiled = im.Core().compile_model(examples.path("lenet"), "CPU")
>>> images = examples.synthetic_digits([3, 7], seed=0)
>>> compiled(images)[0].argmax(axis=1).tolist()
[3, 7]
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["names", "path", "synthetic_digits"]

_HERE = Path(__file__).resolve().parent

# Seven-segment strokes as (row0, col0, row1, col1) boxes on a 20 x 12 glyph, before jitter.
_SEGMENTS = {
    "a": (0, 0, 2, 12), "b": (0, 10, 11, 12), "c": (9, 10, 20, 12), "d": (18, 0, 20, 12),
    "e": (9, 0, 20, 2), "f": (0, 0, 11, 2), "g": (9, 0, 11, 12),
}
_DIGIT_SEGMENTS = ("abcdef", "bc", "abged", "abgcd", "fgbc", "afgcd", "afgedc", "abc", "abcdefg", "abcdfg")


def names() -> list[str]:
    """The names of the bundled models, e.g. ``['lenet']``."""
    return sorted(p.stem for p in _HERE.glob("*.onnx"))


def path(name: str = "lenet") -> str:
    """The file path of bundled model ``name``.

    >>> path("lenet").endswith("lenet.onnx")
    True
    """
    file = _HERE / f"{name}.onnx"
    if not file.is_file():
        raise FileNotFoundError(f"no bundled example model '{name}'; the bundled models are: "
                                f"{', '.join(names()) or 'none'}")
    return str(file)


def synthetic_digits(digits: Sequence[int], seed: int = 0, *, noise: float = 0.05) -> np.ndarray:
    """Seven-segment digits drawn on 28 x 28 canvases: float32 [len(digits), 1, 28, 28] in [0, 1].

    Each glyph is shifted up to 2 pixels, its strokes thickened at random and its brightness
    varied, then Gaussian noise of standard deviation ``noise`` is added; the same ``seed`` gives
    the same images.

    >>> synthetic_digits([0, 1], seed=1).shape
    (2, 1, 28, 28)
    """
    rng = np.random.default_rng(seed)
    images = np.zeros((len(digits), 1, 28, 28), np.float32)
    for i, digit in enumerate(digits):
        if not 0 <= int(digit) <= 9:
            raise ValueError(f"digits must be 0..9, got {digit}")
        top, left = 4 + rng.integers(-2, 3), 8 + rng.integers(-2, 3)
        grow = rng.integers(0, 2)  # thicker strokes on some glyphs
        brightness = rng.uniform(0.75, 1.0)
        for seg in _DIGIT_SEGMENTS[int(digit)]:
            r0, c0, r1, c1 = _SEGMENTS[seg]
            images[i, 0, top + r0 - grow:top + r1 + grow, left + c0 - grow:left + c1 + grow] = brightness
    images += rng.normal(0.0, noise, images.shape).astype(np.float32)
    return np.clip(images, 0.0, 1.0, out=images)
