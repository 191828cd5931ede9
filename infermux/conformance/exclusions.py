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

__all__ = ["BUG", "EXCLUSIONS", "NUMERICS", "UNSUPPORTED", "Exclusion", "exclusion_for"]

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
    _x(r"^test_image_decoder_", UNSUPPORTED,
       "ImageDecoder: decoding BMP/JPEG/JPEG 2000/PNG/PNM/TIFF/WebP needs an image codec "
       "library; not implemented"),
    # -- results that cannot match -----------------------------------------------------------
    _x(r"^test_bernoulli", NUMERICS,
       "Bernoulli draws at random: the expected values are one unseeded draw of NumPy's legacy "
       "generator (np.random.binomial, even in test_bernoulli_seed), which no runtime "
       "reproduces; tests/ops/test_random.py checks shape, dtype and the 0/1 frequencies"),
)


def exclusion_for(test_name: str) -> Exclusion | None:
    """The first exclusion whose pattern matches ``test_name``, or None."""
    for entry in EXCLUSIONS:
        if re.search(entry.pattern, test_name):
            return entry
    return None
