"""String ops: StringConcat, RegexFullMatch, StringNormalizer and StringSplit.

String tensors are NumPy object arrays of ``str``; they never live on a GPU, so these kernels
use NumPy directly whatever ``xp`` is.  Regular expressions use Python's ``re``, which accepts
the RE2 syntax ONNX specifies for the patterns models use (RE2-only escapes are rejected with
an UnsupportedOpError).
"""

from __future__ import annotations

import re

import numpy as np

from infermux.errors import ShapeMismatchError, TypeMismatchError, UnsupportedOpError
from infermux.ops.registry import kernel

__all__ = []


def _strings(x, what: str) -> np.ndarray:
    if x.dtype.kind not in "OUS":
        raise TypeMismatchError(f"{what} takes string tensors, got {x.dtype}")
    return np.asarray(x, dtype=object)


def _map(fn, x, dtype) -> np.ndarray:
    """fn over every element of an object array, as an array of ``dtype`` and x's shape."""
    return np.asarray(np.frompyfunc(fn, 1, 1)(x), dtype=dtype).reshape(x.shape)


@kernel("StringConcat", since=20)
def string_concat(xp, x, y, /):
    """Elementwise x + y with broadcasting."""
    joined = _strings(x, "StringConcat") + _strings(y, "StringConcat")
    return np.asarray(joined, dtype=object)  # 0-d inputs give a bare str


@kernel("RegexFullMatch", since=20)
def regex_full_match(xp, x, /, *, pattern):
    """True where the whole string matches ``pattern``."""
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise UnsupportedOpError(f"RegexFullMatch attribute pattern={pattern!r} is not "
                                 f"supported ({exc}): use the RE2 subset Python's re accepts")
    return _map(lambda s: regex.fullmatch(s) is not None, _strings(x, "RegexFullMatch"), bool)


def _case_changer(action: str):
    changers = {"NONE": None, "LOWER": str.lower, "UPPER": str.upper}
    if action not in changers:
        raise UnsupportedOpError(f"StringNormalizer attribute case_change_action={action!r} is "
                                 f"not supported: use NONE, LOWER or UPPER")
    return changers[action]


@kernel("StringNormalizer", since=10)
def string_normalizer(xp, x, /, *, case_change_action="NONE", is_case_sensitive=0, locale="",
                      stopwords=None):
    """Drop the elements that are stop words, then change case.

    Input is [C] or [1, C]; when every element is dropped the output holds one empty string.
    Case-insensitive matching compares ``str.casefold`` forms (``locale`` is not consulted).
    """
    x = _strings(x, "StringNormalizer")
    if not (x.ndim == 1 or (x.ndim == 2 and x.shape[0] == 1)):
        raise ShapeMismatchError(f"StringNormalizer takes a [C] or [1, C] tensor, got {x.shape}")
    words = list(x.reshape(-1))
    if stopwords:
        if is_case_sensitive:
            stops = set(stopwords)
            words = [w for w in words if w not in stops]
        else:
            stops = {s.casefold() for s in stopwords}
            words = [w for w in words if w.casefold() not in stops]
    change = _case_changer(case_change_action)
    if change is not None:
        words = [change(w) for w in words]
    out = np.array(words or [""], dtype=object)
    return out.reshape(1, -1) if x.ndim == 2 else out


@kernel("StringSplit", since=20)
def string_split(xp, x, /, *, delimiter="", maxsplit=None):
    """Split each string; outputs the parts padded with "" to the longest, and the counts.

    An empty or missing delimiter splits on runs of whitespace, ignoring leading and trailing
    whitespace (Python's ``str.split()``); consecutive explicit delimiters give empty parts.
    """
    x = _strings(x, "StringSplit")
    sep = delimiter or None
    limit = -1 if maxsplit is None else int(maxsplit)
    parts = [s.split(sep, limit) for s in x.reshape(-1)]
    counts = np.array([len(p) for p in parts], dtype=np.int64)
    width = int(counts.max(initial=0))
    out = np.full((len(parts), width), "", dtype=object)
    for row, p in zip(out, parts):
        row[:len(p)] = p
    return out.reshape(x.shape + (width,)), counts.reshape(x.shape)
