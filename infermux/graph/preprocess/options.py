"""What the pre/post-processing steps are told: the enums users pass, the error steps raise, and the
opset their ops need."""

from __future__ import annotations

import enum

import numpy as np

from infermux.errors import InfermuxError
from infermux.graph.layout import Layout

NEEDS_OPSET = 11  # Resize with sizes, Slice/Pad with tensor inputs
_INT64_MIN, _INT64_MAX = np.iinfo(np.int64).min, np.iinfo(np.int64).max
_NHWC = Layout("NHWC")


class PreprocessError(InfermuxError, ValueError):
    """A pre/post-processing step that cannot apply to the tensor it gets."""


class ColorFormat(enum.Enum):
    """Colour formats of image inputs (``openvino.preprocess.ColorFormat``)."""

    UNDEFINED = 0
    NV12_SINGLE_PLANE = 1
    NV12_TWO_PLANES = 2
    I420_SINGLE_PLANE = 3
    I420_THREE_PLANES = 4
    RGB = 5
    BGR = 6
    GRAY = 7
    RGBX = 8
    BGRX = 9

    @property
    def label(self) -> str:
        """The name OpenVINO prints: ``'NV12 (single plane)'``, ``'RGB'``."""
        special = {"NV12_SINGLE_PLANE": "NV12 (single plane)", "NV12_TWO_PLANES": "NV12 (multi-plane)",
                   "I420_SINGLE_PLANE": "I420 (single plane)", "I420_THREE_PLANES": "I420 (multi-plane)"}
        return special.get(self.name, self.name)

    @property
    def is_yuv(self) -> bool:
        """True for NV12 and I420."""
        return self.name.startswith(("NV12", "I420"))

    @property
    def planes(self) -> tuple[str, ...]:
        """Default names of the planes of a multi-plane format (one entry for other formats)."""
        return {"NV12_TWO_PLANES": ("y", "uv"), "I420_THREE_PLANES": ("y", "u", "v")}.get(self.name, ("",))


class ResizeAlgorithm(enum.Enum):
    """Interpolation of ``resize`` (``openvino.preprocess.ResizeAlgorithm``)."""

    RESIZE_LINEAR = 0
    RESIZE_CUBIC = 1
    RESIZE_NEAREST = 2
    RESIZE_BILINEAR_PILLOW = 3
    RESIZE_BICUBIC_PILLOW = 4


class PaddingMode(enum.Enum):
    """How ``pad`` fills (``openvino.preprocess.PaddingMode``)."""

    CONSTANT = 0
    REFLECT = 1
    SYMMETRIC = 2
