"""String kernels against onnx.reference."""

from __future__ import annotations

import numpy as np
import pytest

from infermux.errors import ShapeMismatchError, TypeMismatchError, UnsupportedOpError
from tests.ops.op_oracle import call, reference


def strings(*values):
    return np.array(values, dtype=object)


def test_string_concat_broadcasts():
    x, y = strings(["a", "b"], ["c", "d"]), strings("!", "?")
    got = call("StringConcat", 20, x, y)
    assert got.dtype == object
    np.testing.assert_array_equal(got, reference("StringConcat", [x, y], 20)[0])
    scalar = call("StringConcat", 20, np.array("cat", dtype=object), np.array("s", dtype=object))
    assert scalar.shape == () and scalar.item() == "cats"


def test_regex_full_match():
    x = strings("www.google.com", "www.facebook.com", "www.bbc.co.uk")
    got = call("RegexFullMatch", 20, x, pattern=r"www\.[\w.-]+\.\bcom\b")
    np.testing.assert_array_equal(got, reference("RegexFullMatch", [x], 20,
                                                 pattern=r"www\.[\w.-]+\.\bcom\b")[0])
    with pytest.raises(UnsupportedOpError, match="pattern"):
        call("RegexFullMatch", 20, x, pattern="(unclosed")


@pytest.mark.parametrize("x, attrs", [
    (strings("monday", "tuesday", "Monday"),
     {"case_change_action": "UPPER", "stopwords": ["monday"]}),
    (strings("monday", "tuesday", "Monday"),
     {"case_change_action": "LOWER", "is_case_sensitive": 1, "stopwords": ["monday"]}),
    (strings("monday", "monday"), {"is_case_sensitive": 1, "stopwords": ["monday"]}),
])
def test_string_normalizer(x, attrs):
    got = call("StringNormalizer", 10, x, **attrs)
    want = reference("StringNormalizer", [x], 10, **attrs)[0]
    assert got.shape == want.shape and got.tolist() == want.tolist()


def test_string_normalizer_matches_stop_words_ignoring_case_by_default():
    # onnx.reference compares case-sensitively when case_change_action is NONE; the spec's
    # default is_case_sensitive=0 says otherwise.
    got = call("StringNormalizer", 10, strings(["Monday", "x", "monday"]), stopwords=["monday"])
    assert got.shape == (1, 1) and got.tolist() == [["x"]]


def test_string_normalizer_needs_a_row():
    with pytest.raises(ShapeMismatchError, match=r"\[C\]"):
        call("StringNormalizer", 10, strings(["a"], ["b"]))


@pytest.mark.parametrize("attrs", [{}, {"delimiter": ","}, {"delimiter": ",", "maxsplit": 1},
                                   {"delimiter": "-"}])
def test_string_split(attrs):
    x = strings(["a,b,,c", " x  y "], ["", "1-2-3"])
    parts, counts = call("StringSplit", 20, x, **attrs)
    want_parts, want_counts = reference("StringSplit", [x], 20, n_out=2, **attrs)
    assert parts.shape == want_parts.shape and parts.tolist() == want_parts.tolist()
    assert counts.dtype == np.int64 and counts.tolist() == want_counts.tolist()


def test_string_split_empty_input_and_type_error():
    parts, counts = call("StringSplit", 20, strings())
    assert parts.shape == (0, 0) and counts.shape == (0,)
    with pytest.raises(TypeMismatchError, match="string"):
        call("StringSplit", 20, np.zeros(2, np.float32))
