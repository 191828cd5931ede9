"""Node tests infermux does not pass yet, each a regex with a category and a precise reason.

Categories: ``UNSUPPORTED`` (an op, type or attribute value infermux does not implement),
``BUG`` (implemented but wrong: to be fixed), ``NUMERICS`` (right algorithm, results outside the
harness tolerance for a stated reason).  Patterns are ``re.search``-ed against test names and
anchored by hand.  The list is meant to shrink: ``python -m infermux.conformance
--include-excluded`` runs the excluded tests too and shows which now pass.

>>> exclusion_for("test_relu") is None
True
"""

from __future__ import annotations

import dataclasses
import re

__all__ = ["BUG", "EXCLUSIONS", "Exclusion", "NUMERICS", "UNSUPPORTED", "exclusion_for"]

UNSUPPORTED, BUG, NUMERICS = "UNSUPPORTED", "BUG", "NUMERICS"


@dataclasses.dataclass(frozen=True)
class Exclusion:
    """A family of excluded tests: ``pattern`` is a regex over test names."""

    pattern: str
    category: str
    reason: str

    def __post_init__(self) -> None:
        if self.category not in (UNSUPPORTED, BUG, NUMERICS):
            raise ValueError(f"exclusion {self.pattern!r}: category must be UNSUPPORTED, BUG or "
                             f"NUMERICS, got {self.category!r}")
        re.compile(self.pattern)

    def describe(self) -> str:
        """``CATEGORY: reason``, the text a skipped test reports."""
        return f"{self.category}: {self.reason}"


def _x(pattern: str, category: str, reason: str) -> Exclusion:
    return Exclusion(pattern, category, reason)


EXCLUSIONS: tuple[Exclusion, ...] = (
    # -- ops infermux does not implement ----------------------------------------------------
    _x(r"^test_(adagrad|adam|momentum|nesterov_momentum)", UNSUPPORTED,
       "Adagrad, Adam, Momentum (domain ai.onnx.preview.training): training optimizers, outside "
       "an inference runtime"),
    _x(r"^test_ai_onnx_ml_(array_feature_extractor|binarizer|label_encoder|tree_ensemble)",
       UNSUPPORTED, "ArrayFeatureExtractor, Binarizer, LabelEncoder, TreeEnsemble (domain "
       "ai.onnx.ml): classical-ML ops are not implemented"),
    _x(r"^test_bernoulli", UNSUPPORTED,
       "Bernoulli samples at random (its body is RandomUniformLike, not implemented); the "
       "expected values are one draw of NumPy's generator, which no runtime reproduces"),
    _x(r"^test_image_decoder_", UNSUPPORTED,
       "ImageDecoder: decoding BMP/JPEG/JPEG 2000/PNG/PNM/TIFF/WebP needs an image codec "
       "library; not implemented"),
    _x(r"^test_tfidfvectorizer_", UNSUPPORTED, "TfIdfVectorizer (n-gram counting) is not implemented"),
    # -- bugs, with where they are ----------------------------------------------------------
    _x(r"^test_affine_grid_(2d|3d)(_align_corners)?_expanded$", BUG,
       "AffineGrid's function body feeds Range 1-element 1-D start/limit/delta; the Range kernel "
       "(ops/shape_ops.py) calls float() on them and needs 0-d scalars"),
    _x(r"^test_optional_(get_element_optional_tensor|has_element_(optional|tensor)_input)$", BUG,
       "an optional(tensor) graph input given an array is refused by scheduler/requests.py "
       "_convert (it accepts only a list or None for kind 'optional')"),
)


def exclusion_for(test_name: str) -> Exclusion | None:
    """The first exclusion whose pattern matches ``test_name``, or None."""
    for entry in EXCLUSIONS:
        if re.search(entry.pattern, test_name):
            return entry
    return None
