import pytest

from infermux import Dimension, PartialShape, Shape


@pytest.mark.parametrize("text, expected", [
    ("?,3,1..16,8..32", "[?,3,1..16,8..32]"),
    ("[-1,3,224,224]", "[?,3,224,224]"),
    ("..5,8..", "[..5,8..]"),
    ("", "[]"),
])
def test_partial_shape_round_trips_its_string_form(text, expected):
    assert str(PartialShape(text)) == expected
    assert PartialShape(expected) == PartialShape(text)


def test_dimension_forms():
    assert str(Dimension(2, -1)) == "2.."
    assert str(Dimension()) == "?"
    assert Dimension(4).get_length() == 4
    assert Dimension(1, 8).contains(8) and not Dimension(1, 8).contains(9)
    with pytest.raises(ValueError, match="dynamic"):
        Dimension(1, 8).get_length()
    with pytest.raises(ValueError, match="cannot parse"):
        Dimension("abc")


def test_partial_shape_bounds_and_static_conversion():
    ps = PartialShape([Dimension(1, 8), 3, 16, 16])
    assert ps.is_dynamic and ps.accepts((8, 3, 16, 16)) and not ps.accepts((9, 3, 16, 16))
    assert ps.get_max_shape() == Shape([8, 3, 16, 16])
    assert PartialShape([1, 3]).to_shape() == (1, 3)
    with pytest.raises(ValueError, match="dynamic"):
        ps.to_shape()
