import numpy as np
import pytest

from infermux import Type


@pytest.mark.parametrize("name, dtype", [("f32", np.float32), ("f16", np.float16), ("i64", np.int64),
                                         ("u8", np.uint8), ("boolean", np.bool_)])
def test_type_maps_both_ways(name, dtype):
    t = getattr(Type, name)
    assert t.get_type_name() == name
    assert t.to_dtype() == np.dtype(dtype)
    assert Type(dtype) is t


def test_type_repr_and_errors():
    assert str(Type.f32) == "<Type: 'float32'>"
    assert Type.dynamic.is_dynamic()
    with pytest.raises(TypeError, match="no NumPy dtype"):
        Type.dynamic.to_dtype()
